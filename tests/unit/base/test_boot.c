/* Unit tests for direct kernel boot: bzImage zero page, PVH start info, hostile kernel files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "machine/boot.h"
#include "machine/layout.h"

#define RAM (64 * MiB)

static struct guest_mem mem;

static int setup(void **state)
{
    return guest_mem_init(&mem, RAM, NULL, false);
}

static int teardown(void **state)
{
    guest_mem_destroy(&mem);
    return 0;
}

static uint32_t rd32(uint64_t gpa)
{
    uint32_t v;
    assert_int_equal(guest_mem_read(&mem, gpa, &v, 4), 0);
    return v;
}

static uint64_t rd64(uint64_t gpa)
{
    uint64_t v;
    assert_int_equal(guest_mem_read(&mem, gpa, &v, 8), 0);
    return v;
}

/* A bzImage with one setup sector and a 4 KiB protected-mode part filled with 0xC3. */
static uint8_t *make_bzimage(size_t *len, uint16_t version, uint8_t xloadflags)
{
    *len = 2 * 512 + 4096;
    uint8_t *k = calloc(1, *len);
    k[0x1F1] = 1; /* setup_sects */
    k[0x1FE] = 0x55;
    k[0x1FF] = 0xAA;
    k[0x200] = 0xEB;
    k[0x201] = 0x66; /* jump over the header: header ends at 0x268 */
    memcpy(k + 0x202, "HdrS", 4);
    memcpy(k + 0x206, &version, 2);
    k[0x211] = 0x01; /* LOADED_HIGH */
    uint32_t initrd_max = 0x7FFFFFFF, cmdline_size = 2048, init_size = 0x10000;
    memcpy(k + 0x22C, &initrd_max, 4);
    k[0x234] = 1; /* relocatable */
    k[0x236] = xloadflags;
    memcpy(k + 0x238, &cmdline_size, 4);
    uint64_t pref = 0x1000000;
    memcpy(k + 0x258, &pref, 8);
    memcpy(k + 0x260, &init_size, 4);
    memset(k + 1024, 0xC3, 4096);
    return k;
}

static void test_bzimage_64bit_entry_and_zero_page(void **state)
{
    size_t len;
    uint8_t *k = make_bzimage(&len, 0x020F, 0x01);
    uint8_t initrd[5000];
    memset(initrd, 0x5A, sizeof(initrd));
    struct boot_request req = {"test-bzImage", k, len, initrd, sizeof(initrd), "console=ttyS0 quiet",
                               LAYOUT_ACPI};
    struct boot_info bi;
    assert_int_equal(boot_load(&mem, &req, &bi), 0);
    assert_string_equal(bi.format, "bzImage");
    assert_int_equal(bi.mode, BOOT_MODE_LONG64);
    assert_int_equal(bi.entry, 0x1000000 + 0x200);
    assert_int_equal(bi.rsi, LAYOUT_BOOT_PARAMS);
    assert_int_equal(bi.cr3, LAYOUT_PML4);
    /* The kernel body is at pref_address. */
    uint8_t *body = guest_mem_ptr(&mem, 0x1000000, 4096);
    assert_int_equal(body[0], 0xC3);
    assert_int_equal(body[4095], 0xC3);
    /* Zero page: header copied, loader fields filled. */
    uint8_t hdrs[4];
    guest_mem_read(&mem, LAYOUT_BOOT_PARAMS + 0x202, hdrs, 4);
    assert_memory_equal(hdrs, "HdrS", 4);
    uint8_t loader;
    guest_mem_read(&mem, LAYOUT_BOOT_PARAMS + 0x210, &loader, 1);
    assert_int_not_equal(loader, 0);
    uint32_t cmd = rd32(LAYOUT_BOOT_PARAMS + 0x228);
    char text[64];
    guest_mem_read(&mem, cmd, text, 20);
    assert_string_equal(text, "console=ttyS0 quiet");
    uint32_t rd_image = rd32(LAYOUT_BOOT_PARAMS + 0x218), rd_size = rd32(LAYOUT_BOOT_PARAMS + 0x21C);
    assert_int_equal(rd_size, sizeof(initrd));
    assert_int_equal(rd_image % 4096, 0);
    assert_true(rd_image + rd_size <= RAM);
    assert_true(rd_image >= 0x1000000 + 0x10000 || rd_image + rd_size <= 0x1000000);
    uint8_t *rd = guest_mem_ptr(&mem, rd_image, rd_size);
    assert_memory_equal(rd, initrd, sizeof(initrd));
    assert_int_equal(rd64(LAYOUT_BOOT_PARAMS + 0x70), LAYOUT_ACPI);
    /* e820: RAM totals the guest's memory minus the legacy hole. */
    uint8_t n;
    guest_mem_read(&mem, LAYOUT_BOOT_PARAMS + 0x1E8, &n, 1);
    assert_true(n >= 3);
    uint64_t ram = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t base = LAYOUT_BOOT_PARAMS + 0x2D0 + i * 20;
        if (rd32(base + 16) == BOOT_E820_RAM)
            ram += rd64(base + 8);
    }
    assert_int_equal(ram, RAM - (LAYOUT_HIGH_MEM - LAYOUT_EBDA));
    /* Identity paging: PML4[0] -> PDPT, PD entries are 2 MiB pages. */
    assert_int_equal(rd64(LAYOUT_PML4) & ~0xFFFULL, LAYOUT_PDPT);
    assert_int_equal(rd64(LAYOUT_PD + 8), 2 * MiB | 0x83);
    free(k);
}

