/* Local APIC access and bringing up the application processors with INIT-SIPI-SIPI. */
#include "rt.h"

volatile uint32_t smp_ap_count;
void (*volatile smp_ap_work)(unsigned n);
/* AP n uses the 4 KiB below smp_ap_stacks + n * 4096 (start.S). */
uint8_t smp_ap_stacks[SMP_AP_STACKS * 4096] __attribute__((aligned(4096)));
volatile uint64_t smp_ap_seen[4];
extern const char smp_trampoline_start[], smp_trampoline_end[];

#define TRAMPOLINE_PA 0x70000 /* below 1 MiB, clear of the loader's boot structures and the EBDA */
#define LAPIC_ID 0x20
#define LAPIC_SVR 0xF0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_BUSY (1u << 12)
#define ICR_INIT 0x00004500u  /* INIT, level assert */
#define ICR_SIPI 0x00004600u  /* start-up, vector in bits 0-7 */
#define PM_TIMER_HZ 3579545u

static uint64_t lapic_base(void)
{
    if (acpi_init() < 0 && !acpi.madt)
        test_fail("SMP needs ACPI: %s", acpi.error);
    if (!acpi.lapic_addr || acpi.lapic_addr >= 0x100000000UL || (acpi.lapic_addr & 0xfff))
        test_fail("MADT local APIC address %lx is not usable", acpi.lapic_addr);
    return acpi.lapic_addr;
}

uint32_t lapic_read(uint32_t reg) { return mmio_read32(lapic_base() + reg); }
void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(lapic_base() + reg, v); }
uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

static void send_ipi(uint32_t apic_id, uint32_t icr)
{
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, icr);
    for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_BUSY); i++)
        cpu_relax();
}

static bool ap_seen(uint32_t id)
{
    return smp_ap_seen[id / 64] & (1UL << (id % 64));
}

/* Waits until `want` APs have checked in or about ms milliseconds passed (PM timer when there
 * is one: reading it exits to the VMM, which keeps a spinning BSP from starving the APs). */
static bool wait_aps(uint32_t want, unsigned ms)
{
    if (acpi.pm_tmr) {
        uint32_t start = acpi_pm_timer_read() & 0xffffff, limit = PM_TIMER_HZ / 1000 * ms;
        while (smp_ap_count < want) {
            if (((acpi_pm_timer_read() - start) & 0xffffff) > limit)
                return false;
            cpu_relax();
        }
        return true;
    }
    for (uint32_t i = 0; i < ms * 1000 && smp_ap_count < want; i++)
        cpu_relax();
    return smp_ap_count >= want;
}

unsigned smp_start_aps(void)
{
    uint64_t base = lapic_base();
    (void)base;
    size_t tlen = (size_t)(smp_trampoline_end - smp_trampoline_start);
    memcpy((void *)TRAMPOLINE_PA, smp_trampoline_start, tlen);
    __asm__ volatile("" ::: "memory");
    lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x1ff); /* software-enable, spurious vector 0xff */
    uint32_t self = lapic_id();
    uint32_t want = 0;
    for (unsigned i = 0; i < acpi.ncpus; i++) {
        if (acpi.apic_ids[i] == self)
            continue;
        want++;
        send_ipi(acpi.apic_ids[i], ICR_INIT);
    }
    for (int round = 0; round < 2 && smp_ap_count < want; round++) {
        for (unsigned i = 0; i < acpi.ncpus; i++)
            if (acpi.apic_ids[i] != self && !ap_seen(acpi.apic_ids[i]))
                send_ipi(acpi.apic_ids[i], ICR_SIPI | (TRAMPOLINE_PA >> 12));
        wait_aps(want, round == 0 ? 500 : 3000);
    }
    return smp_ap_count + 1;
}
