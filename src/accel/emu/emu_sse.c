/* Software CPU SSE/SSE2: the integer and move instructions libc string functions use,
 * fxsave/fxrstor, ldmxcsr/stmxcsr, fences. Floating point is in emu_sse_fp.c. */
#include <string.h>

#include "accel/emu/emu_internal.h"

union v128 {
    uint8_t b[16];
    int8_t sb[16];
    uint16_t w[8];
    int16_t sw[8];
    uint32_t d[4];
    int32_t sd[4];
    uint64_t q[2];
};

static inline union v128 xget(struct emu_cpu *cpu, unsigned r)
{
    union v128 v;
    memcpy(&v, &cpu->xmm[r], 16);
    return v;
}

static inline void xset(struct emu_cpu *cpu, unsigned r, union v128 v)
{
    memcpy(&cpu->xmm[r], &v, 16);
}

static uint64_t lin_of(struct emu_cpu *cpu, const struct emu_insn *in)
{
    return emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize);
}

/* Alignment #GP comes before the canonical-address #SS/#GP checks. */
static uint64_t lin_of_aligned(struct emu_cpu *cpu, const struct emu_insn *in, bool aligned)
{
    uint64_t ea = emu_ea(cpu, in);
    if (aligned && ((ea + ((in->seg == EMU_FS || in->seg == EMU_GS) ? cpu->seg[in->seg].base : 0)) & 15)) emu_gp0(cpu);
    return emu_lin(cpu, in->seg, ea, in->asize);
}

static union v128 load128(struct emu_cpu *cpu, uint64_t lin, bool aligned)
{
    if (aligned && (lin & 15)) emu_gp0(cpu);
    union v128 v;
    v.q[0] = emu_read(cpu, lin, 8);
    v.q[1] = emu_read(cpu, lin + 8, 8);
    return v;
}

static void store128(struct emu_cpu *cpu, uint64_t lin, union v128 v, bool aligned)
{
    if (aligned && (lin & 15)) emu_gp0(cpu);
    emu_mem_probe_write(cpu, lin, 8);
    emu_mem_probe_write(cpu, lin + 8, 8);
    emu_write(cpu, lin, 8, v.q[0]);
    emu_write(cpu, lin + 8, 8, v.q[1]);
}

/* The xmm/m128 source operand; legacy SSE requires alignment for memory operands. */
static union v128 src_rm(struct emu_cpu *cpu, const struct emu_insn *in, bool aligned)
{
    if (!in->mem) return xget(cpu, in->rm);
    return load128(cpu, lin_of_aligned(cpu, in, aligned), aligned);
}

static inline int16_t sat16(int32_t v) { return v > 32767 ? 32767 : v < -32768 ? -32768 : (int16_t)v; }
static inline int8_t sat8(int32_t v) { return v > 127 ? 127 : v < -128 ? -128 : (int8_t)v; }
static inline uint8_t satu8(int32_t v) { return v > 255 ? 255 : v < 0 ? 0 : (uint8_t)v; }
static inline uint16_t satu16(int32_t v) { return v > 65535 ? 65535 : v < 0 ? 0 : (uint16_t)v; }

static union v128 shift_lanes(union v128 a, unsigned lane, unsigned kind, uint64_t count)
{
    /* kind: 0 logical right, 1 arithmetic right, 2 left */
    union v128 r;
    unsigned bits = lane * 8;
    for (unsigned i = 0; i < 16 / lane; i++) {
        uint64_t v = lane == 2 ? a.w[i] : lane == 4 ? a.d[i] : a.q[i];
        uint64_t o;
        if (kind == 1) {
            int64_t s = lane == 2 ? a.sw[i] : lane == 4 ? (int64_t)a.sd[i] : (int64_t)a.q[i];
            o = (uint64_t)(s >> (count >= bits ? bits - 1 : count));
        } else if (count >= bits) {
            o = 0;
        } else {
            o = kind == 0 ? v >> count : v << count;
        }
        if (lane == 2) r.w[i] = (uint16_t)o;
        else if (lane == 4) r.d[i] = (uint32_t)o;
        else r.q[i] = o;
    }
    return r;
}

