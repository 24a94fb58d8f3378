/* Software CPU memory: page walks (4-level, 4K/2M/1G, A/D, NX, WP, U/S), the software TLB,
 * RAM through host pointers and everything else through MMIO callbacks. */
#include <errno.h>

#include "accel/emu/emu_internal.h"

struct emu_ram *emu_ram_find(struct emu_cpu *cpu, uint64_t gpa)
{
    for (unsigned i = 0; i < cpu->nram; i++) {
        struct emu_ram *r = &cpu->ram[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size) return r;
    }
    return NULL;
}

static uint8_t *ram_ptr(struct emu_cpu *cpu, uint64_t gpa, uint64_t len, uint64_t *room)
{
    for (unsigned i = 0; i < cpu->nram; i++) {
        struct emu_ram *r = &cpu->ram[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size) {
            uint64_t off = gpa - r->gpa;
            if (room) *room = r->size - off;
            if (len > r->size - off) return NULL;
            return r->host + off;
        }
    }
    return NULL;
}

void *emu_phys_ptr(struct emu_cpu *cpu, uint64_t gpa, uint64_t len)
{
    return ram_ptr(cpu, gpa, len, NULL);
}

static bool flat_test_mode(const struct emu_cpu *cpu)
{
    return cpu->flat_unmapped_faults && !(cpu->cr0 & EMU_CR0_PG);
}

uint64_t emu_phys_read(struct emu_cpu *cpu, uint64_t gpa, unsigned size)
{
    uint8_t *p = ram_ptr(cpu, gpa, size, NULL);
    if (p) return emu_load_host(p, size);
    if (cpu->io && cpu->io->mmio_read) return cpu->io->mmio_read(cpu->io_opaque, gpa, size) & emu_size_mask(size);
    return emu_size_mask(size);
}

void emu_phys_write(struct emu_cpu *cpu, uint64_t gpa, uint64_t val, unsigned size)
{
    uint8_t *p = ram_ptr(cpu, gpa, size, NULL);
    if (p) {
        struct emu_ram *r = emu_ram_find(cpu, gpa);
        if (r && emu_is_code_page(r, gpa)) emu_code_written(cpu, r, gpa);
        emu_store_host(p, size, val);
        return;
    }
    if (cpu->io && cpu->io->mmio_write) cpu->io->mmio_write(cpu->io_opaque, gpa, val & emu_size_mask(size), size);
}

void emu_tlb_flush(struct emu_cpu *cpu, bool include_global)
{
    for (unsigned u = 0; u < 2; u++)
        for (unsigned i = 0; i < EMU_TLB_SIZE; i++) {
            struct emu_tlb_entry *e = &cpu->tlb[u][i];
            if (!include_global && e->global) continue;
            e->tag_r = e->tag_w = e->tag_x = EMU_TLB_INVALID;
            e->global = false;
        }
}

void emu_invlpg(struct emu_cpu *cpu, uint64_t lin)
{
    /* The TLB holds 4K pieces of large pages too; a large page's pieces could sit in any slot,
     * so invlpg drops everything rather than tracking page sizes per entry. */
    (void)lin;
    emu_tlb_flush(cpu, true);
}

static __attribute__((noreturn)) void page_fault(struct emu_cpu *cpu, uint64_t lin, uint32_t err)
{
    cpu->cr2 = lin;
    cpu->exc_addr = lin;
    emu_raise(cpu, EMU_PF, true, err);
}

static bool canonical(uint64_t lin)
{
    return emu_canonical(lin);
}

/* Page walk. Returns the guest-physical address; raises #PF. Sets *global and *writable_ok
 * (whether a later write through this translation needs no new walk). */
