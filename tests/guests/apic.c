/* Local APIC guest: NMIs (self-IPI through the ICR, blocked until iret; LINT0 in NMI mode waking
 * a hlt with IF clear), the TSC-deadline timer, and x2APIC (APIC_BASE transitions, MSR access,
 * self-IPIs, an INIT-SIPI to another CPU through the 64-bit ICR). */
#include "rt/rt.h"
#include "rt/trap.h"

const char guest_name[] = "apic";

#define MSR_APIC_BASE 0x1B
#define MSR_TSC_DEADLINE 0x6E0
#define X2APIC_MSR(off) (0x800 + ((off) >> 4))
#define APIC_ID 0x20
#define APIC_EOI 0xB0
#define APIC_LDR 0xD0
#define APIC_DFR 0xE0
#define APIC_SVR 0xF0
#define APIC_ICR 0x300
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_LINT0 0x350
#define APIC_SELF_IPI 0x3F0
#define BASE_EN (1u << 11)
#define BASE_EXTD (1u << 10)
#define ICR_NMI 0x400
#define ICR_SELF (1u << 18)
#define V_TIMER 0x80 /* rt/trap.c's IDT has 0..31 and 0x80 */

static volatile uint32_t nmi_count, nmi_count_inside, nmi_if;
static volatile uint32_t timer_count, gp_count;
static volatile uint64_t timer_tsc;
static volatile bool x2;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static void eoi(void)
{
    if (x2)
        wrmsr(X2APIC_MSR(APIC_EOI), 0);
    else
        lapic_write(APIC_EOI, 0);
}

static void on_nmi(struct trap_frame *f)
{
    uint32_t n = ++nmi_count;
    nmi_if = (uint32_t)(f->rflags >> 9 & 1);
    if (n == 1) {
        /* A second NMI now must wait for this handler's iretq. */
        lapic_write(APIC_ICR, ICR_SELF | ICR_NMI);
        for (volatile int i = 0; i < 200; i++)
            cpu_relax();
        nmi_count_inside = nmi_count;
    }
}

static void on_timer(struct trap_frame *f)
{
    (void)f;
    timer_tsc = rdtsc();
    timer_count++;
    eoi();
}

/* #GP from rdmsr/wrmsr (two bytes): count it and go on. */
static void on_gp(struct trap_frame *f)
{
    gp_count++;
    f->rip += 2;
}

static bool wrmsr_faults(uint32_t msr, uint64_t v)
{
    uint32_t before = gp_count;
    wrmsr(msr, v);
    return gp_count != before;
}

static bool rdmsr_faults(uint32_t msr)
{
    uint32_t before = gp_count;
    (void)rdmsr(msr);
    return gp_count != before;
}

/* Spins until *p reaches want or ms milliseconds of TSC (1 GHz or more) passed. */
static bool wait_for(volatile uint32_t *p, uint32_t want, unsigned ms)
{
    uint64_t end = rdtsc() + (uint64_t)ms * 1000000;
    while (*p < want && rdtsc() < end)
        cpu_relax();
    return *p >= want;
}

static void test_nmi(void)
{
    trap_set_handler(2, on_nmi, 0);
    __asm__ volatile("cli");
    lapic_write(APIC_ICR, ICR_SELF | ICR_NMI);
    CHECK(wait_for(&nmi_count, 2, 100), "self-NMI through the ICR: %u NMIs", nmi_count);
    CHECK(nmi_count_inside == 1, "a second NMI ran inside the first handler (before iret)");
    CHECK(!nmi_if, "the NMI came with IF clear in the frame? rflags.IF=%u", nmi_if);
    rt_delay_ms(1);
    CHECK(nmi_count == 2, "%u NMIs for two sent", nmi_count);

    /* LINT0 in NMI mode: the PIT's IRQ0 through the 8259 wakes a hlt that has IF clear. */
    lapic_write(APIC_LVT_LINT0, ICR_NMI);
    outb(0x20, 0x11); /* ICW1..4: vectors 0x20.., cascade on IRQ 2, 8086 mode */
    outb(0x21, 0x20);
    outb(0x21, 0x04);
    outb(0x21, 0x01);
    outb(0xA1, 0xFF);
    outb(0x21, 0xFE); /* IRQ0 only */
    outb(0x43, 0x30); /* channel 0, mode 0 (one interrupt at terminal count) */
    outb(0x40, 0xA9);
    outb(0x40, 0x04); /* 1193 ticks: 1 ms */
    __asm__ volatile("cli; hlt" ::: "memory");
    CHECK(nmi_count == 3, "LINT0 NMI did not wake hlt: %u NMIs", nmi_count);
    outb(0x21, 0xFF);
    lapic_write(APIC_LVT_LINT0, 1u << 16);
}

