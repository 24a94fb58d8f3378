/* Unit tests for the user-space LAPIC, IOAPIC, 8259 pair and 8254 PIT, on a fake clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hw/irqchip.h"

static uint64_t fake_ns;
static unsigned wakes[4], nmis[4];

static uint64_t fake_now(void *opaque) { return fake_ns; }
static void fake_wake(void *opaque, unsigned cpu) { wakes[cpu]++; }
static void fake_nmi(void *opaque, unsigned cpu) { nmis[cpu]++; }
static const struct irqchip_ops fake_ops = {fake_now, fake_wake, fake_nmi};

static struct irqchip ic;
static const uint32_t ids[4] = {0, 1, 2, 3};

static int setup(void **state)
{
    fake_ns = 1000;
    for (unsigned i = 0; i < 4; i++)
        wakes[i] = nmis[i] = 0;
    assert_int_equal(irqchip_init(&ic, 4, ids, &fake_ops, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    irqchip_destroy(&ic);
    return 0;
}

#define LAPIC 0xFEE00000ull
#define APIC_BASE (LAPIC | 0x900)

static void lw(unsigned cpu, unsigned off, uint32_t v)
{
    uint64_t x = v;
    assert_true(irqchip_mmio(&ic, cpu, APIC_BASE, LAPIC + off, 4, true, &x));
}

static uint32_t lr(unsigned cpu, unsigned off)
{
    uint64_t x = 0;
    assert_true(irqchip_mmio(&ic, cpu, APIC_BASE, LAPIC + off, 4, false, &x));
    return (uint32_t)x;
}

static void iow(unsigned reg, uint32_t v)
{
    uint64_t sel = reg, val = v;
    assert_true(irqchip_mmio(&ic, 0, APIC_BASE, 0xFEC00000, 4, true, &sel));
    assert_true(irqchip_mmio(&ic, 0, APIC_BASE, 0xFEC00010, 4, true, &val));
}

static void enable_all(void)
{
    for (unsigned i = 0; i < 4; i++)
        lw(i, 0xF0, 0x1FF);
}

static void pio_w(uint16_t port, uint8_t v)
{
    uint32_t x = v;
    assert_true(irqchip_pio(&ic, port, 1, true, &x));
}

static uint8_t pio_r(uint16_t port)
{
    uint32_t x = 0;
    assert_true(irqchip_pio(&ic, port, 1, false, &x));
    return (uint8_t)x;
}

static void test_lapic_ipi_priority_eoi(void **state)
{
    enable_all();
    assert_int_equal(lr(2, 0x20) >> 24, 2);
    /* A fixed IPI from CPU 0 to APIC ID 2 lands there only. */
    lw(0, 0x310, 2u << 24);
    lw(0, 0x300, 0x40);
    assert_true(irqchip_pending(&ic, 2));
    assert_false(irqchip_pending(&ic, 1));
    assert_true(wakes[2] > 0);
    /* TPR above the vector's class holds it back. */
    lw(2, 0x80, 0x50);
    assert_false(irqchip_pending(&ic, 2));
    lw(2, 0x80, 0);
    assert_int_equal(irqchip_ack(&ic, 2), 0x40);
    assert_int_equal(lr(2, 0x100 + 0x20) & 1, 1); /* ISR bit 0x40 */
    /* A lower vector waits for the EOI of the one in service. */
    lw(0, 0x300, 0x31);
    assert_false(irqchip_pending(&ic, 2));
    lw(2, 0xB0, 0);
    assert_int_equal(lr(2, 0x100 + 0x20), 0);
    assert_int_equal(irqchip_ack(&ic, 2), 0x31);
    assert_int_equal(irqchip_ack(&ic, 2), -1);
    /* A software-disabled APIC delivers nothing. */
    lw(1, 0xF0, 0xFF);
    lw(0, 0x310, 1u << 24);
    lw(0, 0x300, 0x50);
    assert_false(irqchip_pending(&ic, 1));
}

static void test_lapic_timer(void **state)
{
    enable_all();
    lw(0, 0x3E0, 0x3);               /* divide by 16 */
    lw(0, 0x320, 0x20000 | 0xEF);    /* periodic */
    lw(0, 0x380, 1000);              /* 16 us */
    assert_int_equal(irqchip_poll(&ic, 0), 1000 + 16000);
    assert_false(irqchip_pending(&ic, 0));
    fake_ns += 8000;
    uint32_t cur = lr(0, 0x390);
    assert_true(cur > 400 && cur <= 500);
    fake_ns += 8000;
    assert_int_equal(irqchip_poll(&ic, 0), 1000 + 32000);
    assert_int_equal(irqchip_ack(&ic, 0), 0xEF);
    lw(0, 0xB0, 0);
    /* One-shot: fires once. */
    lw(0, 0x320, 0xEE);
    lw(0, 0x380, 10);
    fake_ns += 160;
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_int_equal(irqchip_ack(&ic, 0), 0xEE);
    lw(0, 0xB0, 0);
    /* Masked: the deadline passes without an interrupt. */
    lw(0, 0x320, 0x10000 | 0xED);
    lw(0, 0x380, 10);
    fake_ns += 160;
    irqchip_poll(&ic, 0);
    assert_false(irqchip_pending(&ic, 0));
}

