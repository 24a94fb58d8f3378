/* x86 instruction decoder: prefixes, REX, ModRM/SIB, displacements and immediates. */
#include <errno.h>
#include <string.h>

#include "accel/emu/emu_cpu.h"

/* Per-opcode attributes. */
enum {
    D_M = 1 << 0,      /* ModRM follows */
    D_IB = 1 << 1,     /* 8-bit immediate */
    D_IW = 1 << 2,     /* 16-bit immediate */
    D_IZ = 1 << 3,     /* 16 or 32-bit immediate (operand size) */
    D_IV = 1 << 4,     /* 16, 32 or 64-bit immediate (mov r, imm) */
    D_MOFFS = 1 << 5,  /* address-size offset */
    D_INV64 = 1 << 6,  /* undefined in 64-bit mode */
    D_OK = 1 << 7,     /* implemented */
    D_LOCK = 1 << 8,   /* lock allowed when the destination is memory */
    D_REL = 1 << 9,    /* immediate is a branch displacement */
    D_NOREG = 1 << 10, /* ModRM must name memory (mod != 3) */
    D_REGONLY = 1 << 11, /* ModRM must name a register (mod == 3) */
};

#define R4(x) x, x, x, x
#define R8(x) R4(x), R4(x)

/* One-byte map. Groups are refined by reg field in check_group(). */
static const uint16_t map0[256] = {
    /* ALU blocks: Eb,Gb Ev,Gv Gb,Eb Gv,Ev AL,Ib eAX,Iz */
#define ALU(b, lock)                                                                          \
    [b + 0] = D_M | D_OK | (lock), [b + 1] = D_M | D_OK | (lock), [b + 2] = D_M | D_OK,     \
    [b + 3] = D_M | D_OK, [b + 4] = D_IB | D_OK, [b + 5] = D_IZ | D_OK
    ALU(0x00, D_LOCK), ALU(0x08, D_LOCK), ALU(0x10, D_LOCK), ALU(0x18, D_LOCK),
    ALU(0x20, D_LOCK), ALU(0x28, D_LOCK), ALU(0x30, D_LOCK), ALU(0x38, 0),
    [0x06] = D_INV64 | D_OK, [0x07] = D_INV64 | D_OK, [0x0e] = D_INV64 | D_OK,
    [0x16] = D_INV64 | D_OK, [0x17] = D_INV64 | D_OK, [0x1e] = D_INV64 | D_OK,
    [0x1f] = D_INV64 | D_OK, [0x27] = D_INV64, [0x2f] = D_INV64, [0x37] = D_INV64,
    [0x3f] = D_INV64,
    [0x40] = D_OK, D_OK, D_OK, D_OK, D_OK, D_OK, D_OK, D_OK, /* inc/dec outside 64-bit */
    [0x48] = D_OK, D_OK, D_OK, D_OK, D_OK, D_OK, D_OK, D_OK,
    [0x50] = R8(D_OK), [0x58] = R8(D_OK),
    [0x60] = D_INV64 | D_OK, [0x61] = D_INV64 | D_OK, [0x62] = D_INV64 | D_M,
    [0x63] = D_M | D_OK, /* movsxd; arpl outside 64-bit is refined in check_group */
    [0x68] = D_IZ | D_OK, [0x69] = D_M | D_IZ | D_OK, [0x6a] = D_IB | D_OK,
    [0x6b] = D_M | D_IB | D_OK, [0x6c] = R4(D_OK),
    [0x70] = R8(D_IB | D_REL | D_OK), [0x78] = R8(D_IB | D_REL | D_OK),
    [0x80] = D_M | D_IB | D_OK | D_LOCK, [0x81] = D_M | D_IZ | D_OK | D_LOCK,
    [0x82] = D_M | D_IB | D_OK | D_LOCK | D_INV64, [0x83] = D_M | D_IB | D_OK | D_LOCK,
    [0x84] = D_M | D_OK, [0x85] = D_M | D_OK, [0x86] = D_M | D_OK | D_LOCK,
    [0x87] = D_M | D_OK | D_LOCK, [0x88] = R4(D_M | D_OK), [0x8c] = D_M | D_OK,
    [0x8d] = D_M | D_OK | D_NOREG, [0x8e] = D_M | D_OK, [0x8f] = D_M | D_OK,
    [0x90] = R8(D_OK), [0x98] = D_OK, [0x99] = D_OK, [0x9a] = D_INV64 | D_IZ | D_IW | D_OK,
    [0x9b] = D_OK, [0x9c] = D_OK, [0x9d] = D_OK, [0x9e] = D_OK, [0x9f] = D_OK,
    [0xa0] = R4(D_MOFFS | D_OK), [0xa4] = R4(D_OK), [0xa8] = D_IB | D_OK, [0xa9] = D_IZ | D_OK,
    [0xaa] = D_OK, D_OK, D_OK, D_OK, D_OK, D_OK,
    [0xb0] = R8(D_IB | D_OK), [0xb8] = R8(D_IV | D_OK),
    [0xc0] = D_M | D_IB | D_OK, [0xc1] = D_M | D_IB | D_OK, [0xc2] = D_IW | D_OK, [0xc3] = D_OK,
    [0xc4] = D_INV64 | D_M, [0xc5] = D_INV64 | D_M, [0xc6] = D_M | D_IB | D_OK,
    [0xc7] = D_M | D_IZ | D_OK, [0xc8] = D_IW | D_IB | D_OK, [0xc9] = D_OK, [0xca] = D_IW | D_OK,
    [0xcb] = D_OK, [0xcc] = D_OK, [0xcd] = D_IB | D_OK, [0xce] = D_INV64 | D_OK, [0xcf] = D_OK,
    [0xd0] = R4(D_M | D_OK), [0xd4] = D_INV64 | D_IB, [0xd5] = D_INV64 | D_IB, [0xd6] = D_INV64,
    [0xd7] = D_OK, [0xd8] = R8(D_M | D_OK), /* x87: check_group() keeps only fninit and friends */
    [0xe0] = R4(D_IB | D_REL | D_OK), [0xe4] = R4(D_IB | D_OK), [0xe8] = D_IZ | D_REL | D_OK,
    [0xe9] = D_IZ | D_REL | D_OK, [0xea] = D_INV64 | D_IZ | D_IW | D_OK, [0xeb] = D_IB | D_REL | D_OK,
    [0xec] = R4(D_OK), [0xf1] = D_OK, [0xf4] = D_OK, [0xf5] = D_OK,
    [0xf6] = D_M | D_OK | D_LOCK, [0xf7] = D_M | D_OK | D_LOCK, [0xf8] = R4(D_OK),
    [0xfc] = D_OK, [0xfd] = D_OK, [0xfe] = D_M | D_OK | D_LOCK, [0xff] = D_M | D_OK | D_LOCK,
};

