/* virtio-blk guest: reads what the host put in the image, writes patterns the host checks
 * afterwards, and plays a hostile driver. mode= picks the scenario (tests/blk/run-blk.sh). */
#include "rt/rt.h"
#include "rt/virtio.h"

const char guest_name[] = "virtio_blk";

#define F_SIZE_MAX 1
#define F_SEG_MAX 2
#define F_RO 5
#define F_BLK_SIZE 6
#define F_FLUSH 9
#define F_TOPOLOGY 10
#define F_CONFIG_WCE 11
#define F_MQ 12
#define F_DISCARD 13
#define F_WRITE_ZEROES 14
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_GET_LIFETIME 10
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

/* Image contents, shared with tests/blk/blkimg.py: 64-bit word j of sector s. */
#define PAT_HOST 0x5ab0000000000000ull
#define PAT_GUEST 0xc0ffee0000000000ull
static uint64_t pat(uint64_t base, uint64_t s, unsigned j)
{
    return base ^ (s << 16) ^ j;
}

struct hdr {
    uint32_t type, ioprio;
    uint64_t sector;
};
struct range {
    uint64_t sector;
    uint32_t num, flags;
};

#define SLOTS 32
static struct vio_dev dev;
static struct hdr hdrs[SLOTS];
static volatile uint8_t status[SLOTS];
static uint8_t data[SLOTS][4096] __attribute__((aligned(4096)));
static uint8_t big[16384] __attribute__((aligned(4096)));

static void fill(void *buf, uint64_t base, uint64_t sector, unsigned nsec)
{
    uint64_t *w = buf;
    for (unsigned s = 0; s < nsec; s++)
        for (unsigned j = 0; j < 64; j++)
            w[s * 64 + j] = pat(base, sector + s, j);
}

static void verify(const void *buf, uint64_t base, uint64_t sector, unsigned nsec, const char *what)
{
    const uint64_t *w = buf;
    for (unsigned s = 0; s < nsec; s++)
        for (unsigned j = 0; j < 64; j++)
            CHECK(w[s * 64 + j] == pat(base, sector + s, j),
                  "%s: sector %u word %u is %lx, expected %lx", what, (unsigned)(sector + s), j,
                  (unsigned long)w[s * 64 + j], (unsigned long)pat(base, sector + s, j));
}

static void verify_zero(const void *buf, unsigned len, const char *what)
{
    const uint64_t *w = buf;
    for (unsigned i = 0; i < len / 8; i++)
        CHECK(w[i] == 0, "%s: word %u is %lx, expected zeroes", what, i, (unsigned long)w[i]);
}

/* Queue one request in slot: header, optional data (device-writable for reads), status. */
static int submit(unsigned q, unsigned slot, uint32_t type, uint64_t sector, void *buf,
                  uint32_t len, bool dev_writes)
{
    hdrs[slot] = (struct hdr){type, 0, sector};
    status[slot] = 0xee;
    struct vio_buf b[3];
    unsigned n = 0;
    b[n++] = (struct vio_buf){&hdrs[slot], sizeof(hdrs[slot]), false};
    if (len)
        b[n++] = (struct vio_buf){buf, len, dev_writes};
    b[n++] = (struct vio_buf){(void *)&status[slot], 1, true};
    return vio_submit_indirect(&dev, q, b, n);
}

/* One request, waited for: returns the status byte; *used gets the used length. */
static uint8_t req(uint32_t type, uint64_t sector, void *buf, uint32_t len, bool dev_writes,
                   uint32_t *used)
{
    int head = submit(0, 0, type, sector, buf, len, dev_writes);
    uint32_t id, ulen;
    CHECK(vio_wait_used(&dev, 0, &id, &ulen, 2000) == 0, "request type %u timed out", type);
    CHECK(id == (uint32_t)head, "used id %u, expected %d", id, head);
    if (used)
        *used = ulen;
    return status[0];
}

static void setup(unsigned nq, uint64_t want)
{
    CHECK(vio_negotiate(&dev, want) == 0, "feature negotiation failed");
    for (unsigned q = 0; q < nq; q++)
        CHECK(vio_queue_setup(&dev, q, 64) == 0, "queue %u setup failed", q);
    vio_driver_ok(&dev);
}