static void test_init_sipi(void **state)
{
    bool init;
    int sipi;
    enable_all();
    assert_false(irqchip_startup(&ic, 0, &init, &sipi)); /* the BSP runs */
    assert_true(irqchip_startup(&ic, 3, &init, &sipi));  /* APs wait */
    /* A SIPI without INIT to a waiting AP starts it; INIT then SIPI as the OS does. */
    lw(0, 0x310, 3u << 24);
    lw(0, 0x300, 0x4500); /* INIT, level assert */
    assert_true(irqchip_startup(&ic, 3, &init, &sipi));
    assert_true(init);
    assert_int_equal(sipi, -1);
    lw(0, 0x300, 0x4600 | 0x9A); /* SIPI vector 0x9A */
    assert_false(irqchip_startup(&ic, 3, &init, &sipi));
    assert_false(init);
    assert_int_equal(sipi, 0x9A);
    /* A running CPU ignores SIPIs. */
    lw(0, 0x300, 0x4600 | 0x10);
    assert_false(irqchip_startup(&ic, 3, &init, &sipi));
    assert_int_equal(sipi, -1);
    /* INIT and SIPI back to back, before the AP looked: it still starts (as the OS expects). */
    lw(0, 0x310, 2u << 24);
    lw(0, 0x300, 0x4500);
    lw(0, 0x300, 0x4600 | 0x9B);
    assert_false(irqchip_startup(&ic, 2, &init, &sipi));
    assert_true(init);
    assert_int_equal(sipi, 0x9B);
    /* The same to a CPU that is running (started above): the INIT its vCPU has not handled yet
     * does not make it drop the SIPI. */
    lw(0, 0x310, 3u << 24);
    lw(0, 0x300, 0x4500);
    lw(0, 0x300, 0x4600 | 0x9C);
    assert_false(irqchip_startup(&ic, 3, &init, &sipi));
    assert_true(init);
    assert_int_equal(sipi, 0x9C);
    /* Broadcast INIT (all excluding self) reaches the others, not the sender. */
    lw(0, 0x300, 0xC4500);
    assert_false(irqchip_startup(&ic, 0, &init, &sipi));
    assert_false(init);
    assert_true(irqchip_startup(&ic, 1, &init, &sipi));
    assert_true(init);
}

static void test_ioapic_edge_level(void **state)
{
    enable_all();
    /* Pin 5: edge, vector 0x35, to APIC ID 1; masked at reset. */
    irqchip_set_level(&ic, 5, true);
    irqchip_set_level(&ic, 5, false);
    assert_false(irqchip_pending(&ic, 1));
    iow(0x10 + 2 * 5 + 1, 1u << 24);
    iow(0x10 + 2 * 5, 0x35);
    irqchip_set_level(&ic, 5, true);
    irqchip_set_level(&ic, 5, false);
    assert_int_equal(irqchip_ack(&ic, 1), 0x35);
    lw(1, 0xB0, 0);
    /* Pin 11: level, vector 0x3B to CPU 0: remote IRR holds it until the EOI. */
    iow(0x10 + 2 * 11 + 1, 0);
    iow(0x10 + 2 * 11, 0x3B | (1u << 15));
    irqchip_set_level(&ic, 11, true);
    assert_int_equal(irqchip_ack(&ic, 0), 0x3B);
    uint64_t sel = 0x10 + 2 * 11, v;
    irqchip_mmio(&ic, 0, APIC_BASE, 0xFEC00000, 4, true, &sel);
    irqchip_mmio(&ic, 0, APIC_BASE, 0xFEC00010, 4, false, &v);
    assert_true(v & (1u << 14)); /* remote IRR */
    irqchip_set_level(&ic, 11, false);
    irqchip_set_level(&ic, 11, true);
    assert_false(irqchip_pending(&ic, 0));
    /* EOI with the line still high: delivered again. */
    lw(0, 0xB0, 0);
    assert_int_equal(irqchip_ack(&ic, 0), 0x3B);
    irqchip_set_level(&ic, 11, false);
    lw(0, 0xB0, 0);
    assert_false(irqchip_pending(&ic, 0));
    irqchip_mmio(&ic, 0, APIC_BASE, 0xFEC00010, 4, false, &v);
    assert_false(v & (1u << 14));
}

