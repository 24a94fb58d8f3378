/* Software CPU system parts: exceptions and interrupts through the IDT, segments, control
 * registers, MSRs, CPUID, syscall/sysret, iret, port I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accel/emu/emu_internal.h"

void emu_cpu_init(struct emu_cpu *cpu)
{
    memset(cpu, 0, sizeof(*cpu));
    cpu->flags = 2;
    cpu->cc_op = EMU_CC_EFLAGS;
    cpu->cr0 = EMU_CR0_ET | EMU_CR0_NE;
    for (unsigned i = 0; i < EMU_NSEG; i++) {
        cpu->seg[i] = (struct emu_seg){.limit = 0xffff, .type = 3, .s = 1, .present = 1};
    }
    cpu->seg[EMU_CS] = (struct emu_seg){.base = 0xffff0000, .sel = 0xf000, .limit = 0xffff, .type = 0xb, .s = 1, .present = 1};
    cpu->rip = 0xfff0;
    cpu->gdt.limit = cpu->idt.limit = 0xffff;
    cpu->tr = (struct emu_seg){.limit = 0xffff, .type = 0xb, .present = 1};
    cpu->ldt = (struct emu_seg){.limit = 0xffff, .type = 2, .present = 1};
    cpu->mxcsr = 0x1f80;
    cpu->fcw = 0x37f;
    cpu->pat = 0x0007040600070406ull;
    cpu->apic_base = 0xfee00900;
    cpu->r[EMU_RDX] = 0x306a9;
    cpu->block_gen = 1;
    emu_tlb_flush(cpu, true);
}

void emu_cpu_reset(struct emu_cpu *cpu)
{
    struct emu_ram ram[8];
    unsigned nram = cpu->nram;
    memcpy(ram, cpu->ram, sizeof(ram));
    struct emu_block *blocks = cpu->blocks;
    uint32_t gen = cpu->block_gen;
    const struct emu_io_ops *io = cpu->io;
    void *io_opaque = cpu->io_opaque;
    uint32_t apic_id = cpu->apic_id;
    uint8_t smt_shift = cpu->topo_smt_shift, pkg_shift = cpu->topo_pkg_shift;
    uint16_t threads = cpu->topo_threads, pkg_cpus = cpu->topo_pkg_cpus;
    struct emu_shared *shared = cpu->shared;
    uint64_t seen_tlb = cpu->seen_tlb, seen_code = cpu->seen_code;
    emu_cpu_init(cpu);
    cpu->shared = shared;
    cpu->seen_tlb = seen_tlb, cpu->seen_code = seen_code;
    cpu->apic_id = apic_id;
    cpu->topo_smt_shift = smt_shift, cpu->topo_pkg_shift = pkg_shift;
    cpu->topo_threads = threads, cpu->topo_pkg_cpus = pkg_cpus;
    memcpy(cpu->ram, ram, sizeof(ram));
    cpu->nram = nram;
    /* A shared bitmap is the other vCPUs' too: a stale bit only costs a slow-path write. */
    if (!shared)
        for (unsigned i = 0; i < nram; i++) memset(ram[i].code_bits, 0, (ram[i].size + 4095) / 4096 / 8 + 1);
    cpu->blocks = blocks;
    cpu->block_gen = gen + 1 ? gen + 1 : 1;
    cpu->io = io;
    cpu->io_opaque = io_opaque;
}

void emu_cpu_destroy(struct emu_cpu *cpu)
{
    for (unsigned i = 0; i < cpu->nram; i++) {
        free(cpu->ram[i].code_bits);
        cpu->ram[i].code_bits = NULL;
    }
    cpu->nram = 0;
    free(cpu->blocks);
    cpu->blocks = NULL;
}

int emu_cpu_add_ram(struct emu_cpu *cpu, uint64_t gpa, uint64_t size, void *host)
{
    if (!size || gpa + size < gpa || !host) return -EINVAL;
    if (cpu->nram >= 8) return -ENOSPC;
    uint8_t *bits = calloc(1, (size + 4095) / 4096 / 8 + 1);
    if (!bits) return -ENOMEM;
    unsigned i = cpu->nram++;
    while (i > 0 && cpu->ram[i - 1].gpa > gpa) {
        cpu->ram[i] = cpu->ram[i - 1];
        i--;
    }
    cpu->ram[i] = (struct emu_ram){.gpa = gpa, .size = size, .host = host, .code_bits = bits};
    emu_tlb_flush(cpu, true);
    return 0;
}

void emu_cpu_set_flat64(struct emu_cpu *cpu)
{
    cpu->cr0 = EMU_CR0_PE | EMU_CR0_ET | EMU_CR0_NE | EMU_CR0_MP;
    cpu->cr4 = EMU_CR4_PAE | EMU_CR4_OSFXSR | EMU_CR4_OSXMMEXCPT;
    cpu->efer = EMU_EFER_LME | EMU_EFER_LMA | EMU_EFER_SCE | EMU_EFER_NXE;
    for (unsigned i = 0; i < EMU_NSEG; i++)
        cpu->seg[i] = (struct emu_seg){.limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1};
    cpu->seg[EMU_CS] = (struct emu_seg){.limit = 0xffffffff, .sel = 0x33, .type = 0xb, .s = 1, .present = 1, .l = 1, .g = 1, .dpl = 3};
    cpu->seg[EMU_SS].sel = 0x2b;
    cpu->seg[EMU_SS].dpl = 3;
    cpu->cpl = 3;
    emu_tlb_flush(cpu, true);
}

/* ---- exceptions ---- */

/* Exception classes for the double-fault rule: 0 benign, 1 contributory, 2 page fault. */
static int exc_class(unsigned v)
{
    if (v == EMU_PF) return 2;
    return (v == EMU_DE || (v >= EMU_TS && v <= EMU_GP)) ? 1 : 0;
}

