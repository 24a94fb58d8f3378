/* Checks what a Linux boot protocol loader must hand a 64-bit bzImage: boot_params, e820, cmdline, initrd. */
#include "rt/rt.h"

const char guest_name[] = "bzimage";

#define MiB (1UL << 20)
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_BOOT_FLAG 0x1fe
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_INIT_SIZE 0x260

static uint32_t fnv1a32(const uint8_t *p, uint64_t n)
{
    uint32_t h = 0x811C9DC5u;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x01000193u;
    return h;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

void guest_main(void)
{
    const uint8_t *bp = (const uint8_t *)rt_boot.boot_params;
    CHECK(bp, "not entered through the Linux boot protocol");
    rt_printf("boot_params at %p, cmdline \"%s\"\n", bp, rt_boot.cmdline);
#define U8(o) (*(const uint8_t *)(bp + (o)))
#define U16(o) (*(const uint16_t *)(bp + (o)))
#define U32(o) (*(const uint32_t *)(bp + (o)))
    CHECK(!memcmp(bp + BP_HEADER, "HdrS", 4), "boot_params has no setup header (\"HdrS\" missing)");
    CHECK(U16(BP_BOOT_FLAG) == 0xAA55, "boot_flag is %x", U16(BP_BOOT_FLAG));
    CHECK(U16(BP_VERSION) == 0x020F, "header version %x, the image says 0x20f", U16(BP_VERSION));
    CHECK(U8(BP_SETUP_SECTS) == 1, "setup_sects %u, the image says 1", U8(BP_SETUP_SECTS));
    CHECK(U8(BP_TYPE_OF_LOADER) != 0, "type_of_loader is 0: the loader must identify itself");
    CHECK(U8(BP_LOADFLAGS) & 0x01, "loadflags %x lacks LOADED_HIGH", U8(BP_LOADFLAGS));
    extern char __image_start[], __image_end[];
    CHECK((uint64_t)__image_start == 0x1000000, "running at %p, not at pref_address", __image_start);

    /* Command line: cmd_line_ptr must point at the -append text, which carries the expectations. */
    uint64_t cmd = U32(BP_CMD_LINE_PTR) | (uint64_t)U32(BP_EXT_CMD_LINE_PTR) << 32;
    CHECK(cmd, "cmd_line_ptr is 0");
    char marker[32];
    CHECK(cmdline_get("marker", marker, sizeof(marker)) >= 0 && !strcmp(marker, "bzimage-cmdline"),
          "marker=bzimage-cmdline missing from the command line \"%s\"", rt_boot.cmdline);
    CHECK(!overlaps(cmd, strlen(rt_boot.cmdline) + 1, (uint64_t)__image_start,
                    (uint64_t)(__image_end - __image_start)),
          "command line at %lx overlaps the kernel", cmd);
    uint64_t expect_mb, want_sum;
    CHECK(cmdline_get_u64("expect_mem", &expect_mb), "no expect_mem= on the command line");
    CHECK(cmdline_get_u64("initrd_sum", &want_sum), "no initrd_sum= on the command line");

    /* e820 */
    CHECK(U8(BP_E820_ENTRIES) > 0 && U8(BP_E820_ENTRIES) <= 128, "e820_entries is %u", U8(BP_E820_ENTRIES));
    uint64_t ram = 0;
    bool kernel_in_ram = false;
    for (unsigned i = 0; i < rt_boot.memmap_entries; i++) {
        const struct rt_mem_entry *e = &rt_boot.memmap[i];
        if (e->type != RT_MEM_RAM)
            continue;
        ram += e->size;
        CHECK(e->addr + e->size <= 0xC0000000UL || e->addr >= 0x100000000UL,
              "e820 RAM %lx+%lx overlaps the PCI hole", e->addr, e->size);
        if (e->addr <= 0x1000000 && e->addr + e->size >= 0x1000000 + U32(BP_INIT_SIZE))
            kernel_in_ram = true;
    }
    rt_printf("e820: %u entries, %lu KiB RAM\n", U8(BP_E820_ENTRIES), ram >> 10);
    CHECK(ram <= expect_mb * MiB && ram >= expect_mb * MiB - MiB, "e820 RAM totals %lu KiB, expected %lu MiB",
          ram >> 10, expect_mb);
    CHECK(kernel_in_ram, "the kernel's init_size area at 0x1000000 is not inside e820 RAM");

    /* initrd */
    uint64_t rd = U32(BP_RAMDISK_IMAGE) | (uint64_t)U32(BP_EXT_RAMDISK_IMAGE) << 32;
    uint64_t rdlen = U32(BP_RAMDISK_SIZE) | (uint64_t)U32(BP_EXT_RAMDISK_SIZE) << 32;
    rt_printf("initrd at %lx, %lu bytes\n", rd, rdlen);
    CHECK(rd && rdlen, "no initrd in boot_params (ramdisk_image %lx size %lu)", rd, rdlen);
    CHECK(rd + rdlen <= 0x80000000UL, "initrd %lx+%lx is above initrd_addr_max 0x7fffffff", rd, rdlen);
    CHECK(!overlaps(rd, rdlen, 0x1000000, U32(BP_INIT_SIZE)), "initrd overlaps the kernel");
    CHECK(!overlaps(rd, rdlen, (uint64_t)bp, 4096), "initrd overlaps boot_params");
    uint64_t want_len;
    if (cmdline_get_u64("initrd_size", &want_len))
        CHECK(rdlen == want_len, "ramdisk_size %lu, the initrd has %lu bytes", rdlen, want_len);
    uint32_t sum = fnv1a32((const uint8_t *)rd, rdlen);
    CHECK(sum == want_sum, "initrd checksum %x, expected %lx", sum, want_sum);
}