static void test_msi(void **state)
{
    enable_all();
    irqchip_send_msi(&ic, 0xFEE03000, 0x45); /* APIC ID 3, fixed, vector 0x45 */
    assert_int_equal(irqchip_ack(&ic, 3), 0x45);
    assert_false(irqchip_pending(&ic, 0));
    /* Logical flat destination 0x06 (CPUs 1 and 2): fixed goes to both, lowest priority to one. */
    lw(1, 0xD0, 0x02000000);
    lw(2, 0xD0, 0x04000000);
    irqchip_send_msi(&ic, 0xFEE06004, 0x47);
    assert_int_equal(irqchip_ack(&ic, 1), 0x47);
    assert_int_equal(irqchip_ack(&ic, 2), 0x47);
    lw(1, 0xB0, 0);
    lw(2, 0xB0, 0);
    irqchip_send_msi(&ic, 0xFEE06004, 0x148);
    assert_int_equal(irqchip_pending(&ic, 1) + irqchip_pending(&ic, 2), 1);
    irqchip_send_msi(&ic, 0x12345000, 0x46); /* not an interrupt address: dropped */
    assert_false(irqchip_pending(&ic, 0));
    assert_false(irqchip_pending(&ic, 3));
}

static void pic_init(void)
{
    pio_w(0x20, 0x11);
    pio_w(0x21, 0x20);
    pio_w(0x21, 0x04);
    pio_w(0x21, 0x01);
    pio_w(0xA0, 0x11);
    pio_w(0xA1, 0x28);
    pio_w(0xA1, 0x02);
    pio_w(0xA1, 0x01);
    pio_w(0x21, 0x00);
    pio_w(0xA1, 0x00);
}

static void test_pic_extint(void **state)
{
    pic_init();
    /* ISA IRQ 4 (COM1) through the master, IRQ 12 through the slave; LINT0 is ExtINT. */
    irqchip_set_level(&ic, 4, true);
    irqchip_set_level(&ic, 4, false);
    assert_true(irqchip_pending(&ic, 0));
    assert_false(irqchip_pending(&ic, 1));
    assert_int_equal(irqchip_ack(&ic, 0), 0x24);
    assert_false(irqchip_pending(&ic, 0)); /* in service */
    /* IRQ 3 has higher priority than the IRQ 4 in service: it gets through; EOI then IRQ 4's
     * line again. */
    irqchip_set_level(&ic, 3, true);
    irqchip_set_level(&ic, 3, false);
    assert_int_equal(irqchip_ack(&ic, 0), 0x23);
    pio_w(0x20, 0x20); /* non-specific EOI: IRQ 3 */
    pio_w(0x20, 0x20); /* IRQ 4 */
    irqchip_set_level(&ic, 4, true);
    irqchip_set_level(&ic, 4, false);
    assert_int_equal(irqchip_ack(&ic, 0), 0x24);
}

static void test_pic_cascade_mask(void **state)
{
    pic_init();
    irqchip_set_level(&ic, 12, true);
    irqchip_set_level(&ic, 12, false);
    assert_true(irqchip_pending(&ic, 0));
    assert_int_equal(irqchip_ack(&ic, 0), 0x2C);
    pio_w(0xA0, 0x20); /* EOI slave */
    pio_w(0x20, 0x20); /* EOI master */
    /* Masked in the IMR: nothing. */
    pio_w(0x21, 0x10);
    irqchip_set_level(&ic, 4, true);
    irqchip_set_level(&ic, 4, false);
    assert_false(irqchip_pending(&ic, 0));
    assert_int_equal(pio_r(0x21), 0x10);
    /* ISR readable through OCW3. */
    pio_w(0x21, 0x00);
    assert_int_equal(irqchip_ack(&ic, 0), 0x24);
    pio_w(0x20, 0x0B);
    assert_int_equal(pio_r(0x20), 0x10);
}

