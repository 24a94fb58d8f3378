/* Unit tests for guest RAM: the PCI hole split and bounds-checked access. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "machine/guest_mem.h"
#include "machine/layout.h"

static void test_small_guest_is_one_region(void **state)
{
    struct guest_mem m;
    assert_int_equal(guest_mem_init(&m, 64 * MiB, NULL, false), 0);
    assert_int_equal(m.nregions, 1);
    assert_int_equal(guest_mem_low_size(&m), 64 * MiB);
    assert_int_equal(guest_mem_high_size(&m), 0);
    assert_non_null(guest_mem_ptr(&m, 0, 64 * MiB));
    assert_null(guest_mem_ptr(&m, 0, 64 * MiB + 1));
    assert_null(guest_mem_ptr(&m, 64 * MiB, 1));
    assert_null(guest_mem_ptr(&m, ~0ULL, 2)); /* wrap-around */
    assert_null(guest_mem_ptr(&m, 1, ~0ULL));
    guest_mem_destroy(&m);
}

static void test_large_guest_splits_around_pci_hole(void **state)
{
    struct guest_mem m;
    assert_int_equal(guest_mem_init(&m, 4 * GiB, NULL, false), 0);
    assert_int_equal(m.nregions, 2);
    assert_int_equal(guest_mem_low_size(&m), LAYOUT_LOWMEM_MAX);
    assert_int_equal(guest_mem_high_size(&m), 4 * GiB - LAYOUT_LOWMEM_MAX);
    assert_int_equal(m.regions[1].gpa, LAYOUT_4G);
    /* The hole is not RAM. */
    assert_null(guest_mem_ptr(&m, LAYOUT_LOWMEM_MAX, 1));
    assert_null(guest_mem_ptr(&m, LAYOUT_IOAPIC, 4));
    uint8_t *hi = guest_mem_ptr(&m, LAYOUT_4G, 8);
    assert_non_null(hi);
    /* Regions are slices of one mapping: the first byte above 4G follows the last below 3G. */
    assert_ptr_equal(hi, (uint8_t *)guest_mem_ptr(&m, LAYOUT_LOWMEM_MAX - 1, 1) + 1);
    assert_null(guest_mem_ptr(&m, LAYOUT_4G + guest_mem_high_size(&m) - 4, 8));
    guest_mem_destroy(&m);
}

static void test_read_write_checks_every_byte(void **state)
{
    static uint8_t ram[8192];
    struct guest_mem m;
    guest_mem_init_buffer(&m, ram, sizeof(ram));
    uint8_t buf[16] = "0123456789abcde";
    assert_int_equal(guest_mem_write(&m, 100, buf, 16), 0);
    assert_memory_equal(ram + 100, buf, 16);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(guest_mem_read(&m, 100, buf, 16), 0);
    assert_memory_equal(buf, "0123456789abcde", 16);
    /* Partly outside: fails and copies nothing. */
    memset(ram + 8190, 0xAA, 2);
    assert_int_equal(guest_mem_write(&m, 8190, "xyz", 3), -EFAULT);
    assert_int_equal(ram[8190], 0xAA);
    assert_int_equal(guest_mem_read(&m, ~0ULL - 1, buf, 4), -EFAULT);
}

static void test_clear_zeroes_ram(void **state)
{
    struct guest_mem m;
    assert_int_equal(guest_mem_init(&m, 4 * MiB, NULL, false), 0);
    uint32_t v = 0xdeadbeef;
    assert_int_equal(guest_mem_write(&m, 0x1000, &v, 4), 0);
    assert_int_equal(guest_mem_clear(&m), 0);
    assert_int_equal(guest_mem_read(&m, 0x1000, &v, 4), 0);
    assert_int_equal(v, 0);
    guest_mem_destroy(&m);
}

/* -mem-path: RAM in a file created (and unlinked at once) in the given directory, as on
 * hugetlbfs; /dev/shm stands in for it here. */
static void test_mem_path_backs_ram_with_an_unlinked_file(void **state)
{
    struct guest_mem m;
    assert_int_equal(guest_mem_init(&m, 8 * MiB, "/dev/shm", true), 0);
    char link[64], target[256] = {0};
    snprintf(link, sizeof(link), "/proc/self/fd/%d", m.fd);
    assert_true(readlink(link, target, sizeof(target) - 1) > 0);
    assert_non_null(strstr(target, "/dev/shm/vmkit-ram."));
    assert_non_null(strstr(target, "(deleted)"));
    struct stat st;
    assert_int_equal(fstat(m.fd, &st), 0);
    assert_int_equal(st.st_size, 8 * MiB);
    assert_true((uint64_t)st.st_blocks * 512 >= 8 * MiB); /* -mem-prealloc allocated it all */
    uint32_t v = 0x12345678;
    assert_int_equal(guest_mem_write(&m, 4 * MiB, &v, 4), 0);
    assert_int_equal(pread(m.fd, &v, 4, 4 * MiB), 4);
    assert_int_equal(v, 0x12345678);
    guest_mem_destroy(&m);
    assert_int_equal(guest_mem_init(&m, 8 * MiB, "/nonexistent-dir", false), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_guest_is_one_region),
        cmocka_unit_test(test_large_guest_splits_around_pci_hole),
        cmocka_unit_test(test_read_write_checks_every_byte),
        cmocka_unit_test(test_clear_zeroes_ram),
        cmocka_unit_test(test_mem_path_backs_ram_with_an_unlinked_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