/* Two-byte map (0F xx). SSE opcodes are refined by prefix in check_sse(). */
static const uint16_t map1[256] = {
    [0x00] = D_M | D_OK, [0x01] = D_M | D_OK, [0x02] = D_M | D_OK, [0x03] = D_M | D_OK, [0x05] = D_OK, [0x06] = D_OK, [0x07] = D_OK,
    [0x0b] = 0, [0x0d] = D_M | D_OK | D_NOREG, [0x08] = D_OK, [0x09] = D_OK,
    [0x10] = D_M, D_M, D_M, D_M, D_M, D_M, D_M, D_M,
    [0x18] = R8(D_M | D_OK),
    [0x20] = D_M | D_OK | D_REGONLY, [0x21] = D_M | D_OK | D_REGONLY,
    [0x22] = D_M | D_OK | D_REGONLY, [0x23] = D_M | D_OK | D_REGONLY,
    [0x28] = R8(D_M),
    [0x30] = D_OK, [0x31] = D_OK, [0x32] = D_OK,
    [0x40] = R8(D_M | D_OK), [0x48] = R8(D_M | D_OK),
    [0x50] = R8(D_M), [0x58] = R8(D_M), [0x60] = R8(D_M), [0x68] = R8(D_M),
    [0x70] = D_M | D_IB, [0x71] = D_M | D_IB, [0x72] = D_M | D_IB, [0x73] = D_M | D_IB,
    [0x74] = D_M, D_M, D_M, [0x77] = 0,
    [0x7c] = D_M, D_M, D_M, D_M,
    [0x80] = R8(D_IZ | D_REL | D_OK), [0x88] = R8(D_IZ | D_REL | D_OK),
    [0x90] = R8(D_M | D_OK), [0x98] = R8(D_M | D_OK),
    [0xa0] = D_OK, [0xa1] = D_OK, [0xa2] = D_OK, [0xa3] = D_M | D_OK, [0xa4] = D_M | D_IB | D_OK,
    [0xa5] = D_M | D_OK, [0xa8] = D_OK, [0xa9] = D_OK, [0xab] = D_M | D_OK | D_LOCK,
    [0xac] = D_M | D_IB | D_OK, [0xad] = D_M | D_OK, [0xae] = D_M | D_OK, [0xaf] = D_M | D_OK,
    [0xb0] = D_M | D_OK | D_LOCK, [0xb1] = D_M | D_OK | D_LOCK, [0xb3] = D_M | D_OK | D_LOCK,
    [0xb6] = D_M | D_OK, [0xb7] = D_M | D_OK, [0xb8] = D_M | D_OK,
    [0xba] = D_M | D_IB | D_OK | D_LOCK, [0xbb] = D_M | D_OK | D_LOCK, [0xbc] = D_M | D_OK,
    [0xbd] = D_M | D_OK, [0xbe] = D_M | D_OK, [0xbf] = D_M | D_OK,
    [0xc0] = D_M | D_OK | D_LOCK, [0xc1] = D_M | D_OK | D_LOCK, [0xc2] = D_M | D_IB,
    [0xc3] = D_M | D_OK | D_NOREG, [0xc4] = D_M | D_IB, [0xc5] = D_M | D_IB, [0xc6] = D_M | D_IB,
    [0xc7] = D_M | D_OK | D_LOCK, [0xc8] = R8(D_OK),
    [0xd0] = R8(D_M), [0xd8] = R8(D_M), [0xe0] = R8(D_M), [0xe8] = R8(D_M),
    [0xf0] = R8(D_M), [0xf8] = R8(D_M),
};

