/* Software CPU x87 floating point: each instruction runs as the same host instruction on the
 * guest's x87 state (loaded with frstor, saved with fnsave), from a table of fixed stubs, so
 * 80-bit results, condition codes and tags are the hardware's. Exceptions are always masked. */
#include <string.h>

#include "accel/emu/emu_internal.h"

/* The registers are kept in ST(i) order (as fxsave stores them): TOP becoming 0 rotates them. */
void emu_x87_fninit(struct emu_cpu *cpu)
{
    unsigned top = (cpu->fsw >> 11) & 7;
    uint8_t st[8][10];
    for (unsigned i = 0; i < 8; i++) memcpy(st[i], cpu->x87_st[(i - top) & 7], 10);
    memcpy(cpu->x87_st, st, sizeof(st));
    cpu->fcw = 0x37f;
    cpu->fsw = 0;
    cpu->ftw = 0;
    cpu->fip = cpu->fdp = 0;
    cpu->fcs = cpu->fds = cpu->fop = 0;
}

/* The full tag of physical register p: 0 valid, 1 zero, 2 special, 3 empty. */
static unsigned full_tag(const struct emu_cpu *cpu, unsigned p)
{
    if (!(cpu->ftw & (1u << p))) return 3;
    const uint8_t *v = cpu->x87_st[(p - ((cpu->fsw >> 11) & 7)) & 7];
    uint64_t m;
    uint16_t se;
    memcpy(&m, v, 8);
    memcpy(&se, v + 8, 2);
    unsigned e = se & 0x7fff;
    if (e == 0x7fff) return 2;
    if (e == 0) return m ? 2 : 1;
    return (m >> 63) ? 0 : 2;
}

/* Protected-mode environment formats: 28 bytes (32-bit operand size) or 14 (16-bit). The
 * real-mode formats are not modelled. */
void emu_x87_env(struct emu_cpu *cpu, const struct emu_insn *in)
{
    unsigned r = in->reg & 7;
    bool env16 = in->osize == 2, whole = in->op == 0xdd;
    unsigned envsz = env16 ? 14 : 28, size = envsz + (whole ? 80 : 0);
    uint64_t lin = emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize);
    uint8_t img[108];
    if (r == 6) { /* fnstenv fnsave */
        /* The first word, then the last byte: where a page-crossing image faults on the host. */
        emu_mem_probe_write(cpu, lin, env16 ? 2 : 4);
        emu_mem_probe_write(cpu, lin + size - 1, 1);
        uint16_t tw = 0;
        for (unsigned p = 0; p < 8; p++) tw |= (uint16_t)(full_tag(cpu, p) << (2 * p));
        uint32_t w[7];
        if (env16) {
            uint16_t h[7] = {cpu->fcw, cpu->fsw, tw, (uint16_t)cpu->fip, cpu->fcs, (uint16_t)cpu->fdp, cpu->fds};
            memcpy(img, h, 14);
        } else {
            w[0] = 0xffff0000u | cpu->fcw;
            w[1] = 0xffff0000u | cpu->fsw;
            w[2] = 0xffff0000u | tw;
            w[3] = (uint32_t)cpu->fip;
            w[4] = cpu->fcs | (uint32_t)(cpu->fop & 0x7ff) << 16;
            w[5] = (uint32_t)cpu->fdp;
            w[6] = 0xffff0000u | cpu->fds;
            memcpy(img, w, 28);
        }
        if (whole) memcpy(img + envsz, cpu->x87_st, 80);
        for (unsigned i = 0; i < size; i++) emu_write(cpu, lin + i, 1, img[i]);
        if (whole) emu_x87_fninit(cpu);
        else cpu->fcw |= 0x3f; /* fnstenv masks all exceptions afterwards */
        return;
    }
    /* fldenv frstor: read everything before changing anything. */
    (void)emu_read(cpu, lin, env16 ? 2 : 4);
    (void)emu_read(cpu, lin + size - 1, 1);
    for (unsigned i = 0; i < size; i++) img[i] = (uint8_t)emu_read(cpu, lin + i, 1);
    uint16_t h[7];
    uint32_t w[7];
    uint16_t tw;
    if (env16) {
        memcpy(h, img, 14);
        cpu->fcw = h[0];
        cpu->fsw = h[1];
        tw = h[2];
        cpu->fip = h[3];
        cpu->fcs = h[4];
        cpu->fdp = h[5];
        cpu->fds = h[6];
        cpu->fop = 0;
    } else {
        memcpy(w, img, 28);
        cpu->fcw = (uint16_t)w[0];
        cpu->fsw = (uint16_t)w[1];
        tw = (uint16_t)w[2];
        cpu->fip = w[3];
        cpu->fcs = (uint16_t)w[4];
        cpu->fop = (w[4] >> 16) & 0x7ff;
        cpu->fdp = w[5];
        cpu->fds = (uint16_t)w[6];
    }
    cpu->fcw = (cpu->fcw & 0x1f3f) | 0x40; /* reserved bits: 6 reads as one, 7 and 13-15 as zero */
    uint8_t ftw = 0;
    for (unsigned p = 0; p < 8; p++)
        if (((tw >> (2 * p)) & 3) != 3) ftw |= (uint8_t)(1u << p);
    cpu->ftw = ftw;
    if (whole) memcpy(cpu->x87_st, img + envsz, 80);
}