void emu_raise(struct emu_cpu *cpu, unsigned vec, bool has_err, uint32_t err)
{
    cpu->rip = cpu->insn_rip;
    cpu->exc_vector = (uint8_t)vec;
    cpu->exc_has_error = has_err;
    cpu->exc_error = err;
    if (cpu->exit_on_exception) longjmp(cpu->jb, 1);
    if (cpu->nested_exc >= 2) {
        cpu->internal_msg = "triple fault";
        longjmp(cpu->jb, 2);
    }
    if (cpu->nested_exc == 1) {
        /* A fault while delivering an exception: contributory on contributory, or anything
         * serious on a page fault, is a double fault; after a benign one it is just delivered. */
        int first = exc_class(cpu->delivering), second = exc_class(vec);
        if ((first == 1 && second == 1) || (first == 2 && second >= 1)) {
            cpu->nested_exc = 2;
            emu_deliver(cpu, EMU_DF, true, 0, false, cpu->insn_rip);
            cpu->nested_exc = 0;
            cpu->insns++;
            longjmp(cpu->jb, 1);
        }
    }
    cpu->nested_exc = 1;
    cpu->delivering = (uint8_t)vec;
    emu_deliver(cpu, vec, has_err, err, false, cpu->insn_rip);
    cpu->nested_exc = 0;
    cpu->insns++;
    longjmp(cpu->jb, 1);
}

/* Descriptor tables, the IDT and the TSS are read with supervisor rights whatever the CPL. */
static uint64_t sys_read(struct emu_cpu *cpu, uint64_t lin, unsigned size)
{
    return emu_mem_read_slow(cpu, lin, size, 0, false);
}

static void read_desc(struct emu_cpu *cpu, uint16_t sel, uint64_t *lo, uint64_t *hi, bool sixteen)
{
    struct emu_dtable t = cpu->gdt;
    if (sel & 4) t = (struct emu_dtable){.base = cpu->ldt.base, .limit = (uint16_t)cpu->ldt.limit};
    unsigned off = sel & ~7u;
    if (off + (sixteen ? 15 : 7) > t.limit) emu_raise(cpu, EMU_GP, true, sel & ~3u);
    *lo = sys_read(cpu, t.base + off, 8);
    if (hi) *hi = sixteen ? sys_read(cpu, t.base + off + 8, 8) : 0;
}

static void desc_to_seg(struct emu_seg *s, uint16_t sel, uint64_t d)
{
    uint32_t lo = (uint32_t)d, hi = (uint32_t)(d >> 32);
    s->sel = sel;
    s->limit = (lo & 0xffff) | (hi & 0xf0000);
    s->base = (lo >> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000u);
    s->type = (hi >> 8) & 0xf;
    s->s = (hi >> 12) & 1;
    s->dpl = (hi >> 13) & 3;
    s->present = (hi >> 15) & 1;
    s->l = (hi >> 21) & 1;
    s->db = (hi >> 22) & 1;
    s->g = (hi >> 23) & 1;
    if (s->g) s->limit = (s->limit << 12) | 0xfff;
}

void emu_load_seg(struct emu_cpu *cpu, unsigned seg, uint16_t sel)
{
    struct emu_seg *s = &cpu->seg[seg];
    if (!(cpu->cr0 & EMU_CR0_PE) || (cpu->flags & EMU_FLAG_VM)) {
        s->sel = sel;
        s->base = (uint64_t)sel << 4;
        return;
    }
    if ((sel & ~3u) == 0) {
        if (seg == EMU_SS && (emu_mode(cpu) != EMU_MODE_LONG64 || cpu->cpl == 3)) emu_gp0(cpu);
        uint64_t keep = (seg == EMU_FS || seg == EMU_GS) ? s->base : 0;
        *s = (struct emu_seg){.sel = sel, .base = keep};
        return;
    }
    uint64_t d;
    read_desc(cpu, sel, &d, NULL, false);
    struct emu_seg n;
    desc_to_seg(&n, sel, d);
    if (!n.s) emu_raise(cpu, EMU_GP, true, sel & ~3u);
    if (!n.present) emu_raise(cpu, seg == EMU_SS ? EMU_SS_FAULT : EMU_NP, true, sel & ~3u);
    *s = n;
    if (seg == EMU_CS) {
        cpu->cpl = (cpu->cr0 & EMU_CR0_PE) ? n.dpl : 0;
        s->sel = (sel & ~3u) | cpu->cpl;
    }
}

/* Load CS for a far transfer; CPL becomes the code segment's DPL. */
static void load_cs(struct emu_cpu *cpu, uint16_t sel)
{
    if (!(cpu->cr0 & EMU_CR0_PE)) {
        cpu->seg[EMU_CS].sel = sel;
        cpu->seg[EMU_CS].base = (uint64_t)sel << 4;
        return;
    }
    if ((sel & ~3u) == 0) emu_gp0(cpu);
    uint64_t d;
    read_desc(cpu, sel, &d, NULL, false);
    struct emu_seg n;
    desc_to_seg(&n, sel, d);
    if (!n.s || !(n.type & 8)) emu_raise(cpu, EMU_GP, true, sel & ~3u);
    if (!n.present) emu_raise(cpu, EMU_NP, true, sel & ~3u);
    unsigned old_cpl = cpu->cpl;
    cpu->seg[EMU_CS] = n;
    cpu->cpl = (n.type & 4) ? old_cpl : n.dpl; /* conforming segments keep the CPL */
    cpu->seg[EMU_CS].sel = (sel & ~3u) | cpu->cpl;
    if (old_cpl != cpu->cpl) emu_tlb_flush(cpu, false);
}

uint64_t emu_rdtsc(struct emu_cpu *cpu)
{
    if (cpu->io && cpu->io->clock_ns)
        return cpu->io->clock_ns(cpu->io_opaque) + cpu->tsc_offset;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + cpu->tsc_offset;
}