/* SSE2 integer and move instructions implemented, by opcode and mandatory prefix
 * (bit 0: none, bit 1: 66, bit 2: F3, bit 3: F2). */
static uint8_t sse_ok(uint8_t op)
{
    switch (op) {
    case 0x10: case 0x11: return 0xf;     /* movups movupd movss movsd */
    case 0x12: case 0x13: case 0x16: case 0x17: return 0x3; /* movlps/movlpd movhps/movhpd */
    case 0x14: case 0x15: return 0x3;     /* unpcklps/pd unpckhps/pd */
    case 0x28: case 0x29: return 0x3;     /* movaps movapd */
    case 0x2a: return 0xc;                /* cvtsi2ss cvtsi2sd (cvtpi2ps/pd: MMX, not here) */
    case 0x2c: case 0x2d: return 0xc;     /* cvt(t)ss2si cvt(t)sd2si */
    case 0x2e: case 0x2f: return 0x3;     /* ucomiss/sd comiss/sd */
    case 0x50: return 0x3;                /* movmskps movmskpd */
    case 0x51: return 0xf;                /* sqrt */
    case 0x52: case 0x53: return 0x5;     /* rsqrtps/ss rcpps/ss */
    case 0x58: case 0x59: case 0x5a: case 0x5c: case 0x5d: case 0x5e: case 0x5f:
        return 0xf;                       /* add mul cvt sub min div max */
    case 0x5b: return 0x7;                /* cvtdq2ps cvtps2dq cvttps2dq */
    case 0xc2: return 0xf;                /* cmpps/pd/ss/sd */
    case 0xe6: return 0xe;                /* cvttpd2dq cvtdq2pd cvtpd2dq */
    case 0x2b: return 0x3;                /* movntps movntpd */
    case 0x54: case 0x55: case 0x56: case 0x57: return 0x3; /* and andn or xor ps/pd */
    case 0x60: case 0x61: case 0x62: case 0x63: case 0x64: case 0x65: case 0x66: case 0x67:
    case 0x68: case 0x69: case 0x6a: case 0x6b: return 0x2;
    case 0x6c: case 0x6d: return 0x2;
    case 0x6e: return 0x2;                /* movd/movq xmm, r/m */
    case 0x6f: return 0x6;                /* movdqa movdqu */
    case 0x70: return 0xe;                /* pshufd pshufhw pshuflw */
    case 0x71: case 0x72: case 0x73: return 0x2;
    case 0x74: case 0x75: case 0x76: return 0x2;
    case 0x7e: return 0x6;                /* movd r/m, xmm; movq xmm, xmm/m64 */
    case 0x7f: return 0x6;
    case 0xc4: case 0xc5: return 0x2;     /* pinsrw pextrw */
    case 0xc6: return 0x3;                /* shufps shufpd */
    case 0xd1: case 0xd2: case 0xd3: case 0xd4: case 0xd5: return 0x2;
    case 0xd6: return 0x2;                /* movq xmm/m64, xmm */
    case 0xd7: return 0x2;                /* pmovmskb */
    case 0xd8: case 0xd9: case 0xda: case 0xdb: case 0xdc: case 0xdd: case 0xde: case 0xdf:
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: case 0xe4: case 0xe5: return 0x2;
    case 0xe7: return 0x2;                /* movntdq */
    case 0xe8: case 0xe9: case 0xea: case 0xeb: case 0xec: case 0xed: case 0xee: case 0xef:
    case 0xf1: case 0xf2: case 0xf3: case 0xf4: case 0xf5: case 0xf6:
    case 0xf8: case 0xf9: case 0xfa: case 0xfb: case 0xfc: case 0xfd: case 0xfe: return 0x2;
    default: return 0;
    }
}