static void test_bzimage_32bit_entry_without_xlf_kernel_64(void **state)
{
    size_t len;
    uint8_t *k = make_bzimage(&len, 0x020A, 0);
    struct boot_request req = {"old-bzImage", k, len, NULL, 0, NULL, LAYOUT_ACPI};
    struct boot_info bi;
    assert_int_equal(boot_load(&mem, &req, &bi), 0);
    assert_int_equal(bi.mode, BOOT_MODE_PROTECTED32);
    assert_int_equal(bi.entry, 0x1000000);
    free(k);
}

static void test_bzimage_rejections(void **state)
{
    size_t len;
    uint8_t *k = make_bzimage(&len, 0x0204, 0x01);
    struct boot_request req = {"ancient", k, len, NULL, 0, NULL, 0};
    struct boot_info bi;
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOEXEC);
    free(k);
    k = make_bzimage(&len, 0x020F, 0x01);
    k[0x1F1] = 200; /* setup larger than the file */
    req.kernel = k;
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOEXEC);
    k[0x1F1] = 1;
    char *longline = malloc(4096);
    memset(longline, 'a', 4095);
    longline[4095] = 0;
    req.cmdline = longline; /* cmdline_size is 2048 */
    assert_int_equal(boot_load(&mem, &req, &bi), -E2BIG);
    free(longline);
    free(k);
}

/* A PVH ELF64: one PT_LOAD at 1 MiB and a PT_NOTE with the Xen PHYS32_ENTRY note. */
struct pvh_image {
    Elf64_Ehdr eh;
    Elf64_Phdr ph[2];
    struct {
        uint32_t namesz, descsz, type;
        char name[4];
        uint32_t entry;
    } note;
    uint8_t code[64];
};

static void make_pvh(struct pvh_image *img)
{
    memset(img, 0, sizeof(*img));
    memcpy(img->eh.e_ident, ELFMAG, SELFMAG);
    img->eh.e_ident[EI_CLASS] = ELFCLASS64;
    img->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    img->eh.e_machine = EM_X86_64;
    img->eh.e_phoff = offsetof(struct pvh_image, ph);
    img->eh.e_phentsize = sizeof(Elf64_Phdr);
    img->eh.e_phnum = 2;
    img->ph[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = offsetof(struct pvh_image, code),
                              .p_paddr = 0x100000, .p_filesz = 64, .p_memsz = 0x2000};
    img->ph[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = offsetof(struct pvh_image, note),
                              .p_filesz = sizeof(img->note)};
    img->note.namesz = 4;
    img->note.descsz = 4;
    img->note.type = 18;
    memcpy(img->note.name, "Xen", 4);
    img->note.entry = 0x100010;
    memset(img->code, 0x90, sizeof(img->code));
}

