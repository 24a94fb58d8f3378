/* -accel auto (accel_pick_auto): kvm only when /dev/kvm works AND the CPU has VT-x/SVM; a PVM
 * host (a working /dev/kvm without them) gets the software CPU. The accelerators are stubs
 * whose probe results the test chooses. Kept with the irqchip tests: both serve -accel emu. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "accel/accel.h"

static int kvm_probe_result;

static int stub_kvm_probe(char *why, size_t len)
{
    snprintf(why, len, "stub");
    return kvm_probe_result;
}

static int stub_emu_probe(char *why, size_t len) { return 0; }

const struct accel_ops accel_kvm_ops = {.name = "kvm", .probe = stub_kvm_probe};
const struct accel_ops accel_emu_ops = {.name = "emu", .probe = stub_emu_probe};

static bool host_has_vmx_or_svm(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    bool r = false;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "flags", 5)) {
            r = strstr(line, " vmx") || strstr(line, " svm");
            break;
        }
    if (f)
        fclose(f);
    return r;
}

static void test_auto_kvm_works(void **state)
{
    kvm_probe_result = 0;
    const struct accel_ops *want = host_has_vmx_or_svm() ? &accel_kvm_ops : &accel_emu_ops;
    assert_ptr_equal(accel_pick_auto(), want);
    assert_ptr_equal(accel_find("auto"), want);
    assert_ptr_equal(accel_find(""), want);
}

static void test_auto_kvm_broken(void **state)
{
    kvm_probe_result = -2;
    assert_ptr_equal(accel_pick_auto(), &accel_emu_ops);
}

static void test_names(void **state)
{
    assert_ptr_equal(accel_find("kvm"), &accel_kvm_ops);
    assert_ptr_equal(accel_find("emu"), &accel_emu_ops);
    assert_ptr_equal(accel_find("tcg"), &accel_emu_ops);
    assert_null(accel_find("xen"));
}

int main(void)
{
    printf("host CPU has VT-x/SVM: %s\n", host_has_vmx_or_svm() ? "yes" : "no");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_kvm_works),
        cmocka_unit_test(test_auto_kvm_broken),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