bool emu_x87_valid(uint8_t op, uint8_t modrm)
{
    unsigned r = (modrm >> 3) & 7, rm = modrm & 7;
    if (modrm < 0xc0) {
        switch (op) {
        case 0xd9: return r != 1;
        case 0xdb: return r != 4 && r != 6;
        case 0xdd: return r != 5;
        default: return true;
        }
    }
    switch (op) {
    case 0xd8: return true;
    case 0xd9:
        if (r <= 1) return true;                      /* fld st(i), fxch */
        if (r == 2) return rm == 0;                   /* fnop */
        if (r == 4) return rm == 0 || rm == 1 || rm == 4 || rm == 5; /* fchs fabs ftst fxam */
        if (r == 5) return rm != 7;                   /* fld1 fldl2t fldl2e fldpi fldlg2 fldln2 fldz */
        return r >= 6;                                /* f2xm1 ... fcos */
    case 0xda: return r <= 3 || (r == 5 && rm == 1); /* fcmov, fucompp */
    case 0xdb: return r <= 3 || r == 5 || r == 6 || (r == 4 && (rm == 2 || rm == 3)); /* fcmov fucomi fcomi fnclex fninit */
    case 0xdc: return r != 2 && r != 3;
    case 0xdd: return r == 0 || r == 2 || r == 3 || r == 4 || r == 5; /* ffree fst fstp fucom fucomp */
    case 0xde: return r != 2 && (r != 3 || rm == 1); /* ...p forms, fcompp */
    case 0xdf: return (r == 4 && rm == 0) || r == 5 || r == 6; /* fnstsw ax, fucomip, fcomip */
    }
    return false;
}

