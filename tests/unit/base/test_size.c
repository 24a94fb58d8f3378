/* Unit tests for size parsing (QEMU suffixes and default units). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include "base/size.h"

static void test_plain_numbers_use_default_unit(void **state)
{
    uint64_t v;
    assert_int_equal(size_parse("2048", 1 << 20, &v), 0);
    assert_int_equal(v, 2048ULL << 20);
    assert_int_equal(size_parse("4096", 1, &v), 0);
    assert_int_equal(v, 4096);
}

static void test_suffixes(void **state)
{
    uint64_t v;
    assert_int_equal(size_parse("2G", 1 << 20, &v), 0);
    assert_int_equal(v, 2ULL << 30);
    assert_int_equal(size_parse("512M", 1, &v), 0);
    assert_int_equal(v, 512ULL << 20);
    assert_int_equal(size_parse("1.5G", 1, &v), 0);
    assert_int_equal(v, 3ULL << 29);
    assert_int_equal(size_parse("64k", 1, &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(size_parse("1T", 1, &v), 0);
    assert_int_equal(v, 1ULL << 40);
    assert_int_equal(size_parse("2GiB", 1, &v), 0);
    assert_int_equal(v, 2ULL << 30);
    assert_int_equal(size_parse("100B", 1 << 20, &v), 0);
    assert_int_equal(v, 100);
}

static void test_rejects_garbage(void **state)
{
    uint64_t v;
    assert_int_equal(size_parse("", 1, &v), -EINVAL);
    assert_int_equal(size_parse("G", 1, &v), -EINVAL);
    assert_int_equal(size_parse("-1", 1, &v), -EINVAL);
    assert_int_equal(size_parse("12X", 1, &v), -EINVAL);
    assert_int_equal(size_parse("2GG", 1, &v), -EINVAL);
    assert_int_equal(size_parse(" 2G", 1, &v), -EINVAL);
    assert_int_equal(size_parse("1.5", 1, &v), -EINVAL); /* fractional bytes */
    assert_int_equal(size_parse("99999999E", 1, &v), -ERANGE);
}

static void test_format(void **state)
{
    char buf[32];
    size_format(2ULL << 30, buf, sizeof(buf));
    assert_string_equal(buf, "2 GiB");
    size_format(512, buf, sizeof(buf));
    assert_string_equal(buf, "512 B");
    size_format(1536ULL << 20, buf, sizeof(buf));
    assert_string_equal(buf, "1.5 GiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_numbers_use_default_unit),
        cmocka_unit_test(test_suffixes),
        cmocka_unit_test(test_rejects_garbage),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
