/* CMOS RTC: time encodings, UIP, the guest setting the clock, NVRAM across reset, interrupts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_machine.h"
#include "hw/devices.h"
#include "machine/layout.h"

#include <time.h>

#define NS 1000000000ULL

static struct machine m;
static struct rtc *rtc;
static uint64_t epoch_base_ns; /* realtime = epoch_base_ns + fake monotonic clock */

static uint64_t fake_realtime(void)
{
    return epoch_base_ns + fake_mono_ns;
}

/* Make the host clock read Y-M-D h:m:s + frac_ns (UTC) right now. */
static void set_host_time(int y, int mo, int d, int h, int mi, int s, uint64_t frac_ns)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = s};
    uint64_t t = (uint64_t)timegm(&tm) * NS + frac_ns;
    epoch_base_ns = t - fake_mono_ns;
}

static uint8_t cmos_read(uint8_t idx)
{
    pio_out8(&m, PORT_RTC, idx);
    return pio_in8(&m, PORT_RTC + 1);
}

static void cmos_write(uint8_t idx, uint8_t v)
{
    pio_out8(&m, PORT_RTC, idx);
    pio_out8(&m, PORT_RTC + 1, v);
}

static int setup(void **state)
{
    fake_machine_init(&m, true);
    rtc = rtc_create(&m);
    assert_non_null(rtc);
    set_host_time(2024, 2, 29, 23, 59, 58, 0);
    rtc_set_clock(rtc, fake_realtime);
    return 0;
}

static void test_bcd_24h(void **state)
{
    assert_int_equal(cmos_read(0x0B) & 0x06, 0x02); /* BCD, 24 h by default */
    assert_int_equal(cmos_read(0x00), 0x58);
    assert_int_equal(cmos_read(0x02), 0x59);
    assert_int_equal(cmos_read(0x04), 0x23);
    assert_int_equal(cmos_read(0x06), 0x05); /* Thursday, Sunday = 1 */
    assert_int_equal(cmos_read(0x07), 0x29);
    assert_int_equal(cmos_read(0x08), 0x02);
    assert_int_equal(cmos_read(0x09), 0x24);
    assert_int_equal(cmos_read(0x32), 0x20);
    assert_int_equal(cmos_read(0x0D), 0x80); /* valid RAM and time */
    /* It follows the host clock across midnight into March. */
    fake_advance(3 * NS);
    assert_int_equal(cmos_read(0x00), 0x01);
    assert_int_equal(cmos_read(0x04), 0x00);
    assert_int_equal(cmos_read(0x07), 0x01);
    assert_int_equal(cmos_read(0x08), 0x03);
}

static void test_binary_12h(void **state)
{
    cmos_write(0x0B, 0x04); /* binary, 12 h */
    assert_int_equal(cmos_read(0x00), 58);
    assert_int_equal(cmos_read(0x04), 0x80 | 11); /* 11 PM */
    assert_int_equal(cmos_read(0x09), 24);
    assert_int_equal(cmos_read(0x32), 20);
    cmos_write(0x0B, 0x00); /* BCD, 12 h */
    assert_int_equal(cmos_read(0x04), 0x91);
    set_host_time(2024, 3, 1, 0, 30, 0, 0);
    assert_int_equal(cmos_read(0x04), 0x12); /* 12 AM */
}

static void test_uip(void **state)
{
    set_host_time(2024, 2, 29, 12, 0, 0, 500000000);
    assert_false(cmos_read(0x0A) & 0x80);
    set_host_time(2024, 2, 29, 12, 0, 0, NS - 100000); /* 100 us before the update */
    assert_true(cmos_read(0x0A) & 0x80);
    assert_int_equal(cmos_read(0x0A) & 0x7F, 0x26);
    fake_advance(200000); /* the update happened */
    assert_false(cmos_read(0x0A) & 0x80);
    /* A guest polling for the end of UIP sees the new second. */
    assert_int_equal(cmos_read(0x00), 0x01);
}

static void test_guest_sets_time(void **state)
{
    cmos_write(0x0B, 0x82); /* SET: the clock stops while the guest writes */
    cmos_write(0x09, 0x30);
    cmos_write(0x08, 0x07);
    cmos_write(0x07, 0x04);
    cmos_write(0x04, 0x10);
    cmos_write(0x02, 0x20);
    cmos_write(0x00, 0x30);
    fake_advance(5 * NS);
    assert_int_equal(cmos_read(0x00), 0x30); /* frozen */
    cmos_write(0x0B, 0x02);
    assert_int_equal(cmos_read(0x09), 0x30);
    assert_int_equal(cmos_read(0x08), 0x07);
    assert_int_equal(cmos_read(0x07), 0x04);
    assert_int_equal(cmos_read(0x04), 0x10);
    assert_int_equal(cmos_read(0x02), 0x20);
    assert_int_equal(cmos_read(0x00), 0x30);
    fake_advance(2 * NS);
    assert_int_equal(cmos_read(0x00), 0x32); /* ticking from the value written */
    /* The offset survives a machine reset: the battery keeps the clock. */
    machine_reset_devices(&m);
    assert_int_equal(cmos_read(0x09), 0x30);
    /* A single write without SET moves the clock too. */
    cmos_write(0x02, 0x45);
    assert_int_equal(cmos_read(0x02), 0x45);
    assert_int_equal(cmos_read(0x04), 0x10);
}

