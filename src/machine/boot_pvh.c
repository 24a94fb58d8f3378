/* PVH boot: load an ELF kernel with a Xen PHYS32_ENTRY note and hand it an hvm_start_info. */
#include "base/log.h"
#include "base/util.h"
#include "machine/boot.h"
#include "machine/layout.h"
#include <elf.h>
#include <errno.h>
#include <string.h>

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

/* One ELF program header, whichever class the file is. */
struct pvh_phdr {
    uint32_t type;
    uint64_t offset, paddr, filesz, memsz;
};

static bool pvh_phdr_get(const uint8_t *k, size_t len, bool is64, unsigned i, struct pvh_phdr *ph)
{
    uint64_t phoff, entsize;
    if (is64) {
        const Elf64_Ehdr *eh = (const void *)k;
        phoff = eh->e_phoff;
        entsize = eh->e_phentsize;
        if (entsize < sizeof(Elf64_Phdr))
            return false;
    } else {
        const Elf32_Ehdr *eh = (const void *)k;
        phoff = eh->e_phoff;
        entsize = eh->e_phentsize;
        if (entsize < sizeof(Elf32_Phdr))
            return false;
    }
    uint64_t off = phoff + (uint64_t)i * entsize;
    if (phoff > len || off > len || len - off < entsize)
        return false;
    if (is64) {
        Elf64_Phdr p;
        memcpy(&p, k + off, sizeof(p));
        *ph = (struct pvh_phdr){p.p_type, p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz};
    } else {
        Elf32_Phdr p;
        memcpy(&p, k + off, sizeof(p));
        *ph = (struct pvh_phdr){p.p_type, p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz};
    }
    return ph->offset <= len && ph->filesz <= len - ph->offset;
}

/* Scan one PT_NOTE segment for the Xen PHYS32_ENTRY note. */
static bool pvh_find_entry(const uint8_t *notes, uint64_t len, uint64_t *entry)
{
    uint64_t off = 0;
    while (len - off >= 12) {
        uint32_t namesz, descsz, type;
        memcpy(&namesz, notes + off, 4);
        memcpy(&descsz, notes + off + 4, 4);
        memcpy(&type, notes + off + 8, 4);
        uint64_t name_off = off + 12;
        uint64_t desc_off = name_off + ALIGN_UP((uint64_t)namesz, 4);
        uint64_t next = desc_off + ALIGN_UP((uint64_t)descsz, 4);
        if (desc_off > len || next > len)
            return false;
        if (namesz == 4 && memcmp(notes + name_off, "Xen", 4) == 0 &&
            type == XEN_ELFNOTE_PHYS32_ENTRY && (descsz == 4 || descsz == 8)) {
            uint64_t v = 0;
            memcpy(&v, notes + desc_off, descsz);
            *entry = v;
            return true;
        }
        off = next;
    }
    return false;
}