static int check_group(struct emu_insn *in, enum emu_cpu_mode mode)
{
    unsigned r = in->reg & 7;
    bool regform = in->mod == 3;
    if (in->map == 0) {
        switch (in->op) {
        case 0x63: return mode == EMU_MODE_LONG64 ? 0 : -EMU_UD; /* arpl not implemented */
        case 0x8c: return r > 5 ? -EMU_UD : 0;
        case 0x8e: return (r > 5 || r == EMU_CS) ? -EMU_UD : 0;
        case 0x8f: return r ? -EMU_UD : 0;
        case 0xc6: case 0xc7: return r ? -EMU_UD : 0;
        case 0xfe: return r > 1 ? -EMU_UD : 0;
        case 0xff:
            if (r == 7) return -EMU_UD;
            if ((r == 3 || r == 5) && regform) return -EMU_UD;
            return 0;
        case 0xd8: case 0xd9: case 0xda: case 0xdb: case 0xdc: case 0xdd: case 0xde: case 0xdf:
            return emu_x87_valid(in->op, (uint8_t)((in->mod << 6) | (r << 3) | (in->rm & 7))) ? 0 : -EMU_UD;
        }
        return 0;
    }
    if (in->map != 1) return 0;
    switch (in->op) {
    case 0x00: /* sldt str lldt ltr verr verw */
        return r > 5 ? -EMU_UD : 0;
    case 0x01:
        if (!regform) return (r == 5) ? -EMU_UD : 0; /* sgdt sidt lgdt lidt smsw lmsw invlpg */
        switch (r) {
        case 4: case 6: return 0; /* smsw lmsw */
        case 7: {
            unsigned rm = in->rm & 7;
            if (rm == 0 && mode == EMU_MODE_LONG64) return 0; /* swapgs */
            if (rm == 1) return 0;                            /* rdtscp */
            return -EMU_UD;
        }
        default: return -EMU_UD;
        }
    case 0x0d: return 0;
    case 0x18: return 0;
    case 0x19: case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x1f: return 0;
    case 0xae:
        if (!regform) {
            switch (r) {
            case 0: case 1: case 2: case 3: case 7: return 0; /* fxsave fxrstor ldmxcsr stmxcsr clflush */
            default: return -EMU_UD;
            }
        }
        return (r >= 5) ? 0 : -EMU_UD; /* lfence mfence sfence */
    case 0xb8: return in->rep == 0xf3 ? 0 : -EMU_UD; /* popcnt */
    case 0xba: return r < 4 ? -EMU_UD : 0;
    case 0xc7:
        if (r == 1 && !regform) return 0;                           /* cmpxchg8b/16b */
        return -EMU_UD;
    case 0x05: case 0x07: return mode == EMU_MODE_LONG64 ? 0 : -EMU_UD;
    case 0x20: case 0x22: {
        unsigned cr = in->reg;
        return (cr == 0 || cr == 2 || cr == 3 || cr == 4 || cr == 8) ? 0 : -EMU_UD;
    }
    case 0x21: case 0x23: return in->reg > 7 ? -EMU_UD : 0;
    case 0x71: case 0x72: case 0x73:
        if (!regform) return -EMU_UD;
        if (r == 2 || r == 6) return 0;
        if (r == 4) return in->op == 0x73 ? -EMU_UD : 0;
        if (r == 3 || r == 7) return in->op == 0x73 ? 0 : -EMU_UD;
        return -EMU_UD;
    case 0x12: case 0x16: return (regform && in->opsize_prefix) ? -EMU_UD : 0;
    case 0x13: case 0x17: case 0x2b: case 0xe7: return regform ? -EMU_UD : 0;
    case 0xc3: return (in->rep || in->opsize_prefix) ? -EMU_UD : 0; /* movnti */
    case 0xc5: case 0xd7: case 0x50: return regform ? 0 : -EMU_UD;
    }
    return 0;
}