static void test_pvh_start_info(void **state)
{
    struct pvh_image img;
    make_pvh(&img);
    uint8_t initrd[100] = {1, 2, 3};
    /* Dirty the bss area first: the loader must zero it. */
    memset(guest_mem_ptr(&mem, 0x100000, 0x2000), 0xEE, 0x2000);
    struct boot_request req = {"pvh.elf", (uint8_t *)&img, sizeof(img), initrd, sizeof(initrd),
                               "hello pvh", LAYOUT_ACPI};
    struct boot_info bi;
    assert_int_equal(boot_load(&mem, &req, &bi), 0);
    assert_string_equal(bi.format, "PVH ELF");
    assert_int_equal(bi.mode, BOOT_MODE_PROTECTED32);
    assert_int_equal(bi.entry, 0x100010);
    assert_int_equal(bi.rbx, LAYOUT_PVH_START_INFO);
    uint8_t *seg = guest_mem_ptr(&mem, 0x100000, 0x2000);
    assert_int_equal(seg[0], 0x90);
    assert_int_equal(seg[64], 0);
    assert_int_equal(seg[0x1FFF], 0);
    uint64_t si = LAYOUT_PVH_START_INFO;
    assert_int_equal(rd32(si), 0x336ec578);
    assert_int_equal(rd32(si + 4), 1);
    assert_int_equal(rd32(si + 12), 1); /* nr_modules */
    assert_int_equal(rd64(si + 32), LAYOUT_ACPI);
    char text[16];
    guest_mem_read(&mem, rd64(si + 24), text, 10);
    assert_string_equal(text, "hello pvh");
    uint64_t mod = rd64(si + 16);
    assert_int_equal(rd64(mod + 8), sizeof(initrd));
    uint8_t *rd = guest_mem_ptr(&mem, rd64(mod), sizeof(initrd));
    assert_memory_equal(rd, initrd, sizeof(initrd));
    uint32_t n = rd32(si + 48);
    uint64_t map = rd64(si + 40), ram = 0;
    for (uint32_t i = 0; i < n; i++)
        if (rd32(map + i * 24 + 16) == 1)
            ram += rd64(map + i * 24 + 8);
    assert_int_equal(ram, RAM - (LAYOUT_HIGH_MEM - LAYOUT_EBDA));
}

static void test_pvh_hostile_files(void **state)
{
    struct pvh_image img;
    struct boot_info bi;
    struct boot_request req = {"bad.elf", (uint8_t *)&img, sizeof(img), NULL, 0, NULL, 0};

    make_pvh(&img);
    img.note.type = 17; /* no PHYS32_ENTRY note */
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOEXEC);

    make_pvh(&img);
    img.eh.e_phoff = 1ULL << 40; /* program headers past the end of the file */
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOEXEC);

    make_pvh(&img);
    img.note.namesz = 0xFFFFFFF0; /* note runs off its segment */
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOEXEC);

    make_pvh(&img);
    img.ph[0].p_paddr = RAM - 0x100; /* segment past the end of RAM */
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOMEM);

    make_pvh(&img);
    img.ph[0].p_filesz = 1ULL << 62; /* more file than there is */
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOEXEC);

    make_pvh(&img);
    img.eh.e_machine = EM_AARCH64;
    assert_int_equal(boot_load(&mem, &req, &bi), -ENOEXEC);

    uint8_t junk[512] = "#!/bin/sh\necho not a kernel\n";
    struct boot_request jr = {"script.sh", junk, sizeof(junk), NULL, 0, NULL, 0};
    assert_int_equal(boot_load(&mem, &jr, &bi), -ENOEXEC);
}

static void test_memmap_with_pci_hole(void **state)
{
    struct guest_mem big;
    assert_int_equal(guest_mem_init(&big, 4 * GiB, NULL, false), 0);
    struct boot_memmap_entry map[BOOT_MEMMAP_MAX];
    unsigned n = boot_memmap(&big, map);
    uint64_t ram = 0;
    bool above_4g = false;
    for (unsigned i = 0; i < n; i++) {
        if (map[i].type != BOOT_E820_RAM)
            continue;
        ram += map[i].size;
        /* No RAM in the PCI hole. */
        assert_true(map[i].addr + map[i].size <= LAYOUT_LOWMEM_MAX || map[i].addr >= LAYOUT_4G);
        above_4g |= map[i].addr == LAYOUT_4G;
    }
    assert_true(above_4g);
    assert_int_equal(ram, 4 * GiB - (LAYOUT_HIGH_MEM - LAYOUT_EBDA));
    guest_mem_destroy(&big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bzimage_64bit_entry_and_zero_page),
        cmocka_unit_test(test_bzimage_32bit_entry_without_xlf_kernel_64),
        cmocka_unit_test(test_bzimage_rejections),
        cmocka_unit_test(test_pvh_start_info),
        cmocka_unit_test(test_pvh_hostile_files),
        cmocka_unit_test(test_memmap_with_pci_hole),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