static uint64_t all_features(void)
{
    return 1ull << F_SIZE_MAX | 1ull << F_SEG_MAX | 1ull << F_RO | 1ull << F_BLK_SIZE |
           1ull << F_FLUSH | 1ull << F_TOPOLOGY | 1ull << F_CONFIG_WCE | 1ull << F_MQ |
           1ull << F_DISCARD | 1ull << F_WRITE_ZEROES | 1ull << VIRTIO_F_RING_INDIRECT_DESC;
}

static uint64_t capacity(void)
{
    return (uint64_t)vio_cfg_read32(&dev, 0) | (uint64_t)vio_cfg_read32(&dev, 4) << 32;
}

static void check_config(void)
{
    uint64_t want;
    if (cmdline_get_u64("sectors", &want))
        CHECK(capacity() == want, "capacity %lu sectors, expected %lu",
              (unsigned long)capacity(), (unsigned long)want);
    CHECK(dev.features & (1ull << F_SEG_MAX), "SEG_MAX not offered");
    CHECK(vio_cfg_read32(&dev, 12) >= 2, "seg_max %u too small", vio_cfg_read32(&dev, 12));
    if (!cmdline_has("qemu")) { /* QEMU's device (for cross-checking this guest) has none */
        CHECK(dev.features & (1ull << F_SIZE_MAX), "SIZE_MAX not offered");
        CHECK(vio_cfg_read32(&dev, 8) >= 4096, "size_max %u", vio_cfg_read32(&dev, 8));
    }
    CHECK(dev.features & (1ull << F_BLK_SIZE), "BLK_SIZE not offered");
    uint64_t bs = 512;
    cmdline_get_u64("blk_size", &bs);
    CHECK(vio_cfg_read32(&dev, 20) == bs, "blk_size %u, expected %u", vio_cfg_read32(&dev, 20),
          (unsigned)bs);
    CHECK(dev.features & (1ull << F_FLUSH), "FLUSH not offered");
    CHECK(dev.features & (1ull << F_TOPOLOGY), "TOPOLOGY not offered");
    uint64_t nq = 1;
    cmdline_get_u64("queues", &nq);
    /* vmkit always offers MQ; QEMU only with more than one queue */
    CHECK((dev.features & (1ull << F_MQ)) || (nq == 1 && cmdline_has("qemu")), "MQ not offered");
    CHECK(vio_cfg_read16(&dev, 34) == nq, "num_queues %u, expected %u", vio_cfg_read16(&dev, 34),
          (unsigned)nq);
    uint64_t wce;
    if (cmdline_get_u64("wce", &wce))
        CHECK(vio_cfg_read8(&dev, 32) == wce, "writeback %u, expected %u",
              vio_cfg_read8(&dev, 32), (unsigned)wce);
    bool ro = (dev.features >> F_RO) & 1;
    CHECK(ro == cmdline_has("ro"), "RO feature %d, expected %d", ro, cmdline_has("ro"));
}