void emu_deliver(struct emu_cpu *cpu, unsigned vec, bool has_err, uint32_t err, bool soft, uint64_t next_rip)
{
    if (cpu->exit_on_exception) {
        /* Differential tests: report software interrupts like faults, with rip past the int. */
        cpu->exc_vector = (uint8_t)vec;
        cpu->exc_has_error = has_err;
        cpu->exc_error = err;
        cpu->rip = next_rip;
        longjmp(cpu->jb, 1);
    }
    enum emu_cpu_mode mode = emu_mode(cpu);
    uint64_t rflags = emu_get_rflags(cpu);
    cpu->halted = false;
    if (mode == EMU_MODE_REAL) {
        if (vec * 4 + 3 > cpu->idt.limit) emu_gp0(cpu);
        uint32_t ent = (uint32_t)emu_read(cpu, cpu->idt.base + vec * 4, 4);
        uint16_t sp = (uint16_t)cpu->r[EMU_RSP];
        uint64_t ss = cpu->seg[EMU_SS].base;
        emu_write(cpu, ss + (uint16_t)(sp - 2), 2, rflags);
        emu_write(cpu, ss + (uint16_t)(sp - 4), 2, cpu->seg[EMU_CS].sel);
        emu_write(cpu, ss + (uint16_t)(sp - 6), 2, next_rip);
        cpu->r[EMU_RSP] = (cpu->r[EMU_RSP] & ~0xffffull) | (uint16_t)(sp - 6);
        cpu->flags &= ~(uint64_t)(EMU_FLAG_IF | EMU_FLAG_TF | EMU_FLAG_AC);
        cpu->seg[EMU_CS].sel = ent >> 16;
        cpu->seg[EMU_CS].base = (uint64_t)(ent >> 16) << 4;
        cpu->rip = ent & 0xffff;
        return;
    }
    bool long64 = cpu->efer & EMU_EFER_LMA;
    unsigned gsize = long64 ? 16 : 8;
    uint32_t idt_err = vec * 8 + 2 + (soft ? 0 : 1);
    if (vec * gsize + gsize - 1 > cpu->idt.limit) emu_raise(cpu, EMU_GP, true, idt_err);
    uint64_t lo = sys_read(cpu, cpu->idt.base + vec * gsize, 8);
    uint64_t hi = long64 ? sys_read(cpu, cpu->idt.base + vec * gsize + 8, 8) : 0;
    unsigned type = (lo >> 40) & 0xf, dpl = (lo >> 45) & 3, present = (lo >> 47) & 1;
    if (!(type == 0xe || type == 0xf || (!long64 && (type == 6 || type == 7)))) emu_raise(cpu, EMU_GP, true, idt_err);
    if (soft && dpl < cpu->cpl) emu_raise(cpu, EMU_GP, true, idt_err);
    if (!present) emu_raise(cpu, EMU_NP, true, idt_err);
    uint16_t sel = (uint16_t)(lo >> 16);
    uint64_t target = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ull) | (hi << 32);
    unsigned ist = long64 ? (lo >> 32) & 7 : 0;

    uint64_t d;
    if ((sel & ~3u) == 0) emu_gp0(cpu);
    read_desc(cpu, sel, &d, NULL, false);
    struct emu_seg ncs;
    desc_to_seg(&ncs, sel, d);
    if (!ncs.s || !(ncs.type & 8)) emu_raise(cpu, EMU_GP, true, sel & ~3u);
    if (!ncs.present) emu_raise(cpu, EMU_NP, true, sel & ~3u);
    unsigned new_cpl = (ncs.type & 4) ? cpu->cpl : ncs.dpl;
    uint16_t old_cs = cpu->seg[EMU_CS].sel, old_ss = cpu->seg[EMU_SS].sel;
    uint64_t old_rsp = cpu->r[EMU_RSP];

    if (long64) {
        uint64_t rsp = old_rsp;
        if (ist) rsp = sys_read(cpu, cpu->tr.base + 36 + (ist - 1) * 8, 8);
        else if (new_cpl < cpu->cpl) rsp = sys_read(cpu, cpu->tr.base + 4 + new_cpl * 8, 8);
        rsp &= ~15ull;
        uint64_t frame[6];
        unsigned n = 0;
        if (has_err) frame[n++] = err;
        frame[n++] = next_rip;
        frame[n++] = old_cs;
        frame[n++] = rflags;
        frame[n++] = old_rsp;
        frame[n++] = old_ss;
        /* Write the frame at the new privilege level before changing anything. */
        for (unsigned i = 0; i < n; i++) {
            uint64_t a = rsp - (n - i) * 8;
            if (!emu_canonical(a)) emu_raise(cpu, EMU_SS_FAULT, true, 0);
            emu_mem_write_slow(cpu, a, 8, frame[i], new_cpl == 3);
        }
        cpu->r[EMU_RSP] = rsp - n * 8;
        if (new_cpl < cpu->cpl) {
            cpu->seg[EMU_SS] = (struct emu_seg){.sel = new_cpl};
        }
    } else {
        /* 32-bit protected mode: stack switch through the TSS on a privilege change. */
        uint64_t esp = old_rsp;
        bool sw = new_cpl < cpu->cpl;
        struct emu_seg nss = cpu->seg[EMU_SS];
        if (sw) {
            esp = sys_read(cpu, cpu->tr.base + 4 + new_cpl * 8, 4);
            uint16_t ssel = (uint16_t)sys_read(cpu, cpu->tr.base + 8 + new_cpl * 8, 2);
            uint64_t sd;
            read_desc(cpu, ssel, &sd, NULL, false);
            desc_to_seg(&nss, ssel, sd);
        }
        uint32_t frame[6];
        unsigned n = 0;
        if (has_err) frame[n++] = err;
        frame[n++] = (uint32_t)next_rip;
        frame[n++] = old_cs;
        frame[n++] = (uint32_t)rflags;
        if (sw) {
            frame[n++] = (uint32_t)old_rsp;
            frame[n++] = old_ss;
        }
        for (unsigned i = 0; i < n; i++)
            emu_mem_write_slow(cpu, (uint32_t)(nss.base + (uint32_t)(esp - (n - i) * 4)), 4, frame[i], new_cpl == 3);
        cpu->seg[EMU_SS] = nss;
        cpu->r[EMU_RSP] = (uint32_t)(esp - n * 4);
    }
    uint64_t clear = EMU_FLAG_TF | EMU_FLAG_NT | EMU_FLAG_RF | EMU_FLAG_VM;
    if (type == 0xe || type == 6) clear |= EMU_FLAG_IF;
    emu_set_rflags(cpu, rflags & ~clear);
    unsigned old_cpl = cpu->cpl;
    cpu->seg[EMU_CS] = ncs;
    cpu->cpl = new_cpl;
    cpu->seg[EMU_CS].sel = (sel & ~3u) | new_cpl;
    if (old_cpl != new_cpl) emu_tlb_flush(cpu, false);
    cpu->rip = long64 && ncs.l ? target : (uint32_t)target;
}

