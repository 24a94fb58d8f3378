/* Boot format detection, the memory map, and the GDT/page tables every entry path needs. */
#include "machine/boot.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include <errno.h>
#include <string.h>

unsigned boot_memmap(const struct guest_mem *m, struct boot_memmap_entry *out)
{
    unsigned n = 0;
    uint64_t low = guest_mem_low_size(m);
    out[n++] = (struct boot_memmap_entry){0, MIN(low, LAYOUT_EBDA), BOOT_E820_RAM};
    /* EBDA and the BIOS area: the ACPI tables live at 0xE0000. */
    out[n++] = (struct boot_memmap_entry){LAYOUT_EBDA, LAYOUT_HIGH_MEM - LAYOUT_EBDA,
                                          BOOT_E820_RESERVED};
    if (low > LAYOUT_HIGH_MEM)
        out[n++] = (struct boot_memmap_entry){LAYOUT_HIGH_MEM, low - LAYOUT_HIGH_MEM,
                                              BOOT_E820_RAM};
    /* Linux wants the MMCONFIG area reserved before it trusts the MCFG table. */
    out[n++] = (struct boot_memmap_entry){LAYOUT_ECAM, LAYOUT_ECAM_SIZE, BOOT_E820_RESERVED};
    if (guest_mem_high_size(m))
        out[n++] = (struct boot_memmap_entry){LAYOUT_4G, guest_mem_high_size(m), BOOT_E820_RAM};
    return n;
}

bool boot_is_bzimage(const uint8_t *k, size_t len)
{
    return len >= 0x250 && k[0x1FE] == 0x55 && k[0x1FF] == 0xAA && memcmp(k + 0x202, "HdrS", 4) == 0;
}

bool boot_is_elf(const uint8_t *k, size_t len)
{
    return len >= 64 && memcmp(k, "\177ELF", 4) == 0;
}

int boot_load(struct guest_mem *m, const struct boot_request *req, struct boot_info *out)
{
    memset(out, 0, sizeof(*out));
    if (boot_is_bzimage(req->kernel, req->kernel_len))
        return boot_load_bzimage(m, req, out);
    if (boot_is_elf(req->kernel, req->kernel_len))
        return boot_load_pvh(m, req, out);
    log_error("%s: not a Linux bzImage and not an ELF kernel; vmkit boots bzImage and PVH ELF "
              "kernels directly (e.g. arch/x86/boot/bzImage, or vmlinux built with CONFIG_PVH=y)",
              req->kernel_name);
    return -ENOEXEC;
}

/* Flat descriptors at the selectors the Linux boot protocol names: __BOOT_CS 0x10, __BOOT_DS
 * 0x18; a TSS at 0x20 because VMX refuses to enter a guest whose TR is unusable. */
void boot_write_gdt(struct guest_mem *m, bool code64, struct boot_info *out)
{
    uint64_t gdt[5] = {
        0,
        0,
        code64 ? 0x00AF9B000000FFFFULL : 0x00CF9B000000FFFFULL, /* code, accessed */
        0x00CF93000000FFFFULL,                                  /* data, accessed */
        0x00008B0000000067ULL,                                  /* 32-bit busy TSS at 0 */
    };
    guest_mem_write(m, LAYOUT_GDT, gdt, sizeof(gdt));
    out->gdt_base = LAYOUT_GDT;
    out->gdt_limit = sizeof(gdt) - 1;
}

void boot_write_identity_paging(struct guest_mem *m, struct boot_info *out)
{
    uint64_t pml4[512] = {0}, pdpt[512] = {0}, pd[512];
    pml4[0] = LAYOUT_PDPT | 0x3; /* present, writable */
    for (unsigned i = 0; i < 4; i++)
        pdpt[i] = (LAYOUT_PD + i * 0x1000) | 0x3;
    guest_mem_write(m, LAYOUT_PML4, pml4, sizeof(pml4));
    guest_mem_write(m, LAYOUT_PDPT, pdpt, sizeof(pdpt));
    for (unsigned i = 0; i < 4; i++) {
        for (unsigned j = 0; j < 512; j++)
            pd[j] = ((uint64_t)i * GiB + (uint64_t)j * 2 * MiB) | 0x83; /* present, rw, 2M */
        guest_mem_write(m, LAYOUT_PD + i * 0x1000, pd, sizeof(pd));
    }
    out->cr3 = LAYOUT_PML4;
}

int boot_place_initrd(const struct guest_mem *m, size_t len, uint64_t limit, uint64_t avoid_lo,
                      uint64_t avoid_hi, uint64_t *addr)
{
    uint64_t top = MIN(limit, guest_mem_low_size(m));
    if (len > top)
        return -ENOSPC;
    uint64_t a = ALIGN_DOWN(top - len, 4096);
    if (a < avoid_hi && a + len > avoid_lo) {
        /* The kernel reaches the top of RAM: go below it instead. */
        if (avoid_lo < len)
            return -ENOSPC;
        a = ALIGN_DOWN(avoid_lo - len, 4096);
    }
    if (a < LAYOUT_HIGH_MEM)
        return -ENOSPC;
    *addr = a;
    return 0;
}