int boot_load_pvh(struct guest_mem *m, const struct boot_request *req, struct boot_info *out)
{
    const uint8_t *k = req->kernel;
    size_t len = req->kernel_len;
    const char *name = req->kernel_name;
    bool is64 = k[EI_CLASS] == ELFCLASS64;
    if ((!is64 && k[EI_CLASS] != ELFCLASS32) || k[EI_DATA] != ELFDATA2LSB ||
        (is64 && len < sizeof(Elf64_Ehdr))) {
        log_error("%s: not a little-endian x86 ELF file", name);
        return -ENOEXEC;
    }
    uint16_t machine, phnum;
    if (is64) {
        machine = ((const Elf64_Ehdr *)(const void *)k)->e_machine;
        phnum = ((const Elf64_Ehdr *)(const void *)k)->e_phnum;
    } else {
        machine = ((const Elf32_Ehdr *)(const void *)k)->e_machine;
        phnum = ((const Elf32_Ehdr *)(const void *)k)->e_phnum;
    }
    if (machine != EM_X86_64 && machine != EM_386) {
        log_error("%s: ELF for machine %u, not x86", name, machine);
        return -ENOEXEC;
    }

    uint64_t entry = 0;
    bool found = false;
    struct pvh_phdr ph;
    for (unsigned i = 0; i < phnum && !found; i++) {
        if (!pvh_phdr_get(k, len, is64, i, &ph)) {
            log_error("%s: ELF program header %u lies outside the file", name, i);
            return -ENOEXEC;
        }
        if (ph.type == PT_NOTE)
            found = pvh_find_entry(k + ph.offset, ph.filesz, &entry);
    }
    if (!found) {
        log_error("%s: this ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build "
                  "Linux with CONFIG_PVH=y, or boot its bzImage instead", name);
        return -ENOEXEC;
    }

    uint64_t lo = UINT64_MAX, hi = 0;
    for (unsigned i = 0; i < phnum; i++) {
        pvh_phdr_get(k, len, is64, i, &ph);
        if (ph.type != PT_LOAD || ph.memsz == 0)
            continue;
        uint8_t *dst = ph.filesz <= ph.memsz ? guest_mem_ptr(m, ph.paddr, ph.memsz) : NULL;
        if (!dst || ph.paddr < LAYOUT_HIGH_MEM) {
            log_error("%s: segment %u (0x%llx, %llu bytes) does not fit in guest RAM above 1 MiB; "
                      "give the guest more memory with -m", name, i,
                      (unsigned long long)ph.paddr, (unsigned long long)ph.memsz);
            return -ENOMEM;
        }
        memcpy(dst, k + ph.offset, ph.filesz);
        memset(dst + ph.filesz, 0, ph.memsz - ph.filesz);
        lo = MIN(lo, ph.paddr);
        hi = MAX(hi, ph.paddr + ph.memsz);
    }
    if (hi == 0) {
        log_error("%s: ELF file has nothing to load", name);
        return -ENOEXEC;
    }

    struct hvm_start_info si = {.magic = HVM_START_MAGIC, .version = 1};
    const char *cmdline = req->cmdline ? req->cmdline : "";
    size_t cmdlen = strlen(cmdline);
    if (cmdlen >= LAYOUT_CMDLINE_MAX) {
        log_error("-append: the kernel command line is %zu bytes; at most %d fit", cmdlen,
                  LAYOUT_CMDLINE_MAX - 1);
        return -E2BIG;
    }
    guest_mem_write(m, LAYOUT_CMDLINE, cmdline, cmdlen + 1);
    si.cmdline_paddr = LAYOUT_CMDLINE;
    si.rsdp_paddr = req->rsdp_addr;

    if (req->initrd) {
        uint64_t addr;
        if (boot_place_initrd(m, req->initrd_len, LAYOUT_LOWMEM_MAX, lo, hi, &addr) < 0) {
            log_error("%s: no room in guest RAM for the %zu-byte initrd; give the guest more "
                      "memory with -m", name, req->initrd_len);
            return -ENOMEM;
        }
        guest_mem_write(m, addr, req->initrd, req->initrd_len);
        struct hvm_modlist_entry mod = {.paddr = addr, .size = req->initrd_len};
        uint64_t mod_addr = LAYOUT_PVH_START_INFO + ALIGN_UP(sizeof(si), 64);
        guest_mem_write(m, mod_addr, &mod, sizeof(mod));
        si.nr_modules = 1;
        si.modlist_paddr = mod_addr;
    }

    struct boot_memmap_entry map[BOOT_MEMMAP_MAX];
    unsigned n = boot_memmap(m, map);
    for (unsigned i = 0; i < n; i++) {
        struct hvm_memmap_table_entry e = {map[i].addr, map[i].size, map[i].type, 0};
        guest_mem_write(m, LAYOUT_PVH_MEMMAP + i * sizeof(e), &e, sizeof(e));
    }
    si.memmap_paddr = LAYOUT_PVH_MEMMAP;
    si.memmap_entries = n;
    guest_mem_write(m, LAYOUT_PVH_START_INFO, &si, sizeof(si));

    out->format = "PVH ELF";
    out->mode = BOOT_MODE_PROTECTED32;
    out->entry = entry;
    out->rbx = LAYOUT_PVH_START_INFO;
    boot_write_gdt(m, false, out);
    return 0;
}
