/* Unit tests for -chardev parsing: QEMU spellings become chardev_open() specs, keyed by id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/chardev_opts.h"
#include "config/vm_config.h"
#include <errno.h>
#include <string.h>

static void test_backends(void **state)
{
    (void)state;
    struct vm_config c;
    vm_config_init(&c);
    assert_int_equal(vm_config_add_chardev(&c, "stdio,id=a"), 0);
    assert_int_equal(vm_config_add_chardev(&c, "pty,id=b"), 0);
    assert_int_equal(vm_config_add_chardev(&c, "null,id=c"), 0);
    assert_int_equal(vm_config_add_chardev(&c, "file,id=d,path=/tmp/x,,y"), 0);
    assert_int_equal(vm_config_add_chardev(&c, "socket,id=e,path=/tmp/s,,1,server=on,wait=off"), 0);
    assert_int_equal(vm_config_add_chardev(&c, "socket,id=f,path=/tmp/t"), 0);
    assert_int_equal(vm_config_add_chardev(&c, "socket,id=g,path=/tmp/u,server=on"), 0);
    assert_string_equal(vm_config_chardev_spec(&c, "a"), "stdio");
    assert_string_equal(vm_config_chardev_spec(&c, "b"), "pty");
    assert_string_equal(vm_config_chardev_spec(&c, "c"), "null");
    assert_string_equal(vm_config_chardev_spec(&c, "d"), "file:/tmp/x,y");
    assert_string_equal(vm_config_chardev_spec(&c, "e"), "unix:/tmp/s,,1,server,nowait");
    assert_string_equal(vm_config_chardev_spec(&c, "f"), "unix:/tmp/t");
    assert_string_equal(vm_config_chardev_spec(&c, "g"), "unix:/tmp/u,server");
    assert_null(vm_config_chardev_spec(&c, "zz"));
    assert_true(vm_config_chardev_claim(&c, "a"));
    assert_false(vm_config_chardev_claim(&c, "a"));
    assert_false(vm_config_chardev_claim(&c, "zz"));
    vm_config_chardev_free(&c);
    assert_null(vm_config_chardev_spec(&c, "a"));
}

static void test_errors(void **state)
{
    (void)state;
    struct vm_config c;
    vm_config_init(&c);
    assert_int_equal(vm_config_add_chardev(&c, "stdio"), -EINVAL);          /* no id */
    assert_int_equal(vm_config_add_chardev(&c, "id=x"), -EINVAL);           /* no backend */
    assert_int_equal(vm_config_add_chardev(&c, "serial,id=x,path=/dev/ttyS0"), -EINVAL);
    assert_int_equal(vm_config_add_chardev(&c, "file,id=x"), -EINVAL);      /* no path */
    assert_int_equal(vm_config_add_chardev(&c, "socket,id=x,host=h,port=1"), -EINVAL);
    assert_int_equal(vm_config_add_chardev(&c, "socket,id=x,path=p,server=maybe"), -EINVAL);
    assert_int_equal(vm_config_add_chardev(&c, "null,id=x,bogus=1"), -EINVAL);
    assert_null(vm_config_chardev_spec(&c, "x"));
    assert_int_equal(vm_config_add_chardev(&c, "null,id=x"), 0);
    assert_int_equal(vm_config_add_chardev(&c, "pty,id=x"), -EINVAL);       /* duplicate */
    assert_string_equal(vm_config_chardev_spec(&c, "x"), "null");
    vm_config_chardev_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backends),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
