/* virtio-blk benchmark guest (bench/virtio-blk): sets up the device and its queue in ring 0,
 * then drops to ring 3 (user-accessible identity map, interrupts off) where the hot loop runs
 * natively, polling the used ring and kicking through the MMIO notify register; "int $0x80"
 * brings it back to ring 0, which prints one "BENCH" line per workload. No port I/O in ring 3:
 * PVM does not give ring 3 the IOPL the guest sets. */
#include "rt/rt.h"
#include "rt/virtio.h"

const char guest_name[] = "virtio_blk_bench";

#define T_IN 0
#define T_OUT 1
#define QSIZE 128
#define MAXQD 32
/* Guest-physical scratch memory (the VM gets -m 256M): rings, headers, data buffers. */
#define RING_BASE 0x4000000ull
#define HDR_BASE (RING_BASE + 0x4000)
#define STATUS_BASE (RING_BASE + 0x5000)
#define DATA_BASE 0x4100000ull
#define DATA_SLOT (1ull << 20)

struct hdr {
    uint32_t type, ioprio;
    uint64_t sector;
};

static struct vio_dev dev;
static volatile struct virtq_desc *desc;
static volatile uint16_t *avail; /* flags, idx, ring[] */
static volatile uint8_t *used;   /* flags, idx, ring[] of {id, len} */
static uint64_t notify_addr;
static uint16_t avail_idx, used_seen;
static uint64_t cap_sectors, tsc_hz, secs = 2;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* ---- ring 0: the queue; rt_enter_ring3() drops to ring 3 ---- */

static void queue_setup(void)
{
    volatile struct virtio_pci_common_cfg *c = dev.common;
    c->queue_select = 0;
    CHECK(c->queue_size >= QSIZE, "queue 0 has only %u entries", c->queue_size);
    memset((void *)RING_BASE, 0, 0x6000);
    desc = (volatile struct virtq_desc *)RING_BASE;
    avail = (volatile uint16_t *)(RING_BASE + 0x1000);
    used = (volatile uint8_t *)(RING_BASE + 0x2000);
    c->queue_size = QSIZE;
    c->queue_desc = RING_BASE;
    c->queue_driver = RING_BASE + 0x1000;
    c->queue_device = RING_BASE + 0x2000;
    notify_addr = dev.notify_base + (uint64_t)c->queue_notify_off * dev.notify_mult;
    c->queue_enable = 1;
    CHECK(c->queue_enable == 1, "queue enable failed");
    avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT; /* we poll */
}


/* ---- ring 3: the hot loop ---- */

struct result {
    const char *name;
    uint64_t ops, bytes, errors, cycles, own_cycles;
};
#define NRUNS 6
static struct result results[NRUNS];
static unsigned nresults;

/* Fill slot's descriptors (3 per slot) and publish it; returns the cycles this took. */
static inline void post(unsigned slot, uint32_t type, uint64_t sector, uint32_t bytes)
{
    volatile struct hdr *h = (volatile struct hdr *)(HDR_BASE + 16 * slot);
    h->type = type;
    h->ioprio = 0;
    h->sector = sector;
    volatile uint8_t *st = (volatile uint8_t *)(STATUS_BASE + 16 * slot);
    *st = 0xff;
    unsigned d = slot * 3;
    desc[d] = (struct virtq_desc){HDR_BASE + 16 * slot, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1)};
    desc[d + 1] = (struct virtq_desc){DATA_BASE + DATA_SLOT * slot, bytes,
                                      (uint16_t)(VIRTQ_DESC_F_NEXT |
                                                 (type == T_IN ? VIRTQ_DESC_F_WRITE : 0)),
                                      (uint16_t)(d + 2)};
    desc[d + 2] = (struct virtq_desc){STATUS_BASE + 16 * slot, 1, VIRTQ_DESC_F_WRITE, 0};
    avail[2 + (avail_idx % QSIZE)] = (uint16_t)d;
    __asm__ volatile("" ::: "memory");
    avail_idx++;
    avail[1] = avail_idx;
}

static inline void kick(void)
{
    __asm__ volatile("mfence" ::: "memory");
    if (!(*(volatile uint16_t *)used & VIRTQ_USED_F_NO_NOTIFY))
        *(volatile uint16_t *)notify_addr = 0;
}

static uint64_t next_sector(bool seq, uint32_t bytes, uint64_t *pos)
{
    uint64_t n = bytes / 512;
    if (seq) {
        if (*pos + n > cap_sectors)
            *pos = 0;
        uint64_t s = *pos;
        *pos += n;
        return s;
    }
    return (xorshift() % (cap_sectors / n)) * n;
}