/* Reads the host pattern, writes the guest's, reads it back; the runner checks the image. */
static void mode_rw(void)
{
    uint64_t cap = capacity();
    CHECK(req(T_IN, 0, data[1], 4096, true, NULL) == S_OK, "read sectors 0-7");
    verify(data[1], PAT_HOST, 0, 8, "read 0-7");
    uint32_t used;
    CHECK(req(T_IN, cap - 1, data[1], 512, true, &used) == S_OK, "read last sector");
    CHECK(used == 513, "used length %u for a 512-byte read, expected 513", used);
    verify(data[1], PAT_HOST, cap - 1, 1, "read last");

    fill(data[1], PAT_GUEST, 16, 8);
    CHECK(req(T_OUT, 16, data[1], 4096, false, &used) == S_OK, "write sectors 16-23");
    CHECK(used == 1, "used length %u for a write, expected 1", used);
    fill(data[2], PAT_GUEST, 100, 1);
    CHECK(req(T_OUT, 100, data[2], 512, false, NULL) == S_OK, "write sector 100");
    memset(data[3], 0, 4096);
    CHECK(req(T_IN, 16, data[3], 4096, true, NULL) == S_OK, "read back 16-23");
    verify(data[3], PAT_GUEST, 16, 8, "read back 16-23");
    CHECK(req(T_IN, 99, data[3], 1024, true, NULL) == S_OK, "read back 99-100");
    verify(data[3], PAT_HOST, 99, 1, "read back 99");
    verify(data[3] + 512, PAT_GUEST, 100, 1, "read back 100");
    CHECK(req(T_FLUSH, 0, NULL, 0, false, NULL) == S_OK, "flush");

    /* out of range: no data moves, IOERR, and the device keeps working */
    CHECK(req(T_IN, cap - 1, data[3], 1024, true, NULL) == S_IOERR, "read across the end");
    CHECK(req(T_IN, cap, data[3], 512, true, NULL) == S_IOERR, "read past the end");
    CHECK(req(T_OUT, cap, data[3], 512, false, NULL) == S_IOERR, "write past the end");
    CHECK(req(T_IN, ~0ull - 1, data[3], 512, true, NULL) == S_IOERR, "read at sector 2^64-2");
    CHECK(req(T_IN, 0, data[3], 100, true, NULL) == S_IOERR, "read of 100 bytes");
    CHECK(req(T_GET_LIFETIME, 0, data[3], 8, true, NULL) == S_UNSUPP, "GET_LIFETIME");
    CHECK(req(77, 0, data[3], 8, true, NULL) == S_UNSUPP, "type 77");
    CHECK(!(vio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET), "device broken by plain errors");
    CHECK(req(T_IN, 0, data[3], 512, true, NULL) == S_OK, "read after errors");
    verify(data[3], PAT_HOST, 0, 1, "read after errors");
}

/* Probed raw image: a write that would make sector 0 look like a qcow2 header is refused, an
 * ordinary one is not. */
static void mode_guard(void)
{
    memset(data[1], 0, 512);
    memcpy(data[1], "QFI\xfb\0\0\0\3", 8);
    CHECK(req(T_OUT, 0, data[1], 512, false, NULL) == S_IOERR, "qcow2 magic written to sector 0");
    CHECK(req(T_IN, 0, data[2], 512, true, NULL) == S_OK, "read sector 0");
    verify(data[2], PAT_HOST, 0, 1, "sector 0 after the refused write");
    fill(data[1], PAT_GUEST, 0, 1);
    CHECK(req(T_OUT, 0, data[1], 512, false, NULL) == S_OK, "ordinary write to sector 0");
    memcpy(data[1], "QFI\xfb", 4);
    CHECK(req(T_OUT, 8, data[1], 512, false, NULL) == S_OK, "magic elsewhere is fine");
    fill(data[1], PAT_HOST, 8, 1);
    CHECK(req(T_OUT, 8, data[1], 512, false, NULL) == S_OK, "restore sector 8");
}

/* The write cache: the guest toggles it with CONFIG_WCE; a driver without FLUSH gets a
 * write-through disk (writeback reads 0 and cannot be set). */
static void mode_wce(void)
{
    CHECK(dev.features & (1ull << F_CONFIG_WCE), "CONFIG_WCE not offered");
    CHECK(vio_cfg_read8(&dev, 32) == 1, "writeback %u with FLUSH, expected 1", vio_cfg_read8(&dev, 32));
    dev.devcfg[32] = 0;
    CHECK(vio_cfg_read8(&dev, 32) == 0, "writeback did not turn off");
    fill(data[1], PAT_GUEST, 16, 8);
    CHECK(req(T_OUT, 16, data[1], 4096, false, NULL) == S_OK, "write-through write");
    CHECK(req(T_IN, 16, data[2], 4096, true, NULL) == S_OK, "read back");
    verify(data[2], PAT_GUEST, 16, 8, "write-through read back");
    dev.devcfg[32] = 1;
    CHECK(vio_cfg_read8(&dev, 32) == 1, "writeback did not turn back on");

    setup(1, all_features() & ~(1ull << F_FLUSH));
    CHECK(!(dev.features & (1ull << F_FLUSH)), "FLUSH negotiated though not wanted");
    /* virtio 1.2 5.2.5.2: writeback starts at 0 when FLUSH is not negotiated (QEMU 7.2 keeps
     * showing 1, though it does write through) */
    if (!cmdline_has("qemu")) {
        CHECK(vio_cfg_read8(&dev, 32) == 0, "writeback %u without FLUSH, expected 0",
              vio_cfg_read8(&dev, 32));
        dev.devcfg[32] = 1;
        CHECK(vio_cfg_read8(&dev, 32) == 0, "writeback turned on without FLUSH");
    }
    fill(data[1], PAT_GUEST, 100, 1);
    CHECK(req(T_OUT, 100, data[1], 512, false, NULL) == S_OK, "write without FLUSH");
    CHECK(req(T_IN, 100, data[2], 512, true, NULL) == S_OK, "read back 100");
    verify(data[2], PAT_GUEST, 100, 1, "read back 100");
}

