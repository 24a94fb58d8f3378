/* The emu accelerator's virtual clock (docs/emu.md): prints what a run must repeat exactly
 * (TSC deltas over fixed work, the loop iteration each timer tick lands on, how two vCPUs'
 * work interleaves) and checks that halting until a far deadline skips the idle time.
 * tests/guests/run-vclock.sh runs it twice and compares. */
#include "rt/irq.h"
#include "rt/rt.h"

const char guest_name[] = "vclock";

#define V_TICK 0x60
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3E0
#define TICKS 8
#define WORK 2000

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static volatile uint64_t iter, tick_iter[TICKS];
static volatile unsigned ticks;

static void tick_handler(uint8_t v, void *o)
{
    (void)v, (void)o;
    if (ticks < TICKS)
        tick_iter[ticks] = iter;
    ticks++;
}

/* Two vCPUs append to one log; who gets which slot depends on how they interleave. */
#define LOG 4096
static volatile uint8_t owner_log[LOG];
static volatile uint32_t log_next, done;

static void log_work(unsigned who)
{
    for (unsigned i = 0; i < LOG / 2; i++) {
        uint32_t k = __atomic_fetch_add(&log_next, 1, __ATOMIC_SEQ_CST);
        if (k < LOG)
            owner_log[k] = (uint8_t)who;
        for (volatile unsigned spin = 0; spin < (i * 7 + who * 3) % 13; spin++)
            ;
    }
    __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
}

static void ap_work(unsigned n)
{
    log_work(n);
}

void guest_main(void)
{
    irq_init();

    /* Fixed work between two TSC reads: 2^shift ns per instruction under emu. */
    uint64_t t0 = rdtsc();
    for (volatile unsigned i = 0; i < WORK; i++)
        ;
    uint64_t work_ns = rdtsc() - t0;

    /* A periodic LAPIC timer (1 GHz bus, divide by 1, 50 us) against a busy loop. */
    irq_set_handler(V_TICK, tick_handler, NULL);
    lapic_write(LAPIC_TIMER_DIV, 0xB);
    lapic_write(LAPIC_LVT_TIMER, V_TICK | (1u << 17));
    lapic_write(LAPIC_TIMER_INIT, 50000);
    irq_enable();
    while (ticks < TICKS && iter < 100000000)
        iter++;
    lapic_write(LAPIC_TIMER_INIT, 0);
    CHECK(ticks >= TICKS, "only %u LAPIC timer ticks", ticks);
    uint64_t at[TICKS];
    for (unsigned i = 0; i < TICKS; i++)
        at[i] = tick_iter[i];

    /* Halt until a one-shot deadline: sleep_ms= on the command line (default 100 s). */
    uint64_t ms = 100000;
    cmdline_get_u64("sleep_ms", &ms);
    ticks = 0;
    lapic_write(LAPIC_LVT_TIMER, V_TICK);
    lapic_write(LAPIC_TIMER_DIV, 0xA); /* divide by 128 */
    t0 = rdtsc();
    lapic_write(LAPIC_TIMER_INIT, (uint32_t)(ms * 1000000 / 128));
    while (!ticks)
        __asm__ volatile("sti; hlt" ::: "memory");
    uint64_t slept = rdtsc() - t0;
    CHECK(slept >= ms * 1000000, "halted %lu ns for a %lu ms deadline", slept, ms);

    /* Two vCPUs interleaving. */
    unsigned cpus = 1;
    if (acpi_init() == 0 && acpi.ncpus > 1) {
        smp_ap_work = ap_work;
        cpus = smp_start_aps();
        log_work(0);
        while (done < cpus)
            __asm__ volatile("pause");
    }
    uint32_t hash = 2166136261u; /* FNV-1a over who got each slot */
    for (unsigned i = 0; i < LOG; i++)
        hash = (hash ^ owner_log[i]) * 16777619u;

    /* The RTC (BCD, as firmware leaves it): with -rtc clock=vm it follows the same clock. */
    while (cmos_read(0x0A) & 0x80) /* update in progress */
        ;
    unsigned sec = cmos_read(0), min = cmos_read(2), hour = cmos_read(4);
    unsigned day = cmos_read(7), mon = cmos_read(8), year = cmos_read(9), cent = cmos_read(0x32);
    rt_printf("vclock: rtc %02x%02x-%02x-%02x %02x:%02x:%02x\n", cent, year, mon, day, hour, min,
              sec);
    rt_printf("vclock: work %lu ns, slept %lu ns\n", work_ns, slept);
    rt_printf("vclock: ticks at");
    for (unsigned i = 0; i < TICKS; i++)
        rt_printf(" %lu", at[i]);
    rt_printf("\nvclock: %u cpus, interleaving %08x\n", cpus, hash);
    test_pass();
}