static void fxsave(struct emu_cpu *cpu, uint64_t lin, bool w64)
{
    if (lin & 15) emu_gp0(cpu);
    emu_mem_probe_write(cpu, lin, 8);
    emu_mem_probe_write(cpu, lin + 504, 8);
    uint8_t img[512];
    memset(img, 0, sizeof(img));
    memcpy(img + 0, &cpu->fcw, 2);
    memcpy(img + 2, &cpu->fsw, 2);
    img[4] = cpu->ftw;
    memcpy(img + 6, &cpu->fop, 2);
    /* The x87 instruction and operand pointers: 64-bit with REX.W, else offset and selector. */
    if (w64) {
        memcpy(img + 8, &cpu->fip, 8);
        memcpy(img + 16, &cpu->fdp, 8);
    } else {
        uint32_t ip = (uint32_t)cpu->fip, dp = (uint32_t)cpu->fdp;
        memcpy(img + 8, &ip, 4);
        memcpy(img + 12, &cpu->fcs, 2);
        memcpy(img + 16, &dp, 4);
        memcpy(img + 20, &cpu->fds, 2);
    }
    memcpy(img + 24, &cpu->mxcsr, 4);
    for (unsigned i = 0; i < 8; i++) memcpy(img + 32 + 16 * i, cpu->x87_st[i], 10);
    uint32_t mask = 0xffff;
    memcpy(img + 28, &mask, 4);
    unsigned nx = emu_mode(cpu) == EMU_MODE_LONG64 ? 16 : 8;
    for (unsigned i = 0; i < nx; i++) memcpy(img + 160 + 16 * i, &cpu->xmm[i], 16);
    for (unsigned i = 0; i < 512; i += 8) {
        uint64_t v;
        memcpy(&v, img + i, 8);
        emu_write(cpu, lin + i, 8, v);
    }
}

static void fxrstor(struct emu_cpu *cpu, uint64_t lin, bool w64)
{
    if (lin & 15) emu_gp0(cpu);
    uint8_t img[512];
    for (unsigned i = 0; i < 512; i += 8) {
        uint64_t v = emu_read(cpu, lin + i, 8);
        memcpy(img + i, &v, 8);
    }
    uint32_t mx;
    memcpy(&mx, img + 24, 4);
    if (mx & ~0xffffu) emu_gp0(cpu);
    memcpy(&cpu->fcw, img, 2);
    memcpy(&cpu->fsw, img + 2, 2);
    cpu->ftw = img[4];
    memcpy(&cpu->fop, img + 6, 2);
    cpu->fop &= 0x7ff;
    if (w64) {
        memcpy(&cpu->fip, img + 8, 8);
        memcpy(&cpu->fdp, img + 16, 8);
    } else {
        uint32_t ip, dp;
        memcpy(&ip, img + 8, 4);
        memcpy(&dp, img + 16, 4);
        cpu->fip = ip;
        cpu->fdp = dp;
        memcpy(&cpu->fcs, img + 12, 2);
        memcpy(&cpu->fds, img + 20, 2);
    }
    cpu->mxcsr = mx;
    for (unsigned i = 0; i < 8; i++) memcpy(cpu->x87_st[i], img + 32 + 16 * i, 10);
    unsigned nx = emu_mode(cpu) == EMU_MODE_LONG64 ? 16 : 8;
    for (unsigned i = 0; i < nx; i++) memcpy(&cpu->xmm[i], img + 160 + 16 * i, 16);
}