static void test_pit_irq0(void **state)
{
    enable_all();
    pic_init();
    /* IRQ0 arrives on IOAPIC pin 2 (the MADT override) and PIC IRQ 0. */
    iow(0x10 + 2 * 2 + 1, 0);
    iow(0x10 + 2 * 2, 0x30);
    pio_w(0x43, 0x34); /* channel 0, lo/hi, mode 2 */
    pio_w(0x40, 1193 & 0xFF);
    pio_w(0x40, 1193 >> 8); /* ~1 ms */
    uint64_t next = irqchip_poll(&ic, 0);
    assert_true(next > fake_ns + 999000 && next < fake_ns + 1001000);
    assert_false(irqchip_pending(&ic, 0));
    /* Counting down, read through a latch. */
    fake_ns += 500000;
    pio_w(0x43, 0x00);
    unsigned c = pio_r(0x40);
    c |= (unsigned)pio_r(0x40) << 8;
    assert_true(c > 550 && c < 650);
    fake_ns = next;
    irqchip_poll(&ic, 0);
    assert_int_equal(irqchip_ack(&ic, 0), 0x30); /* the LAPIC's, before the ExtINT */
    lw(0, 0xB0, 0);
    assert_int_equal(irqchip_ack(&ic, 0), 0x20); /* PIC IRQ0 through LINT0 ExtINT */
    /* Periodic: the next one is a period later. */
    assert_true(irqchip_poll(&ic, 0) > next + 999000);
}

static void test_long_running_timers(void **state)
{
    enable_all();
    iow(0x10 + 2 * 2 + 1, 0);
    iow(0x10 + 2 * 2, 0x30);
    pio_w(0x43, 0x34);
    pio_w(0x40, 0);
    pio_w(0x40, 0); /* 65536 ticks, ~55 ms */
    /* Ten days later the next edge is still a period ahead, not wrapped into the past. */
    fake_ns += 10ull * 86400 * 1000000000ull;
    uint64_t next = irqchip_poll(&ic, 0);
    assert_true(next > fake_ns && next <= fake_ns + 55000000);
    assert_int_equal(irqchip_ack(&ic, 0), 0x30);
    /* The largest LAPIC timer count and divisor: the current count stays below the initial. */
    lw(0, 0x3E0, 0xA); /* divide by 128 */
    lw(0, 0x320, 0xEF);
    lw(0, 0x380, 0xFFFFFFFF);
    fake_ns += 1000;
    uint32_t cur = lr(0, 0x390);
    assert_true(cur > 0xFFFFFF00u && cur < 0xFFFFFFFFu);
}

static void test_pit_channel2_port61(void **state)
{
    pio_w(0x61, 0x00);
    pio_w(0x43, 0xB0); /* channel 2, lo/hi, mode 0 */
    pio_w(0x42, 100);
    pio_w(0x42, 0);
    pio_w(0x61, 0x01); /* gate on */
    assert_int_equal(pio_r(0x61) & 0x20, 0);
    fake_ns += 100000; /* 100 us > 100 ticks of 0.84 us */
    assert_int_equal(pio_r(0x61) & 0x20, 0x20);
    assert_int_equal(pio_r(0x61) & 0x0F, 0x01);
}

static void test_not_ours(void **state)
{
    uint64_t v = 0;
    uint32_t p = 0;
    assert_false(irqchip_mmio(&ic, 0, APIC_BASE, 0xFED00000, 4, false, &v));
    assert_false(irqchip_pio(&ic, 0x3F8, 1, false, &p));
    /* Odd-sized or unaligned LAPIC accesses are claimed but harmless. */
    assert_true(irqchip_mmio(&ic, 0, APIC_BASE, LAPIC + 0x21, 1, false, &v));
    assert_int_equal(v, 0);
    /* Out-of-range IOAPIC pins and GSIs are ignored. */
    irqchip_set_level(&ic, 200, true);
    iow(0x10 + 2 * 40, 0x20);
}

/* The guest owns every register: random accesses from all vCPUs, IRQ lines and MSIs must
 * never crash or wedge the models, and what they report must stay in range. */