/* logical_block_size=4096: requests must be 4 KiB aligned and sized. */
static void mode_rw4k(void)
{
    CHECK(req(T_IN, 0, data[1], 4096, true, NULL) == S_OK, "read 4 KiB");
    verify(data[1], PAT_HOST, 0, 8, "read 4 KiB");
    CHECK(req(T_IN, 1, data[1], 4096, true, NULL) == S_IOERR, "unaligned 4 KiB read");
    CHECK(req(T_IN, 0, data[1], 512, true, NULL) == S_IOERR, "512-byte read");
    fill(data[1], PAT_GUEST, 16, 8);
    CHECK(req(T_OUT, 16, data[1], 4096, false, NULL) == S_OK, "write 16-23");
    CHECK(req(T_OUT, 20, data[1], 4096, false, NULL) == S_IOERR, "unaligned write");
    CHECK(vio_cfg_read8(&dev, 24) == 0, "physical_block_exp %u", vio_cfg_read8(&dev, 24));
}

/* 32 requests in flight on one queue, completing in any order. Two descriptors each (the
 * runtime has one indirect table per queue): writes carry header and data in one readable
 * buffer, reads get data and status in one writable buffer, as any-layout allows. */
static struct {
    struct hdr h;
    uint8_t d[4096];
} __attribute__((packed)) wreq[SLOTS];
static uint8_t rbuf[SLOTS][4096 + 1];

static void mode_many(void)
{
    uint64_t q = 0;
    cmdline_get_u64("queue", &q);
    int heads[SLOTS];
    for (unsigned i = 0; i < SLOTS; i++) {
        wreq[i].h = (struct hdr){T_OUT, 0, 200 + i * 8};
        fill(wreq[i].d, PAT_GUEST, 200 + i * 8, 8);
        status[i] = 0xee;
        struct vio_buf b[2] = {{&wreq[i], sizeof(wreq[i]), false}, {(void *)&status[i], 1, true}};
        heads[i] = vio_submit(&dev, (unsigned)q, b, 2);
    }
    for (unsigned pass = 0; pass < 2; pass++) {
        bool done[SLOTS] = {0};
        for (unsigned n = 0; n < SLOTS; n++) {
            uint32_t id, len;
            CHECK(vio_wait_used(&dev, (unsigned)q, &id, &len, 2000) == 0,
                  "pass %u: only %u of %u requests completed", pass, n, SLOTS);
            unsigned i;
            for (i = 0; i < SLOTS && heads[i] != (int)id; i++)
                ;
            CHECK(i < SLOTS && !done[i], "pass %u: unexpected used id %u", pass, id);
            done[i] = true;
            uint8_t st = pass ? rbuf[i][4096] : status[i];
            CHECK(st == S_OK, "pass %u: request %u status %u", pass, i, st);
            CHECK(len == (pass ? 4097u : 1u), "pass %u: used len %u", pass, len);
        }
        if (pass)
            break;
        for (unsigned i = 0; i < SLOTS; i++) {
            hdrs[i] = (struct hdr){T_IN, 0, 200 + i * 8};
            memset(rbuf[i], 0, sizeof(rbuf[i]));
            rbuf[i][4096] = 0xee;
            struct vio_buf b[2] = {{&hdrs[i], sizeof(hdrs[i]), false}, {rbuf[i], 4097, true}};
            heads[i] = vio_submit(&dev, (unsigned)q, b, 2);
        }
    }
    for (unsigned i = 0; i < SLOTS; i++)
        verify(rbuf[i], PAT_GUEST, 200 + i * 8, 8, "read back in flight");
    if (q == 0)
        CHECK(req(T_FLUSH, 0, NULL, 0, false, NULL) == S_OK, "flush");
}

