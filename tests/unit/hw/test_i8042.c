/* i8042 controller and keyboard answers as Linux's i8042 and atkbd drivers probe them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_machine.h"
#include "hw/devices.h"
#include "machine/layout.h"

#define DATA PORT_I8042_DATA
#define CMD PORT_I8042_CMD

static struct machine m;

static int setup(void **state)
{
    fake_machine_init(&m, false);
    assert_non_null(i8042_create(&m));
    return 0;
}

/* Read one byte as the driver does: status must say the output buffer is full. */
static uint8_t read_out(void)
{
    assert_true(pio_in8(&m, CMD) & 0x01);
    return pio_in8(&m, DATA);
}

static void assert_empty(void)
{
    assert_false(pio_in8(&m, CMD) & 0x01);
}

static void test_controller_commands(void **state)
{
    assert_empty();
    pio_out8(&m, CMD, 0xAA);
    assert_int_equal(read_out(), 0x55);
    assert_true(pio_in8(&m, CMD) & 0x04); /* system flag */
    pio_out8(&m, CMD, 0xAB);
    assert_int_equal(read_out(), 0x00);
    pio_out8(&m, CMD, 0xA9);
    assert_int_equal(read_out(), 0x00);
    assert_empty();
    /* Command byte round trip; 0xA7/0xA8/0xAD/0xAE flip its disable bits. */
    pio_out8(&m, CMD, 0x60);
    pio_out8(&m, DATA, 0x44);
    pio_out8(&m, CMD, 0x20);
    assert_int_equal(read_out(), 0x44);
    pio_out8(&m, CMD, 0xA7);
    pio_out8(&m, CMD, 0xAD);
    pio_out8(&m, CMD, 0x20);
    assert_int_equal(read_out(), 0x44 | 0x20 | 0x10);
    pio_out8(&m, CMD, 0xA8);
    pio_out8(&m, CMD, 0xAE);
    pio_out8(&m, CMD, 0x20);
    assert_int_equal(read_out(), 0x44);
    /* Output port: A20 and not-in-reset. */
    pio_out8(&m, CMD, 0xD0);
    assert_int_equal(read_out() & 0x03, 0x03);
    assert_int_equal(fake_request_count, 0);
}

static void test_keyboard_probe(void **state)
{
    pio_out8(&m, CMD, 0x60);
    pio_out8(&m, DATA, 0x01); /* keyboard interrupt on, nothing else */
    unsigned rises = fake_irq.rises[IRQ_I8042_KBD];
    pio_out8(&m, DATA, 0xFF); /* reset */
    assert_true(fake_irq.level[IRQ_I8042_KBD]);
    assert_int_equal(fake_irq.rises[IRQ_I8042_KBD], rises + 1);
    assert_false(pio_in8(&m, CMD) & 0x20); /* from the keyboard, not the aux port */
    assert_int_equal(read_out(), 0xFA);
    /* The next byte raises a fresh edge. */
    assert_int_equal(fake_irq.rises[IRQ_I8042_KBD], rises + 2);
    assert_int_equal(read_out(), 0xAA);
    assert_false(fake_irq.level[IRQ_I8042_KBD]);
    assert_empty();
    pio_out8(&m, DATA, 0xF2);
    assert_int_equal(read_out(), 0xFA);
    assert_int_equal(read_out(), 0xAB);
    assert_int_equal(read_out(), 0x83);
    static const uint8_t acked[] = {0xF5, 0xF4};
    for (unsigned i = 0; i < 2; i++) {
        pio_out8(&m, DATA, acked[i]);
        assert_int_equal(read_out(), 0xFA);
    }
    pio_out8(&m, DATA, 0xED); /* LEDs: command and parameter each acked */
    assert_int_equal(read_out(), 0xFA);
    pio_out8(&m, DATA, 0x07);
    assert_int_equal(read_out(), 0xFA);
    pio_out8(&m, DATA, 0xF3);
    assert_int_equal(read_out(), 0xFA);
    pio_out8(&m, DATA, 0x00);
    assert_int_equal(read_out(), 0xFA);
    assert_empty();
}

static void test_interrupt_gating_and_aux(void **state)
{
    pio_out8(&m, CMD, 0x60);
    pio_out8(&m, DATA, 0x00); /* both interrupts off */
    pio_out8(&m, CMD, 0xD2);
    pio_out8(&m, DATA, 0x5A);
    assert_false(fake_irq.level[IRQ_I8042_KBD]);
    assert_int_equal(read_out(), 0x5A);
    /* Aux loopback (Linux's aux probe) with the aux interrupt on: IRQ 12 and AUXB. */
    pio_out8(&m, CMD, 0x60);
    pio_out8(&m, DATA, 0x02 | 0x20); /* aux int on, aux port disabled */
    pio_out8(&m, CMD, 0xD3);
    pio_out8(&m, DATA, 0xA5);
    assert_true(fake_irq.level[IRQ_I8042_AUX]);
    assert_false(fake_irq.level[IRQ_I8042_KBD]);
    assert_true(pio_in8(&m, CMD) & 0x20);
    assert_int_equal(read_out(), 0xA5);
    assert_false(fake_irq.level[IRQ_I8042_AUX]);
    /* The mouse answers a reset through 0xD4. */
    pio_out8(&m, CMD, 0xD4);
    pio_out8(&m, DATA, 0xFF);
    assert_int_equal(read_out(), 0xFA);
    assert_int_equal(read_out(), 0xAA);
    assert_int_equal(read_out(), 0x00);
    assert_empty();
}

static void test_reset_requests(void **state)
{
    pio_out8(&m, CMD, 0xFE);
    assert_int_equal(fake_request_count, 1);
    assert_int_equal(fake_last_request, MACHINE_REQ_RESET);
    pio_out8(&m, CMD, 0xFF); /* pulse nothing */
    assert_int_equal(fake_request_count, 1);
    pio_out8(&m, CMD, 0xF0); /* pulse all lines, bit 0 included */
    assert_int_equal(fake_request_count, 2);
    pio_out8(&m, CMD, 0xD1);
    pio_out8(&m, DATA, 0x03); /* reset line high: no reset */
    assert_int_equal(fake_request_count, 2);
    pio_out8(&m, CMD, 0xD1);
    pio_out8(&m, DATA, 0x02);
    assert_int_equal(fake_request_count, 3);
    assert_int_equal(fake_last_request, MACHINE_REQ_RESET);
}

static void test_machine_reset_clears(void **state)
{
    pio_out8(&m, DATA, 0xFF);
    assert_true(pio_in8(&m, CMD) & 0x01);
    machine_reset_devices(&m);
    assert_empty();
    assert_false(fake_irq.level[IRQ_I8042_KBD]);
    pio_out8(&m, CMD, 0x20);
    assert_int_equal(read_out(), 0x47);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_controller_commands, setup),
        cmocka_unit_test_setup(test_keyboard_probe, setup),
        cmocka_unit_test_setup(test_interrupt_gating_and_aux, setup),
        cmocka_unit_test_setup(test_reset_requests, setup),
        cmocka_unit_test_setup(test_machine_reset_clears, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
