/* Hostile guest: random port accesses of every width to all platform devices must not crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_machine.h"
#include "chardev/chardev.h"
#include "hw/devices.h"
#include "machine/layout.h"

#include <string.h>

struct chardev {
    int dummy;
};
static struct chardev fake_chr;
static struct chardev_frontend fe;
static size_t tx_bytes;

void chardev_set_frontend(struct chardev *c, const struct chardev_frontend *f)
{
    fe = *f;
}

void chardev_write(struct chardev *c, const void *buf, size_t len)
{
    tx_bytes += len;
}

void chardev_accept_input(struct chardev *c)
{
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_random_io(void **state)
{
    static const uint16_t ports[] = {PORT_COM1, PORT_I8042_DATA, PORT_I8042_CMD, PORT_RTC,
                                     PORT_POST, PORT_RESET_CONTROL, 0x92, PORT_ACPI_PM_BASE,
                                     PORT_ACPI_GPE0};
    static const unsigned sizes[] = {1, 2, 4, 8};
    struct machine m;
    fake_machine_init(&m, true);
    assert_non_null(serial_create(&m, PORT_COM1, IRQ_COM1, &fake_chr));
    assert_non_null(i8042_create(&m));
    assert_non_null(rtc_create(&m));
    struct acpi_pm *pm = acpi_pm_create(&m);
    assert_non_null(pm);
    misc_ports_create(&m);
    for (int i = 0; i < 400000; i++) {
        uint64_t r = next();
        uint16_t port = ports[r % ARRAY_SIZE(ports)] + (uint16_t)((r >> 8) % 16);
        unsigned size = sizes[(r >> 16) % 4];
        uint64_t v = next();
        if ((r >> 20) & 1) {
            uint64_t out;
            bus_read(&m.pio, port, size, &out);
        } else {
            bus_write(&m.pio, port, size, v);
        }
        switch ((r >> 24) % 64) {
        case 0: {
            uint8_t buf[32];
            memset(buf, (int)v, sizeof(buf));
            /* Even a backend ignoring can_read must not overflow the FIFO. */
            fe.receive(fe.opaque, buf, (r >> 32) % sizeof(buf));
            break;
        }
        case 1:
            fake_advance((r >> 32) % 5000000);
            break;
        case 2:
            acpi_pm_power_button(pm);
            break;
        case 3:
            if (((r >> 32) % 64) == 0)
                machine_reset_devices(&m);
            break;
        }
    }
    /* Still a working UART afterwards. */
    machine_reset_devices(&m);
    size_t before = tx_bytes;
    pio_out8(&m, PORT_COM1 + 3, 0x03);
    pio_out8(&m, PORT_COM1, 'k');
    assert_int_equal(tx_bytes, before + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_io),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
