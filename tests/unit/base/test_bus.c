/* Unit tests for PIO/MMIO range dispatch, including nested ranges (0xCF9 inside 0xCF8-0xCFB). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include "machine/bus.h"

struct fake_dev {
    uint64_t last_off, last_val;
    unsigned last_size, reads, writes;
    uint64_t value;
};

static uint64_t fake_read(void *opaque, uint64_t off, unsigned size)
{
    struct fake_dev *d = opaque;
    d->reads++;
    d->last_off = off;
    d->last_size = size;
    return d->value;
}

static void fake_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct fake_dev *d = opaque;
    d->writes++;
    d->last_off = off;
    d->last_val = val;
    d->last_size = size;
}

static const struct bus_ops fake_ops = {fake_read, fake_write};

static void test_dispatch_with_offsets(void **state)
{
    struct bus b;
    struct fake_dev a = {.value = 0x1234}, c = {.value = 0x55};
    bus_init(&b, "pio");
    assert_int_equal(bus_register(&b, 0x3F8, 8, &fake_ops, &a, "com1"), 0);
    assert_int_equal(bus_register(&b, 0x70, 2, &fake_ops, &c, "rtc"), 0);
    uint64_t v;
    assert_true(bus_read(&b, 0x3FD, 1, &v));
    assert_int_equal(v, 0x34); /* truncated to the access size */
    assert_int_equal(a.last_off, 5);
    assert_true(bus_write(&b, 0x71, 1, 0x9));
    assert_int_equal(c.last_off, 1);
    assert_int_equal(c.last_val, 9);
    bus_destroy(&b);
}

static void test_unclaimed_reads_all_ones(void **state)
{
    struct bus b;
    bus_init(&b, "mmio");
    uint64_t v = 0;
    assert_false(bus_read(&b, 0x1000, 4, &v));
    assert_int_equal(v, 0xFFFFFFFFu);
    assert_false(bus_read(&b, 0x1000, 8, &v));
    assert_int_equal(v, ~0ULL);
    assert_false(bus_write(&b, 0x1000, 4, 1));
    bus_destroy(&b);
}

static void test_overlaps_refused_nesting_allowed(void **state)
{
    struct bus b;
    struct fake_dev pci = {.value = 0x80000000}, rst = {.value = 0x6};
    bus_init(&b, "pio");
    assert_int_equal(bus_register(&b, 0xCF8, 4, &fake_ops, &pci, "pci"), 0);
    assert_int_equal(bus_register(&b, 0xCF9, 1, &fake_ops, &rst, "reset"), 0);
    assert_int_equal(bus_register(&b, 0xCFA, 4, &fake_ops, &rst, "partial"), -EEXIST);
    assert_int_equal(bus_register(&b, 0xCF8, 4, &fake_ops, &rst, "dup"), -EEXIST);
    assert_int_equal(bus_register(&b, 0, 0, &fake_ops, &rst, "empty"), -EINVAL);
    uint64_t v;
    /* A 32-bit access at 0xCF8 is CONFIG_ADDRESS; a byte at 0xCF9 is the reset register. */
    assert_true(bus_read(&b, 0xCF8, 4, &v));
    assert_int_equal(v, 0x80000000u);
    assert_int_equal(pci.reads, 1);
    assert_true(bus_write(&b, 0xCF9, 1, 0x6));
    assert_int_equal(rst.writes, 1);
    assert_int_equal(rst.last_off, 0);
    /* A byte at 0xCFA still belongs to the outer range, at its own offset. */
    assert_true(bus_write(&b, 0xCFA, 1, 0x1));
    assert_int_equal(pci.writes, 1);
    assert_int_equal(pci.last_off, 2);
    /* A 16-bit access at 0xCF9 does not fit the 1-byte range: the outer range takes it. */
    assert_true(bus_write(&b, 0xCF9, 2, 0x1));
    assert_int_equal(pci.writes, 2);
    assert_int_equal(pci.last_off, 1);
    bus_destroy(&b);
}

static void test_unregister_restores_outer(void **state)
{
    struct bus b;
    struct fake_dev outer = {.value = 1}, inner = {.value = 2};
    bus_init(&b, "mmio");
    assert_int_equal(bus_register(&b, 0x1000, 0x1000, &fake_ops, &outer, "outer"), 0);
    assert_int_equal(bus_register(&b, 0x1800, 0x10, &fake_ops, &inner, "inner"), 0);
    uint64_t v;
    bus_read(&b, 0x1804, 4, &v);
    assert_int_equal(v, 2);
    assert_int_equal(bus_unregister(&b, 0x1800, &outer), -ENOENT);
    assert_int_equal(bus_unregister(&b, 0x1800, &inner), 0);
    bus_read(&b, 0x1804, 4, &v);
    assert_int_equal(v, 1);
    assert_int_equal(outer.last_off, 0x804);
    /* An access running off the end of every range is unclaimed. */
    assert_false(bus_read(&b, 0x1FFE, 4, &v));
    bus_destroy(&b);
}

static void test_many_ranges_binary_search(void **state)
{
    struct bus b;
    static struct fake_dev devs[200];
    bus_init(&b, "mmio");
    for (unsigned i = 0; i < 200; i++) {
        devs[i].value = i;
        /* registered out of order */
        unsigned j = (i * 37) % 200;
        assert_int_equal(bus_register(&b, 0x10000 + j * 0x100, 0x80, &fake_ops, &devs[j], "d"), 0);
    }
    for (unsigned j = 0; j < 200; j++) {
        uint64_t v;
        assert_true(bus_read(&b, 0x10000 + j * 0x100 + 0x7C, 4, &v));
        assert_int_equal(v, j);
        assert_false(bus_read(&b, 0x10000 + j * 0x100 + 0x80, 1, &v));
    }
    bus_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_with_offsets),
        cmocka_unit_test(test_unclaimed_reads_all_ones),
        cmocka_unit_test(test_overlaps_refused_nesting_allowed),
        cmocka_unit_test(test_unregister_restores_outer),
        cmocka_unit_test(test_many_ranges_binary_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