static void exec_iret(struct emu_cpu *cpu, const struct emu_insn *in)
{
    cpu->nmi_blocked = false; /* even an iret that faults ends NMI blocking */
    enum emu_cpu_mode mode = emu_mode(cpu);
    unsigned os = in->osize;
    if (mode == EMU_MODE_REAL) {
        uint16_t sp = (uint16_t)cpu->r[EMU_RSP];
        uint64_t ss = cpu->seg[EMU_SS].base;
        uint64_t ip = emu_read(cpu, ss + sp, os), cs = emu_read(cpu, ss + (uint16_t)(sp + os), 2),
                 fl = emu_read(cpu, ss + (uint16_t)(sp + 2 * os), os);
        cpu->r[EMU_RSP] = (cpu->r[EMU_RSP] & ~0xffffull) | (uint16_t)(sp + 3 * os);
        cpu->rip = ip;
        cpu->seg[EMU_CS].sel = (uint16_t)cs;
        cpu->seg[EMU_CS].base = cs << 4;
        uint64_t cur = emu_get_rflags(cpu);
        uint64_t m = os == 2 ? 0xffff : 0x257fd5;
        emu_set_rflags(cpu, (cur & ~m) | (fl & m));
        return;
    }
    uint64_t sp = mode == EMU_MODE_LONG64 ? cpu->r[EMU_RSP] : (uint32_t)(cpu->seg[EMU_SS].base + (uint32_t)cpu->r[EMU_RSP]);
    uint64_t ip = emu_read(cpu, sp, os), cs = emu_read(cpu, sp + os, os) & 0xffff, fl = emu_read(cpu, sp + 2 * os, os);
    unsigned rpl = cs & 3;
    bool outer = mode == EMU_MODE_LONG64 || rpl > cpu->cpl;
    uint64_t nsp = 0, nss = 0;
    if (outer) {
        nsp = emu_read(cpu, sp + 3 * os, os);
        nss = emu_read(cpu, sp + 4 * os, os) & 0xffff;
    }
    unsigned old_cpl = cpu->cpl;
    if (rpl < old_cpl) emu_raise(cpu, EMU_GP, true, (uint32_t)cs & ~3u);
    load_cs(cpu, (uint16_t)cs);
    cpu->rip = cpu->seg[EMU_CS].l ? ip : (uint32_t)ip;
    uint64_t cur = emu_get_rflags(cpu);
    uint64_t chg = EMU_FLAGS_STATUS | EMU_FLAG_TF | EMU_FLAG_DF | EMU_FLAG_NT | EMU_FLAG_AC | EMU_FLAG_ID | EMU_FLAG_RF;
    if (old_cpl == 0) chg |= EMU_FLAG_IOPL;
    if (old_cpl <= ((cur >> 12) & 3)) chg |= EMU_FLAG_IF;
    if (os == 2) chg &= 0xffff;
    emu_set_rflags(cpu, (cur & ~chg) | (fl & chg));
    if (outer) {
        if ((nss & ~3u) == 0 && mode == EMU_MODE_LONG64 && cpu->cpl < 3) {
            cpu->seg[EMU_SS] = (struct emu_seg){.sel = (uint16_t)nss};
        } else {
            emu_load_seg(cpu, EMU_SS, (uint16_t)nss);
        }
        cpu->r[EMU_RSP] = os == 8 ? nsp : (uint32_t)nsp;
    } else {
        cpu->r[EMU_RSP] = (uint32_t)(cpu->r[EMU_RSP] + 3 * os);
    }
}

/* ---- CPUID ---- */

void emu_cpuid(struct emu_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    memset(out, 0, 16);
    switch (leaf) {
    case 0:
        out[0] = 0x16;
        memcpy(&out[1], "Genu", 4);
        memcpy(&out[3], "ineI", 4);
        memcpy(&out[2], "ntel", 4);
        break;
    case 1:
        out[0] = 0x000306a9; /* family 6 model 0x3a */
        out[1] = ((cpu->topo_pkg_cpus > 1 ? (cpu->topo_pkg_cpus > 255 ? 255u : cpu->topo_pkg_cpus) : 1u) << 16) |
                 (8u << 8) | ((cpu->apic_id & 0xff) << 24);
        out[2] = (1u << 21) | (1u << 23) | (1u << 24); /* x2APIC, popcnt, TSC-deadline timer */
        out[3] = (1u << 0) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 9) | (1u << 12) |
                 (1u << 13) | (1u << 15) | (1u << 16) | (1u << 19) | (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26);
        if (cpu->topo_pkg_cpus > 1) out[3] |= 1u << 28; /* HTT: the logical count above is valid */
        break;
    case 0xb: /* extended topology: SMT level, core level (spanning the package), end */
        if (!cpu->topo_threads) break;
        if (sub == 0) {
            out[0] = cpu->topo_smt_shift;
            out[1] = cpu->topo_threads;
            out[2] = 0 | (1u << 8);
        } else if (sub == 1) {
            out[0] = cpu->topo_pkg_shift;
            out[1] = cpu->topo_pkg_cpus;
            out[2] = 1 | (2u << 8);
        } else {
            out[2] = sub & 0xff;
        }
        out[3] = cpu->apic_id;
        break;
    case 0x15: /* TSC = crystal * ebx / eax */
        out[0] = 1;
        out[1] = 1;
        out[2] = (uint32_t)EMU_TSC_HZ;
        break;
    case 0x16:
        out[0] = out[1] = (uint32_t)(EMU_TSC_HZ / 1000000);
        out[2] = 100;
        break;
    case 0x80000000: out[0] = 0x80000008; break;
    case 0x80000001:
        out[2] = (1u << 0) | (1u << 5); /* lahf/sahf, lzcnt */
        out[3] = (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29);
        break;
    case 0x80000002: case 0x80000003: case 0x80000004: {
        static const char brand[48] = "vmkit software CPU";
        memcpy(out, brand + (leaf - 0x80000002) * 16, 16);
        break;
    }
    case 0x80000008: out[0] = 0x3028; break; /* 40-bit physical, 48-bit linear */
    }
}

