/* Direct kernel boot: load a Linux bzImage or a PVH ELF into guest RAM and say how to enter it. */
#pragma once
#include "machine/guest_mem.h"
#include <stddef.h>
#include <stdint.h>

enum boot_cpu_mode {
    BOOT_MODE_PROTECTED32, /* flat 32-bit protected mode, paging off (PVH, old bzImage) */
    BOOT_MODE_LONG64,      /* 64-bit mode with identity paging of the first 4 GiB */
};

struct boot_request {
    const char *kernel_name; /* for messages */
    const uint8_t *kernel;
    size_t kernel_len;
    const uint8_t *initrd; /* may be NULL */
    size_t initrd_len;
    const char *cmdline;   /* may be NULL */
    uint64_t rsdp_addr;    /* guest-physical address of the ACPI RSDP */
};

/* Where the first vCPU starts. The loader has written the GDT (LAYOUT_GDT: 0x10 code,
 * 0x18 data, 0x20 TSS) and, for 64-bit entry, page tables at LAYOUT_PML4. */
struct boot_info {
    const char *format; /* "bzImage" or "PVH ELF" */
    enum boot_cpu_mode mode;
    uint64_t entry;
    uint64_t rsi, rbx;  /* boot protocol arguments */
    uint64_t cr3;       /* long mode only */
    uint64_t gdt_base;
    uint16_t gdt_limit;
};

/* A memory map entry in e820 terms (1 RAM, 2 reserved); PVH uses the same types. */
struct boot_memmap_entry {
    uint64_t addr, size;
    uint32_t type;
};
#define BOOT_E820_RAM 1
#define BOOT_E820_RESERVED 2
#define BOOT_MEMMAP_MAX 8

/* The machine's memory map: RAM around the legacy hole and the PCI hole, reserved ranges. */
unsigned boot_memmap(const struct guest_mem *m, struct boot_memmap_entry *out);

/* Load whichever format the kernel is. 0, or -errno with an error logged that names the
 * kernel file and what is wrong with it. */
int boot_load(struct guest_mem *m, const struct boot_request *req, struct boot_info *out);

/* The formats (boot.c picks one by looking at the file). */
int boot_load_bzimage(struct guest_mem *m, const struct boot_request *req, struct boot_info *out);
int boot_load_pvh(struct guest_mem *m, const struct boot_request *req, struct boot_info *out);
bool boot_is_bzimage(const uint8_t *k, size_t len);
bool boot_is_elf(const uint8_t *k, size_t len);

/* Shared pieces for the loaders. */
void boot_write_gdt(struct guest_mem *m, bool code64, struct boot_info *out);
void boot_write_identity_paging(struct guest_mem *m, struct boot_info *out);
/* Pick where the initrd goes: the highest page-aligned spot below limit that is RAM and does
 * not overlap [avoid_lo, avoid_hi). 0 or -ENOSPC. */
int boot_place_initrd(const struct guest_mem *m, size_t len, uint64_t limit, uint64_t avoid_lo,
                      uint64_t avoid_hi, uint64_t *addr);
