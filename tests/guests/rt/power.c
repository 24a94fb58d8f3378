/* Reporting a verdict, powering off through ACPI S5, resetting, and CMOS NVRAM. */
#include "rt.h"

static bool leaving;

void rt_poweroff(void)
{
    if (acpi_init() < 0) {
        rt_printf("poweroff: %s; halting\n", acpi.error);
        rt_halt_forever();
    }
    if (!acpi.pm1a_cnt || acpi.s5_slp_typ < 0) {
        rt_printf("poweroff: no PM1a_CNT or \\_S5 in ACPI; halting\n");
        rt_halt_forever();
    }
    outw((uint16_t)acpi.pm1a_cnt, (uint16_t)(((unsigned)acpi.s5_slp_typ & 7) << 10 | 1 << 13));
    rt_halt_forever();
}

void test_pass(void)
{
    if (!leaving) {
        leaving = true;
        rt_printf("VMKIT-TEST: PASS %s\n", guest_name);
    }
    rt_poweroff();
}

void test_fail(const char *fmt, ...)
{
    if (leaving)
        rt_halt_forever(); /* failed while reporting: do not loop */
    leaving = true;
    va_list ap;
    va_start(ap, fmt);
    rt_printf("VMKIT-TEST: FAIL %s: ", guest_name);
    rt_vprintf(fmt, ap);
    va_end(ap);
    rt_puts("\n");
    rt_poweroff();
}

void rt_reset(enum rt_reset_method m)
{
    switch (m) {
    case RESET_CF9:
        outb(0xCF9, 0x06); /* hard reset */
        break;
    case RESET_KBD:
        for (int i = 0; i < 10000 && (inb(0x64) & 0x02); i++)
            cpu_relax();
        outb(0x64, 0xFE); /* pulse the reset line */
        break;
    case RESET_ACPI:
        if (acpi_init() < 0 || !acpi.reset_valid)
            return;
        if (acpi.reset_reg.space == 1 && acpi.reset_reg.address <= 0xFFFF)
            outb((uint16_t)acpi.reset_reg.address, acpi.reset_value);
        else if (acpi.reset_reg.space == 0 && acpi.reset_reg.address < 0x100000000UL)
            mmio_write8(acpi.reset_reg.address, acpi.reset_value);
        else if (acpi.reset_reg.space == 2) {
            /* PCI config space on bus 0: device in bits 32-47, function 16-31, offset 0-15 */
            uint64_t a = acpi.reset_reg.address;
            unsigned dev = (a >> 32) & 0x1f, fn = (a >> 16) & 7, off = a & 0xff;
            pci_cf8_write8(0, dev, fn, off, acpi.reset_value);
        }
        break;
    case RESET_TRIPLE: {
        /* #UD with an empty IDT: #GP, then #DF, then shutdown.  Not int3: KVM's instruction
         * emulator (which runs all guest kernel code on PVM hosts) cannot emulate INT outside
         * real mode and would report an internal error instead of faulting. */
        struct {
            uint16_t limit;
            uint64_t base;
        } __attribute__((packed)) null_idt = { 0, 0 };
        __asm__ volatile("lidt %0; ud2" ::"m"(null_idt));
        break;
    }
    }
    /* A reset takes effect at once on real hardware; an emulator may act on it a little later. */
    rt_delay_ms(1000);
}

uint8_t cmos_read(uint8_t reg)
{
    outb(0x70, 0x80 | reg); /* keep NMIs masked while the index is set */
    return inb(0x71);
}

void cmos_write(uint8_t reg, uint8_t v)
{
    outb(0x70, 0x80 | reg);
    outb(0x71, v);
}
