/* Checks that the command line arrives intact and the memory map matches the configured RAM size. */
#include "rt/rt.h"

const char guest_name[] = "cmdline_memmap";

#define MiB (1UL << 20)
#define HOLE_START 0xC0000000UL
#define FOUR_G 0x100000000UL

void guest_main(void)
{
    rt_printf("cmdline: \"%s\"\n", rt_boot.cmdline);
    char marker[64];
    if (cmdline_get("marker", marker, sizeof(marker)) < 0)
        test_fail("no marker= on the command line \"%s\"", rt_boot.cmdline);
    CHECK(!strcmp(marker, "hello-world-123"), "marker is \"%s\", want \"hello-world-123\"", marker);
    uint64_t expect_mb;
    if (!cmdline_get_u64("expect_mem", &expect_mb) || !expect_mb)
        test_fail("no expect_mem=<MiB> on the command line \"%s\"", rt_boot.cmdline);

    CHECK(rt_boot.memmap_entries > 0, "the loader gave no memory map");
    CHECK(rt_boot.memmap_total <= RT_MAX_MEMMAP, "memory map has %u entries, more than %u",
          rt_boot.memmap_total, RT_MAX_MEMMAP);
    uint64_t ram = 0, above4g = 0, top = 0;
    bool low_ram = false;
    for (unsigned i = 0; i < rt_boot.memmap_entries; i++) {
        const struct rt_mem_entry *e = &rt_boot.memmap[i];
        rt_printf("  %016lx-%016lx type %u\n", e->addr, e->addr + e->size - 1, e->type);
        CHECK(e->size && e->addr + e->size > e->addr, "entry %u (%lx+%lx) is empty or wraps", i, e->addr,
              e->size);
        if (e->type != RT_MEM_RAM)
            continue;
        CHECK(e->addr + e->size <= HOLE_START || e->addr >= FOUR_G,
              "RAM entry %lx-%lx overlaps the PCI hole %lx-%lx", e->addr, e->addr + e->size - 1, HOLE_START,
              FOUR_G - 1);
        for (unsigned j = 0; j < i; j++) {
            const struct rt_mem_entry *f = &rt_boot.memmap[j];
            CHECK(f->addr >= e->addr + e->size || e->addr >= f->addr + f->size,
                  "entries %u and %u overlap", j, i);
        }
        if (e->addr == 0)
            low_ram = true;
        ram += e->size;
        if (e->addr >= FOUR_G)
            above4g += e->size;
        if (e->addr + e->size > top)
            top = e->addr + e->size;
    }
    uint64_t expect = expect_mb * MiB;
    rt_printf("RAM: %lu KiB (expected %lu MiB), %lu MiB above 4 GiB\n", ram >> 10, expect_mb, above4g >> 20);
    CHECK(low_ram, "no RAM entry starts at address 0");
    /* Firmware areas below 1 MiB (EBDA, BIOS ROM) may be carved out of the configured size. */
    CHECK(ram <= expect && ram >= expect - MiB, "RAM totals %lu KiB, want %lu MiB minus at most 1 MiB",
          ram >> 10, expect_mb);
    if (expect > HOLE_START)
        CHECK(above4g && top > FOUR_G, "%lu MiB does not fit below the PCI hole but no RAM is above 4 GiB",
              expect_mb);
    else
        CHECK(!above4g, "%lu MiB fits below the PCI hole but RAM is mapped above 4 GiB", expect_mb);
    /* The RAM we were loaded into must be in the map. */
    extern char __image_start[], __image_end[];
    bool covered = false;
    for (unsigned i = 0; i < rt_boot.memmap_entries; i++) {
        const struct rt_mem_entry *e = &rt_boot.memmap[i];
        if (e->type == RT_MEM_RAM && e->addr <= (uint64_t)__image_start && e->addr + e->size >= (uint64_t)__image_end)
            covered = true;
    }
    CHECK(covered, "the guest image at %p-%p is not inside a RAM entry", __image_start, __image_end);
}
