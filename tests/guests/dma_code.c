/* Code loaded by DMA: runs functions from a page, reads new ones over them from virtio-blk (as a
 * kernel loads a program into a page that held older code) and checks the new ones run. The
 * disk image comes from mkdmaimg.py; the CPU never writes the page after the first run. */
#include "rt/rt.h"
#include "rt/virtio.h"

const char guest_name[] = "dma_code";

#define T_IN 0

/* The page the functions live in: nothing else shares it, so no CPU store can refresh it. */
static uint8_t code[4096] __attribute__((aligned(4096)));
static struct vio_dev dev;
static struct {
    uint32_t type, ioprio;
    uint64_t sector;
} hdr;
static volatile uint8_t status;

typedef int (*fn_t)(void);

/* Several calls: the first ones fill the TLB and decode, the later ones run cached blocks. */
static int call(unsigned off)
{
    fn_t f = (fn_t)(uintptr_t)(code + off);
    int v = 0;
    for (int i = 0; i < 4; i++)
        v = f();
    return v;
}

/* mov $v, %eax; ret */
static void put_ret(unsigned off, uint32_t v)
{
    code[off] = 0xb8;
    memcpy(code + off + 1, &v, 4);
    code[off + 5] = 0xc3;
}

/* Read len bytes at sector into the code page at off, straight from the device. */
static void read_into_code(uint64_t sector, unsigned off, uint32_t len)
{
    hdr.type = T_IN;
    hdr.ioprio = 0;
    hdr.sector = sector;
    status = 0xee;
    struct vio_buf b[3] = {{&hdr, sizeof(hdr), false}, {code + off, len, true},
                           {(void *)&status, 1, true}};
    int head = vio_submit(&dev, 0, b, 3);
    uint32_t id, used;
    CHECK(vio_wait_used(&dev, 0, &id, &used, 5000) == 0, "read of sector %u timed out",
          (unsigned)sector);
    CHECK(id == (uint32_t)head && status == 0, "read of sector %u: id %u status %u",
          (unsigned)sector, id, status);
}

void guest_main(void)
{
    CHECK(vio_find(&dev, VIRTIO_ID_BLOCK, 0) == 0, "no virtio-blk device");
    CHECK(vio_negotiate(&dev, 0) == 0, "feature negotiation failed");
    CHECK(vio_queue_setup(&dev, 0, 16) == 0, "queue setup failed");
    vio_driver_ok(&dev);

    put_ret(0, 1);
    put_ret(0x200, 11);
    __asm__ volatile("" ::: "memory");
    CHECK(call(0) == 1, "first function returned %d before any DMA, expected 1", call(0));
    CHECK(call(0x200) == 11, "second function returned %d before any DMA, expected 11",
          call(0x200));

    /* Part of the page: sector 0 holds mov $12,%eax; ret for offset 0x200. */
    read_into_code(0, 0x200, 512);
    int v = call(0x200);
    CHECK(v != 11, "ran stale code after a 512-byte DMA into the page: got 11, expected 12");
    CHECK(v == 12, "after a 512-byte DMA the function returned %d, expected 12", v);
    CHECK(call(0) == 1, "the untouched function returned %d, expected 1", call(0));

    /* The whole page: sectors 8-15 hold mov $2 at offset 0 and mov $22 at 0x200. */
    read_into_code(8, 0, 4096);
    v = call(0);
    CHECK(v != 1, "ran stale code after a 4 KiB DMA over the page: got 1, expected 2");
    CHECK(v == 2, "after a 4 KiB DMA the first function returned %d, expected 2", v);
    v = call(0x200);
    CHECK(v == 22, "after a 4 KiB DMA the second function returned %d, expected 22", v);
    rt_printf("dma_code: stale code not run (got 12, then 2 and 22)\n");
}