#if defined(__x86_64__)

/* One stub per x87 opcode (D8-DF) and ModRM byte: "endbr64; op modrm; ret; int3". Memory
 * forms are rewritten to [rsi], which points at a copy of the operand. Only encodings the
 * decoder accepts are ever called. */
__asm__(".pushsection .text.emu_x87_stubs,\"ax\",@progbits\n"
        ".balign 16\n"
        ".globl emu_x87_stubs\n"
        ".hidden emu_x87_stubs\n"
        "emu_x87_stubs:\n"
        ".irp op,0xd8,0xd9,0xda,0xdb,0xdc,0xdd,0xde,0xdf\n"
        ".set emu_x87_m,0\n"
        ".rept 256\n"
        ".byte 0xf3,0x0f,0x1e,0xfa\n"
        ".byte \\op\n"
        ".if emu_x87_m < 0xc0\n"
        ".byte (emu_x87_m & 0x38) | 6\n"
        ".else\n"
        ".byte emu_x87_m\n"
        ".endif\n"
        ".byte 0xc3,0xcc\n"
        ".set emu_x87_m,emu_x87_m+1\n"
        ".endr\n"
        ".endr\n"
        ".popsection\n");
extern const uint8_t emu_x87_stubs[];

/* fnsave/frstor image, 32-bit protected-mode format (what they use in 64-bit mode). */
struct fnsave_img {
    uint16_t fcw, pad0, fsw, pad1, ftw, pad2;
    uint32_t fip, fcs_fop, fdp, fds;
    uint8_t st[8][10];
} __attribute__((packed));

_Static_assert(sizeof(struct fnsave_img) == 108, "fnsave image");

/* Memory operand size and direction of an x87 memory form (0: not one that runs here). */
static unsigned mem_size(uint8_t op, unsigned r, bool *store)
{
    *store = false;
    switch (op) {
    case 0xd8: return 4;
    case 0xda: return 4;
    case 0xdc: return 8;
    case 0xde: return 2;
    case 0xd9:
        if (r == 0) return 4;
        if (r == 2 || r == 3) { *store = true; return 4; }
        return 0;
    case 0xdb:
        if (r == 0) return 4;
        if (r >= 1 && r <= 3) { *store = true; return 4; }
        if (r == 5) return 10;
        if (r == 7) { *store = true; return 10; }
        return 0;
    case 0xdd:
        if (r == 0) return 8;
        if (r >= 1 && r <= 3) { *store = true; return 8; }
        return 0;
    case 0xdf:
        if (r == 0) return 2;
        if (r >= 1 && r <= 3) { *store = true; return 2; }
        if (r == 4) return 10;
        if (r == 5) return 8;
        *store = true;
        return r == 6 ? 10 : 8;
    }
    return 0;
}