static void test_nmi_icr_lint_ioapic(void **state)
{
    enable_all();
    /* ICR delivery mode NMI (100b) to APIC ID 2: an NMI, not a maskable interrupt. */
    lw(0, 0x310, 2u << 24);
    lw(0, 0x300, 0x400);
    assert_true(irqchip_nmi_pending(&ic, 2));
    assert_false(irqchip_nmi_pending(&ic, 1));
    assert_int_equal(nmis[2], 1);
    assert_true(wakes[2] > 0);
    assert_false(irqchip_pending(&ic, 2));
    assert_int_equal(lr(2, 0x200), 0); /* nothing in IRR */
    assert_true(irqchip_nmi_ack(&ic, 2));
    assert_false(irqchip_nmi_ack(&ic, 2));
    /* Two NMIs before the CPU takes one collapse into one. */
    lw(0, 0x300, 0x400);
    lw(0, 0x300, 0x400);
    assert_true(irqchip_nmi_ack(&ic, 2));
    assert_false(irqchip_nmi_ack(&ic, 2));
    /* Shorthands: all but self, then self. */
    lw(0, 0x300, 0xC0400);
    assert_false(irqchip_nmi_pending(&ic, 0));
    for (unsigned i = 1; i < 4; i++)
        assert_true(irqchip_nmi_ack(&ic, i));
    lw(0, 0x300, 0x40400);
    assert_true(irqchip_nmi_ack(&ic, 0));
    assert_false(irqchip_nmi_pending(&ic, 1));
    /* A software-disabled APIC still takes NMIs. */
    lw(1, 0xF0, 0xFF);
    lw(0, 0x310, 1u << 24);
    lw(0, 0x300, 0x400);
    assert_true(irqchip_nmi_ack(&ic, 1));
    lw(1, 0xF0, 0x1FF);

    /* LINT1 (the NMI button): the BSP's is NMI at reset, the APs' masked until programmed. */
    irqchip_nmi(&ic);
    assert_true(irqchip_nmi_ack(&ic, 0));
    assert_false(irqchip_nmi_pending(&ic, 1));
    lw(1, 0x360, 0x400);
    lw(3, 0x360, 0x10400); /* masked */
    irqchip_nmi(&ic);
    assert_true(irqchip_nmi_ack(&ic, 0));
    assert_true(irqchip_nmi_ack(&ic, 1));
    assert_false(irqchip_nmi_pending(&ic, 3));
    /* LINT1 in fixed mode delivers its vector instead. */
    lw(2, 0x360, 0x66);
    irqchip_nmi(&ic);
    assert_false(irqchip_nmi_pending(&ic, 2));
    assert_int_equal(irqchip_ack(&ic, 2), 0x66);
    irqchip_nmi_ack(&ic, 0);
    irqchip_nmi_ack(&ic, 1);

    /* LINT0 in NMI mode: the 8259's INTR rising is an NMI on every APIC so programmed. */
    lw(0, 0x350, 0x400);
    lw(3, 0x350, 0x400);
    pio_w(0x20, 0x11);
    pio_w(0x21, 0x20);
    pio_w(0x21, 0x04);
    pio_w(0x21, 0x01);
    pio_w(0x21, 0xFD); /* only IRQ 1 */
    irqchip_set_level(&ic, 1, true);
    assert_true(irqchip_nmi_ack(&ic, 0));
    assert_true(irqchip_nmi_ack(&ic, 3));
    assert_false(irqchip_nmi_pending(&ic, 1));
    assert_false(irqchip_pending(&ic, 0)); /* not ExtINT any more */

    /* IOAPIC pin 5 with delivery mode NMI to APIC ID 3. */
    iow(0x10 + 2 * 5 + 1, 3u << 24);
    iow(0x10 + 2 * 5, 0x400 | 0x35);
    irqchip_set_level(&ic, 5, true);
    irqchip_set_level(&ic, 5, false);
    assert_true(irqchip_nmi_ack(&ic, 3));
    assert_false(irqchip_pending(&ic, 3));
    assert_false(irqchip_nmi_pending(&ic, 1));
    /* NMI entries are edge-triggered whatever the trigger bit says: no remote IRR holds the
     * second one back (nothing would EOI it). */
    iow(0x10 + 2 * 6 + 1, 2u << 24);
    iow(0x10 + 2 * 6, 0x400 | (1u << 15));
    for (int i = 0; i < 2; i++) {
        irqchip_set_level(&ic, 6, true);
        irqchip_set_level(&ic, 6, false);
        assert_true(irqchip_nmi_ack(&ic, 2));
    }
    iow(0x10 + 2 * 6, 0x10000);
    /* MSI with delivery mode NMI. */
    irqchip_send_msi(&ic, 0xFEE00000ull | (1u << 12), 0x400);
    assert_true(irqchip_nmi_ack(&ic, 1));
}

#define TSC_OFF 1000000ull /* the vCPU's TSC runs this far ahead of the irqchip clock */

static uint64_t msr_rd(unsigned cpu, uint32_t msr, int expect)
{
    uint64_t v = 0xdead;
    assert_int_equal(irqchip_msr_read(&ic, cpu, msr, &v, TSC_OFF), expect);
    return v;
}

static void msr_wr(unsigned cpu, uint32_t msr, uint64_t v, int expect)
{
    assert_int_equal(irqchip_msr_write(&ic, cpu, msr, v, TSC_OFF), expect);
}