static void run(const char *name, uint32_t type, bool seq, uint32_t bytes, unsigned qd)
{
    struct result r = {0};
    if (nresults >= NRUNS)
        return;
    uint64_t pos = 0, t0 = rdtsc(), end = t0 + secs * tsc_hz, own = 0;
    for (unsigned i = 0; i < qd; i++)
        post(i, type, next_sector(seq, bytes, &pos), bytes);
    kick();
    unsigned inflight = qd;
    bool stopping = false;
    while (inflight) {
        uint16_t idx = *(volatile uint16_t *)(used + 2);
        if (idx == used_seen) {
            __asm__ volatile("pause");
            continue;
        }
        __asm__ volatile("" ::: "memory");
        uint64_t a = rdtsc();
        bool posted = false;
        while (used_seen != idx) {
            volatile uint32_t *e = (volatile uint32_t *)(used + 4 + 8 * (used_seen % QSIZE));
            unsigned slot = e[0] / 3;
            used_seen++;
            inflight--;
            if (*(volatile uint8_t *)(STATUS_BASE + 16 * slot) != 0)
                r.errors++;
            r.ops++;
            r.bytes += bytes;
            if (!stopping) {
                post(slot, type, next_sector(seq, bytes, &pos), bytes);
                inflight++;
                posted = true;
            }
        }
        uint64_t b = rdtsc();
        own += b - a;
        if (posted)
            kick();
        if (b >= end)
            stopping = true;
    }
    r.cycles = rdtsc() - t0;
    r.own_cycles = own;
    r.name = name;
    results[nresults++] = r;
}

static int format_result(char *buf, size_t size, const struct result *r)
{
    uint64_t us = r->cycles / (tsc_hz / 1000000);
    if (!us)
        us = 1;
    return rt_snprintf(buf, size,
                       "BENCH %s ops=%lu us=%lu iops=%lu kibps=%lu errors=%lu "
                       "guest_own_permille=%lu\n",
                       r->name, (unsigned long)r->ops, (unsigned long)us,
                       (unsigned long)(r->ops * 1000000 / us),
                       (unsigned long)(r->bytes / 1024 * 1000000 / us), (unsigned long)r->errors,
                       (unsigned long)(r->own_cycles * 1000 / (r->cycles ? r->cycles : 1)));
}

static void user_main(void)
{
    run("randread-4k-qd1", T_IN, false, 4096, 1);
    run("randread-4k-qd32", T_IN, false, 4096, 32);
    run("randwrite-4k-qd1", T_OUT, false, 4096, 1);
    run("randwrite-4k-qd32", T_OUT, false, 4096, 32);
    run("seqread-1m-qd4", T_IN, true, 1 << 20, 4);
    run("seqwrite-1m-qd4", T_OUT, true, 1 << 20, 4);
    /* The results go to sector 0 of the disk, where the host script reads them: under vmkit on
     * PVM the way back to ring 0 (int $0x80) triple-faults, and ring 3 has no port I/O. */
    char *out = (char *)(uintptr_t)DATA_BASE;
    memset(out, 0, 4096);
    size_t len = 0;
    for (unsigned i = 0; i < nresults; i++)
        len += (size_t)format_result(out + len, 4096 - len, &results[i]);
    post(0, T_OUT, 0, 4096);
    kick();
    while (*(volatile uint16_t *)(used + 2) == used_seen)
        __asm__ volatile("pause");
    __asm__ volatile("int $0x80");
    for (;;)
        ;
}

/* Back in ring 0 (from int $0x80, where that works): report and power off. */
__attribute__((used, noreturn)) void ring0_report(void);
void ring0_report(void)
{
    for (unsigned i = 0; i < nresults; i++) {
        struct result *r = &results[i];
        char line[200];
        format_result(line, sizeof(line), r);
        rt_puts(line);
        if (r->errors)
            test_fail("%s: %lu requests failed", r->name, (unsigned long)r->errors);
    }
    CHECK(nresults == NRUNS, "only %u workloads ran", nresults);
    test_pass();
}
void ring0_entry(void);
__asm__(".text\n"
        "ring0_entry:\n\t"
        "and $-16, %rsp\n\t"
        "call ring0_report\n");

static uint64_t idt[2 * 0x81] __attribute__((aligned(16)));

static void calibrate_tsc(void)
{
    /* TSC against the ACPI PM timer (3.579545 MHz), 50 ms. */
    uint32_t p0 = acpi_pm_timer_read();
    uint64_t t0 = rdtsc();
    while (((acpi_pm_timer_read() - p0) & 0xffffff) < 178977)
        ;
    tsc_hz = (rdtsc() - t0) * 20;
}

void guest_main(void)
{
    CHECK(acpi_init() == 0 && acpi.pm_tmr, "no ACPI PM timer");
    cmdline_get_u64("secs", &secs);
    CHECK(vio_find(&dev, VIRTIO_ID_BLOCK, 0) == 0, "no virtio-blk device");
    /* FLUSH, as every real driver: without it the device must write through. */
    CHECK(vio_negotiate(&dev, 1ull << 9) == 0, "feature negotiation failed");
    queue_setup();
    vio_driver_ok(&dev);
    cap_sectors = (uint64_t)vio_cfg_read32(&dev, 0) | (uint64_t)vio_cfg_read32(&dev, 4) << 32;
    CHECK(cap_sectors >= 65536, "disk too small: %lu sectors", (unsigned long)cap_sectors);
    calibrate_tsc();
    uint64_t h = (uint64_t)(uintptr_t)ring0_entry;
    idt[2 * 0x80] = (h & 0xffff) | 0x08ull << 16 | 0xEEull << 40 | ((h >> 16) & 0xffff) << 48;
    idt[2 * 0x80 + 1] = h >> 32;
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) ip = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" ::"m"(ip));
    rt_printf("ring 0: tsc %lu MHz, disk %lu MiB, %lu s per workload; entering ring 3\n",
              (unsigned long)(tsc_hz / 1000000), (unsigned long)(cap_sectors / 2048),
              (unsigned long)secs);
    rt_enter_ring3(user_main);
}