void emu_exec_x87(struct emu_cpu *cpu, const struct emu_insn *in)
{
    unsigned r = in->reg & 7;
    uint8_t modrm = in->mem ? (uint8_t)(r << 3) : (uint8_t)(0xc0 | (r << 3) | (in->rm & 7));
    /* The decoder already refused anything else; the host must never run another stub. */
    if (in->op < 0xd8 || in->op > 0xdf || !emu_x87_valid(in->op, modrm)) emu_ud(cpu);
    uint8_t mem[16];
    memset(mem, 0, sizeof(mem));
    bool store = false;
    unsigned size = 0;
    uint64_t lin = 0;
    if (in->mem) {
        size = mem_size(in->op, r, &store);
        if (!size) emu_ud(cpu);
        lin = emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize);
        /* Check the whole operand before changing anything. */
        if (store) {
            emu_mem_probe_write(cpu, lin, size > 8 ? 8 : size);
            if (size > 8) emu_mem_probe_write(cpu, lin + 8, size - 8);
        } else {
            uint64_t lo = emu_read(cpu, lin, size > 8 ? 8 : size);
            memcpy(mem, &lo, 8);
            if (size > 8) {
                uint16_t hi = (uint16_t)emu_read(cpu, lin + 8, 2);
                memcpy(mem + 8, &hi, 2);
            }
        }
    }

    struct fnsave_img g;
    memset(&g, 0, sizeof(g));
    g.fcw = cpu->fcw | 0x3f;            /* all exceptions masked on the host */
    g.fsw = cpu->fsw & ~(uint16_t)0x8080; /* no pending exception (ES, B) */
    uint16_t tags = 0;
    for (unsigned i = 0; i < 8; i++)
        if (!(cpu->ftw & (1u << i))) tags |= (uint16_t)(3u << (2 * i));
    g.ftw = tags; /* non-empty registers: the CPU recomputes the kind when saving */
    memcpy(g.st, cpu->x87_st, sizeof(g.st));

    const void *stub = emu_x87_stubs + ((unsigned)(in->op - 0xd8) * 256 + modrm) * 8;
    uint64_t gflags = emu_get_rflags(cpu) & 0x8d5, hflags;
    uint8_t host[108];
    __asm__ volatile("fnsave %[h]\n\t"
                     "frstor %[g]\n\t"
                     "sub $128, %%rsp\n\t" /* the call must not clobber the red zone */
                     "pushfq\n\t"
                     "andq $~0x8d5, (%%rsp)\n\t"
                     "orq %[gf], (%%rsp)\n\t"
                     "popfq\n\t" /* fcmov reads the guest's flags */
                     "call *%[stub]\n\t"
                     "pushfq\n\t"
                     "popq %[hf]\n\t"
                     "add $128, %%rsp\n\t"
                     "fnsave %[g]\n\t"
                     "frstor %[h]"
                     : [g] "+m"(g), [h] "=m"(host), [hf] "=&r"(hflags)
                     : [stub] "r"(stub), [gf] "r"(gflags), "S"(mem)
                     : "memory", "cc");

    if (store) {
        uint64_t lo;
        memcpy(&lo, mem, 8);
        emu_write(cpu, lin, size > 8 ? 8 : size, lo);
        if (size > 8) {
            uint16_t hi;
            memcpy(&hi, mem + 8, 2);
            emu_write(cpu, lin + 8, 2, hi);
        }
    }
    uint16_t fsw = g.fsw & ~(uint16_t)0x8080;
    if (fsw & ~cpu->fcw & 0x3f) fsw |= 0x8080; /* unmasked: flagged as pending (not raised) */
    cpu->fsw = fsw;
    uint8_t ftw = 0;
    for (unsigned i = 0; i < 8; i++)
        if (((g.ftw >> (2 * i)) & 3) != 3) ftw |= (uint8_t)(1u << i);
    cpu->ftw = ftw;
    memcpy(cpu->x87_st, g.st, sizeof(g.st));
    /* fnop ffree fincstp fdecstp are control instructions: they leave the pointers alone. */
    bool control = (in->op == 0xd9 && !in->mem && (modrm == 0xd0 || modrm == 0xf6 || modrm == 0xf7)) ||
                   (in->op == 0xdd && !in->mem && r == 0);
    if (!control) {
        cpu->fip = cpu->insn_rip;
        cpu->fcs = cpu->seg[EMU_CS].sel;
        cpu->fop = (uint16_t)((in->op & 7) << 8 | (in->mod << 6) | (r << 3) | (in->rm & 7));
        if (in->mem) {
            cpu->fdp = emu_ea(cpu, in);
            cpu->fds = cpu->seg[in->seg].sel;
        }
    }
    /* fcomi fucomi fcomip fucomip: ZF PF CF from the compare, OF SF AF cleared. */
    if ((in->op == 0xdb || in->op == 0xdf) && !in->mem && r >= 5 && r <= 6)
        emu_set_rflags(cpu, (emu_get_rflags(cpu) & ~(uint64_t)0x8d5) | (hflags & 0x45));
}

#else

void emu_exec_x87(struct emu_cpu *cpu, const struct emu_insn *in)
{
    (void)in;
    emu_ud(cpu); /* computed with host instructions: x86-64 hosts only */
}

#endif
