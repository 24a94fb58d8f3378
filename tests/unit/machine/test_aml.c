/* Unit tests for the AML encoder: byte-exact encodings checked against the ACPI 6.x grammar. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "machine/aml.h"

#define EXPECT_BYTES(a, ...)                                                                       \
    do {                                                                                           \
        static const uint8_t exp_[] = {__VA_ARGS__};                                               \
        assert_int_equal(aml_finish(a), 0);                                                        \
        assert_int_equal((a)->len, sizeof(exp_));                                                  \
        assert_memory_equal((a)->data, exp_, sizeof(exp_));                                        \
    } while (0)

static void check_pkglen(size_t body, const uint8_t *exp, int n)
{
    uint8_t out[4] = {0};
    assert_int_equal(aml_pkglen_encode(body, out), n);
    assert_memory_equal(out, exp, (size_t)n);
}

static void test_pkglen_forms(void **state)
{
    /* The value counts its own bytes: body 62 is the largest 1-byte form (63 = 0x3F). */
    check_pkglen(0, (const uint8_t[]){0x01}, 1);
    check_pkglen(62, (const uint8_t[]){0x3F}, 1);
    /* body 63 -> 2-byte form, total 65 = 0x041: low nibble in byte 0, rest in byte 1. */
    check_pkglen(63, (const uint8_t[]){0x41, 0x04}, 2);
    check_pkglen(0xFFD, (const uint8_t[]){0x4F, 0xFF}, 2);
    check_pkglen(0xFFE, (const uint8_t[]){0x81, 0x00, 0x01}, 3); /* total 0x1001 */
    check_pkglen(0xFFFFC, (const uint8_t[]){0x8F, 0xFF, 0xFF}, 3);
    check_pkglen(0xFFFFD, (const uint8_t[]){0xC1, 0x00, 0x00, 0x01}, 4); /* total 0x100001 */
    check_pkglen(0x0FFFFFFB, (const uint8_t[]){0xCF, 0xFF, 0xFF, 0xFF}, 4);
    uint8_t out[4];
    assert_int_equal(aml_pkglen_encode(0x0FFFFFFC, out), -EINVAL);
}

static void check_name(const char *path, const uint8_t *exp, int n)
{
    uint8_t out[64];
    assert_int_equal(aml_namestring_encode(path, out, sizeof(out)), n);
    assert_memory_equal(out, exp, (size_t)n);
}

