/* Interrupt routing: the PIT through the MADT's IRQ0 -> GSI 2 override, the RTC periodic
 * interrupt on GSI 8 and the COM1 transmitter-empty interrupt on GSI 4 all arrive at the BSP
 * through the IOAPIC, with LAPIC EOIs in between. */
#include "rt/irq.h"
#include "rt/rt.h"

const char guest_name[] = "interrupts";

#define V_PIT 0x50
#define V_RTC 0x51
#define V_COM 0x52
#define COM1 0x3F8

static void rtc_handler(uint8_t v, void *o)
{
    (void)v, (void)o;
    cmos_read(0x0C); /* acknowledge: the RTC raises no new interrupt until C is read */
}

static void com_handler(uint8_t v, void *o)
{
    (void)v, (void)o;
    inb(COM1 + 2); /* IIR read acknowledges THRE */
}

void guest_main(void)
{
    irq_init();
    CHECK(acpi.madt, "no MADT: %s", acpi.error);
    bool level, low;

    /* PIT channel 0, mode 2, ~1 kHz. */
    unsigned gsi = irq_isa_to_gsi(0, &level, &low);
    CHECK(gsi == 2, "ISA IRQ 0 maps to GSI %u; the MADT must override it to 2", gsi);
    CHECK(!level && !low, "IRQ0 override is not edge/active-high");
    ioapic_route(gsi, V_PIT, level, low);
    outb(0x43, 0x34);
    outb(0x40, 0xa9);
    outb(0x40, 0x04);
    CHECK(irq_wait(V_PIT, 3, 1000), "PIT: %u interrupts on GSI 2 in 1 s", irq_count(V_PIT));
    ioapic_mask(gsi);
    outb(0x43, 0x30); /* mode 0 with no count: stops periodic ticks */

    /* RTC periodic interrupt, 1024 Hz. */
    gsi = irq_isa_to_gsi(8, &level, &low);
    CHECK(gsi == 8, "ISA IRQ 8 maps to GSI %u", gsi);
    irq_set_handler(V_RTC, rtc_handler, NULL);
    ioapic_route(gsi, V_RTC, level, low);
    cmos_write(0x0A, 0x26);
    cmos_read(0x0C);
    cmos_write(0x0B, cmos_read(0x0B) | 0x40);
    bool rtc_ok = irq_wait(V_RTC, 3, 1000);
    cmos_write(0x0B, cmos_read(0x0B) & ~0x40);
    ioapic_mask(gsi);
    CHECK(rtc_ok, "RTC: %u periodic interrupts on GSI 8 in 1 s", irq_count(V_RTC));

    /* COM1 THRE: enabling the interrupt with an empty transmitter raises it at once. */
    gsi = irq_isa_to_gsi(4, &level, &low);
    CHECK(gsi == 4, "ISA IRQ 4 maps to GSI %u", gsi);
    irq_set_handler(V_COM, com_handler, NULL);
    ioapic_route(gsi, V_COM, level, low);
    outb(COM1 + 4, inb(COM1 + 4) | 0x08); /* OUT2 gates the ISA interrupt line */
    outb(COM1 + 1, 0x02);
    bool com_ok = irq_wait(V_COM, 1, 1000);
    outb(COM1 + 1, 0x00);
    ioapic_mask(gsi);
    irq_disable();
    CHECK(com_ok, "COM1: no THRE interrupt on GSI 4");
    rt_printf("interrupts: PIT %u, RTC %u, COM1 %u\n", irq_count(V_PIT), irq_count(V_RTC),
              irq_count(V_COM));
    test_pass();
}