/* ---- MSRs ---- */

int emu_rdmsr(struct emu_cpu *cpu, uint32_t idx, uint64_t *v)
{
    switch (idx) {
    case 0x10: *v = emu_rdtsc(cpu); return 0;
    case 0x1b: *v = cpu->apic_base; return 0;
    /* platform ID, microcode revision, MTRRcap, MCG_CAP/STATUS: nothing to report */
    case 0x17: case 0x8b: case 0xfe: case 0x179: case 0x17a: *v = 0; return 0;
    case 0x174: *v = cpu->sysenter_cs; return 0;
    case 0x175: *v = cpu->sysenter_esp; return 0;
    case 0x176: *v = cpu->sysenter_eip; return 0;
    case 0x1a0: *v = cpu->misc_enable; return 0;
    case 0x277: *v = cpu->pat; return 0;
    case 0x2ff: *v = 0; return 0;
    case 0xc0000080: *v = cpu->efer; return 0;
    case 0xc0000081: *v = cpu->star; return 0;
    case 0xc0000082: *v = cpu->lstar; return 0;
    case 0xc0000083: *v = cpu->cstar; return 0;
    case 0xc0000084: *v = cpu->sfmask; return 0;
    case 0xc0000100: *v = cpu->seg[EMU_FS].base; return 0;
    case 0xc0000101: *v = cpu->seg[EMU_GS].base; return 0;
    case 0xc0000102: *v = cpu->kernel_gs_base; return 0;
    case 0xc0000103: *v = cpu->tsc_aux; return 0;
    }
    if (cpu->io && cpu->io->msr_read) {
        int r = cpu->io->msr_read(cpu->io_opaque, idx, v);
        if (r != -ENOENT) return r;
    }
    return -EINVAL;
}

/* IA32_APIC_BASE: EN (bit 11) and EXTD (bit 10) move between disabled (0,0), xAPIC (1,0) and
 * x2APIC (1,1) only as the SDM allows: EXTD without EN, x2APIC to xAPIC and disabled to
 * x2APIC are #GP, as are the reserved bits (0-7, 9, above the 40-bit physical width). */
static int apic_base_write(struct emu_cpu *cpu, uint64_t v)
{
    if (v & (0x2ffull | ~((1ull << 40) - 1))) return -EINVAL;
    unsigned from = (cpu->apic_base >> 10) & 3, to = (v >> 10) & 3;
    if (to == 1 || (from == 3 && to == 2) || (from == 0 && to == 3)) return -EINVAL;
    cpu->apic_base = v;
    if (cpu->io && cpu->io->msr_write) cpu->io->msr_write(cpu->io_opaque, 0x1b, v);
    return 0;
}

static bool canonical(uint64_t v) { return emu_canonical(v); }

int emu_wrmsr(struct emu_cpu *cpu, uint32_t idx, uint64_t v)
{
    switch (idx) {
    case 0x10: cpu->tsc_offset = v - emu_rdtsc(cpu) + cpu->tsc_offset; return 0;
    case 0x1b: return apic_base_write(cpu, v);
    case 0x8b: case 0x179: case 0x17a: case 0x2ff: return 0;
    case 0x174: cpu->sysenter_cs = v; return 0;
    case 0x175: cpu->sysenter_esp = v; return 0;
    case 0x176: cpu->sysenter_eip = v; return 0;
    case 0x1a0: cpu->misc_enable = v; return 0;
    case 0x277: cpu->pat = v; return 0;
    case 0xc0000080: {
        if (v & ~(EMU_EFER_SCE | EMU_EFER_LME | EMU_EFER_LMA | EMU_EFER_NXE)) return -EINVAL;
        uint64_t lma = cpu->efer & EMU_EFER_LMA;
        cpu->efer = (v & ~EMU_EFER_LMA) | lma;
        emu_tlb_flush(cpu, true);
        return 0;
    }
    case 0xc0000081: cpu->star = v; return 0;
    case 0xc0000082: if (!canonical(v)) return -EINVAL; cpu->lstar = v; return 0;
    case 0xc0000083: if (!canonical(v)) return -EINVAL; cpu->cstar = v; return 0;
    case 0xc0000084: cpu->sfmask = v & 0xffffffff; return 0;
    case 0xc0000100: if (!canonical(v)) return -EINVAL; cpu->seg[EMU_FS].base = v; return 0;
    case 0xc0000101: if (!canonical(v)) return -EINVAL; cpu->seg[EMU_GS].base = v; return 0;
    case 0xc0000102: if (!canonical(v)) return -EINVAL; cpu->kernel_gs_base = v; return 0;
    case 0xc0000103: cpu->tsc_aux = (uint32_t)v; return 0;
    }
    if (idx >= 0x200 && idx <= 0x20f) return 0; /* variable MTRRs */
    if (idx == 0x250 || idx == 0x258 || idx == 0x259 || (idx >= 0x268 && idx <= 0x26f)) return 0;
    if (cpu->io && cpu->io->msr_write) {
        int r = cpu->io->msr_write(cpu->io_opaque, idx, v);
        if (r != -ENOENT) return r;
    }
    return -EINVAL;
}

/* ---- control registers ---- */