static uint8_t range_req(uint32_t type, uint64_t sector, uint32_t num, uint32_t flags)
{
    static struct range r[2];
    r[0] = (struct range){sector, num, flags};
    return req(type, 0, r, sizeof(r[0]), false, NULL);
}

/* DISCARD and WRITE_ZEROES (with and without UNMAP); the runner checks the zeroes. */
static void mode_discard(void)
{
    CHECK(dev.features & (1ull << F_DISCARD), "DISCARD not offered");
    CHECK(dev.features & (1ull << F_WRITE_ZEROES), "WRITE_ZEROES not offered");
    CHECK(vio_cfg_read32(&dev, 36) >= 8, "max_discard_sectors %u", vio_cfg_read32(&dev, 36));
    CHECK(vio_cfg_read32(&dev, 40) >= 1, "max_discard_seg 0");
    CHECK(vio_cfg_read32(&dev, 44) == 1, "discard_sector_alignment %u", vio_cfg_read32(&dev, 44));
    CHECK(vio_cfg_read32(&dev, 48) >= 8, "max_write_zeroes_sectors %u", vio_cfg_read32(&dev, 48));
    CHECK(vio_cfg_read8(&dev, 56) == 1, "write_zeroes_may_unmap %u with discard=unmap",
          vio_cfg_read8(&dev, 56));
    CHECK(range_req(T_DISCARD, 256, 256, 0) == S_OK, "discard 256-511");
    CHECK(range_req(T_WRITE_ZEROES, 600, 8, 0) == S_OK, "write zeroes 600-607");
    CHECK(range_req(T_WRITE_ZEROES, 700, 16, 1) == S_OK, "write zeroes+unmap 700-715");
    CHECK(req(T_IN, 600, data[1], 4096, true, NULL) == S_OK, "read 600-607");
    verify_zero(data[1], 4096, "after write zeroes");
    CHECK(req(T_IN, 700, data[1], 4096, true, NULL) == S_OK, "read 700-707");
    verify_zero(data[1], 4096, "after write zeroes+unmap");
    CHECK(req(T_IN, 608, data[1], 512, true, NULL) == S_OK, "read 608");
    verify(data[1], PAT_HOST, 608, 1, "next to the zeroed range");
    /* two segments in one request, when the device takes more than one (QEMU takes one) */
    static struct range two[2] = {{800, 8, 0}, {900, 8, 0}};
    if (vio_cfg_read32(&dev, 52) >= 2) {
        CHECK(req(T_WRITE_ZEROES, 0, two, sizeof(two), false, NULL) == S_OK, "2-segment zeroes");
        CHECK(req(T_IN, 900, data[1], 4096, true, NULL) == S_OK, "read 900");
        verify_zero(data[1], 4096, "second segment");
    } else {
        CHECK(req(T_WRITE_ZEROES, 0, two, sizeof(two), false, NULL) == S_UNSUPP,
              "2 segments with max_write_zeroes_seg 1");
        CHECK(range_req(T_WRITE_ZEROES, 800, 8, 0) == S_OK, "zeroes 800");
        CHECK(range_req(T_WRITE_ZEROES, 900, 8, 0) == S_OK, "zeroes 900");
    }
    /* refusals */
    CHECK(range_req(T_DISCARD, 256, 8, 1) == S_UNSUPP, "discard with the UNMAP flag");
    CHECK(range_req(T_WRITE_ZEROES, 600, 8, 2) == S_UNSUPP, "write zeroes with flag 2");
    CHECK(range_req(T_DISCARD, capacity() - 4, 8, 0) == S_IOERR, "discard past the end");
    if (!cmdline_has("qemu")) /* QEMU breaks the device (NEEDS_RESET) instead */
        CHECK(req(T_DISCARD, 0, data[1], 10, false, NULL) == S_UNSUPP, "discard of 10 bytes");
    CHECK(req(T_FLUSH, 0, NULL, 0, false, NULL) == S_OK, "flush");
}