static void test_nvram_survives_reset(void **state)
{
    for (unsigned i = 0x0E; i < 0x80; i++)
        if (i != 0x32)
            cmos_write(i, (uint8_t)(i * 7 + 3));
    cmos_write(0x01, 0x12); /* alarm seconds */
    cmos_write(0x0B, 0x02 | 0x04 | 0x40 | 0x20 | 0x10); /* binary + all interrupt enables */
    machine_reset_devices(&m);
    for (unsigned i = 0x0E; i < 0x80; i++)
        if (i != 0x32)
            assert_int_equal(cmos_read(i), (uint8_t)(i * 7 + 3));
    assert_int_equal(cmos_read(0x01), 0x12);
    /* Reset clears the interrupt enables and flags but keeps the data format. */
    assert_int_equal(cmos_read(0x0B), 0x02 | 0x04);
    assert_int_equal(cmos_read(0x0C) & 0xF0, 0x00);
    assert_false(fake_irq.level[IRQ_RTC]);
    assert_int_equal(fake_timers_armed(), 0);
}

static void test_update_and_periodic_interrupts(void **state)
{
    (void)cmos_read(0x0C);
    cmos_write(0x0B, 0x02 | 0x10); /* UIE */
    assert_false(fake_irq.level[IRQ_RTC]);
    fake_advance(NS / 2);
    assert_false(fake_irq.level[IRQ_RTC]);
    fake_advance(NS / 2 + 1000); /* past the second boundary */
    assert_true(fake_irq.level[IRQ_RTC]);
    uint8_t c = cmos_read(0x0C);
    assert_int_equal(c & 0x90, 0x90); /* IRQF | UF */
    assert_false(fake_irq.level[IRQ_RTC]);
    assert_int_equal(cmos_read(0x0C) & 0x80, 0); /* read clears */
    unsigned rises = fake_irq.rises[IRQ_RTC];
    fake_advance(NS);
    assert_int_equal(fake_irq.rises[IRQ_RTC], rises + 1);

    /* Periodic at 1024 Hz. */
    cmos_write(0x0B, 0x02 | 0x40);
    (void)cmos_read(0x0C);
    fake_advance(1000000); /* 1 ms > 976.5 us */
    assert_true(fake_irq.level[IRQ_RTC]);
    assert_int_equal(cmos_read(0x0C) & 0xC0, 0xC0);
    cmos_write(0x0B, 0x02);
    assert_int_equal(fake_timers_armed(), 0);
}

static void test_alarm_interrupt(void **state)
{
    (void)cmos_read(0x0C);
    cmos_write(0x01, 0x00);       /* alarm at hh:mm:00 */
    cmos_write(0x03, 0xC0);       /* any minute */
    cmos_write(0x05, 0xC0);       /* any hour */
    cmos_write(0x0B, 0x02 | 0x20); /* AIE only */
    fake_advance(NS + 1000);       /* :59 */
    assert_false(fake_irq.level[IRQ_RTC]);
    fake_advance(NS);              /* :00 */
    assert_true(fake_irq.level[IRQ_RTC]);
    assert_int_equal(cmos_read(0x0C) & 0xA0, 0xA0);
}

static void test_index_nmi_bit(void **state)
{
    pio_out8(&m, PORT_RTC, 0x80 | 0x0D);
    assert_true(rtc_nmi_masked(rtc));
    assert_int_equal(pio_in8(&m, PORT_RTC + 1), 0x80); /* index 0x0D, the mask bit stripped */
    pio_out8(&m, PORT_RTC, 0x0D);
    assert_false(rtc_nmi_masked(rtc));
}

/* -rtc base= and clock=vm: a fixed start, and time on the machine's clock (the fake clock here,
 * which machine_clock_ns reads), not the host's. */
static void test_base_and_vm_clock(void **state)
{
    struct tm tm = {.tm_year = 2006 - 1900, .tm_mon = 5, .tm_mday = 17, .tm_hour = 16,
                    .tm_min = 1, .tm_sec = 21};
    rtc_configure(rtc, true, timegm(&tm), false, false);
    assert_int_equal(cmos_read(0x09), 0x06);
    assert_int_equal(cmos_read(0x08), 0x06);
    assert_int_equal(cmos_read(0x07), 0x17);
    assert_int_equal(cmos_read(0x04), 0x16);
    assert_int_equal(cmos_read(0x02), 0x01);
    assert_int_equal(cmos_read(0x00), 0x21);
    fake_advance(2 * NS); /* host clock: it runs with the host */
    assert_int_equal(cmos_read(0x00), 0x23);

    rtc_configure(rtc, true, timegm(&tm), false, true);
    assert_int_equal(cmos_read(0x00), 0x21);
    epoch_base_ns += 3600 * NS; /* the host's clock jumps: the guest's does not */
    assert_int_equal(cmos_read(0x02), 0x01);
    fake_advance(61 * NS); /* the machine's clock advances: so does the RTC */
    assert_int_equal(cmos_read(0x02), 0x02);
    assert_int_equal(cmos_read(0x00), 0x22);

    rtc_configure(rtc, false, 0, false, true); /* no base: the host's time, then the machine's */
    assert_int_equal(cmos_read(0x09), 0x24);
    assert_int_equal(cmos_read(0x08), 0x03);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_bcd_24h, setup),
        cmocka_unit_test_setup(test_binary_12h, setup),
        cmocka_unit_test_setup(test_uip, setup),
        cmocka_unit_test_setup(test_guest_sets_time, setup),
        cmocka_unit_test_setup(test_nvram_survives_reset, setup),
        cmocka_unit_test_setup(test_update_and_periodic_interrupts, setup),
        cmocka_unit_test_setup(test_alarm_interrupt, setup),
        cmocka_unit_test_setup(test_index_nmi_bit, setup),
        cmocka_unit_test_setup(test_base_and_vm_clock, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