static uint64_t translate(struct emu_cpu *cpu, uint64_t lin, int acc, bool user, bool *global, bool *can_write, bool *can_exec)
{
    *global = false;
    if (!(cpu->cr0 & EMU_CR0_PG)) {
        *can_write = true;
        *can_exec = true;
        return (cpu->efer & EMU_EFER_LMA) ? lin : (uint32_t)lin;
    }
    bool nxe = cpu->efer & EMU_EFER_NXE;
    uint32_t errbase = (acc == EMU_ACC_W ? 2 : 0) | (user ? 4 : 0) | (acc == EMU_ACC_X && nxe ? 16 : 0);
    if (!(cpu->cr4 & EMU_CR4_PAE)) {
        /* 32-bit two-level paging (with 4M pages under CR4.PSE). */
        uint32_t l = (uint32_t)lin;
        uint64_t pde_addr = (cpu->cr3 & 0xfffff000u) + ((l >> 22) << 2);
        uint32_t pde = (uint32_t)emu_phys_read(cpu, pde_addr, 4);
        if (!(pde & 1)) page_fault(cpu, lin, errbase);
        bool w = pde & 2, u = pde & 4;
        uint64_t gpa;
        uint64_t leaf_addr;
        uint32_t leaf;
        if ((pde & 0x80) && (cpu->cr4 & EMU_CR4_PSE)) {
            leaf_addr = pde_addr;
            leaf = pde;
            gpa = (pde & 0xffc00000u) + (l & 0x3fffff) + ((uint64_t)((pde >> 13) & 0xff) << 32);
        } else {
            if (!(pde & 0x20)) emu_phys_write(cpu, pde_addr, pde | 0x20, 4);
            leaf_addr = (pde & 0xfffff000u) + (((l >> 12) & 0x3ff) << 2);
            leaf = (uint32_t)emu_phys_read(cpu, leaf_addr, 4);
            if (!(leaf & 1)) page_fault(cpu, lin, errbase);
            w = w && (leaf & 2);
            u = u && (leaf & 4);
            gpa = (leaf & 0xfffff000u) + (l & 0xfff);
        }
        if (user && !u) page_fault(cpu, lin, errbase | 1);
        if (acc == EMU_ACC_W && !w && (user || (cpu->cr0 & EMU_CR0_WP))) page_fault(cpu, lin, errbase | 1);
        uint32_t set = 0x20 | (acc == EMU_ACC_W ? 0x40 : 0);
        if ((leaf & set) != set) emu_phys_write(cpu, leaf_addr, leaf | set, 4);
        *global = (leaf & 0x100) && (cpu->cr4 & EMU_CR4_PGE);
        *can_write = (w || (!user && !(cpu->cr0 & EMU_CR0_WP))) && ((leaf | set) & 0x40);
        *can_exec = true;
        return gpa;
    }
    unsigned levels;
    uint64_t table;
    if (cpu->efer & EMU_EFER_LMA) {
        if (!canonical(lin)) emu_gp0(cpu);
        levels = 4;
        table = cpu->cr3 & 0x000ffffffffff000ull;
    } else {
        /* PAE: the PDPTE comes straight from memory (no PDPTE register caching). */
        uint64_t pdpte = emu_phys_read(cpu, (cpu->cr3 & 0xffffffe0u) + (((uint32_t)lin >> 30) << 3), 8);
        if (!(pdpte & 1)) page_fault(cpu, lin, errbase);
        levels = 2;
        table = pdpte & 0x000ffffffffff000ull;
        lin = (uint32_t)lin;
    }
    bool w = true, u = true, nx = false;
    uint64_t entry = 0, entry_addr = 0, gpa = 0;
    for (int level = levels; level >= 1; level--) {
        unsigned shift = 12 + 9 * (level - 1);
        entry_addr = table + (((lin >> shift) & 511) << 3);
        entry = emu_phys_read(cpu, entry_addr, 8);
        if (!(entry & 1)) page_fault(cpu, lin, errbase);
        uint64_t rsvd = 0;
        if (!nxe) rsvd |= 1ull << 63;
        bool leaf = level == 1 || ((level == 2 || level == 3) && (entry & 0x80));
        if (level == 4 && (entry & 0x80)) rsvd |= 0x80;
        if (leaf && level > 1) rsvd |= ((1ull << (shift - 1)) - 1) & ~0x1fffull; /* low address bits of a large page */
        if (entry & rsvd) page_fault(cpu, lin, errbase | 1 | 8);
        w = w && (entry & 2);
        u = u && (entry & 4);
        nx = nx || (nxe && (entry >> 63));
        if (leaf) {
            uint64_t frame = entry & 0x000ffffffffff000ull & ~((1ull << shift) - 1);
            gpa = frame + (lin & ((1ull << shift) - 1));
            break;
        }
        if (!(entry & 0x20)) emu_phys_write(cpu, entry_addr, entry | 0x20, 8);
        table = entry & 0x000ffffffffff000ull;
    }
    if (user && !u) page_fault(cpu, lin, errbase | 1);
    if (acc == EMU_ACC_W && !w && (user || (cpu->cr0 & EMU_CR0_WP))) page_fault(cpu, lin, errbase | 1);
    if (acc == EMU_ACC_X && nx) page_fault(cpu, lin, errbase | 1);
    uint64_t set = 0x20 | (acc == EMU_ACC_W ? 0x40 : 0);
    if ((entry & set) != set) emu_phys_write(cpu, entry_addr, entry | set, 8);
    *global = (entry & 0x100) && (cpu->cr4 & EMU_CR4_PGE);
    *can_write = (w || (!user && !(cpu->cr0 & EMU_CR0_WP))) && ((entry | set) & 0x40);
    *can_exec = !nx;
    return gpa;
}

/* Translate one page-bounded access and return a host pointer for it, or NULL for MMIO
 * (then *gpa_out says where). Fills the TLB for RAM. */