/* readonly=on: RO offered, every write refused with IOERR, reads fine. */
static void mode_ro(void)
{
    fill(data[1], PAT_GUEST, 0, 8);
    CHECK(req(T_OUT, 0, data[1], 4096, false, NULL) == S_IOERR, "write to a read-only disk");
    CHECK(range_req(T_WRITE_ZEROES, 0, 8, 0) == S_IOERR, "write zeroes on a read-only disk");
    uint8_t s = range_req(T_DISCARD, 0, 8, 0);
    /* QEMU (discard=ignore) answers OK without doing anything */
    CHECK(s == S_IOERR || s == S_UNSUPP || (s == S_OK && cmdline_has("qemu")),
          "discard on a read-only disk: %u", s);
    CHECK(req(T_FLUSH, 0, NULL, 0, false, NULL) == S_OK, "flush");
    CHECK(req(T_IN, 0, data[2], 4096, true, NULL) == S_OK, "read");
    verify(data[2], PAT_HOST, 0, 8, "read-only disk");
}

/* GET_ID: the serial, 20 bytes, NUL-padded when shorter; a short buffer gets a prefix. */
static void mode_getid(void)
{
    char want[32];
    int n = cmdline_get("serial", want, sizeof(want));
    CHECK(n > 0, "no serial= on the command line");
    uint32_t used;
    memset(data[1], 0xaa, 64);
    CHECK(req(T_GET_ID, 0, data[1], 20, true, &used) == S_OK, "GET_ID");
    CHECK(used == 21, "GET_ID used length %u, expected 21", used);
    CHECK(!memcmp(data[1], want, (size_t)n), "serial '%s' does not start the id", want);
    /* NUL-padded to 20 bytes (QEMU writes only the terminating NUL) */
    for (int i = n; i < (cmdline_has("qemu") ? n + 1 : 20); i++)
        CHECK(data[1][i] == 0, "id byte %d is %x, expected NUL padding", i, data[1][i]);
    memset(data[1], 0xaa, 64);
    CHECK(req(T_GET_ID, 0, data[1], 4, true, &used) == S_OK, "GET_ID into 4 bytes");
    CHECK(used == 5 && !memcmp(data[1], want, 4) && data[1][4] == 0xaa,
          "GET_ID into 4 bytes: used %u", used);
}

/* A hostile driver: malformed chains break the device (NEEDS_RESET), malformed requests get
 * IOERR/UNSUPP; after a reset the disk works and holds what it held. */
static void expect_broken(const char *what)
{
    uint32_t id, len;
    /* The broken chain is never returned; give the device a moment to act. */
    vio_wait_used(&dev, 0, &id, &len, 50);
    CHECK(vio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET, "%s did not set NEEDS_RESET", what);
    vio_reset(&dev);
    setup(1, all_features());
    CHECK(!(vio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET), "NEEDS_RESET survived a reset");
}