static void test_tsc_deadline(void)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    CHECK(r[2] & (1u << 24), "CPUID.1:ECX has no TSC-deadline timer");
    trap_set_handler(V_TIMER, on_timer, 0);
    lapic_write(APIC_LVT_TIMER, 0x40000 | V_TIMER);
    uint64_t deadline = rdtsc() + 2000000; /* 2 ms at 1 GHz */
    wrmsr(MSR_TSC_DEADLINE, deadline);
    CHECK(rdmsr(MSR_TSC_DEADLINE) == deadline, "IA32_TSC_DEADLINE reads %lx, armed %lx",
          rdmsr(MSR_TSC_DEADLINE), deadline);
    /* hlt until it fires: only the timer can wake us. */
    while (!timer_count)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    CHECK(timer_tsc >= deadline, "timer fired at TSC %lx, before the deadline %lx", timer_tsc,
          deadline);
    CHECK(rdmsr(MSR_TSC_DEADLINE) == 0, "IA32_TSC_DEADLINE not cleared after it fired");
    rt_printf("tsc deadline: fired %lu ns after the deadline\n", timer_tsc - deadline);
    __asm__ volatile("sti" ::: "memory");
    wait_for(&timer_count, 2, 3);
    CHECK(timer_count == 1, "the TSC deadline fired %u times", timer_count);
    /* Writing the LVT back to one-shot disarms it. The deadline leaves room for a slow host
     * (KVM without VT-x emulates each of these accesses) to reach the LVT write first. */
    wrmsr(MSR_TSC_DEADLINE, rdtsc() + 20000000);
    lapic_write(APIC_LVT_TIMER, V_TIMER);
    CHECK(!wait_for(&timer_count, 2, 25), "a deadline disarmed by the LVT mode switch fired");
    __asm__ volatile("cli" ::: "memory");
    lapic_write(APIC_LVT_TIMER, 1u << 16);
}