void emu_exec_sse(struct emu_cpu *cpu, const struct emu_insn *in)
{
    uint8_t op = in->op;
    unsigned r = in->reg & 7;
    if (op == 0xae) {
        if (!in->mem) return; /* lfence mfence sfence: the interpreter is already ordered */
        uint64_t lin = lin_of(cpu, in);
        switch (r) {
        case 0: case 1:
            if (cpu->cr0 & (EMU_CR0_TS | EMU_CR0_EM)) emu_raise(cpu, EMU_NM, false, 0);
            if (r == 0) fxsave(cpu, lin, in->rex & 8);
            else fxrstor(cpu, lin, in->rex & 8);
            return;
        case 2: case 3:
            if (!(cpu->cr4 & EMU_CR4_OSFXSR) || (cpu->cr0 & EMU_CR0_EM)) emu_ud(cpu);
            if (cpu->cr0 & EMU_CR0_TS) emu_raise(cpu, EMU_NM, false, 0);
            if (r == 3) {
                emu_write(cpu, lin, 4, cpu->mxcsr);
            } else {
                uint32_t v = (uint32_t)emu_read(cpu, lin, 4);
                if (v & ~0xffffu) emu_gp0(cpu);
                cpu->mxcsr = v;
            }
            return;
        case 7: (void)emu_read(cpu, lin, 1); return; /* clflush: only the access check */
        }
        emu_ud(cpu);
    }
    if (!(cpu->cr4 & EMU_CR4_OSFXSR) || (cpu->cr0 & EMU_CR0_EM)) emu_ud(cpu);
    if (cpu->cr0 & EMU_CR0_TS) emu_raise(cpu, EMU_NM, false, 0);
    unsigned pfx = in->rep == 0xf3 ? 3 : in->rep == 0xf2 ? 2 : in->opsize_prefix ? 1 : 0;
    switch (op) {
    case 0x2a: case 0x2c: case 0x2d: case 0x2e: case 0x2f: case 0x50: case 0x51: case 0x52:
    case 0x53: case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e:
    case 0x5f: case 0xc2: case 0xe6:
        emu_exec_sse_fp(cpu, in, pfx);
        return;
    }
    unsigned dst = in->reg;
    union v128 a, b, res;

    switch (op) {
    case 0x10: case 0x11: {
        bool load = op == 0x10;
        if (pfx <= 1) { /* movups movupd */
            if (load) xset(cpu, dst, src_rm(cpu, in, false));
            else if (in->mem) store128(cpu, lin_of(cpu, in), xget(cpu, dst), false);
            else xset(cpu, in->rm, xget(cpu, dst));
            return;
        }
        unsigned sz = pfx == 3 ? 4 : 8;
        if (load) {
            a = xget(cpu, dst);
            if (in->mem) {
                memset(&a, 0, 16);
                uint64_t v = emu_read(cpu, lin_of(cpu, in), sz);
                memcpy(&a, &v, sz);
            } else {
                b = xget(cpu, in->rm);
                memcpy(&a, &b, sz);
            }
            xset(cpu, dst, a);
        } else {
            b = xget(cpu, dst);
            if (in->mem) {
                uint64_t v = 0;
                memcpy(&v, &b, sz);
                emu_write(cpu, lin_of(cpu, in), sz, v);
            } else {
                a = xget(cpu, in->rm);
                memcpy(&a, &b, sz);
                xset(cpu, in->rm, a);
            }
        }
        return;
    }
    case 0x12: case 0x16: {
        a = xget(cpu, dst);
        bool high = op == 0x16;
        if (in->mem) {
            a.q[high] = emu_read(cpu, lin_of(cpu, in), 8);
        } else {
            if (pfx == 1) emu_ud(cpu);
            b = xget(cpu, in->rm);
            if (high) a.q[1] = b.q[0]; /* movlhps */
            else a.q[0] = b.q[1];      /* movhlps */
        }
        xset(cpu, dst, a);
        return;
    }
    case 0x13: case 0x17:
        if (!in->mem) emu_ud(cpu);
        emu_write(cpu, lin_of(cpu, in), 8, xget(cpu, dst).q[op == 0x17]);
        return;
    case 0x14: case 0x15: {
        a = xget(cpu, dst);
        b = src_rm(cpu, in, true);
        if (pfx == 1) {
            res.q[0] = op == 0x14 ? a.q[0] : a.q[1];
            res.q[1] = op == 0x14 ? b.q[0] : b.q[1];
        } else {
            unsigned o = op == 0x14 ? 0 : 2;
            res.d[0] = a.d[o]; res.d[1] = b.d[o]; res.d[2] = a.d[o + 1]; res.d[3] = b.d[o + 1];
        }
        xset(cpu, dst, res);
        return;
    }
    case 0x28: xset(cpu, dst, src_rm(cpu, in, true)); return;
    case 0x29:
        if (in->mem) store128(cpu, lin_of_aligned(cpu, in, true), xget(cpu, dst), true);
        else xset(cpu, in->rm, xget(cpu, dst));
        return;
    case 0x2b: case 0xe7:
        if (!in->mem) emu_ud(cpu);
        store128(cpu, lin_of_aligned(cpu, in, true), xget(cpu, dst), true);
        return;
    case 0x6e: {
        unsigned sz = (in->rex & 8) ? 8 : 4;
        uint64_t v = in->mem ? emu_read(cpu, lin_of(cpu, in), sz) : (cpu->r[in->rm] & emu_size_mask(sz));
        memset(&res, 0, 16);
        res.q[0] = v;
        xset(cpu, dst, res);
        return;
    }
    case 0x7e:
        if (pfx == 3) { /* movq xmm, xmm/m64 */
            memset(&res, 0, 16);
            res.q[0] = in->mem ? emu_read(cpu, lin_of(cpu, in), 8) : xget(cpu, in->rm).q[0];
            xset(cpu, dst, res);
        } else {
            unsigned sz = (in->rex & 8) ? 8 : 4;
            uint64_t v = xget(cpu, dst).q[0] & emu_size_mask(sz);
            if (in->mem) emu_write(cpu, lin_of(cpu, in), sz, v);
            else cpu->r[in->rm] = v;
        }
        return;
    case 0x6f: xset(cpu, dst, src_rm(cpu, in, pfx == 1)); return;
    case 0x7f:
        if (in->mem) store128(cpu, lin_of_aligned(cpu, in, pfx == 1), xget(cpu, dst), pfx == 1);
        else xset(cpu, in->rm, xget(cpu, dst));
        return;
    case 0xd6:
        if (in->mem) {
            emu_write(cpu, lin_of(cpu, in), 8, xget(cpu, dst).q[0]);
        } else {
            memset(&res, 0, 16);
            res.q[0] = xget(cpu, dst).q[0];
            xset(cpu, in->rm, res);
        }
        return;
    case 0x70: {
        b = src_rm(cpu, in, true);
        unsigned imm = (unsigned)in->imm & 0xff;
        res = b;
        if (pfx == 1) for (unsigned i = 0; i < 4; i++) res.d[i] = b.d[(imm >> (2 * i)) & 3];
        else if (pfx == 3) for (unsigned i = 0; i < 4; i++) res.w[4 + i] = b.w[4 + ((imm >> (2 * i)) & 3)];
        else for (unsigned i = 0; i < 4; i++) res.w[i] = b.w[(imm >> (2 * i)) & 3];
        xset(cpu, dst, res);
        return;
    }
    case 0x71: case 0x72: case 0x73: {
        unsigned lane = op == 0x71 ? 2 : op == 0x72 ? 4 : 8;
        unsigned count = (unsigned)in->imm & 0xff;
        a = xget(cpu, in->rm);
        if (op == 0x73 && (r == 3 || r == 7)) { /* psrldq pslldq */
            unsigned n = count > 16 ? 16 : count;
            memset(&res, 0, 16);
            if (r == 3) memcpy(res.b, a.b + n, 16 - n);
            else memcpy(res.b + n, a.b, 16 - n);
        } else {
            unsigned kind = r == 2 ? 0 : r == 4 ? 1 : 2;
            res = shift_lanes(a, lane, kind, count);
        }
        xset(cpu, in->rm, res);
        return;
    }
    case 0xc4: {
        a = xget(cpu, dst);
        uint64_t v = in->mem ? emu_read(cpu, lin_of(cpu, in), 2) : cpu->r[in->rm];
        a.w[in->imm & 7] = (uint16_t)v;
        xset(cpu, dst, a);
        return;
    }
    case 0xc5:
        if (in->mem) emu_ud(cpu);
        cpu->r[in->reg] = xget(cpu, in->rm).w[in->imm & 7];
        return;
    case 0xd7: {
        if (in->mem) emu_ud(cpu);
        a = xget(cpu, in->rm);
        uint32_t m = 0;
        for (unsigned i = 0; i < 16; i++) m |= (uint32_t)(a.b[i] >> 7) << i;
        cpu->r[in->reg] = m;
        return;
    }
    case 0xc6: {
        a = xget(cpu, dst);
        b = src_rm(cpu, in, true);
        unsigned imm = (unsigned)in->imm & 0xff;
        if (pfx == 1) {
            res.q[0] = a.q[imm & 1];
            res.q[1] = b.q[(imm >> 1) & 1];
        } else {
            res.d[0] = a.d[imm & 3]; res.d[1] = a.d[(imm >> 2) & 3];
            res.d[2] = b.d[(imm >> 4) & 3]; res.d[3] = b.d[(imm >> 6) & 3];
        }
        xset(cpu, dst, res);
        return;
    }
    }

    /* Two-operand packed integer operations: dst = dst op xmm/m128. */
    a = xget(cpu, dst);
    b = src_rm(cpu, in, true);
    memset(&res, 0, sizeof(res));
    switch (op) {
    case 0x54: case 0xdb: for (int i = 0; i < 2; i++) res.q[i] = a.q[i] & b.q[i]; break;
    case 0x55: case 0xdf: for (int i = 0; i < 2; i++) res.q[i] = ~a.q[i] & b.q[i]; break;
    case 0x56: case 0xeb: for (int i = 0; i < 2; i++) res.q[i] = a.q[i] | b.q[i]; break;
    case 0x57: case 0xef: for (int i = 0; i < 2; i++) res.q[i] = a.q[i] ^ b.q[i]; break;
    case 0x60: for (int i = 0; i < 8; i++) { res.b[2 * i] = a.b[i]; res.b[2 * i + 1] = b.b[i]; } break;
    case 0x61: for (int i = 0; i < 4; i++) { res.w[2 * i] = a.w[i]; res.w[2 * i + 1] = b.w[i]; } break;
    case 0x62: for (int i = 0; i < 2; i++) { res.d[2 * i] = a.d[i]; res.d[2 * i + 1] = b.d[i]; } break;
    case 0x68: for (int i = 0; i < 8; i++) { res.b[2 * i] = a.b[8 + i]; res.b[2 * i + 1] = b.b[8 + i]; } break;
    case 0x69: for (int i = 0; i < 4; i++) { res.w[2 * i] = a.w[4 + i]; res.w[2 * i + 1] = b.w[4 + i]; } break;
    case 0x6a: for (int i = 0; i < 2; i++) { res.d[2 * i] = a.d[2 + i]; res.d[2 * i + 1] = b.d[2 + i]; } break;
    case 0x6c: res.q[0] = a.q[0]; res.q[1] = b.q[0]; break;
    case 0x6d: res.q[0] = a.q[1]; res.q[1] = b.q[1]; break;
    case 0x63: for (int i = 0; i < 8; i++) { res.sb[i] = sat8(a.sw[i]); res.sb[8 + i] = sat8(b.sw[i]); } break;
    case 0x67: for (int i = 0; i < 8; i++) { res.b[i] = satu8(a.sw[i]); res.b[8 + i] = satu8(b.sw[i]); } break;
    case 0x6b: for (int i = 0; i < 4; i++) { res.sw[i] = sat16(a.sd[i]); res.sw[4 + i] = sat16(b.sd[i]); } break;
    case 0x64: for (int i = 0; i < 16; i++) res.b[i] = a.sb[i] > b.sb[i] ? 0xff : 0; break;
    case 0x65: for (int i = 0; i < 8; i++) res.w[i] = a.sw[i] > b.sw[i] ? 0xffff : 0; break;
    case 0x66: for (int i = 0; i < 4; i++) res.d[i] = a.sd[i] > b.sd[i] ? ~0u : 0; break;
    case 0x74: for (int i = 0; i < 16; i++) res.b[i] = a.b[i] == b.b[i] ? 0xff : 0; break;
    case 0x75: for (int i = 0; i < 8; i++) res.w[i] = a.w[i] == b.w[i] ? 0xffff : 0; break;
    case 0x76: for (int i = 0; i < 4; i++) res.d[i] = a.d[i] == b.d[i] ? ~0u : 0; break;
    case 0xd1: res = shift_lanes(a, 2, 0, b.q[0]); break;
    case 0xd2: res = shift_lanes(a, 4, 0, b.q[0]); break;
    case 0xd3: res = shift_lanes(a, 8, 0, b.q[0]); break;
    case 0xe1: res = shift_lanes(a, 2, 1, b.q[0]); break;
    case 0xe2: res = shift_lanes(a, 4, 1, b.q[0]); break;
    case 0xf1: res = shift_lanes(a, 2, 2, b.q[0]); break;
    case 0xf2: res = shift_lanes(a, 4, 2, b.q[0]); break;
    case 0xf3: res = shift_lanes(a, 8, 2, b.q[0]); break;
    case 0xd4: for (int i = 0; i < 2; i++) res.q[i] = a.q[i] + b.q[i]; break;
    case 0xd5: for (int i = 0; i < 8; i++) res.w[i] = (uint16_t)(a.sw[i] * b.sw[i]); break;
    case 0xe5: for (int i = 0; i < 8; i++) res.w[i] = (uint16_t)((a.sw[i] * b.sw[i]) >> 16); break;
    case 0xe4: for (int i = 0; i < 8; i++) res.w[i] = (uint16_t)(((uint32_t)a.w[i] * b.w[i]) >> 16); break;
    case 0xd8: for (int i = 0; i < 16; i++) res.b[i] = satu8(a.b[i] - b.b[i]); break;
    case 0xd9: for (int i = 0; i < 8; i++) res.w[i] = satu16(a.w[i] - b.w[i]); break;
    case 0xdc: for (int i = 0; i < 16; i++) res.b[i] = satu8(a.b[i] + b.b[i]); break;
    case 0xdd: for (int i = 0; i < 8; i++) res.w[i] = satu16(a.w[i] + b.w[i]); break;
    case 0xda: for (int i = 0; i < 16; i++) res.b[i] = a.b[i] < b.b[i] ? a.b[i] : b.b[i]; break;
    case 0xde: for (int i = 0; i < 16; i++) res.b[i] = a.b[i] > b.b[i] ? a.b[i] : b.b[i]; break;
    case 0xea: for (int i = 0; i < 8; i++) res.sw[i] = a.sw[i] < b.sw[i] ? a.sw[i] : b.sw[i]; break;
    case 0xee: for (int i = 0; i < 8; i++) res.sw[i] = a.sw[i] > b.sw[i] ? a.sw[i] : b.sw[i]; break;
    case 0xe0: for (int i = 0; i < 16; i++) res.b[i] = (uint8_t)((a.b[i] + b.b[i] + 1) >> 1); break;
    case 0xe3: for (int i = 0; i < 8; i++) res.w[i] = (uint16_t)((a.w[i] + b.w[i] + 1) >> 1); break;
    case 0xe8: for (int i = 0; i < 16; i++) res.sb[i] = sat8(a.sb[i] - b.sb[i]); break;
    case 0xe9: for (int i = 0; i < 8; i++) res.sw[i] = sat16(a.sw[i] - b.sw[i]); break;
    case 0xec: for (int i = 0; i < 16; i++) res.sb[i] = sat8(a.sb[i] + b.sb[i]); break;
    case 0xed: for (int i = 0; i < 8; i++) res.sw[i] = sat16(a.sw[i] + b.sw[i]); break;
    case 0xf4: for (int i = 0; i < 2; i++) res.q[i] = (uint64_t)a.d[2 * i] * b.d[2 * i]; break;
    case 0xf5: for (int i = 0; i < 4; i++) res.d[i] = (uint32_t)(a.sw[2 * i] * b.sw[2 * i] + a.sw[2 * i + 1] * b.sw[2 * i + 1]); break;
    case 0xf6: {
        for (int h = 0; h < 2; h++) {
            unsigned s = 0;
            for (int i = 0; i < 8; i++) s += (unsigned)__builtin_abs(a.b[8 * h + i] - b.b[8 * h + i]);
            res.q[h] = s;
        }
        break;
    }
    case 0xf8: for (int i = 0; i < 16; i++) res.b[i] = (uint8_t)(a.b[i] - b.b[i]); break;
    case 0xf9: for (int i = 0; i < 8; i++) res.w[i] = (uint16_t)(a.w[i] - b.w[i]); break;
    case 0xfa: for (int i = 0; i < 4; i++) res.d[i] = a.d[i] - b.d[i]; break;
    case 0xfb: for (int i = 0; i < 2; i++) res.q[i] = a.q[i] - b.q[i]; break;
    case 0xfc: for (int i = 0; i < 16; i++) res.b[i] = (uint8_t)(a.b[i] + b.b[i]); break;
    case 0xfd: for (int i = 0; i < 8; i++) res.w[i] = (uint16_t)(a.w[i] + b.w[i]); break;
    case 0xfe: for (int i = 0; i < 4; i++) res.d[i] = a.d[i] + b.d[i]; break;
    default: emu_ud(cpu);
    }
    xset(cpu, dst, res);
}