static void write_cr(struct emu_cpu *cpu, unsigned n, uint64_t v)
{
    switch (n) {
    case 0: {
        if ((v >> 32) != 0) emu_gp0(cpu);
        if ((v & EMU_CR0_PG) && !(v & EMU_CR0_PE)) emu_gp0(cpu);
        bool pg_on = (v & EMU_CR0_PG) && !(cpu->cr0 & EMU_CR0_PG);
        bool pg_off = !(v & EMU_CR0_PG) && (cpu->cr0 & EMU_CR0_PG);
        if (pg_on && (cpu->efer & EMU_EFER_LME)) {
            if (!(cpu->cr4 & EMU_CR4_PAE)) emu_gp0(cpu);
            cpu->efer |= EMU_EFER_LMA;
        }
        if (pg_off) {
            if (emu_mode(cpu) == EMU_MODE_LONG64) emu_gp0(cpu);
            cpu->efer &= ~EMU_EFER_LMA;
        }
        cpu->cr0 = v | EMU_CR0_ET;
        emu_tlb_flush(cpu, true);
        return;
    }
    case 2: cpu->cr2 = v; return;
    case 3: cpu->cr3 = v; emu_tlb_flush(cpu, false); return;
    case 4:
        if (v & ~0x3f07ffull) emu_gp0(cpu);
        if ((cpu->efer & EMU_EFER_LMA) && !(v & EMU_CR4_PAE)) emu_gp0(cpu);
        cpu->cr4 = v;
        emu_tlb_flush(cpu, true);
        return;
    case 8: cpu->cr8 = v & 15; return;
    }
    emu_ud(cpu);
}

static uint64_t read_cr(struct emu_cpu *cpu, unsigned n)
{
    switch (n) {
    case 0: return cpu->cr0;
    case 2: return cpu->cr2;
    case 3: return cpu->cr3;
    case 4: return cpu->cr4;
    case 8: return cpu->cr8;
    }
    emu_ud(cpu);
}

static inline void need_cpl0(struct emu_cpu *cpu)
{
    if (cpu->cpl) emu_gp0(cpu);
}

static inline bool io_allowed(struct emu_cpu *cpu)
{
    return cpu->cpl <= ((cpu->flags >> 12) & 3) && !(cpu->flags & EMU_FLAG_VM);
}

static void reg_write_sz(struct emu_cpu *cpu, unsigned r, unsigned size, uint64_t v)
{
    if (size == 1) cpu->r[r] = (cpu->r[r] & ~0xffull) | (v & 0xff);
    else if (size == 2) cpu->r[r] = (cpu->r[r] & ~0xffffull) | (v & 0xffff);
    else cpu->r[r] = (uint32_t)v;
}