static bool lock_ok(const struct emu_insn *in, uint16_t attr)
{
    if (!(attr & D_LOCK) || in->mod == 3 || !in->modrm_present) return false;
    unsigned r = in->reg & 7;
    if (in->map == 0) {
        switch (in->op) {
        case 0x80: case 0x81: case 0x82: case 0x83: return r != 7;
        case 0xf6: case 0xf7: return r == 2 || r == 3;
        case 0xfe: case 0xff: return r <= 1;
        }
        return true;
    }
    if (in->op == 0xc7) return r == 1;
    if (in->op == 0xba) return r >= 5;
    return true;
}

int emu_decode(const uint8_t *b, unsigned avail, enum emu_cpu_mode mode, struct emu_insn *in)
{
    memset(in, 0, sizeof(*in));
    in->seg = -1;
    in->base = in->index = EMU_NOREG;
    bool m64 = mode == EMU_MODE_LONG64;
    bool def16 = mode == EMU_MODE_REAL || mode == EMU_MODE_PROT16;
    unsigned i = 0, lim = avail < 15 ? avail : 15;
    bool addr_prefix = false, need_more = false;
    uint8_t c;
#define NEXT()                                                                                 \
    ({                                                                                         \
        if (i >= lim) { need_more = true; goto out_of_bytes; }                                 \
        b[i++];                                                                                \
    })

    for (;;) {
        c = NEXT();
        switch (c) {
        case 0x26: in->seg = EMU_ES; in->rex = 0; continue;
        case 0x2e: in->seg = EMU_CS; in->rex = 0; continue;
        case 0x36: in->seg = EMU_SS; in->rex = 0; continue;
        case 0x3e: in->seg = EMU_DS; in->rex = 0; continue;
        case 0x64: in->seg = EMU_FS; in->rex = 0; continue;
        case 0x65: in->seg = EMU_GS; in->rex = 0; continue;
        case 0x66: in->opsize_prefix = 1; in->rex = 0; continue;
        case 0x67: addr_prefix = true; in->rex = 0; continue;
        case 0xf0: in->lock = 1; in->rex = 0; continue;
        case 0xf2: case 0xf3: in->rep = c; in->rex = 0; continue;
        }
        if (m64 && (c & 0xf0) == 0x40) {
            in->rex = c;
            continue;
        }
        break;
    }
    /* In 64-bit mode segment overrides other than FS/GS are ignored. */
    if (m64 && in->seg >= 0 && in->seg != EMU_FS && in->seg != EMU_GS) in->seg = -1;

    uint16_t attr;
    if (c == 0x0f) {
        c = NEXT();
        if (c == 0x38 || c == 0x3a) {
            in->map = c == 0x38 ? 2 : 3;
            in->op = NEXT();
            attr = D_M | (in->map == 3 ? D_IB : 0); /* length only: none implemented */
        } else {
            in->map = 1;
            in->op = c;
            attr = map1[c];
            uint8_t ok = sse_ok(c);
            if (ok) {
                unsigned p = in->rep == 0xf3 ? 2 : in->rep == 0xf2 ? 3 : in->opsize_prefix ? 1 : 0;
                if (ok & (1u << p)) attr |= D_OK;
            }
        }
    } else {
        in->map = 0;
        in->op = c;
        attr = map0[c];
    }

    if (m64) {
        in->osize = (in->rex & 8) ? 8 : in->opsize_prefix ? 2 : 4;
        in->asize = addr_prefix ? 4 : 8;
    } else {
        in->osize = (def16 ^ in->opsize_prefix) ? 2 : 4;
        in->asize = (def16 ^ addr_prefix) ? 2 : 4;
    }

    if (attr & D_M) {
        uint8_t modrm = NEXT();
        in->modrm_present = 1;
        in->mod = modrm >> 6;
        in->reg = ((modrm >> 3) & 7) | ((in->rex & 4) << 1);
        in->rm = (modrm & 7) | ((in->rex & 1) << 3);
        /* mov to/from control and debug registers always name registers, whatever mod says. */
        bool regonly = in->map == 1 && in->op >= 0x20 && in->op <= 0x23;
        if (in->mod != 3 && !regonly) {
            in->mem = true;
            unsigned rm = modrm & 7;
            if (in->asize == 2) {
                static const uint8_t b16[8] = {EMU_RBX, EMU_RBX, EMU_RBP, EMU_RBP, EMU_RSI, EMU_RDI, EMU_RBP, EMU_RBX};
                static const uint8_t x16[8] = {EMU_RSI, EMU_RDI, EMU_RSI, EMU_RDI, EMU_NOREG, EMU_NOREG, EMU_NOREG, EMU_NOREG};
                if (in->mod == 0 && rm == 6) {
                    uint16_t lo = NEXT(), hi = NEXT(); /* two statements: evaluation order matters */
                    in->disp = (int16_t)(lo | (hi << 8));
                } else {
                    in->base = b16[rm];
                    in->index = x16[rm];
                    if (in->mod == 1) in->disp = (int8_t)NEXT();
                    else if (in->mod == 2) {
                        uint16_t lo = NEXT(), hi = NEXT();
                        in->disp = (int16_t)(lo | (hi << 8));
                    }
                }
                if (in->seg < 0 && in->base == EMU_RBP) in->seg = EMU_SS;
            } else {
                unsigned base = rm;
                if (rm == 4) {
                    uint8_t sib = NEXT();
                    in->scale = sib >> 6;
                    unsigned idx = ((sib >> 3) & 7) | ((in->rex & 2) << 2);
                    in->index = idx == 4 ? EMU_NOREG : idx;
                    base = sib & 7;
                    if (base == 5 && in->mod == 0) {
                        base = EMU_NOREG;
                        uint32_t d = NEXT(); d |= NEXT() << 8; d |= NEXT() << 16; d |= (uint32_t)NEXT() << 24;
                        in->disp = (int32_t)d;
                    } else {
                        base |= (in->rex & 1) << 3;
                    }
                } else if (rm == 5 && in->mod == 0) {
                    base = EMU_NOREG;
                    in->rip_rel = m64;
                    uint32_t d = NEXT(); d |= NEXT() << 8; d |= NEXT() << 16; d |= (uint32_t)NEXT() << 24;
                    in->disp = (int32_t)d;
                } else {
                    base |= (in->rex & 1) << 3;
                }
                in->base = base;
                if (in->mod == 1) {
                    in->disp = (int8_t)NEXT();
                } else if (in->mod == 2) {
                    uint32_t d = NEXT(); d |= NEXT() << 8; d |= NEXT() << 16; d |= (uint32_t)NEXT() << 24;
                    in->disp = (int32_t)d;
                }
                if (in->seg < 0 && (base == EMU_RSP || base == EMU_RBP)) in->seg = EMU_SS;
            }
        }
    }
    if (in->seg < 0) in->seg = EMU_DS;

    /* Immediates. */
    if (in->map == 0 && (in->op == 0xf6 || in->op == 0xf7) && (in->reg & 7) < 2)
        attr |= in->op == 0xf6 ? D_IB : D_IZ; /* test r/m, imm */
    if ((attr & D_IW) && (attr & D_IZ)) {
        /* Far pointer: offset, then selector. */
        unsigned n = in->osize == 2 ? 2 : 4;
        uint64_t v = 0;
        for (unsigned k = 0; k < n; k++) v |= (uint64_t)NEXT() << (8 * k);
        in->imm = v;
        uint16_t s = NEXT(); s |= NEXT() << 8;
        in->imm2 = s;
        attr &= ~(D_IW | D_IZ);
    }
    if (attr & D_IW) {
        uint16_t v = NEXT(); v |= NEXT() << 8;
        in->imm = v;
    }
    if (attr & D_IZ) {
        /* Near branches are always rel32 in 64-bit mode (Intel ignores 66 there). */
        unsigned n = in->osize == 2 && !(m64 && (attr & D_REL)) ? 2 : 4;
        uint64_t v = 0;
        for (unsigned k = 0; k < n; k++) v |= (uint64_t)NEXT() << (8 * k);
        in->imm = n == 2 ? (uint64_t)(int64_t)(int16_t)v : (uint64_t)(int64_t)(int32_t)v;
    }
    if (attr & D_IB) {
        uint8_t v = NEXT();
        if (attr & D_IW) in->imm2 = v; /* enter */
        else in->imm = (uint64_t)(int64_t)(int8_t)v;
    }
    if (attr & D_IV) {
        unsigned n = in->osize;
        uint64_t v = 0;
        for (unsigned k = 0; k < n; k++) v |= (uint64_t)NEXT() << (8 * k);
        in->imm = v;
    }
    if (attr & D_MOFFS) {
        unsigned n = in->asize;
        uint64_t v = 0;
        for (unsigned k = 0; k < n; k++) v |= (uint64_t)NEXT() << (8 * k);
        in->imm = v;
    }
    in->len = i;

    /* Validity, after the length is known (the CPU fetches the whole instruction first). */
    if (!(attr & D_OK)) return -EMU_UD;
    if (m64 && (attr & D_INV64)) return -EMU_UD;
    if ((attr & D_NOREG) && in->mod == 3) return -EMU_UD;
    if ((attr & D_REGONLY) && in->mem) in->mem = false; /* mov cr/dr ignore mod */
    if (in->lock && !lock_ok(in, attr)) return -EMU_UD;
    int rc = check_group(in, mode);
    if (rc) return rc;
    /* 64-bit default operand size for stack and near-branch instructions. */
    if (m64) {
        bool def64 = false;
        if (in->map == 0) {
            uint8_t o = in->op;
            def64 = (o >= 0x50 && o <= 0x5f) || o == 0x68 || o == 0x6a || o == 0x8f ||
                    o == 0x9c || o == 0x9d || o == 0xc2 || o == 0xc3 || o == 0xc8 || o == 0xc9 ||
                    o == 0xe8 || o == 0xe9 || o == 0xeb || (o >= 0x70 && o <= 0x7f) ||
                    (o >= 0xe0 && o <= 0xe3) ||
                    (o == 0xff && ((in->reg & 7) == 2 || (in->reg & 7) == 4 || (in->reg & 7) == 6));
        } else if (in->map == 1) {
            uint8_t o = in->op;
            def64 = (o >= 0x80 && o <= 0x8f) || o == 0xa0 || o == 0xa1 || o == 0xa8 || o == 0xa9;
        }
        if (def64 && !in->opsize_prefix) in->osize = 8;
        /* Near branches ignore 66 in 64-bit mode on Intel. */
        if (in->map == 0 && (in->op == 0xe8 || in->op == 0xe9 || in->op == 0xeb || (in->op >= 0x70 && in->op <= 0x7f) ||
                             (in->op == 0xff && ((in->reg & 7) == 2 || (in->reg & 7) == 4)) || in->op == 0xc3 || in->op == 0xc2))
            in->osize = 8;
        if (in->map == 1 && in->op >= 0x80 && in->op <= 0x8f) in->osize = 8;
    }
    return 0;

out_of_bytes:
    if (need_more && avail < 15) return -EAGAIN;
    return -EMU_GP; /* longer than 15 bytes */
#undef NEXT
}