static void test_tsc_deadline(void **state)
{
    enable_all();
    /* Outside TSC-deadline mode IA32_TSC_DEADLINE reads 0 and ignores writes. */
    lw(0, 0x320, 0xE5);
    msr_wr(0, 0x6E0, TSC_OFF + 5000, 0);
    assert_int_equal(msr_rd(0, 0x6E0, 0), 0);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);

    lw(0, 0x320, 0x40000 | 0xE5); /* mode 10b */
    assert_int_equal(lr(0, 0x320), 0x400E5);
    /* Arm: the TSC reaches TSC_OFF + 6000 when the clock reads 6000. */
    msr_wr(0, 0x6E0, TSC_OFF + 6000, 0);
    assert_int_equal(msr_rd(0, 0x6E0, 0), TSC_OFF + 6000);
    assert_int_equal(irqchip_poll(&ic, 0), 6000);
    fake_ns = 5999;
    irqchip_poll(&ic, 0);
    assert_false(irqchip_pending(&ic, 0));
    fake_ns = 6000;
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_int_equal(irqchip_ack(&ic, 0), 0xE5);
    lw(0, 0xB0, 0);
    /* It fired once and disarmed itself: the MSR reads 0, nothing fires later. */
    assert_int_equal(msr_rd(0, 0x6E0, 0), 0);
    fake_ns = 1000000;
    irqchip_poll(&ic, 0);
    assert_false(irqchip_pending(&ic, 0));
    /* The initial count does nothing in this mode, and the current count reads 0. */
    lw(0, 0x380, 100);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_int_equal(lr(0, 0x390), 0);
    /* A deadline already passed fires at once. */
    msr_wr(0, 0x6E0, 5, 0);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_int_equal(irqchip_ack(&ic, 0), 0xE5);
    lw(0, 0xB0, 0);
    /* A far deadline stays far; one beyond the clock's range (here the guest's TSC reads 0 now)
     * never fires rather than wrapping round to now. */
    msr_wr(0, 0x6E0, ~0ull - 5, 0);
    assert_int_equal(irqchip_poll(&ic, 0), ~0ull - 5 - TSC_OFF);
    assert_int_equal(irqchip_msr_write(&ic, 0, 0x6E0, ~0ull - 5, 0 - fake_ns), 0);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_false(irqchip_pending(&ic, 0));
    assert_int_equal(msr_rd(0, 0x6E0, 0), ~0ull - 5);
    /* Writing 0 disarms. */
    msr_wr(0, 0x6E0, TSC_OFF + fake_ns + 10000, 0);
    assert_int_equal(irqchip_poll(&ic, 0), fake_ns + 10000);
    msr_wr(0, 0x6E0, 0, 0);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_int_equal(msr_rd(0, 0x6E0, 0), 0);
    /* Switching the LVT back to one-shot disarms, and so does switching to TSC-deadline again
     * for a one-shot count. */
    msr_wr(0, 0x6E0, TSC_OFF + fake_ns + 10000, 0);
    lw(0, 0x320, 0xE5);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    lw(0, 0x320, 0x400E5);
    assert_int_equal(msr_rd(0, 0x6E0, 0), 0);
    fake_ns += 20000;
    irqchip_poll(&ic, 0);
    assert_false(irqchip_pending(&ic, 0));
    lw(0, 0x320, 0xE5);
    lw(0, 0x380, 1000);
    assert_true(irqchip_poll(&ic, 0) != IRQCHIP_NEVER);
    lw(0, 0x320, 0x400E5);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_int_equal(lr(0, 0x380), 0);
    /* Masked: the deadline passes (and disarms) without an interrupt. */
    lw(0, 0x320, 0x500E5);
    msr_wr(0, 0x6E0, TSC_OFF + fake_ns + 100, 0);
    fake_ns += 100;
    irqchip_poll(&ic, 0);
    assert_false(irqchip_pending(&ic, 0));
    assert_int_equal(msr_rd(0, 0x6E0, 0), 0);
    /* Each vCPU has its own. */
    lw(1, 0x320, 0x400E6);
    msr_wr(1, 0x6E0, TSC_OFF + fake_ns + 50, 0);
    assert_int_equal(irqchip_poll(&ic, 0), IRQCHIP_NEVER);
    assert_int_equal(irqchip_poll(&ic, 1), fake_ns + 50);
}

#define X2APIC_BASE (LAPIC | 0xD00)