void emu_exec_system(struct emu_cpu *cpu, const struct emu_insn *in)
{
    enum emu_cpu_mode mode = emu_mode(cpu);
    unsigned os = in->osize;
    if (in->map == 0) {
        switch (in->op) {
        case 0xe4: case 0xe5: case 0xec: case 0xed: {
            if (!io_allowed(cpu)) emu_gp0(cpu);
            unsigned size = (in->op & 1) ? (os == 2 ? 2 : 4) : 1;
            uint16_t port = in->op < 0xe8 ? (uint16_t)(in->imm & 0xff) : (uint16_t)cpu->r[EMU_RDX];
            uint32_t v = cpu->io && cpu->io->pio_read ? cpu->io->pio_read(cpu->io_opaque, port, size) : 0xffffffffu;
            reg_write_sz(cpu, EMU_RAX, size, v);
            return;
        }
        case 0xe6: case 0xe7: case 0xee: case 0xef: {
            if (!io_allowed(cpu)) emu_gp0(cpu);
            unsigned size = (in->op & 1) ? (os == 2 ? 2 : 4) : 1;
            uint16_t port = in->op < 0xe8 ? (uint16_t)(in->imm & 0xff) : (uint16_t)cpu->r[EMU_RDX];
            if (cpu->io && cpu->io->pio_write)
                cpu->io->pio_write(cpu->io_opaque, port, (uint32_t)(cpu->r[EMU_RAX] & emu_size_mask(size)), size);
            return;
        }
        case 0xfa:
            if (!io_allowed(cpu)) emu_gp0(cpu);
            cpu->flags &= ~(uint64_t)EMU_FLAG_IF;
            return;
        case 0xfb:
            if (!io_allowed(cpu)) emu_gp0(cpu);
            if (!(cpu->flags & EMU_FLAG_IF)) cpu->intr_shadow = true;
            cpu->flags |= EMU_FLAG_IF;
            return;
        case 0xcf: exec_iret(cpu, in); return;
        case 0xf1: emu_deliver(cpu, EMU_DB, false, 0, false, cpu->rip); return;
        case 0xca: case 0xcb: { /* retf */
            uint64_t sp = mode == EMU_MODE_LONG64 ? cpu->r[EMU_RSP] : (uint32_t)(cpu->seg[EMU_SS].base + (mode == EMU_MODE_REAL ? (uint16_t)cpu->r[EMU_RSP] : (uint32_t)cpu->r[EMU_RSP]));
            uint64_t ip = emu_read(cpu, sp, os), cs = emu_read(cpu, sp + os, 2);
            load_cs(cpu, (uint16_t)cs);
            cpu->rip = os == 8 ? ip : ip & emu_size_mask(os);
            uint64_t n = 2 * os + (in->op == 0xca ? (in->imm & 0xffff) : 0);
            if (mode == EMU_MODE_LONG64) cpu->r[EMU_RSP] += n;
            else if (mode == EMU_MODE_REAL || !cpu->seg[EMU_SS].db) cpu->r[EMU_RSP] = (cpu->r[EMU_RSP] & ~0xffffull) | (uint16_t)(cpu->r[EMU_RSP] + n);
            else cpu->r[EMU_RSP] = (uint32_t)(cpu->r[EMU_RSP] + n);
            return;
        }
        case 0xea: /* jmp ptr16:16/32 */
            load_cs(cpu, (uint16_t)in->imm2);
            cpu->rip = in->imm & emu_size_mask(os);
            return;
        case 0xff: { /* far jmp/call through memory */
            unsigned r = in->reg & 7;
            uint64_t lin = emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize);
            uint64_t ip = emu_read(cpu, lin, os);
            uint16_t sel = (uint16_t)emu_read(cpu, lin + os, 2);
            uint16_t old_cs = cpu->seg[EMU_CS].sel;
            uint64_t ret = cpu->rip;
            load_cs(cpu, sel);
            cpu->rip = os == 8 ? ip : ip & emu_size_mask(os);
            if (r == 3) {
                unsigned as = mode == EMU_MODE_LONG64 ? 8 : cpu->seg[EMU_SS].db ? 4 : 2;
                uint64_t sp = cpu->r[EMU_RSP];
                emu_write(cpu, emu_lin(cpu, EMU_SS, (sp - os) & emu_size_mask(as), as), os, old_cs);
                emu_write(cpu, emu_lin(cpu, EMU_SS, (sp - 2 * os) & emu_size_mask(as), as), os, ret);
                if (as == 8) cpu->r[EMU_RSP] = sp - 2 * os;
                else cpu->r[EMU_RSP] = (sp & ~emu_size_mask(as)) | ((sp - 2 * os) & emu_size_mask(as));
            }
            return;
        }
        }
        emu_ud(cpu);
    }
    if (in->map != 1) emu_ud(cpu);
    unsigned r = in->reg & 7;
    switch (in->op) {
    case 0x00:
        if (mode == EMU_MODE_REAL) emu_ud(cpu);
        switch (r) {
        case 0: case 1: { /* sldt str */
            uint16_t v = r == 0 ? cpu->ldt.sel : cpu->tr.sel;
            if (in->mem) emu_write(cpu, emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize), 2, v);
            else cpu->r[in->rm] = os == 8 ? v : (os == 4 ? v : ((cpu->r[in->rm] & ~0xffffull) | v));
            return;
        }
        case 2: case 3: { /* lldt ltr */
            need_cpl0(cpu);
            uint16_t sel = in->mem ? (uint16_t)emu_read(cpu, emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize), 2)
                                   : (uint16_t)cpu->r[in->rm];
            struct emu_seg *s = r == 2 ? &cpu->ldt : &cpu->tr;
            if ((sel & ~3u) == 0) {
                if (r == 3) emu_gp0(cpu);
                *s = (struct emu_seg){.sel = sel};
                return;
            }
            uint64_t lo, hi;
            bool l64 = cpu->efer & EMU_EFER_LMA;
            read_desc(cpu, sel, &lo, &hi, l64);
            desc_to_seg(s, sel, lo);
            if (l64) s->base |= hi << 32;
            if (r == 3) { /* mark the TSS busy */
                uint64_t a = cpu->gdt.base + (sel & ~7u);
                emu_write(cpu, a, 8, lo | (2ull << 40));
                s->type |= 2;
            }
            return;
        }
        default: { /* verr verw: kernels run verw on the way to user mode (MDS mitigation) */
            uint16_t sel = in->mem ? (uint16_t)emu_read(cpu, emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize), 2)
                                   : (uint16_t)cpu->r[in->rm];
            uint64_t f = emu_get_rflags(cpu) & ~(uint64_t)EMU_FLAG_ZF;
            struct emu_dtable t = (sel & 4) ? (struct emu_dtable){.base = cpu->ldt.base, .limit = (uint16_t)cpu->ldt.limit} : cpu->gdt;
            if ((sel & ~3u) && (sel & ~7u) + 7 <= t.limit) {
                uint64_t d = sys_read(cpu, t.base + (sel & ~7u), 8);
                struct emu_seg sg;
                desc_to_seg(&sg, sel, d);
                bool code = sg.type & 8, conforming = code && (sg.type & 4);
                unsigned need = cpu->cpl > (sel & 3u) ? cpu->cpl : (sel & 3u);
                bool priv_ok = conforming || sg.dpl >= need;
                bool ok = r == 4 ? (!code || (sg.type & 2)) : (!code && (sg.type & 2));
                if (sg.s && priv_ok && ok) f |= EMU_FLAG_ZF;
            }
            emu_set_rflags(cpu, f);
            return;
        }
        }
    case 0x01:
        if (!in->mem) {
            switch (r) {
            case 4: reg_write_sz(cpu, in->rm, os == 2 ? 2 : 4, cpu->cr0); if (os == 8) cpu->r[in->rm] = cpu->cr0; return;
            case 6: need_cpl0(cpu); write_cr(cpu, 0, (cpu->cr0 & ~0xeull) | (cpu->r[in->rm] & 0xf) | (cpu->cr0 & 1)); return;
            case 7:
                if ((in->rm & 7) == 0) { /* swapgs */
                    need_cpl0(cpu);
                    uint64_t t = cpu->seg[EMU_GS].base;
                    cpu->seg[EMU_GS].base = cpu->kernel_gs_base;
                    cpu->kernel_gs_base = t;
                    return;
                }
                { /* rdtscp */
                    uint64_t t = emu_rdtsc(cpu);
                    cpu->r[EMU_RAX] = (uint32_t)t;
                    cpu->r[EMU_RDX] = t >> 32;
                    cpu->r[EMU_RCX] = (uint32_t)cpu->tsc_aux;
                    return;
                }
            }
            emu_ud(cpu);
        }
        {
            uint64_t lin = emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize);
            unsigned bsz = mode == EMU_MODE_LONG64 ? 8 : 4;
            switch (r) {
            case 0: case 1: {
                struct emu_dtable *t = r == 0 ? &cpu->gdt : &cpu->idt;
                emu_write(cpu, lin, 2, t->limit);
                emu_write(cpu, lin + 2, bsz, t->base);
                return;
            }
            case 2: case 3: {
                need_cpl0(cpu);
                uint16_t limit = (uint16_t)emu_read(cpu, lin, 2);
                uint64_t base = emu_read(cpu, lin + 2, bsz);
                if (os == 2 && mode != EMU_MODE_LONG64) base &= 0xffffff;
                struct emu_dtable *t = r == 2 ? &cpu->gdt : &cpu->idt;
                t->limit = limit;
                t->base = base;
                return;
            }
            case 4: emu_write(cpu, lin, 2, cpu->cr0); return;
            case 6: need_cpl0(cpu); write_cr(cpu, 0, (cpu->cr0 & ~0xeull) | (emu_read(cpu, lin, 2) & 0xf) | (cpu->cr0 & 1)); return;
            case 7: need_cpl0(cpu); emu_invlpg(cpu, lin); return;
            }
        }
        emu_ud(cpu);
    case 0x02: case 0x03: { /* lar lsl: the vDSO's getcpu reads the CPU number with lsl */
        if (mode == EMU_MODE_REAL) emu_ud(cpu);
        uint16_t sel = in->mem ? (uint16_t)emu_read(cpu, emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize), 2)
                               : (uint16_t)cpu->r[in->rm];
        uint64_t f = emu_get_rflags(cpu) & ~(uint64_t)EMU_FLAG_ZF;
        struct emu_dtable t = (sel & 4) ? (struct emu_dtable){.base = cpu->ldt.base, .limit = (uint16_t)cpu->ldt.limit} : cpu->gdt;
        if ((sel & ~3u) && (sel & ~7u) + 7 <= t.limit) {
            uint64_t d = sys_read(cpu, t.base + (sel & ~7u), 8);
            struct emu_seg sg;
            desc_to_seg(&sg, sel, d);
            bool ok;
            if (sg.s) {
                ok = (sg.type & 0xc) == 0xc /* conforming code */ ||
                     sg.dpl >= (cpu->cpl > (sel & 3u) ? cpu->cpl : (sel & 3u));
            } else {
                /* LDT and TSS descriptors (and call gates for lar); 64-bit mode knows no others. */
                unsigned ty = sg.type;
                ok = ty == 2 || ty == 9 || ty == 0xb || (in->op == 0x02 && ty == 0xc);
                if (mode != EMU_MODE_LONG64) ok = ok || ty == 1 || ty == 3 || (in->op == 0x02 && (ty == 4 || ty == 5));
                ok = ok && sg.dpl >= (cpu->cpl > (sel & 3u) ? cpu->cpl : (sel & 3u));
            }
            if (ok) {
                uint64_t v = in->op == 0x03 ? sg.limit : (d >> 32) & 0x00f0ff00;
                if (in->osize == 2) cpu->r[in->reg] = (cpu->r[in->reg] & ~0xffffull) | (v & 0xffff);
                else cpu->r[in->reg] = (uint32_t)v;
                f |= EMU_FLAG_ZF;
            }
        }
        emu_set_rflags(cpu, f);
        return;
    }
    case 0x05: { /* syscall */
        if (!(cpu->efer & EMU_EFER_SCE)) emu_ud(cpu);
        cpu->r[EMU_RCX] = cpu->rip;
        cpu->r[11] = emu_get_rflags(cpu) & ~(uint64_t)EMU_FLAG_RF;
        uint16_t sel = (uint16_t)(cpu->star >> 32);
        cpu->seg[EMU_CS] = (struct emu_seg){.sel = sel & ~3u, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .l = 1, .g = 1};
        cpu->seg[EMU_SS] = (struct emu_seg){.sel = (sel + 8) & ~3u, .limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1};
        bool changed = cpu->cpl != 0;
        cpu->cpl = 0;
        emu_set_rflags(cpu, cpu->r[11] & ~cpu->sfmask);
        cpu->rip = cpu->lstar;
        if (changed) emu_tlb_flush(cpu, false);
        return;
    }
    case 0x07: { /* sysret */
        need_cpl0(cpu);
        if (!(cpu->efer & EMU_EFER_SCE)) emu_ud(cpu);
        uint16_t sel = (uint16_t)(cpu->star >> 48);
        if (os == 8) {
            if (!canonical(cpu->r[EMU_RCX])) emu_gp0(cpu);
            cpu->seg[EMU_CS] = (struct emu_seg){.sel = (sel + 16) | 3, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .l = 1, .g = 1, .dpl = 3};
            cpu->rip = cpu->r[EMU_RCX];
        } else {
            cpu->seg[EMU_CS] = (struct emu_seg){.sel = sel | 3, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .db = 1, .g = 1, .dpl = 3};
            cpu->rip = (uint32_t)cpu->r[EMU_RCX];
        }
        cpu->seg[EMU_SS] = (struct emu_seg){.sel = (sel + 8) | 3, .limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1, .dpl = 3};
        cpu->cpl = 3;
        emu_set_rflags(cpu, (cpu->r[11] & 0x3c7fd7) | 2);
        emu_tlb_flush(cpu, false);
        return;
    }
    case 0x06: need_cpl0(cpu); cpu->cr0 &= ~EMU_CR0_TS; return;
    case 0x08: case 0x09: need_cpl0(cpu); return; /* invd wbinvd */
    case 0x20: need_cpl0(cpu); cpu->r[in->rm] = mode == EMU_MODE_LONG64 ? read_cr(cpu, in->reg) : (uint32_t)read_cr(cpu, in->reg); return;
    case 0x22: need_cpl0(cpu); write_cr(cpu, in->reg, mode == EMU_MODE_LONG64 ? cpu->r[in->rm] : (uint32_t)cpu->r[in->rm]); return;
    case 0x21: need_cpl0(cpu); cpu->r[in->rm] = (in->reg & 7) == 6 ? 0xffff0ff0 : (in->reg & 7) == 7 ? 0x400 : 0; return;
    case 0x23: need_cpl0(cpu); return; /* debug registers: accepted, no breakpoints */
    case 0x30: { /* wrmsr */
        need_cpl0(cpu);
        uint64_t v = (cpu->r[EMU_RAX] & 0xffffffff) | (cpu->r[EMU_RDX] << 32);
        if (emu_wrmsr(cpu, (uint32_t)cpu->r[EMU_RCX], v)) emu_gp0(cpu);
        return;
    }
    case 0x31: {
        uint64_t t = emu_rdtsc(cpu);
        cpu->r[EMU_RAX] = (uint32_t)t;
        cpu->r[EMU_RDX] = t >> 32;
        return;
    }
    case 0x32: {
        need_cpl0(cpu);
        uint64_t v;
        if (emu_rdmsr(cpu, (uint32_t)cpu->r[EMU_RCX], &v)) emu_gp0(cpu);
        cpu->r[EMU_RAX] = (uint32_t)v;
        cpu->r[EMU_RDX] = v >> 32;
        return;
    }
    case 0xa2: {
        uint32_t o[4];
        emu_cpuid(cpu, (uint32_t)cpu->r[EMU_RAX], (uint32_t)cpu->r[EMU_RCX], o);
        cpu->r[EMU_RAX] = o[0];
        cpu->r[EMU_RBX] = o[1];
        cpu->r[EMU_RCX] = o[2];
        cpu->r[EMU_RDX] = o[3];
        return;
    }
    }
    emu_ud(cpu);
}