static uint8_t *access_page(struct emu_cpu *cpu, uint64_t lin, int acc, bool user, uint64_t *gpa_out)
{
    bool global, can_write, can_exec;
    if ((cpu->efer & EMU_EFER_LMA) && !canonical(lin)) emu_gp0(cpu);
    uint64_t gpa = translate(cpu, lin, acc, user, &global, &can_write, &can_exec);
    *gpa_out = gpa;
    if (acc != EMU_ACC_R && flat_test_mode(cpu)) {
        struct emu_ram *r = emu_ram_find(cpu, gpa);
        if (r && ((acc == EMU_ACC_X && r->noexec) || (acc == EMU_ACC_W && r->readonly))) {
            cpu->cr2 = lin;
            cpu->exc_addr = lin;
            emu_raise(cpu, EMU_PF, true, 1 | (user ? 4 : 0) | (acc == EMU_ACC_X ? 16 : 2));
        }
    }
    uint64_t room;
    uint8_t *p = ram_ptr(cpu, gpa & ~0xfffull, 4096, &room);
    if (!p) {
        uint8_t *q = ram_ptr(cpu, gpa, 1, NULL);
        if (q) return q; /* RAM smaller than a page at the end: no TLB entry */
        if (flat_test_mode(cpu)) {
            cpu->cr2 = lin;
            cpu->exc_addr = lin;
            emu_raise(cpu, EMU_PF, true, (acc == EMU_ACC_W ? 2 : 0) | (user ? 4 : 0) | (acc == EMU_ACC_X ? 16 : 0));
        }
        return NULL;
    }
    if (acc == EMU_ACC_W) {
        struct emu_ram *r = emu_ram_find(cpu, gpa);
        if (r && emu_is_code_page(r, gpa)) emu_code_written(cpu, r, gpa);
    }
    struct emu_tlb_entry *e = &cpu->tlb[user][(lin >> 12) & (EMU_TLB_SIZE - 1)];
    uint64_t page = lin & ~0xfffull;
    if (e->tag_r != page && e->tag_w != page && e->tag_x != page) e->tag_r = e->tag_w = e->tag_x = EMU_TLB_INVALID;
    e->addend = (uintptr_t)p - page;
    e->gpa_page = gpa & ~0xfffull;
    e->global = global;
    if (acc == EMU_ACC_R) e->tag_r = page;
    if (acc == EMU_ACC_W) e->tag_w = page, e->tag_r = page;
    if (acc == EMU_ACC_X) e->tag_x = page;
    if (acc == EMU_ACC_W && !can_write) e->tag_w = EMU_TLB_INVALID;
    (void)can_exec;
    return p + (gpa & 0xfff);
}

uint64_t emu_mem_read_slow(struct emu_cpu *cpu, uint64_t lin, unsigned size, int acc, bool user)
{
    if ((lin & 0xfff) + size > 4096) {
        /* Page-crossing: both halves are translated (and may fault) before anything is read. */
        unsigned first = 4096 - (lin & 0xfff);
        uint64_t lo = emu_mem_read_slow(cpu, lin, first, acc, user);
        uint64_t hi = emu_mem_read_slow(cpu, lin + first, size - first, acc, user);
        /* first and size-first are not always 1/2/4/8: read them bytewise. */
        return lo | (hi << (8 * first));
    }
    if (size != 1 && size != 2 && size != 4 && size != 8) {
        uint64_t v = 0;
        for (unsigned i = 0; i < size; i++) v |= emu_mem_read_slow(cpu, lin + i, 1, acc, user) << (8 * i);
        return v;
    }
    uint64_t gpa;
    uint8_t *p = access_page(cpu, lin, acc, user, &gpa);
    if (p) return emu_load_host(p, size);
    return emu_phys_read(cpu, gpa, size);
}

void emu_mem_probe_write(struct emu_cpu *cpu, uint64_t lin, unsigned size)
{
    bool u = emu_user(cpu);
    uint64_t gpa;
    struct emu_tlb_entry *e = &cpu->tlb[u][(lin >> 12) & (EMU_TLB_SIZE - 1)];
    if (e->tag_w == (lin & ~0xfffull) && (lin & 0xfff) + size <= 4096) return;
    access_page(cpu, lin, EMU_ACC_W, u, &gpa);
    if ((lin & 0xfff) + size > 4096) access_page(cpu, (lin | 0xfff) + 1, EMU_ACC_W, u, &gpa);
}

void emu_mem_write_slow(struct emu_cpu *cpu, uint64_t lin, unsigned size, uint64_t val, bool user)
{
    if ((lin & 0xfff) + size > 4096 || (size != 1 && size != 2 && size != 4 && size != 8)) {
        /* Check both pages first so a fault leaves memory untouched. */
        uint64_t gpa;
        access_page(cpu, lin, EMU_ACC_W, user, &gpa);
        if ((lin & 0xfff) + size > 4096) access_page(cpu, (lin | 0xfff) + 1, EMU_ACC_W, user, &gpa);
        for (unsigned i = 0; i < size; i++) emu_mem_write_slow(cpu, lin + i, 1, (val >> (8 * i)) & 0xff, user);
        return;
    }
    uint64_t gpa;
    uint8_t *p = access_page(cpu, lin, EMU_ACC_W, user, &gpa);
    if (p) emu_store_host(p, size, val);
    else emu_phys_write(cpu, gpa, val, size);
}
