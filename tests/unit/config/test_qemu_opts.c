/* Unit tests for the QEMU "key=value,..." option string parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/qemu_opts.h"
#include <errno.h>
#include <string.h>

static struct qemu_opts parse_ok(const char *s, const char *implied)
{
    struct qemu_opts o;
    char err[128];
    assert_int_equal(qemu_opts_parse(&o, s, implied, err, sizeof(err)), 0);
    return o;
}

static void test_implied_key(void **state)
{
    struct qemu_opts o = parse_ok("2G", "size");
    assert_int_equal(o.n, 1);
    assert_string_equal(qemu_opts_get(&o, "size"), "2G");
    qemu_opts_free(&o);

    o = parse_ok("2G,slots=4,maxmem=8G", "size");
    assert_int_equal(o.n, 3);
    assert_string_equal(qemu_opts_get(&o, "size"), "2G");
    assert_string_equal(qemu_opts_get(&o, "slots"), "4");
    assert_string_equal(qemu_opts_get(&o, "maxmem"), "8G");
    qemu_opts_free(&o);

    /* An explicit key first means nothing is implied. */
    o = parse_ok("size=1G", "size");
    assert_int_equal(o.n, 1);
    assert_string_equal(qemu_opts_get(&o, "size"), "1G");
    qemu_opts_free(&o);

    /* Only the first element can be implied: a later bare word is a flag. */
    o = parse_ok("/tmp/s,server", "path");
    assert_string_equal(qemu_opts_get(&o, "path"), "/tmp/s");
    assert_string_equal(qemu_opts_get(&o, "server"), "on");
    qemu_opts_free(&o);

    /* Without an implied key, a first bare word is a flag too. */
    o = parse_ok("server", NULL);
    assert_string_equal(qemu_opts_get(&o, "server"), "on");
    assert_null(qemu_opts_get(&o, "path"));
    qemu_opts_free(&o);
}

static void test_comma_escape(void **state)
{
    struct qemu_opts o = parse_ok("guest=a,,b,debug-threads=on", "guest");
    assert_int_equal(o.n, 2);
    assert_string_equal(qemu_opts_get(&o, "guest"), "a,b");
    assert_string_equal(qemu_opts_get(&o, "debug-threads"), "on");
    qemu_opts_free(&o);

    o = parse_ok("x,,y,,,z=1", "name");
    assert_string_equal(qemu_opts_get(&o, "name"), "x,y,");
    assert_string_equal(qemu_opts_get(&o, "z"), "1");
    qemu_opts_free(&o);

    o = parse_ok("a=,,", NULL);
    assert_int_equal(o.n, 1);
    assert_string_equal(qemu_opts_get(&o, "a"), ",");
    qemu_opts_free(&o);

    /* '=' inside a value is just a character. */
    o = parse_ok("append=root=/dev/vda console=ttyS0", NULL);
    assert_string_equal(qemu_opts_get(&o, "append"), "root=/dev/vda console=ttyS0");
    qemu_opts_free(&o);
}

static void test_flags(void **state)
{
    struct qemu_opts o = parse_ok("unix,server,nowait,nodelay", "backend");
    assert_string_equal(qemu_opts_get(&o, "backend"), "unix");
    assert_string_equal(qemu_opts_get(&o, "server"), "on");
    assert_string_equal(qemu_opts_get(&o, "wait"), "off");
    assert_string_equal(qemu_opts_get(&o, "delay"), "off");
    assert_null(qemu_opts_get(&o, "nowait"));
    qemu_opts_free(&o);

    /* "no" alone is a flag named "no", not an empty key turned off. */
    o = parse_ok("no", NULL);
    assert_string_equal(qemu_opts_get(&o, "no"), "on");
    qemu_opts_free(&o);
}

static void test_empty_values(void **state)
{
    struct qemu_opts o = parse_ok("", "size");
    assert_int_equal(o.n, 0);
    qemu_opts_free(&o);

    o = parse_ok("a=,b=2", NULL);
    assert_string_equal(qemu_opts_get(&o, "a"), "");
    assert_string_equal(qemu_opts_get(&o, "b"), "2");
    qemu_opts_free(&o);

    /* A trailing comma ends the list. */
    o = parse_ok("a=1,", NULL);
    assert_int_equal(o.n, 1);
    qemu_opts_free(&o);

    /* An empty first element with an implied key is an empty value for that key. */
    o = parse_ok(",a=1", "size");
    assert_string_equal(qemu_opts_get(&o, "size"), "");
    assert_string_equal(qemu_opts_get(&o, "a"), "1");
    qemu_opts_free(&o);

    o = parse_ok(NULL, "size");
    assert_int_equal(o.n, 0);
    qemu_opts_free(&o);
}

