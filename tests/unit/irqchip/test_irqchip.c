/* Unit tests for the user-space LAPIC, IOAPIC, 8259 pair and 8254 PIT, on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hw/irqchip.h"

static uint64_t fake_ns;
static unsigned wakes[4];

static uint64_t fake_now(void *opaque) { return fake_ns; }
static void fake_wake(void *opaque, unsigned cpu) { wakes[cpu]++; }
static const struct irqchip_ops fake_ops = {fake_now, fake_wake};

static struct irqchip ic;
static const uint32_t ids[4] = {0, 1, 2, 3};

static int setup(void **state)
{
    fake_ns = 1000;
    for (unsigned i = 0; i < 4; i++)
        wakes[i] = 0;
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
static void test_hostile_guest(void **state)
{
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < 200000; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        unsigned cpu = seed & 3, what = (seed >> 2) & 7;
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
        cmocka_unit_test_setup_teardown(test_hostile_guest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