static void test_x2apic(uint32_t apic_id, unsigned ncpus)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    CHECK(r[2] & (1u << 21), "CPUID.1:ECX has no x2APIC");
    trap_set_handler(13, on_gp, 0);
    uint64_t base = rdmsr(MSR_APIC_BASE);
    CHECK((base & (BASE_EN | BASE_EXTD)) == BASE_EN, "APIC_BASE %lx: not in xAPIC mode", base);
    CHECK(rdmsr_faults(X2APIC_MSR(APIC_ID)), "x2APIC MSR readable in xAPIC mode");
    CHECK(wrmsr_faults(MSR_APIC_BASE, (base & ~(uint64_t)BASE_EN) | BASE_EXTD),
          "EXTD without EN accepted");
    wrmsr(MSR_APIC_BASE, base | BASE_EXTD);
    x2 = true;
    CHECK(gp_count == 2, "entering x2APIC mode faulted");
    CHECK(rdmsr(MSR_APIC_BASE) == (base | BASE_EXTD), "APIC_BASE %lx after enabling x2APIC",
          rdmsr(MSR_APIC_BASE));
    CHECK(wrmsr_faults(MSR_APIC_BASE, base), "x2APIC -> xAPIC accepted");
    CHECK(rdmsr(X2APIC_MSR(APIC_ID)) == apic_id, "x2APIC ID %lx, CPUID says %x",
          rdmsr(X2APIC_MSR(APIC_ID)), apic_id);
    uint32_t ldr = (apic_id >> 4) << 16 | 1u << (apic_id & 15);
    CHECK(rdmsr(X2APIC_MSR(APIC_LDR)) == ldr, "x2APIC LDR %lx, want %x",
          rdmsr(X2APIC_MSR(APIC_LDR)), ldr);
    CHECK(wrmsr_faults(X2APIC_MSR(APIC_LDR), 0), "x2APIC LDR writable");
    CHECK(rdmsr_faults(X2APIC_MSR(APIC_DFR)), "x2APIC has a DFR");
    CHECK(rdmsr_faults(0x804), "reserved x2APIC MSR 0x804 readable");
    CHECK(rdmsr_faults(X2APIC_MSR(APIC_EOI)), "x2APIC EOI readable");
    CHECK((rdmsr(X2APIC_MSR(APIC_SVR)) & 0x1FF) == 0x1FF, "SVR through the MSR: %lx",
          rdmsr(X2APIC_MSR(APIC_SVR)));
    CHECK(lapic_read(APIC_SVR) != rdmsr(X2APIC_MSR(APIC_SVR)),
          "the xAPIC MMIO page still answers in x2APIC mode");

    /* SELF_IPI and a fixed IPI to our own 32-bit ID, taken when IF opens. */
    wrmsr(X2APIC_MSR(APIC_SELF_IPI), V_TIMER);
    CHECK(timer_count == 1, "SELF_IPI delivered with IF clear");
    __asm__ volatile("sti" ::: "memory");
    CHECK(wait_for(&timer_count, 2, 100), "SELF_IPI not taken");
    __asm__ volatile("cli" ::: "memory");
    wrmsr(X2APIC_MSR(APIC_ICR), (uint64_t)apic_id << 32 | V_TIMER);
    __asm__ volatile("sti" ::: "memory");
    CHECK(wait_for(&timer_count, 3, 100), "fixed IPI through the x2APIC ICR not taken");
    __asm__ volatile("cli" ::: "memory");
    rt_delay_ms(1);
    CHECK(timer_count == 3, "%u interrupts for two IPIs and one timer", timer_count);
    /* NMI to ourselves through the 64-bit ICR. */
    uint32_t n = nmi_count;
    wrmsr(X2APIC_MSR(APIC_ICR), (uint64_t)apic_id << 32 | ICR_NMI);
    CHECK(wait_for(&nmi_count, n + 1, 100), "NMI through the x2APIC ICR not taken");

    if (ncpus < 2)
        return;
    /* INIT-SIPI to another CPU with a 32-bit destination: it runs the trampoline again. */
    uint32_t other = acpi.apic_ids[0] == apic_id ? acpi.apic_ids[1] : acpi.apic_ids[0];
    uint32_t before = smp_ap_count;
    wrmsr(X2APIC_MSR(APIC_ICR), (uint64_t)other << 32 | 0x4500);
    rt_delay_ms(10);
    /* Two SIPIs as the MP protocol has it: the second is ignored by a CPU already started. */
    for (int i = 0; i < 2; i++) {
        wrmsr(X2APIC_MSR(APIC_ICR), (uint64_t)other << 32 | 0x4600 | (0x70000 >> 12));
        rt_delay_ms(1);
    }
    CHECK(wait_for(&smp_ap_count, before + 1, 1000),
          "CPU %x did not restart after INIT-SIPI through the x2APIC ICR", other);
    rt_delay_ms(5);
    CHECK(smp_ap_count == before + 1, "CPU %x started %u times", other, smp_ap_count - before);
}

void guest_main(void)
{
    trap_init();
    uint64_t ncpus = 1;
    cmdline_get_u64("expect_cpus", &ncpus);
    CHECK(acpi_init() == 0 || acpi.madt, "no MADT: %s", acpi.error);
    if (ncpus > 1)
        CHECK(smp_start_aps() == ncpus, "%u CPUs up, want %lu", smp_ap_count + 1, ncpus);
    lapic_write(APIC_SVR, 0x1FF);
    uint32_t r[4];
    cpuid(1, 0, r);
    uint32_t apic_id = r[1] >> 24;
    test_nmi();
    test_tsc_deadline();
    test_x2apic(apic_id, (unsigned)ncpus);
    rt_printf("apic: %u NMIs, %u timer/IPI interrupts, %u #GP\n", nmi_count, timer_count,
              gp_count);
}