static void test_x2apic_msrs(void **state)
{
    enable_all();
    /* xAPIC mode: the x2APIC MSRs are #GP; other MSRs are not the APIC's. */
    msr_rd(0, 0x802, -EINVAL);
    msr_wr(0, 0x808, 0, -EINVAL);
    msr_rd(0, 0x10, -ENOENT);
    msr_wr(0, 0xC0000080, 0, -ENOENT);
    for (unsigned i = 0; i < 4; i++)
        if (i != 1)
            irqchip_set_apic_base(&ic, i, X2APIC_BASE);
    /* The MMIO page stops answering, whatever base the caller passes. */
    uint64_t x = 0;
    assert_false(irqchip_mmio(&ic, 0, X2APIC_BASE, LAPIC + 0x20, 4, false, &x));
    assert_false(irqchip_mmio(&ic, 0, APIC_BASE, LAPIC + 0x20, 4, false, &x));
    assert_true(irqchip_mmio(&ic, 1, APIC_BASE, LAPIC + 0x20, 4, false, &x)); /* still xAPIC */
    assert_true(irqchip_mmio(&ic, 0, X2APIC_BASE, 0xFEC00000, 4, false, &x)); /* IOAPIC stays */
    /* 32-bit ID, LDR derived from it (read-only), no DFR. */
    assert_int_equal(msr_rd(0, 0x802, 0), 0);
    assert_int_equal(msr_rd(3, 0x802, 0), 3);
    assert_int_equal(msr_rd(3, 0x80D, 0), 1u << 3);
    assert_int_equal(msr_rd(0, 0x803, 0), 0x50014);
    msr_wr(3, 0x80D, 0, -EINVAL);
    msr_wr(3, 0x802, 7, -EINVAL);
    msr_rd(0, 0x80E, -EINVAL); /* DFR */
    msr_rd(0, 0x809, -EINVAL); /* APR */
    msr_rd(0, 0x831, -EINVAL); /* ICR high half */
    msr_rd(0, 0x80B, -EINVAL); /* EOI is write-only */
    msr_rd(0, 0x83F, -EINVAL); /* SELF_IPI is write-only */
    msr_rd(0, 0x804, -EINVAL); /* reserved */
    msr_rd(0, 0x82F, -EINVAL); /* no CMCI LVT */
    msr_wr(0, 0x8FF, 0, -EINVAL);
    msr_wr(0, 0x80B, 1, -EINVAL); /* non-zero EOI */
    msr_wr(0, 0x808, 1ull << 32, -EINVAL); /* upper half of a 32-bit register */
    /* Registers through MSRs: SVR, TPR/PPR, LVTs. */
    msr_wr(0, 0x80F, 0x1FE, 0);
    assert_int_equal(msr_rd(0, 0x80F, 0), 0x1FE);
    msr_wr(0, 0x808, 0x40, 0);
    assert_int_equal(msr_rd(0, 0x80A, 0), 0x40);
    msr_wr(0, 0x808, 0, 0);
    msr_wr(0, 0x835, 0x400, 0);
    assert_int_equal(msr_rd(0, 0x835, 0), 0x400);

    /* SELF_IPI: a fixed interrupt to itself; ISR and EOI through MSRs. */
    msr_wr(0, 0x83F, 0x55, 0);
    assert_int_equal(msr_rd(0, 0x822, 0), 1u << (0x55 - 64)); /* IRR */
    assert_int_equal(irqchip_ack(&ic, 0), 0x55);
    assert_int_equal(msr_rd(0, 0x812, 0), 1u << (0x55 - 64)); /* ISR */
    msr_wr(0, 0x80B, 0, 0);
    assert_int_equal(msr_rd(0, 0x812, 0), 0);
    msr_wr(0, 0x83F, 0x155, -EINVAL);
    assert_false(irqchip_pending(&ic, 0));

    /* ICR: one 64-bit write with a 32-bit destination. */
    msr_wr(0, 0x830, 3ull << 32 | 0x4A, 0);
    assert_int_equal(msr_rd(0, 0x830, 0), 3ull << 32 | 0x4A);
    assert_int_equal(irqchip_ack(&ic, 3), 0x4A);
    assert_false(irqchip_pending(&ic, 2));
    msr_wr(3, 0x80B, 0, 0);
    /* Destination 0x100 is APIC ID 256, not ID 0 truncated. */
    msr_wr(2, 0x830, 0x100ull << 32 | 0x4A, 0);
    for (unsigned i = 0; i < 4; i++)
        assert_false(irqchip_pending(&ic, i));
    /* An xAPIC receiver still matches an 8-bit destination. */
    msr_wr(0, 0x830, 1ull << 32 | 0x4B, 0);
    assert_int_equal(irqchip_ack(&ic, 1), 0x4B);
    lw(1, 0xB0, 0);
    /* Broadcast 0xFFFFFFFF reaches everyone. */
    msr_wr(0, 0x830, 0xFFFFFFFFull << 32 | 0x4C, 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(irqchip_ack(&ic, i), 0x4C);
    for (unsigned i = 0; i < 4; i++)
        if (i == 1)
            lw(1, 0xB0, 0);
        else
            msr_wr(i, 0x80B, 0, 0);
    /* Logical: cluster 0, members 2 and 3. */
    msr_wr(0, 0x830, 0x0000000Cull << 32 | 1u << 11 | 0x4D, 0);
    assert_int_equal(irqchip_ack(&ic, 2), 0x4D);
    assert_int_equal(irqchip_ack(&ic, 3), 0x4D);
    assert_false(irqchip_pending(&ic, 0));
    assert_false(irqchip_pending(&ic, 1));
    /* Cluster 1 is nobody here. */
    msr_wr(0, 0x830, 0x0001000Cull << 32 | 1u << 11 | 0x4E, 0);
    assert_false(irqchip_pending(&ic, 0));
    /* NMI and shorthands through the x2APIC ICR. */
    msr_wr(0, 0x830, 2ull << 32 | 0x400, 0);
    assert_true(irqchip_nmi_ack(&ic, 2));
    msr_wr(0, 0x830, 0x40400, 0);
    assert_true(irqchip_nmi_ack(&ic, 0));
    assert_false(irqchip_nmi_pending(&ic, 3));
    /* INIT and SIPI to a 32-bit destination. */
    msr_wr(0, 0x830, 3ull << 32 | 0x4500, 0);
    bool init;
    int sipi;
    assert_true(irqchip_startup(&ic, 3, &init, &sipi));
    assert_true(init);
    /* INIT put CPU 3 back in xAPIC mode (the CPU resets IA32_APIC_BASE likewise). */
    msr_rd(3, 0x802, -EINVAL);
    /* Leaving x2APIC mode (through disabled): MMIO again, MSRs #GP. */
    irqchip_set_apic_base(&ic, 0, LAPIC | 0x100);
    irqchip_set_apic_base(&ic, 0, APIC_BASE);
    msr_rd(0, 0x802, -EINVAL);
    assert_int_equal(lr(0, 0x20), 0);
    /* The TSC deadline MSR is there in both modes. */
    msr_rd(0, 0x6E0, 0);
    msr_rd(2, 0x6E0, 0);
}

static void test_hostile_guest(void **state)
{
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < 200000; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        unsigned cpu = seed & 3, what = (seed >> 2) & 15;
        uint64_t v = seed >> 11;
        uint32_t p32 = (uint32_t)v;
        switch (what) {
        case 0: case 1: {
            uint64_t x = v;
            irqchip_mmio(&ic, cpu, APIC_BASE, LAPIC + ((seed >> 40) & 0xFFF), 1u << ((seed >> 52) & 3),
                         what, &x);
            break;
        }
        case 2: {
            uint64_t x = v;
            irqchip_mmio(&ic, cpu, APIC_BASE, 0xFEC00000 + ((seed >> 40) & 0x7F), 4, (seed >> 60) & 1, &x);
            break;
        }
        case 3: {
            static const uint16_t ports[] = {0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x40, 0x41, 0x42, 0x43, 0x61};
            irqchip_pio(&ic, ports[(seed >> 40) % 11], 1, (seed >> 60) & 1, &p32);
            break;
        }
        case 4: irqchip_set_level(&ic, (seed >> 40) % 40, (seed >> 60) & 1); break;
        case 5: irqchip_send_msi(&ic, 0xFEE00000 | ((seed >> 20) & 0xFFFFF), (uint32_t)(seed >> 32)); break;
        case 6: {
            int vec = irqchip_ack(&ic, cpu);
            assert_true(vec >= -1 && vec <= 255);
            break;
        }
        case 8: case 9: {
            /* The APIC's MSRs (and around them) with any value, in either mode. */
            uint32_t msr = 0x7F0 + (uint32_t)((seed >> 40) % 0x120);
            if ((seed >> 38) & 1)
                msr = 0x6E0;
            uint64_t x = (seed >> 62) ? v : v >> 40;
            int r = what == 8 ? irqchip_msr_read(&ic, cpu, msr, &x, seed)
                              : irqchip_msr_write(&ic, cpu, msr, x, seed);
            assert_true(r == 0 || r == -EINVAL || r == -ENOENT);
            break;
        }
        case 10: {
            static const uint64_t bases[] = {APIC_BASE, X2APIC_BASE, LAPIC | 0x100};
            irqchip_set_apic_base(&ic, cpu, bases[(seed >> 40) % 3]);
            break;
        }
        case 11:
            if ((seed >> 40) & 1)
                irqchip_nmi(&ic);
            else
                irqchip_nmi_ack(&ic, cpu);
            break;
        default: {
            bool init;
            int sipi;
            fake_ns += (seed >> 50) & 0xFFFF;
            irqchip_poll(&ic, cpu);
            irqchip_startup(&ic, cpu, &init, &sipi);
            assert_true(sipi >= -1 && sipi <= 255);
            break;
        }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lapic_ipi_priority_eoi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lapic_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_sipi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ioapic_edge_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pic_extint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pic_cascade_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pit_irq0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pit_channel2_port61, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_running_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_ours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nmi_icr_lint_ioapic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tsc_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_x2apic_msrs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_guest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
