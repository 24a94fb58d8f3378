/* From the loader's hand-off (PVH start info or Linux boot_params) to guest_main(). */
#include "rt.h"

struct rt_boot rt_boot;
static char cmdline_buf[4096];
#define MAPPED_LIMIT 0x100000000UL /* our page tables map only the first 4 GiB */

/* Copies a NUL-terminated string the loader left in memory; never reads past 4 GiB. */
static void copy_cmdline(uint64_t pa, uint64_t max_len)
{
    size_t n = 0;
    if (pa && pa < MAPPED_LIMIT) {
        const char *s = (const char *)pa;
        while (n + 1 < sizeof(cmdline_buf) && n < max_len && pa + n < MAPPED_LIMIT && s[n]) {
            cmdline_buf[n] = s[n];
            n++;
        }
    }
    cmdline_buf[n] = '\0';
    rt_boot.cmdline = cmdline_buf;
}

static void add_mem(uint64_t addr, uint64_t size, uint32_t type)
{
    rt_boot.memmap_total++;
    if (rt_boot.memmap_entries < RT_MAX_MEMMAP)
        rt_boot.memmap[rt_boot.memmap_entries++] = (struct rt_mem_entry){ addr, size, type };
}

static void run_guest(void)
{
    guest_main();
    test_pass();
}

void rt_pvh_main(uint64_t si_pa);
void rt_pvh_main(uint64_t si_pa)
{
    serial_init();
    rt_boot.cmdline = "";
    if (!si_pa || si_pa + sizeof(struct hvm_start_info) > MAPPED_LIMIT)
        test_fail("PVH start info address %lx is not in low memory", si_pa);
    const struct hvm_start_info *si = (const struct hvm_start_info *)si_pa;
    if (si->magic != HVM_START_MAGIC)
        test_fail("PVH start info magic is %x, want %x", si->magic, HVM_START_MAGIC);
    rt_boot.start_info = si_pa;
    copy_cmdline(si->cmdline_paddr, (uint64_t)-1);
    rt_boot.rsdp = si->rsdp_paddr;
    if (si->version >= 1 && si->memmap_paddr) {
        const struct hvm_memmap_table_entry *e = (const void *)si->memmap_paddr;
        uint32_t n = si->memmap_entries;
        if (n > 1024 || si->memmap_paddr + (uint64_t)n * sizeof(*e) > MAPPED_LIMIT)
            test_fail("PVH memmap (%u entries at %lx) is out of range", n, si->memmap_paddr);
        for (uint32_t i = 0; i < n; i++)
            add_mem(e[i].addr, e[i].size, e[i].type);
    }
    run_guest();
}

/* Linux boot protocol, 64-bit entry: RSI = boot_params (the "zero page"). */
#define BP_ACPI_RSDP 0x070
#define BP_E820_ENTRIES 0x1e8
#define BP_HDR_CMD_LINE_PTR 0x228
#define BP_HDR_CMDLINE_SIZE 0x238
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128

void rt_linux_main(uint64_t bp_pa);
void rt_linux_main(uint64_t bp_pa)
{
    serial_init();
    rt_boot.cmdline = "";
    if (!bp_pa || bp_pa + 4096 > MAPPED_LIMIT)
        test_fail("boot_params address %lx is not in low memory", bp_pa);
    const uint8_t *bp = (const uint8_t *)bp_pa;
    rt_boot.boot_params = bp_pa;
    uint64_t cmd = *(const uint32_t *)(bp + BP_HDR_CMD_LINE_PTR) |
                   (uint64_t)*(const uint32_t *)(bp + BP_EXT_CMD_LINE_PTR) << 32;
    copy_cmdline(cmd, *(const uint32_t *)(bp + BP_HDR_CMDLINE_SIZE) + 1);
    rt_boot.rsdp = *(const uint64_t *)(bp + BP_ACPI_RSDP);
    unsigned n = bp[BP_E820_ENTRIES];
    if (n > BP_E820_MAX)
        n = BP_E820_MAX;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *e = bp + BP_E820_TABLE + i * 20;
        add_mem(*(const uint64_t *)e, *(const uint64_t *)(e + 8), *(const uint32_t *)(e + 16));
    }
    run_guest();
}
