/* ACPI PM1 blocks, PM timer, GPE0 and SCI; the reset control and POST ports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_machine.h"
#include "hw/devices.h"
#include "machine/layout.h"

#define PM1_STS PORT_ACPI_PM1_EVT
#define PM1_EN (PORT_ACPI_PM1_EVT + 2)
#define PM1_CNT PORT_ACPI_PM1_CNT
#define PM_TMR PORT_ACPI_PM_TMR
#define GPE_STS PORT_ACPI_GPE0
#define GPE_EN (PORT_ACPI_GPE0 + 2)

#define PWRBTN 0x0100
#define SLP_EN 0x2000

static struct machine m;
static struct acpi_pm *pm;

static int setup(void **state)
{
    fake_machine_init(&m, false);
    pm = acpi_pm_create(&m);
    assert_non_null(pm);
    misc_ports_create(&m);
    return 0;
}

static void test_s5_powers_off(void **state)
{
    assert_int_equal(pio_in(&m, PM1_CNT, 2) & 1, 1); /* SCI_EN: already in ACPI mode */
    /* Another sleep state is ignored. */
    pio_out(&m, PM1_CNT, 2, (3 << 10) | SLP_EN | 1);
    assert_int_equal(fake_request_count, 0);
    /* SLP_TYP alone does nothing until SLP_EN. */
    pio_out(&m, PM1_CNT, 2, (ACPI_S5_SLP_TYP << 10) | 1);
    assert_int_equal(fake_request_count, 0);
    assert_int_equal(pio_in(&m, PM1_CNT, 2) & SLP_EN, 0);
    pio_out(&m, PM1_CNT, 2, (ACPI_S5_SLP_TYP << 10) | SLP_EN | 1);
    assert_int_equal(fake_request_count, 1);
    assert_int_equal(fake_last_request, MACHINE_REQ_POWEROFF);
    assert_int_equal(pio_in(&m, PM1_CNT, 2) & SLP_EN, 0); /* write-only */
}

static void test_power_button_sci(void **state)
{
    acpi_pm_power_button(pm);
    assert_true(pio_in(&m, PM1_STS, 2) & PWRBTN);
    assert_false(fake_irq.level[IRQ_ACPI_SCI]); /* not enabled: status only */
    pio_out(&m, PM1_EN, 2, PWRBTN);
    assert_true(fake_irq.level[IRQ_ACPI_SCI]);
    assert_int_equal(pio_in(&m, PM1_EN, 2), PWRBTN);
    /* Writing 0 to a status bit leaves it; writing 1 clears it. */
    pio_out(&m, PM1_STS, 2, 0);
    assert_true(pio_in(&m, PM1_STS, 2) & PWRBTN);
    assert_true(fake_irq.level[IRQ_ACPI_SCI]);
    pio_out(&m, PM1_STS, 2, PWRBTN);
    assert_false(pio_in(&m, PM1_STS, 2) & PWRBTN);
    assert_false(fake_irq.level[IRQ_ACPI_SCI]);
    /* A 32-bit access covers status and enable together. */
    acpi_pm_power_button(pm);
    assert_int_equal(pio_in(&m, PM1_STS, 4) & 0xFFFF01FF, (PWRBTN << 16) | PWRBTN);
    pio_out(&m, PM1_STS, 4, (uint32_t)PWRBTN); /* clears status, disables everything */
    assert_int_equal(pio_in(&m, PM1_STS, 4) & 0xFFFF0100, 0);
    assert_false(fake_irq.level[IRQ_ACPI_SCI]);
    acpi_pm_power_button(pm);
    assert_false(fake_irq.level[IRQ_ACPI_SCI]);
}

static void test_gpe(void **state)
{
    acpi_pm_raise_gpe(pm, 1);
    assert_int_equal(pio_in8(&m, GPE_STS), 0x02);
    assert_false(fake_irq.level[IRQ_ACPI_SCI]);
    pio_out8(&m, GPE_EN, 0x02);
    assert_true(fake_irq.level[IRQ_ACPI_SCI]);
    pio_out8(&m, GPE_STS, 0x02);
    assert_int_equal(pio_in8(&m, GPE_STS), 0);
    assert_false(fake_irq.level[IRQ_ACPI_SCI]);
    machine_reset_devices(&m);
    assert_int_equal(pio_in8(&m, GPE_EN), 0);
}

static void test_pm_timer(void **state)
{
    uint32_t t0 = pio_in(&m, PM_TMR, 4);
    assert_int_equal(pio_in(&m, PM_TMR, 4), t0); /* no time passed on the fake clock */
    fake_advance(1000000000ULL);
    uint32_t t1 = pio_in(&m, PM_TMR, 4);
    assert_int_equal(t1 - t0, 3579545);
    fake_advance(1000);
    uint32_t t2 = pio_in(&m, PM_TMR, 4);
    assert_in_range(t2 - t1, 3, 4);
    /* 32 bits wide: it wraps after 2^32 ticks (20 minutes) and bit 31 toggling sets TMR_STS. */
    pio_out(&m, PM1_STS, 2, 1);
    fake_advance(600ULL * 1000000000ULL);
    assert_true(pio_in(&m, PM1_STS, 2) & 1);
    pio_out(&m, PM_TMR, 4, 0); /* read-only */
    assert_true(pio_in(&m, PM_TMR, 4) != 0);
}

static void test_reset_control_register(void **state)
{
    assert_int_equal(pio_in8(&m, PORT_RESET_CONTROL), 0);
    pio_out8(&m, PORT_RESET_CONTROL, 0x02); /* hard-reset select only */
    assert_int_equal(fake_request_count, 0);
    assert_int_equal(pio_in8(&m, PORT_RESET_CONTROL), 0x02);
    pio_out8(&m, PORT_RESET_CONTROL, 0x06);
    assert_int_equal(fake_request_count, 1);
    assert_int_equal(fake_last_request, MACHINE_REQ_RESET);
    /* Exactly one byte is claimed: 0xCF8 and 0xCFA stay free for PCI. */
    assert_null(bus_find(&m.pio, PORT_PCI_CONFIG_ADDR));
    assert_null(bus_find(&m.pio, PORT_RESET_CONTROL + 1));
    /* Port 0x80 swallows POST codes. */
    pio_out8(&m, PORT_POST, 0x42);
    assert_non_null(bus_find(&m.pio, PORT_POST));
    assert_int_equal(fake_request_count, 1);
    machine_reset_devices(&m);
    assert_int_equal(pio_in8(&m, PORT_RESET_CONTROL), 0);
    /* Port 0x92 bit 0 is a fast reset. */
    pio_out8(&m, 0x92, 0x01);
    assert_int_equal(fake_request_count, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_s5_powers_off, setup),
        cmocka_unit_test_setup(test_power_button_sci, setup),
        cmocka_unit_test_setup(test_gpe, setup),
        cmocka_unit_test_setup(test_pm_timer, setup),
        cmocka_unit_test_setup(test_reset_control_register, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