static void test_name_paths(void **state)
{
    check_name("_HID", (const uint8_t[]){'_', 'H', 'I', 'D'}, 4);
    check_name("RTC", (const uint8_t[]){'R', 'T', 'C', '_'}, 4);
    check_name("\\_SB", (const uint8_t[]){0x5C, '_', 'S', 'B', '_'}, 5);
    check_name("\\_SB.PCI0", (const uint8_t[]){0x5C, 0x2E, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'},
               10);
    check_name("\\_SB.PCI0.S08",
               (const uint8_t[]){0x5C, 0x2F, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'S', '0',
                                 '8', '_'},
               15);
    check_name("^^PCI0", (const uint8_t[]){0x5E, 0x5E, 'P', 'C', 'I', '0'}, 6);
    check_name("", (const uint8_t[]){0x00}, 1);
    check_name("\\", (const uint8_t[]){0x5C, 0x00}, 2);

    uint8_t out[64];
    const char *bad[] = {"1ABC", "ABCDE", "abc", "A..B", "A.", ".A", "\\^A", "A-B"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(aml_namestring_encode(bad[i], out, sizeof(out)), -EINVAL);
    assert_int_equal(aml_namestring_encode("\\_SB.PCI0", out, 9), -ENOSPC);
}

static void check_int(uint64_t v, const uint8_t *exp, size_t n)
{
    struct aml a;
    aml_init(&a);
    aml_integer(&a, v);
    assert_int_equal(aml_finish(&a), 0);
    assert_int_equal(a.len, n);
    assert_memory_equal(a.data, exp, n);
    aml_release(&a);
}

static void test_integers(void **state)
{
    check_int(0, (const uint8_t[]){0x00}, 1);       /* ZeroOp */
    check_int(1, (const uint8_t[]){0x01}, 1);       /* OneOp */
    check_int(2, (const uint8_t[]){0x0A, 0x02}, 2); /* BytePrefix */
    check_int(0xFF, (const uint8_t[]){0x0A, 0xFF}, 2);
    check_int(0x100, (const uint8_t[]){0x0B, 0x00, 0x01}, 3); /* WordPrefix */
    check_int(0xFFFF, (const uint8_t[]){0x0B, 0xFF, 0xFF}, 3);
    check_int(0x10000, (const uint8_t[]){0x0C, 0x00, 0x00, 0x01, 0x00}, 5); /* DWordPrefix */
    check_int(0xFFFFFFFF, (const uint8_t[]){0x0C, 0xFF, 0xFF, 0xFF, 0xFF}, 5);
    check_int(0x100000000ULL, (const uint8_t[]){0x0E, 0, 0, 0, 0, 1, 0, 0, 0}, 9); /* QWordPrefix */
    check_int(0x1122334455667788ULL,
              (const uint8_t[]){0x0E, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}, 9);
}

static void test_eisaid_and_string(void **state)
{
    assert_int_equal(aml_eisaid("PNP0A08"), 0x080AD041);
    assert_int_equal(aml_eisaid("PNP0501"), 0x0105D041);
    assert_int_equal(aml_eisaid("PNP0B00"), 0x000BD041);
    assert_int_equal(aml_eisaid("pnp0a08"), 0);
    assert_int_equal(aml_eisaid("PNP0A0"), 0);
    assert_int_equal(aml_eisaid("PNP0A0G"), 0);

    struct aml a;
    aml_init(&a);
    aml_string(&a, "ab");
    EXPECT_BYTES(&a, 0x0D, 'a', 'b', 0x00);
    aml_release(&a);
}

static void test_name_device_scope(void **state)
{
    struct aml a;
    aml_init(&a);
    aml_scope_begin(&a, "\\_SB");
    aml_device_begin(&a, "RTC");
    aml_name_decl(&a, "_UID");
    aml_integer(&a, 1);
    aml_end(&a);
    aml_end(&a);
    /* Device body: name(4) + NameOp(1) + "_UID"(4) + OneOp(1) = 10 -> PkgLength 11.
     * Scope body: "\_SB_"(5) + device (2 + 1 + 10 = 13) = 18 -> PkgLength 19. */
    EXPECT_BYTES(&a, 0x10, 19, 0x5C, '_', 'S', 'B', '_', 0x5B, 0x82, 11, 'R', 'T', 'C', '_', 0x08,
                 '_', 'U', 'I', 'D', 0x01);
    aml_release(&a);
}

static void test_method_return(void **state)
{
    struct aml a;
    aml_init(&a);
    aml_method_begin(&a, "_STA", 0, false);
    aml_return(&a);
    aml_integer(&a, 0x0F);
    aml_end(&a);
    EXPECT_BYTES(&a, 0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xA4, 0x0A, 0x0F);
    aml_release(&a);

    aml_init(&a);
    aml_method_begin(&a, "FOO", 2, true);
    aml_end(&a);
    EXPECT_BYTES(&a, 0x14, 0x06, 'F', 'O', 'O', '_', 0x0A);
    aml_release(&a);

    aml_init(&a);
    aml_method_begin(&a, "BAR", 8, false);
    assert_int_equal(aml_finish(&a), -EINVAL);
    aml_release(&a);
}

static void test_package_and_buffer(void **state)
{
    struct aml a;
    aml_init(&a);
    aml_package_begin(&a, 2);
    aml_integer(&a, 1);
    aml_integer(&a, 2);
    aml_end(&a);
    EXPECT_BYTES(&a, 0x12, 0x05, 0x02, 0x01, 0x0A, 0x02);
    aml_release(&a);

    /* BufferSize is emitted as an integer in front of the bytes and counted in PkgLength. */
    aml_init(&a);
    aml_buffer_begin(&a);
    aml_bytes(&a, "xyz", 3);
    aml_end(&a);
    EXPECT_BYTES(&a, 0x11, 0x06, 0x0A, 0x03, 'x', 'y', 'z');
    aml_release(&a);

    /* A 100-byte buffer needs the 2-byte PkgLength: body 2 + 100, total 104 = 0x68. */
    aml_init(&a);
    aml_buffer_begin(&a);
    uint8_t big[100];
    memset(big, 0xAB, sizeof(big));
    aml_bytes(&a, big, sizeof(big));
    aml_end(&a);
    assert_int_equal(aml_finish(&a), 0);
    assert_int_equal(a.len, 1 + 2 + 2 + 100);
    assert_int_equal(a.data[0], 0x11);
    assert_int_equal(a.data[1], 0x48);
    assert_int_equal(a.data[2], 0x06);
    assert_int_equal(a.data[3], 0x0A);
    assert_int_equal(a.data[4], 100);
    assert_memory_equal(a.data + 5, big, sizeof(big));
    aml_release(&a);

    aml_init(&a);
    aml_package_begin(&a, 256); /* needs VarPackageOp: refused */
    assert_int_equal(aml_finish(&a), -EINVAL);
    aml_release(&a);
}

static void test_resource_descriptors(void **state)
{
    struct aml a;
    aml_init(&a);
    aml_res_io(&a, 0x3F8, 0x3F8, 1, 8);
    EXPECT_BYTES(&a, 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08);
    aml_release(&a);

    aml_init(&a);
    aml_res_irq_noflags(&a, 12);
    aml_res_end(&a);
    EXPECT_BYTES(&a, 0x22, 0x00, 0x10, 0x79, 0x00);
    aml_release(&a);

    aml_init(&a);
    aml_res_interrupt(&a, true, false, true, true, 0x10);
    EXPECT_BYTES(&a, 0x89, 0x06, 0x00, 0x0D, 0x01, 0x10, 0x00, 0x00, 0x00);
    aml_release(&a);

    aml_init(&a);
    aml_res_word_bus_number(&a, 0, 255);
    EXPECT_BYTES(&a, 0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0, 0, 0x00, 0x00, 0xFF, 0x00, 0, 0, 0x00,
                 0x01);
    aml_release(&a);

    aml_init(&a);
    aml_res_word_io(&a, 0x1000, 0xFFFF);
    EXPECT_BYTES(&a, 0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0, 0, 0x00, 0x10, 0xFF, 0xFF, 0, 0, 0x00,
                 0xF0);
    aml_release(&a);

    aml_init(&a);
    aml_res_dword_memory(&a, AML_NONCACHEABLE, 0xC0000000, 0xDFFFFFFF);
    EXPECT_BYTES(&a, 0x87, 0x17, 0x00, 0x00, 0x0C, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xC0, 0xFF,
                 0xFF, 0xFF, 0xDF, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x20);
    aml_release(&a);

    aml_init(&a);
    aml_res_qword_memory(&a, AML_CACHEABLE, 0x800000000ULL, 0xFFFFFFFFFULL);
    assert_int_equal(aml_finish(&a), 0);
    assert_int_equal(a.len, 46);
    static const uint8_t qhead[6] = {0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x03};
    assert_memory_equal(a.data, qhead, 6);
    static const uint8_t qmin[8] = {0, 0, 0, 0, 8, 0, 0, 0},
                         qmax[8] = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0, 0, 0},
                         qlen[8] = {0, 0, 0, 0, 8, 0, 0, 0};
    assert_memory_equal(a.data + 14, qmin, 8);
    assert_memory_equal(a.data + 22, qmax, 8);
    assert_memory_equal(a.data + 38, qlen, 8);
    aml_release(&a);

    aml_init(&a);
    aml_res_memory32_fixed(&a, true, 0xE0000000, 0x10000000);
    EXPECT_BYTES(&a, 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xE0, 0x00, 0x00, 0x00, 0x10);
    aml_release(&a);
}

static void test_errors_are_sticky(void **state)
{
    struct aml a;
    aml_init(&a);
    aml_end(&a); /* nothing open */
    assert_int_equal(aml_finish(&a), -EINVAL);
    aml_integer(&a, 5);
    assert_int_equal(a.len, 0); /* later calls do nothing */
    aml_release(&a);

    aml_init(&a);
    aml_device_begin(&a, "DEV");
    assert_int_equal(aml_finish(&a), -EINVAL); /* left open */
    aml_release(&a);

    aml_init(&a);
    aml_name_decl(&a, "bad name");
    assert_int_equal(aml_finish(&a), -EINVAL);
    aml_release(&a);

    aml_init(&a);
    aml_res_irq_noflags(&a, 16);
    assert_int_equal(aml_finish(&a), -EINVAL);
    aml_release(&a);

    aml_init(&a);
    aml_res_dword_memory(&a, AML_NONCACHEABLE, 0x2000, 0x1000);
    assert_int_equal(aml_finish(&a), -EINVAL);
    aml_release(&a);

    aml_init(&a);
    for (int i = 0; i < AML_MAX_DEPTH + 1; i++)
        aml_package_begin(&a, 1);
    assert_int_equal(aml_finish(&a), -EINVAL);
    aml_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkglen_forms),       cmocka_unit_test(test_name_paths),
        cmocka_unit_test(test_integers),           cmocka_unit_test(test_eisaid_and_string),
        cmocka_unit_test(test_name_device_scope),  cmocka_unit_test(test_method_return),
        cmocka_unit_test(test_package_and_buffer), cmocka_unit_test(test_resource_descriptors),
        cmocka_unit_test(test_errors_are_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