static void mode_hostile(void)
{
    /* header in a device-writable buffer: no readable header at all */
    {
        struct vio_buf b[2] = {{&hdrs[0], 16, true}, {(void *)&status[0], 1, true}};
        vio_submit(&dev, 0, b, 2);
        expect_broken("a write-only header");
    }
    /* status byte in a device-readable buffer */
    {
        hdrs[0] = (struct hdr){T_IN, 0, 0};
        struct vio_buf b[2] = {{&hdrs[0], 16, false}, {(void *)&status[0], 1, false}};
        vio_submit(&dev, 0, b, 2);
        expect_broken("a read-only status byte");
    }
    /* a 15-byte header */
    {
        hdrs[0] = (struct hdr){T_IN, 0, 0};
        struct vio_buf b[2] = {{&hdrs[0], 15, false}, {(void *)&status[0], 1, true}};
        vio_submit(&dev, 0, b, 2);
        expect_broken("a 15-byte header");
    }
    /* a header split over two descriptors is legal (any layout) */
    {
        hdrs[0] = (struct hdr){T_IN, 0, 0};
        status[0] = 0xee;
        struct vio_buf b[4] = {{&hdrs[0], 7, false}, {(uint8_t *)&hdrs[0] + 7, 9, false},
                               {data[1], 512, true}, {(void *)&status[0], 1, true}};
        int head = vio_submit(&dev, 0, b, 4);
        uint32_t id, len;
        CHECK(vio_wait_used(&dev, 0, &id, &len, 2000) == 0 && id == (uint32_t)head,
              "split header: no completion");
        CHECK(status[0] == S_OK, "split header: status %u", status[0]);
        verify(data[1], PAT_HOST, 0, 1, "split header read");
    }
    /* wrong direction for data: a read whose data buffer the device may not write gets no
     * data; a write whose data the device cannot read writes nothing past the header */
    memset(data[1], 0x11, 512);
    CHECK(req(T_IN, 0, data[1], 512, false, NULL) == S_OK, "read with readable data");
    CHECK(data[1][0] == 0x11, "the device wrote into a device-readable buffer");
    CHECK(req(T_OUT, 5, data[1], 512, true, NULL) == S_OK, "write with writable data");
    CHECK(req(T_IN, 5, data[2], 512, true, NULL) == S_OK, "read 5");
    verify(data[2], PAT_HOST, 5, 1, "sector 5 after a write without data");
    /* bad sectors and lengths */
    CHECK(req(T_OUT, capacity(), data[1], 512, false, NULL) == S_IOERR, "write past the end");
    CHECK(req(T_OUT, 3, data[1], 511, false, NULL) == S_IOERR, "write of 511 bytes");
    CHECK(req(T_IN, 1ull << 63, data[1], 512, true, NULL) == S_IOERR, "read at sector 2^63");
    if (!cmdline_has("qemu")) /* QEMU still honours the legacy barrier bit: a write */
        CHECK(req(0x80000001u, 0, data[1], 512, false, NULL) == S_UNSUPP, "legacy barrier write");
    static struct range bad = {~0ull - 3, 8, 0};
    CHECK(req(T_WRITE_ZEROES, 0, &bad, sizeof(bad), false, NULL) == S_IOERR,
          "write zeroes with a wrapping range");
    CHECK(req(T_DISCARD, 0, big, 16 * 17, false, NULL) == S_UNSUPP, "17 discard segments");
    /* big: a read of 16 KiB in one buffer still works */
    CHECK(req(T_IN, 0, big, sizeof(big), true, NULL) == S_OK, "16 KiB read");
    verify(big, PAT_HOST, 0, 32, "16 KiB read");
    CHECK(!(vio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET), "device broken by bad requests");
}

void guest_main(void)
{
    char mode[16];
    CHECK(cmdline_get("mode", mode, sizeof(mode)) > 0, "no mode= on the command line");
    uint64_t nq = 1;
    cmdline_get_u64("queues", &nq);
    CHECK(vio_find(&dev, VIRTIO_ID_BLOCK, 0) == 0, "no virtio-blk device");
    setup((unsigned)nq, all_features());
    check_config();
    if (!strcmp(mode, "rw"))
        mode_rw();
    else if (!strcmp(mode, "hold")) /* keep the disk open until the runner kills the VM */
        rt_halt_forever();
    else if (!strcmp(mode, "wce"))
        mode_wce();
    else if (!strcmp(mode, "guard"))
        mode_guard();
    else if (!strcmp(mode, "rw4k"))
        mode_rw4k();
    else if (!strcmp(mode, "many"))
        mode_many();
    else if (!strcmp(mode, "discard"))
        mode_discard();
    else if (!strcmp(mode, "ro"))
        mode_ro();
    else if (!strcmp(mode, "getid"))
        mode_getid();
    else if (!strcmp(mode, "hostile"))
        mode_hostile();
    else
        test_fail("unknown mode '%s'", mode);
}