static void test_empty_key_rejected(void **state)
{
    static const char *const bad[] = {"=x", "a=1,=2", ",a=1"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct qemu_opts o;
        char err[128] = "";
        assert_int_equal(qemu_opts_parse(&o, bad[i], NULL, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "empty option name"));
        assert_int_equal(o.n, 0);
        assert_null(o.v);
    }
}

static void test_duplicates_last_wins(void **state)
{
    struct qemu_opts o = parse_ok("a=1,b=x,a=2", NULL);
    assert_int_equal(o.n, 3);
    assert_string_equal(qemu_opts_get(&o, "a"), "2");
    qemu_opts_free(&o);

    o = parse_ok("4,cpus=8", "cpus");
    assert_string_equal(qemu_opts_get(&o, "cpus"), "8");
    qemu_opts_free(&o);
}

static void test_bool(void **state)
{
    static const char *const yes[] = {"on", "yes", "true", "ON", "True"};
    static const char *const no[] = {"off", "no", "false", "OFF"};
    bool b;
    for (unsigned i = 0; i < 5; i++) {
        b = false;
        assert_int_equal(qemu_opts_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (unsigned i = 0; i < 4; i++) {
        b = true;
        assert_int_equal(qemu_opts_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    assert_int_equal(qemu_opts_parse_bool("maybe", &b), -EINVAL);
    assert_int_equal(qemu_opts_parse_bool("", &b), -EINVAL);
    assert_int_equal(qemu_opts_parse_bool("1", &b), -EINVAL);

    struct qemu_opts o = parse_ok("x=yes,y=bad", NULL);
    assert_int_equal(qemu_opts_get_bool(&o, "x", false, &b), 0);
    assert_true(b);
    assert_int_equal(qemu_opts_get_bool(&o, "y", false, &b), -EINVAL);
    b = false;
    assert_int_equal(qemu_opts_get_bool(&o, "absent", true, &b), 0);
    assert_true(b);
    qemu_opts_free(&o);
}

static void test_numbers(void **state)
{
    struct qemu_opts o = parse_ok("a=12,b=-1,c=1x,d=99999999999,e=,s=2G,t=4096", NULL);
    unsigned v = 7;
    assert_int_equal(qemu_opts_get_uint(&o, "a", &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(qemu_opts_get_uint(&o, "b", &v), -EINVAL);
    assert_int_equal(qemu_opts_get_uint(&o, "c", &v), -EINVAL);
    assert_int_equal(qemu_opts_get_uint(&o, "d", &v), -ERANGE);
    assert_int_equal(qemu_opts_get_uint(&o, "e", &v), -EINVAL);
    v = 7;
    assert_int_equal(qemu_opts_get_uint(&o, "zz", &v), -ENOENT);
    assert_int_equal(v, 7);
    uint64_t sz;
    assert_int_equal(qemu_opts_get_size(&o, "s", 1, &sz), 0);
    assert_true(sz == 2ULL << 30);
    assert_int_equal(qemu_opts_get_size(&o, "t", 1 << 20, &sz), 0);
    assert_true(sz == 4096ULL << 20);
    assert_int_equal(qemu_opts_get_size(&o, "c", 1, &sz), -EINVAL);
    assert_int_equal(qemu_opts_get_size(&o, "zz", 1, &sz), -ENOENT);
    qemu_opts_free(&o);
}

static void test_unused(void **state)
{
    struct qemu_opts o = parse_ok("2G,slots=2,bogus=1", "size");
    assert_string_equal(qemu_opts_first_unused(&o), "size");
    qemu_opts_get(&o, "size");
    qemu_opts_get(&o, "slots");
    assert_string_equal(qemu_opts_first_unused(&o), "bogus");
    assert_true(qemu_opts_has(&o, "bogus"));
    assert_false(qemu_opts_has(&o, "maxmem"));
    qemu_opts_get(&o, "bogus");
    assert_null(qemu_opts_first_unused(&o));
    qemu_opts_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_implied_key),      cmocka_unit_test(test_comma_escape),
        cmocka_unit_test(test_flags),            cmocka_unit_test(test_empty_values),
        cmocka_unit_test(test_empty_key_rejected), cmocka_unit_test(test_duplicates_last_wins),
        cmocka_unit_test(test_bool),             cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_unused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
