/* Software CPU interpreter: the general integer instruction set, lazy flags, the run loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/emu/emu_internal.h"

#define CF EMU_FLAG_CF
#define PF EMU_FLAG_PF
#define AF EMU_FLAG_AF
#define ZF EMU_FLAG_ZF
#define SF EMU_FLAG_SF
#define OF EMU_FLAG_OF
#define DF EMU_FLAG_DF

static inline unsigned szlog(unsigned size) { return size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3; }
static inline uint64_t sext(uint64_t v, unsigned size)
{
    unsigned sh = 64 - 8 * size;
    return (uint64_t)((int64_t)(v << sh) >> sh);
}

/* ---- flags ---- */

static inline void set_cc(struct emu_cpu *cpu, unsigned kind, unsigned size, uint64_t res, uint64_t s1, uint64_t s2)
{
    cpu->cc_op = (kind << 2) | szlog(size);
    cpu->cc_res = res;
    cpu->cc_src1 = s1;
    cpu->cc_src2 = s2;
}

uint64_t emu_flags_status(struct emu_cpu *cpu)
{
    unsigned kind = cpu->cc_op >> 2;
    if (kind == EMU_CC_EFLAGS) return cpu->flags & EMU_FLAGS_STATUS;
    unsigned bits = 8u << (cpu->cc_op & 3);
    uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1, sign = 1ull << (bits - 1);
    uint64_t res = cpu->cc_res & mask, s1 = cpu->cc_src1, s2 = cpu->cc_src2;
    uint64_t f = 0;
    if (!res) f |= ZF;
    if (res & sign) f |= SF;
    if (!__builtin_parity((unsigned)(res & 0xff))) f |= PF;
    switch (kind) {
    case EMU_CC_ADD:
        if (((s1 & s2) | ((s1 | s2) & ~res)) & sign) f |= CF;
        if ((s1 ^ res) & (s2 ^ res) & sign) f |= OF;
        f |= (s1 ^ s2 ^ res) & AF;
        break;
    case EMU_CC_SUB:
        if (((~s1 & s2) | ((~s1 | s2) & res)) & sign) f |= CF;
        if ((s1 ^ s2) & (s1 ^ res) & sign) f |= OF;
        f |= (s1 ^ s2 ^ res) & AF;
        break;
    case EMU_CC_LOGIC: break;
    case EMU_CC_INC:
        f |= s2 & CF;
        if (res == sign) f |= OF;
        if ((res & 0xf) == 0) f |= AF;
        break;
    case EMU_CC_DEC:
        f |= s2 & CF;
        if (res == sign - 1) f |= OF;
        if ((res & 0xf) == 0xf) f |= AF;
        break;
    }
    return f;
}

static inline void set_status(struct emu_cpu *cpu, uint64_t f)
{
    cpu->flags = (cpu->flags & ~(uint64_t)EMU_FLAGS_STATUS) | (f & EMU_FLAGS_STATUS);
    cpu->cc_op = EMU_CC_EFLAGS;
}

uint64_t emu_get_rflags(struct emu_cpu *cpu)
{
    return (cpu->flags & ~(uint64_t)EMU_FLAGS_STATUS) | emu_flags_status(cpu) | 2;
}

void emu_set_rflags(struct emu_cpu *cpu, uint64_t v)
{
    cpu->flags = (v & 0x3f7fd7) | 2;
    cpu->cc_op = EMU_CC_EFLAGS;
}

static inline bool get_cf(struct emu_cpu *cpu)
{
    unsigned kind = cpu->cc_op >> 2;
    unsigned bits = 8u << (cpu->cc_op & 3);
    uint64_t sign = 1ull << (bits - 1), s1 = cpu->cc_src1, s2 = cpu->cc_src2, res = cpu->cc_res;
    switch (kind) {
    case EMU_CC_ADD: return ((s1 & s2) | ((s1 | s2) & ~res)) & sign;
    case EMU_CC_SUB: return ((~s1 & s2) | ((~s1 | s2) & res)) & sign;
    case EMU_CC_LOGIC: return false;
    case EMU_CC_INC: case EMU_CC_DEC: return s2 & CF;
    default: return cpu->flags & CF;
    }
}

static bool cond(struct emu_cpu *cpu, unsigned cc)
{
    /* Fast paths for the common compare-and-branch pairs. */
    unsigned kind = cpu->cc_op >> 2;
    if (kind != EMU_CC_EFLAGS && (cc >> 1) == 2) { /* e/ne: ZF straight from any lazy result */
        unsigned bits = 8u << (cpu->cc_op & 3);
        uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
        return ((cpu->cc_res & mask) == 0) ^ (cc & 1);
    }
    if (kind != EMU_CC_EFLAGS && (cc >> 1) == 4) { /* s/ns */
        unsigned bits = 8u << (cpu->cc_op & 3);
        return ((cpu->cc_res >> (bits - 1)) & 1) ^ (cc & 1);
    }
    if (kind == EMU_CC_SUB || kind == EMU_CC_LOGIC) {
        unsigned bits = 8u << (cpu->cc_op & 3);
        uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
        uint64_t res = cpu->cc_res & mask;
        uint64_t a = cpu->cc_src1 & mask, b = cpu->cc_src2 & mask;
        if (kind == EMU_CC_SUB && res == ((a - b) & mask)) { /* a plain sub/cmp, not sbb with borrow */
            switch (cc) {
            case 2: return a < b;
            case 3: return a >= b;
            case 4: return a == b;
            case 5: return a != b;
            case 6: return a <= b;
            case 7: return a > b;
            }
            if (cc >= 12) {
                int64_t sa = (int64_t)sext(a, bits / 8), sb = (int64_t)sext(b, bits / 8);
                switch (cc) {
                case 12: return sa < sb;
                case 13: return sa >= sb;
                case 14: return sa <= sb;
                case 15: return sa > sb;
                }
            }
        } else if (kind == EMU_CC_LOGIC) {
            switch (cc) {
            case 4: return res == 0;
            case 5: return res != 0;
            }
        }
    }
    uint64_t f = emu_flags_status(cpu);
    bool r;
    switch (cc >> 1) {
    case 0: r = f & OF; break;
    case 1: r = f & CF; break;
    case 2: r = f & ZF; break;
    case 3: r = f & (CF | ZF); break;
    case 4: r = f & SF; break;
    case 5: r = f & PF; break;
    case 6: r = !(f & SF) != !(f & OF); break;
    default: r = (f & ZF) || (!(f & SF) != !(f & OF)); break;
    }
    return (cc & 1) ? !r : r;
}

/* ---- registers ---- */

static inline uint64_t reg_get(struct emu_cpu *cpu, const struct emu_insn *in, unsigned r, unsigned size)
{
    if (size == 1) {
        if (!in->rex && r >= 4 && r < 8) return (cpu->r[r - 4] >> 8) & 0xff;
        return cpu->r[r] & 0xff;
    }
    return cpu->r[r] & emu_size_mask(size);
}

static inline void reg_set(struct emu_cpu *cpu, const struct emu_insn *in, unsigned r, unsigned size, uint64_t v)
{
    switch (size) {
    case 1:
        if (!in->rex && r >= 4 && r < 8) cpu->r[r - 4] = (cpu->r[r - 4] & ~0xff00ull) | ((v & 0xff) << 8);
        else cpu->r[r] = (cpu->r[r] & ~0xffull) | (v & 0xff);
        break;
    case 2: cpu->r[r] = (cpu->r[r] & ~0xffffull) | (v & 0xffff); break;
    case 4: cpu->r[r] = (uint32_t)v; break;
    default: cpu->r[r] = v; break;
    }
}

/* ---- addressing ---- */

enum emu_cpu_mode emu_mode(const struct emu_cpu *cpu)
{
    if (!(cpu->cr0 & EMU_CR0_PE)) return EMU_MODE_REAL;
    if ((cpu->efer & EMU_EFER_LMA) && cpu->seg[EMU_CS].l) return EMU_MODE_LONG64;
    return cpu->seg[EMU_CS].db ? EMU_MODE_PROT32 : EMU_MODE_PROT16;
}

uint64_t emu_lin(struct emu_cpu *cpu, int seg, uint64_t off, unsigned asize)
{
    if (asize == 8) {
        uint64_t lin = off;
        if (seg == EMU_FS || seg == EMU_GS) lin += cpu->seg[seg].base;
        if (!emu_canonical(lin)) emu_raise(cpu, seg == EMU_SS ? EMU_SS_FAULT : EMU_GP, true, 0);
        return lin;
    }
    off &= emu_size_mask(asize);
    /* Segment limits are not checked: flat segments are all that kernels use. */
    return (uint32_t)(cpu->seg[seg].base + off);
}

uint64_t emu_ea(struct emu_cpu *cpu, const struct emu_insn *in)
{
    uint64_t a = (uint64_t)in->disp;
    if (in->rip_rel) a += cpu->rip; /* rip already points past the instruction */
    if (in->base != EMU_NOREG) a += cpu->r[in->base];
    if (in->index != EMU_NOREG) a += cpu->r[in->index] << in->scale;
    return a & emu_size_mask(in->asize);
}

/* emu_lin(emu_ea()) with the 64-bit case inline: most memory operands of kernel code. */
static inline uint64_t ea_lin(struct emu_cpu *cpu, const struct emu_insn *in)
{
    if (in->asize != 8) return emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize);
    uint64_t a = (uint64_t)in->disp;
    if (in->rip_rel) a += cpu->rip;
    if (in->base != EMU_NOREG) a += cpu->r[in->base];
    if (in->index != EMU_NOREG) a += cpu->r[in->index] << in->scale;
    if (in->seg == EMU_FS || in->seg == EMU_GS) a += cpu->seg[in->seg].base;
    if (__builtin_expect(!emu_canonical(a), 0)) emu_raise(cpu, in->seg == EMU_SS ? EMU_SS_FAULT : EMU_GP, true, 0);
    return a;
}

/* r/m operand as a location: either a register or a linear address. */
struct loc {
    bool mem;
    uint64_t lin;
};

static inline struct loc rm_loc(struct emu_cpu *cpu, const struct emu_insn *in)
{
    struct loc l = {.mem = in->mem};
    if (in->mem) l.lin = ea_lin(cpu, in);
    return l;
}

static inline uint64_t loc_get(struct emu_cpu *cpu, const struct emu_insn *in, struct loc l, unsigned size)
{
    return l.mem ? emu_read(cpu, l.lin, size) : reg_get(cpu, in, in->rm, size);
}

/* Locked read-modify-writes (lock prefix, xchg with memory) must be atomic against the other
 * vCPUs' threads: the write is a compare-and-swap with the value the instruction read, and if
 * another vCPU changed memory in between the instruction starts over. Instructions write
 * memory before registers, so nothing is half done. Unaligned, page-crossing and MMIO
 * operands fall back to a plain write. */
static inline bool rmw_locked(const struct emu_insn *in)
{
    return in->lock || (in->map == 0 && (in->op == 0x86 || in->op == 0x87));
}

static void atomic_write(struct emu_cpu *cpu, uint64_t lin, unsigned size, uint64_t old, uint64_t v)
{
    struct emu_tlb_entry *e = &cpu->tlb[emu_user(cpu)][(lin >> 12) & (EMU_TLB_SIZE - 1)];
    if (e->tag_w != (lin & ~0xfffull) || (lin & (size - 1)) || (size & (size - 1)) || size > 8) {
        emu_write(cpu, lin, size, v);
        return;
    }
    void *p = (void *)(uintptr_t)(lin + e->addend);
    bool ok;
    switch (size) {
    case 1: { uint8_t o = (uint8_t)old; ok = __atomic_compare_exchange_n((uint8_t *)p, &o, (uint8_t)v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); break; }
    case 2: { uint16_t o = (uint16_t)old; ok = __atomic_compare_exchange_n((uint16_t *)p, &o, (uint16_t)v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); break; }
    case 4: { uint32_t o = (uint32_t)old; ok = __atomic_compare_exchange_n((uint32_t *)p, &o, (uint32_t)v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); break; }
    default: { uint64_t o = old; ok = __atomic_compare_exchange_n((uint64_t *)p, &o, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); break; }
    }
    if (!ok) {
        cpu->rip = cpu->insn_rip;
        longjmp(cpu->jb, 3); /* the run loop goes on with the same instruction */
    }
}

static inline void loc_set(struct emu_cpu *cpu, const struct emu_insn *in, struct loc l, unsigned size, uint64_t v)
{
    if (l.mem && cpu->rmw_armed && l.lin == cpu->rmw_lin && rmw_locked(in)) {
        cpu->rmw_armed = false;
        atomic_write(cpu, l.lin, size, cpu->rmw_old, v);
    } else if (l.mem) {
        emu_write(cpu, l.lin, size, v);
    } else {
        reg_set(cpu, in, in->rm, size, v);
    }
}

/* Read for read-modify-write: the write permission is checked first so nothing changes on a fault. */
static inline uint64_t loc_get_rmw(struct emu_cpu *cpu, const struct emu_insn *in, struct loc l, unsigned size)
{
    if (l.mem) emu_mem_probe_write(cpu, l.lin, size);
    uint64_t v = loc_get(cpu, in, l, size);
    if (l.mem && rmw_locked(in)) {
        cpu->rmw_armed = true;
        cpu->rmw_lin = l.lin;
        cpu->rmw_old = v;
    }
    return v;
}

/* ---- stack ---- */

static inline unsigned stack_asize(struct emu_cpu *cpu)
{
    if (cpu->cur_mode == EMU_MODE_LONG64) return 8;
    return cpu->seg[EMU_SS].db ? 4 : 2;
}

static void push(struct emu_cpu *cpu, unsigned size, uint64_t v)
{
    unsigned as = stack_asize(cpu);
    uint64_t sp = (cpu->r[EMU_RSP] - size) & emu_size_mask(as);
    emu_write(cpu, emu_lin(cpu, EMU_SS, sp, as), size, v);
    if (as == 8) cpu->r[EMU_RSP] = sp;
    else cpu->r[EMU_RSP] = (cpu->r[EMU_RSP] & ~emu_size_mask(as)) | sp;
}

static uint64_t pop_peek(struct emu_cpu *cpu, unsigned size, unsigned offset)
{
    unsigned as = stack_asize(cpu);
    uint64_t sp = (cpu->r[EMU_RSP] + offset) & emu_size_mask(as);
    return emu_read(cpu, emu_lin(cpu, EMU_SS, sp, as), size);
}

static void sp_add(struct emu_cpu *cpu, uint64_t n)
{
    unsigned as = stack_asize(cpu);
    uint64_t sp = (cpu->r[EMU_RSP] + n) & emu_size_mask(as);
    if (as == 8) cpu->r[EMU_RSP] = sp;
    else cpu->r[EMU_RSP] = (cpu->r[EMU_RSP] & ~emu_size_mask(as)) | sp;
}

static uint64_t pop(struct emu_cpu *cpu, unsigned size)
{
    uint64_t v = pop_peek(cpu, size, 0);
    sp_add(cpu, size);
    return v;
}

static inline void jump(struct emu_cpu *cpu, uint64_t target, unsigned osize)
{
    if (osize != 8) target &= emu_size_mask(osize);
    if (cpu->cur_mode == EMU_MODE_LONG64 && !emu_canonical(target)) emu_gp0(cpu);
    cpu->rip = target;
}

/* ---- ALU ---- */

static uint64_t alu(struct emu_cpu *cpu, unsigned op, unsigned size, uint64_t a, uint64_t b)
{
    uint64_t r, m = emu_size_mask(size);
    switch (op) {
    case 0: r = a + b; set_cc(cpu, EMU_CC_ADD, size, r, a, b); break;
    case 1: r = a | b; set_cc(cpu, EMU_CC_LOGIC, size, r, 0, 0); break;
    case 2: { uint64_t c = get_cf(cpu); r = a + b + c; set_cc(cpu, EMU_CC_ADD, size, r, a, b); break; }
    case 3: { uint64_t c = get_cf(cpu); r = a - b - c; set_cc(cpu, EMU_CC_SUB, size, r, a, b); break; }
    case 4: r = a & b; set_cc(cpu, EMU_CC_LOGIC, size, r, 0, 0); break;
    case 5: case 7: r = a - b; set_cc(cpu, EMU_CC_SUB, size, r, a, b); break;
    default: r = a ^ b; set_cc(cpu, EMU_CC_LOGIC, size, r, 0, 0); break;
    }
    return r & m;
}

static inline void flags_szp(uint64_t *f, uint64_t r, unsigned size)
{
    r &= emu_size_mask(size);
    if (!r) *f |= ZF;
    if (r >> (size * 8 - 1)) *f |= SF;
    if (!__builtin_parity((unsigned)(r & 0xff))) *f |= PF;
}

/* Shifts and rotates (group 2). Flags are computed eagerly: these are rarer than add/cmp. */
static uint64_t shift(struct emu_cpu *cpu, unsigned op, unsigned size, uint64_t v, unsigned count)
{
    unsigned bits = size * 8;
    uint64_t m = emu_size_mask(size), sign = 1ull << (bits - 1);
    count &= size == 8 ? 63 : 31;
    v &= m;
    if (!count) return v;
    /* Only the rotates keep flags they do not set: shl/shr/sar write all of them. */
    uint64_t f = op < 4 ? emu_flags_status(cpu) : 0, r;
    unsigned c;
    switch (op) {
    case 0: /* rol */
        c = count % bits;
        r = c ? ((v << c) | (v >> (bits - c))) & m : v;
        f &= ~(CF | OF);
        if (r & 1) f |= CF;
        if (!!(r & sign) ^ !!(r & 1)) f |= OF;
        break;
    case 1: /* ror */
        c = count % bits;
        r = c ? ((v >> c) | (v << (bits - c))) & m : v;
        f &= ~(CF | OF);
        if (r & sign) f |= CF;
        if (!!(r & sign) ^ !!(r & (sign >> 1))) f |= OF;
        break;
    case 2: { /* rcl */
        c = size == 1 ? count % 9 : size == 2 ? count % 17 : count;
        uint64_t cf = !!(f & CF);
        r = v;
        for (unsigned i = 0; i < c; i++) {
            uint64_t out = !!(r & sign);
            r = ((r << 1) | cf) & m;
            cf = out;
        }
        f &= ~(CF | OF);
        if (cf) f |= CF;
        if (!!(r & sign) ^ cf) f |= OF;
        break;
    }
    case 3: { /* rcr */
        c = size == 1 ? count % 9 : size == 2 ? count % 17 : count;
        uint64_t cf = !!(f & CF);
        r = v;
        f &= ~OF;
        if (!!(v & sign) ^ cf) f |= OF;
        for (unsigned i = 0; i < c; i++) {
            uint64_t out = r & 1;
            r = (r >> 1) | (cf ? sign : 0);
            cf = out;
        }
        f &= ~CF;
        if (cf) f |= CF;
        break;
    }
    case 4: case 6: /* shl/sal */
        r = count >= bits ? 0 : (v << count) & m;
        f = 0;
        if (count <= bits && ((v >> (bits - count)) & 1)) f |= CF;
        if (!!(r & sign) ^ !!(f & CF)) f |= OF;
        flags_szp(&f, r, size);
        break;
    case 5: /* shr */
        r = count >= bits ? 0 : v >> count;
        f = 0;
        if (count <= bits && ((v >> (count - 1)) & 1)) f |= CF;
        if (v & sign) f |= OF;
        flags_szp(&f, r, size);
        break;
    default: { /* sar */
        int64_t sv = (int64_t)sext(v, size);
        unsigned cc = count >= bits ? bits - 1 : count;
        r = (uint64_t)(sv >> cc) & m;
        f = 0;
        if (count >= bits ? (sv < 0) : ((sv >> (count - 1)) & 1)) f |= CF;
        flags_szp(&f, r, size);
        break;
    }
    }
    set_status(cpu, f);
    return r;
}

static uint64_t shxd(struct emu_cpu *cpu, bool left, unsigned size, uint64_t dst, uint64_t src, unsigned count)
{
    unsigned bits = size * 8;
    uint64_t m = emu_size_mask(size), sign = 1ull << (bits - 1);
    count &= size == 8 ? 63 : 31;
    dst &= m;
    src &= m;
    if (!count) return dst;
    uint64_t r, f = 0;
    if (size == 2 && count > 16) {
        /* Undefined result; do what a 32-bit double shift of src:dst would. */
        uint64_t wide = left ? (dst << 16) | src : (src << 16) | dst;
        wide = left ? (wide << count) | (dst >> (32 - count)) : (wide >> count) | (dst << (32 - count));
        r = (left ? wide >> 16 : wide) & m;
        if (left ? (dst >> (32 - count)) & 1 : (dst >> (count - 1 - 16)) & 1) f |= CF;
    } else if (left) {
        r = ((dst << count) | (count == bits ? src : count > bits ? 0 : src >> (bits - count))) & m;
        if ((dst >> (bits - count)) & 1) f |= CF;
    } else {
        r = ((dst >> count) | (count == bits ? 0 : src << (bits - count))) & m;
        if (count == bits) r = src;
        if ((dst >> (count - 1)) & 1) f |= CF;
    }
    if ((r ^ dst) & sign) f |= OF;
    flags_szp(&f, r, size);
    set_status(cpu, f);
    return r;
}

/* ---- string instructions ---- */

static inline uint64_t str_reg(struct emu_cpu *cpu, unsigned r, unsigned asize)
{
    return cpu->r[r] & emu_size_mask(asize);
}

static inline void str_adv(struct emu_cpu *cpu, unsigned r, unsigned asize, int64_t delta)
{
    uint64_t m = emu_size_mask(asize);
    uint64_t v = (cpu->r[r] + delta) & m;
    cpu->r[r] = asize == 4 ? v : (cpu->r[r] & ~m) | v;
}

/* A string instruction, with its rep loop; a fault mid-loop leaves rcx/rsi/rdi at the
 * faulting iteration, as the hardware does. */
static void exec_string(struct emu_cpu *cpu, const struct emu_insn *in)
{
    uint8_t op = in->op;
    unsigned size = (op & 1) ? in->osize : 1;
    unsigned as = in->asize;
    int64_t d = (cpu->flags & DF) ? -(int64_t)size : (int64_t)size;
    bool rep = in->rep != 0;
    bool is_cmp = op == 0xa6 || op == 0xa7 || op == 0xae || op == 0xaf;
    if (op >= 0x6c && op <= 0x6f) {
        if (cpu->cpl > ((cpu->flags >> 12) & 3)) emu_gp0(cpu);
        size = (op & 1) ? (in->osize == 2 ? 2 : 4) : 1;
        d = (cpu->flags & DF) ? -(int64_t)size : (int64_t)size;
    }
    unsigned iter = 0;
    for (;;) {
        if (rep && str_reg(cpu, EMU_RCX, as) == 0) break;
        switch (op) {
        case 0xa4: case 0xa5: {
            uint64_t v = emu_read(cpu, emu_lin(cpu, in->seg, str_reg(cpu, EMU_RSI, as), as), size);
            emu_write(cpu, emu_lin(cpu, EMU_ES, str_reg(cpu, EMU_RDI, as), as), size, v);
            str_adv(cpu, EMU_RSI, as, d);
            str_adv(cpu, EMU_RDI, as, d);
            break;
        }
        case 0xa6: case 0xa7: {
            uint64_t a = emu_read(cpu, emu_lin(cpu, in->seg, str_reg(cpu, EMU_RSI, as), as), size);
            uint64_t b = emu_read(cpu, emu_lin(cpu, EMU_ES, str_reg(cpu, EMU_RDI, as), as), size);
            alu(cpu, 7, size, a, b);
            str_adv(cpu, EMU_RSI, as, d);
            str_adv(cpu, EMU_RDI, as, d);
            break;
        }
        case 0xaa: case 0xab:
            emu_write(cpu, emu_lin(cpu, EMU_ES, str_reg(cpu, EMU_RDI, as), as), size, cpu->r[EMU_RAX]);
            str_adv(cpu, EMU_RDI, as, d);
            break;
        case 0xac: case 0xad: {
            uint64_t v = emu_read(cpu, emu_lin(cpu, in->seg, str_reg(cpu, EMU_RSI, as), as), size);
            reg_set(cpu, in, EMU_RAX, size, v);
            str_adv(cpu, EMU_RSI, as, d);
            break;
        }
        case 0xae: case 0xaf: {
            uint64_t b = emu_read(cpu, emu_lin(cpu, EMU_ES, str_reg(cpu, EMU_RDI, as), as), size);
            alu(cpu, 7, size, cpu->r[EMU_RAX] & emu_size_mask(size), b);
            str_adv(cpu, EMU_RDI, as, d);
            break;
        }
        case 0x6c: case 0x6d: {
            uint64_t v = cpu->io && cpu->io->pio_read ? cpu->io->pio_read(cpu->io_opaque, (uint16_t)cpu->r[EMU_RDX], size)
                                                      : emu_size_mask(size);
            emu_write(cpu, emu_lin(cpu, EMU_ES, str_reg(cpu, EMU_RDI, as), as), size, v);
            str_adv(cpu, EMU_RDI, as, d);
            break;
        }
        default: { /* outs */
            uint64_t v = emu_read(cpu, emu_lin(cpu, in->seg, str_reg(cpu, EMU_RSI, as), as), size);
            if (cpu->io && cpu->io->pio_write) cpu->io->pio_write(cpu->io_opaque, (uint16_t)cpu->r[EMU_RDX], (uint32_t)v, size);
            str_adv(cpu, EMU_RSI, as, d);
            break;
        }
        }
        if (!rep) return;
        str_adv(cpu, EMU_RCX, as, -1);
        if (is_cmp) {
            bool zf = emu_flags_status(cpu) & ZF;
            if (in->rep == 0xf3 && !zf) break;
            if (in->rep == 0xf2 && zf) break;
        }
        if (++iter >= 4096 && str_reg(cpu, EMU_RCX, as) != 0) {
            /* Long rep: each 4096 iterations count as an instruction; when the budget runs out
             * the instruction stops here and resumes on the next run (as after an interrupt). */
            iter = 0;
            cpu->insns++;
            if (cpu->insns >= cpu->budget) {
                cpu->rip = cpu->insn_rip;
                return;
            }
        }
    }
}

/* ---- group 3 (test/not/neg/mul/imul/div/idiv) ---- */

static void exec_grp3(struct emu_cpu *cpu, const struct emu_insn *in, unsigned size)
{
    struct loc l = rm_loc(cpu, in);
    unsigned r = in->reg & 7;
    uint64_t m = emu_size_mask(size);
    switch (r) {
    case 0: case 1: alu(cpu, 4, size, loc_get(cpu, in, l, size), in->imm); return;
    case 2: { uint64_t v = loc_get_rmw(cpu, in, l, size); loc_set(cpu, in, l, size, ~v & m); return; }
    case 3: {
        uint64_t v = loc_get_rmw(cpu, in, l, size);
        loc_set(cpu, in, l, size, (0 - v) & m);
        set_cc(cpu, EMU_CC_SUB, size, 0 - v, 0, v);
        return;
    }
    }
    uint64_t src = loc_get(cpu, in, l, size);
    uint64_t f = 0;
    switch (r) {
    case 4: { /* mul */
        if (size == 1) {
            uint64_t p = (cpu->r[EMU_RAX] & 0xff) * src;
            reg_set(cpu, in, EMU_RAX, 2, p);
            if (p >> 8) f |= CF | OF;
            flags_szp(&f, p, 1);
        } else {
            unsigned __int128 p = (unsigned __int128)(cpu->r[EMU_RAX] & m) * src;
            uint64_t lo = (uint64_t)p & m, hi = (uint64_t)(p >> (size * 8)) & m;
            reg_set(cpu, in, EMU_RAX, size, lo);
            reg_set(cpu, in, EMU_RDX, size, hi);
            if (hi) f |= CF | OF;
            flags_szp(&f, lo, size);
        }
        set_status(cpu, f);
        return;
    }
    case 5: { /* imul */
        __int128 a = (int64_t)sext(cpu->r[EMU_RAX], size), b = (int64_t)sext(src, size);
        __int128 p = a * b;
        uint64_t lo = (uint64_t)p & m;
        if ((__int128)(int64_t)sext(lo, size) != p) f |= CF | OF;
        flags_szp(&f, lo, size);
        if (size == 1) {
            reg_set(cpu, in, EMU_RAX, 2, (uint64_t)p);
        } else {
            reg_set(cpu, in, EMU_RAX, size, lo);
            reg_set(cpu, in, EMU_RDX, size, (uint64_t)(p >> (size * 8)) & m);
        }
        set_status(cpu, f);
        return;
    }
    case 6: { /* div */
        if (!src) emu_raise(cpu, EMU_DE, false, 0);
        unsigned __int128 n;
        if (size == 1) n = cpu->r[EMU_RAX] & 0xffff;
        else n = ((unsigned __int128)(cpu->r[EMU_RDX] & m) << (size * 8)) | (cpu->r[EMU_RAX] & m);
        unsigned __int128 q = n / src, rem = n % src;
        if (q > m) emu_raise(cpu, EMU_DE, false, 0);
        if (size == 1) {
            reg_set(cpu, in, EMU_RAX, 2, (uint64_t)q | ((uint64_t)rem << 8));
        } else {
            reg_set(cpu, in, EMU_RAX, size, (uint64_t)q);
            reg_set(cpu, in, EMU_RDX, size, (uint64_t)rem);
        }
        return; /* flags undefined: left as they were */
    }
    default: { /* idiv */
        if (!src) emu_raise(cpu, EMU_DE, false, 0);
        __int128 n;
        if (size == 1) n = (int16_t)(cpu->r[EMU_RAX] & 0xffff);
        else {
            unsigned __int128 un = ((unsigned __int128)(cpu->r[EMU_RDX] & m) << (size * 8)) | (cpu->r[EMU_RAX] & m);
            unsigned sh = 128 - 16 * size;
            n = (__int128)(un << sh) >> sh;
        }
        __int128 d = (int64_t)sext(src, size);
        if (size == 8 && d == -1 && (unsigned __int128)n == ((unsigned __int128)1 << 127)) emu_raise(cpu, EMU_DE, false, 0);
        __int128 q = n / d, rem = n % d;
        __int128 lim = (__int128)1 << (size * 8 - 1);
        if (q >= lim || q < -lim) emu_raise(cpu, EMU_DE, false, 0);
        if (size == 1) {
            reg_set(cpu, in, EMU_RAX, 2, ((uint64_t)q & 0xff) | (((uint64_t)rem & 0xff) << 8));
        } else {
            reg_set(cpu, in, EMU_RAX, size, (uint64_t)q);
            reg_set(cpu, in, EMU_RDX, size, (uint64_t)rem);
        }
        return;
    }
    }
}

/* ---- bit tests ---- */

static void exec_bt(struct emu_cpu *cpu, const struct emu_insn *in, unsigned kind, uint64_t bitoff, bool imm)
{
    unsigned size = in->osize, bits = size * 8;
    uint64_t f = emu_flags_status(cpu) & ~CF;
    if (in->mem) {
        uint64_t ea = emu_ea(cpu, in);
        if (!imm) {
            int64_t off = (int64_t)sext(bitoff, size);
            ea += (uint64_t)((off >> (szlog(size) + 3)) * (int64_t)size);
            bitoff = (uint64_t)off & (bits - 1);
        } else {
            bitoff &= bits - 1;
        }
        uint64_t lin = emu_lin(cpu, in->seg, ea & emu_size_mask(in->asize), in->asize);
        uint64_t v = kind ? (emu_mem_probe_write(cpu, lin, size), emu_read(cpu, lin, size)) : emu_read(cpu, lin, size);
        uint64_t old = v;
        if ((v >> bitoff) & 1) f |= CF;
        if (kind == 1) v |= 1ull << bitoff;
        if (kind == 2) v &= ~(1ull << bitoff);
        if (kind == 3) v ^= 1ull << bitoff;
        if (kind && in->lock) atomic_write(cpu, lin, size, old, v);
        else if (kind) emu_write(cpu, lin, size, v);
    } else {
        bitoff &= bits - 1;
        uint64_t v = reg_get(cpu, in, in->rm, size);
        if ((v >> bitoff) & 1) f |= CF;
        if (kind == 1) v |= 1ull << bitoff;
        if (kind == 2) v &= ~(1ull << bitoff);
        if (kind == 3) v ^= 1ull << bitoff;
        if (kind) reg_set(cpu, in, in->rm, size, v);
    }
    set_status(cpu, f);
}

/* ---- x87 bits that kernels touch ---- */

static void exec_x87(struct emu_cpu *cpu, const struct emu_insn *in)
{
    if (cpu->cr0 & (EMU_CR0_EM | EMU_CR0_TS)) emu_raise(cpu, EMU_NM, false, 0);
    unsigned r = in->reg & 7, rm = in->rm & 7;
    bool m = in->mem;
    if (in->op == 0xdb && !m && r == 4 && rm == 3) emu_x87_fninit(cpu);
    else if (in->op == 0xdb && !m && r == 4 && rm == 2) cpu->fsw &= 0x7f00;                         /* fnclex */
    else if (in->op == 0xd9 && m && r == 7) emu_write(cpu, ea_lin(cpu, in), 2, cpu->fcw);           /* fnstcw */
    else if (in->op == 0xd9 && m && r == 5) cpu->fcw = (uint16_t)((emu_read(cpu, ea_lin(cpu, in), 2) & 0x1f3f) | 0x40); /* fldcw */
    else if (in->op == 0xdd && m && r == 7) emu_write(cpu, ea_lin(cpu, in), 2, cpu->fsw);           /* fnstsw m16 */
    else if (in->op == 0xdf && !m && r == 4 && rm == 0) reg_set(cpu, in, EMU_RAX, 2, cpu->fsw);     /* fnstsw ax */
    else if ((in->op == 0xd9 || in->op == 0xdd) && m && (r == 4 || r == 6)) emu_x87_env(cpu, in);
    else emu_exec_x87(cpu, in); /* arithmetic, loads, stores, compares (emu_x87.c) */
}

/* ---- one-byte map ---- */

static void exec_map0(struct emu_cpu *cpu, const struct emu_insn *in)
{
    uint8_t op = in->op;
    unsigned os = in->osize;
    enum emu_cpu_mode mode = (enum emu_cpu_mode)cpu->cur_mode;

    if (op < 0x40 && (op & 7) < 6) {
        unsigned aop = op >> 3, size = (op & 1) ? os : 1;
        switch (op & 7) {
        case 0: case 1: {
            struct loc l = rm_loc(cpu, in);
            uint64_t a = aop == 7 ? loc_get(cpu, in, l, size) : loc_get_rmw(cpu, in, l, size);
            uint64_t r = alu(cpu, aop, size, a, reg_get(cpu, in, in->reg, size));
            if (aop != 7) loc_set(cpu, in, l, size, r);
            return;
        }
        case 2: case 3: {
            struct loc l = rm_loc(cpu, in);
            uint64_t b = loc_get(cpu, in, l, size);
            uint64_t r = alu(cpu, aop, size, reg_get(cpu, in, in->reg, size), b);
            if (aop != 7) reg_set(cpu, in, in->reg, size, r);
            return;
        }
        case 4: case 5: {
            uint64_t r = alu(cpu, aop, size, reg_get(cpu, in, EMU_RAX, size), in->imm & emu_size_mask(size));
            if (aop != 7) reg_set(cpu, in, EMU_RAX, size, r);
            return;
        }
        }
    }
    switch (op) {
    case 0x40 ... 0x4f: { /* inc/dec r (not 64-bit mode) */
        unsigned r = op & 7;
        uint64_t v = reg_get(cpu, in, r, os), c = get_cf(cpu);
        uint64_t nv = op < 0x48 ? v + 1 : v - 1;
        reg_set(cpu, in, r, os, nv);
        set_cc(cpu, op < 0x48 ? EMU_CC_INC : EMU_CC_DEC, os, nv, v, c);
        return;
    }
    case 0x50 ... 0x57: push(cpu, os, cpu->r[(op & 7) | ((in->rex & 1) << 3)]); return;
    case 0x58 ... 0x5f: {
        uint64_t v = pop(cpu, os);
        reg_set(cpu, in, (op & 7) | ((in->rex & 1) << 3), os, v);
        return;
    }
    case 0x06: case 0x0e: case 0x16: case 0x1e:
        push(cpu, os, cpu->seg[op >> 3].sel);
        return;
    case 0x07: case 0x17: case 0x1f: {
        uint64_t v = pop_peek(cpu, os, 0);
        emu_load_seg(cpu, op >> 3, (uint16_t)v);
        sp_add(cpu, os);
        if (op == 0x17) cpu->intr_shadow = true;
        return;
    }
    case 0x60: { /* pusha */
        uint64_t sp = cpu->r[EMU_RSP];
        for (unsigned r = 0; r < 8; r++) push(cpu, os, r == EMU_RSP ? sp : cpu->r[r]);
        return;
    }
    case 0x61: /* popa */
        for (int r = 7; r >= 0; r--) {
            uint64_t v = pop(cpu, os);
            if (r != EMU_RSP) reg_set(cpu, in, r, os, v);
        }
        return;
    case 0x63: { /* movsxd */
        struct loc l = rm_loc(cpu, in);
        uint64_t v = loc_get(cpu, in, l, os == 8 ? 4 : os);
        reg_set(cpu, in, in->reg, os, os == 8 ? sext(v, 4) : v);
        return;
    }
    case 0x68: case 0x6a: push(cpu, os, in->imm); return;
    case 0x69: case 0x6b: {
        struct loc l = rm_loc(cpu, in);
        __int128 a = (int64_t)sext(loc_get(cpu, in, l, os), os), b = (int64_t)sext(in->imm, os);
        __int128 p = a * b;
        uint64_t lo = (uint64_t)p & emu_size_mask(os), f = 0;
        if ((__int128)(int64_t)sext(lo, os) != p) f |= CF | OF;
        flags_szp(&f, lo, os);
        reg_set(cpu, in, in->reg, os, lo);
        set_status(cpu, f);
        return;
    }
    case 0x6c ... 0x6f: exec_string(cpu, in); return;
    case 0x70 ... 0x7f:
        if (cond(cpu, op & 15)) jump(cpu, cpu->rip + in->imm, in->osize);
        return;
    case 0x80: case 0x81: case 0x82: case 0x83: {
        unsigned size = op == 0x80 || op == 0x82 ? 1 : os, aop = in->reg & 7;
        struct loc l = rm_loc(cpu, in);
        uint64_t a = aop == 7 ? loc_get(cpu, in, l, size) : loc_get_rmw(cpu, in, l, size);
        uint64_t r = alu(cpu, aop, size, a, in->imm & emu_size_mask(size));
        if (aop != 7) loc_set(cpu, in, l, size, r);
        return;
    }
    case 0x84: case 0x85: {
        unsigned size = op == 0x84 ? 1 : os;
        struct loc l = rm_loc(cpu, in);
        alu(cpu, 4, size, loc_get(cpu, in, l, size), reg_get(cpu, in, in->reg, size));
        return;
    }
    case 0x86: case 0x87: {
        unsigned size = op == 0x86 ? 1 : os;
        struct loc l = rm_loc(cpu, in);
        uint64_t a = loc_get_rmw(cpu, in, l, size), b = reg_get(cpu, in, in->reg, size);
        loc_set(cpu, in, l, size, b);
        reg_set(cpu, in, in->reg, size, a);
        return;
    }
    case 0x88: case 0x89: {
        unsigned size = op == 0x88 ? 1 : os;
        loc_set(cpu, in, rm_loc(cpu, in), size, reg_get(cpu, in, in->reg, size));
        return;
    }
    case 0x8a: case 0x8b: {
        unsigned size = op == 0x8a ? 1 : os;
        reg_set(cpu, in, in->reg, size, loc_get(cpu, in, rm_loc(cpu, in), size));
        return;
    }
    case 0x8c: {
        struct loc l = rm_loc(cpu, in);
        uint64_t v = cpu->seg[in->reg & 7].sel;
        if (l.mem) emu_write(cpu, l.lin, 2, v);
        else reg_set(cpu, in, in->rm, os == 2 ? 2 : 4, v); /* zero-extended into the register */
        return;
    }
    case 0x8d: reg_set(cpu, in, in->reg, os, emu_ea(cpu, in)); return;
    case 0x8e: {
        uint16_t v = (uint16_t)loc_get(cpu, in, rm_loc(cpu, in), 2);
        emu_load_seg(cpu, in->reg & 7, v);
        if ((in->reg & 7) == EMU_SS) cpu->intr_shadow = true;
        return;
    }
    case 0x8f: {
        /* The address is computed with rsp already incremented. */
        uint64_t v = pop_peek(cpu, os, 0);
        uint64_t old = cpu->r[EMU_RSP];
        if (in->mem) {
            sp_add(cpu, os);
            uint64_t ea = emu_ea(cpu, in);
            cpu->r[EMU_RSP] = old;
            emu_write(cpu, emu_lin(cpu, in->seg, ea, in->asize), os, v);
            sp_add(cpu, os);
        } else {
            sp_add(cpu, os);
            reg_set(cpu, in, in->rm, os, v);
        }
        return;
    }
    case 0x90:
        if (in->rex & 1) goto xchg;
        if (in->rep == 0xf3) { /* pause */ }
        return;
    case 0x91 ... 0x97:
    xchg: {
        unsigned r = (op & 7) | ((in->rex & 1) << 3);
        uint64_t a = reg_get(cpu, in, EMU_RAX, os), b = reg_get(cpu, in, r, os);
        reg_set(cpu, in, EMU_RAX, os, b);
        reg_set(cpu, in, r, os, a);
        return;
    }
    case 0x98:
        if (os == 2) reg_set(cpu, in, EMU_RAX, 2, sext(cpu->r[EMU_RAX], 1));
        else if (os == 4) reg_set(cpu, in, EMU_RAX, 4, sext(cpu->r[EMU_RAX], 2));
        else cpu->r[EMU_RAX] = sext(cpu->r[EMU_RAX], 4);
        return;
    case 0x99: {
        uint64_t s = (cpu->r[EMU_RAX] >> (os * 8 - 1)) & 1;
        reg_set(cpu, in, EMU_RDX, os, s ? ~0ull : 0);
        return;
    }
    case 0x9b: return; /* fwait */
    case 0x9c: {
        if ((cpu->flags & EMU_FLAG_VM) && ((cpu->flags >> 12) & 3) < 3) emu_gp0(cpu);
        push(cpu, os, emu_get_rflags(cpu) & ~(uint64_t)(EMU_FLAG_RF | EMU_FLAG_VM));
        return;
    }
    case 0x9d: {
        uint64_t v = pop_peek(cpu, os, 0);
        uint64_t cur = emu_get_rflags(cpu);
        uint64_t chg = EMU_FLAGS_STATUS | EMU_FLAG_TF | EMU_FLAG_DF | EMU_FLAG_NT | EMU_FLAG_AC | EMU_FLAG_ID;
        unsigned iopl = (cur >> 12) & 3;
        if (cpu->cpl == 0) chg |= EMU_FLAG_IOPL;
        if (cpu->cpl <= iopl) chg |= EMU_FLAG_IF;
        if (os == 2) chg &= 0xffff;
        sp_add(cpu, os);
        emu_set_rflags(cpu, (cur & ~chg) | (v & chg));
        return;
    }
    case 0x9e: { /* sahf */
        uint64_t f = emu_flags_status(cpu) & OF;
        f |= (cpu->r[EMU_RAX] >> 8) & (SF | ZF | AF | PF | CF);
        set_status(cpu, f);
        return;
    }
    case 0x9f: { /* lahf */
        uint64_t f = emu_flags_status(cpu) & (SF | ZF | AF | PF | CF);
        cpu->r[EMU_RAX] = (cpu->r[EMU_RAX] & ~0xff00ull) | ((f | 2) << 8);
        return;
    }
    case 0xa0 ... 0xa3: {
        unsigned size = (op & 1) ? os : 1;
        uint64_t lin = emu_lin(cpu, in->seg, in->imm, in->asize);
        if (op < 0xa2) reg_set(cpu, in, EMU_RAX, size, emu_read(cpu, lin, size));
        else emu_write(cpu, lin, size, cpu->r[EMU_RAX]);
        return;
    }
    case 0xa4 ... 0xa7: case 0xaa ... 0xaf: exec_string(cpu, in); return;
    case 0xa8: case 0xa9: {
        unsigned size = op == 0xa8 ? 1 : os;
        alu(cpu, 4, size, cpu->r[EMU_RAX] & emu_size_mask(size), in->imm & emu_size_mask(size));
        return;
    }
    case 0xb0 ... 0xb7: reg_set(cpu, in, (op & 7) | ((in->rex & 1) << 3), 1, in->imm); return;
    case 0xb8 ... 0xbf: reg_set(cpu, in, (op & 7) | ((in->rex & 1) << 3), os, in->imm); return;
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        unsigned size = (op & 1) ? os : 1;
        unsigned count = op <= 0xc1 ? (unsigned)in->imm : op <= 0xd1 ? 1 : (unsigned)cpu->r[EMU_RCX];
        struct loc l = rm_loc(cpu, in);
        uint64_t v = loc_get_rmw(cpu, in, l, size);
        uint64_t r = shift(cpu, in->reg & 7, size, v, count & 0xff);
        loc_set(cpu, in, l, size, r);
        return;
    }
    case 0xc2: case 0xc3: {
        uint64_t t = pop_peek(cpu, os, 0);
        jump(cpu, t, os);
        sp_add(cpu, os + (op == 0xc2 ? (in->imm & 0xffff) : 0));
        return;
    }
    case 0xc6: case 0xc7: {
        unsigned size = op == 0xc6 ? 1 : os;
        loc_set(cpu, in, rm_loc(cpu, in), size, in->imm);
        return;
    }
    case 0xc8: { /* enter */
        unsigned level = in->imm2 & 31;
        uint64_t frame;
        push(cpu, os, cpu->r[EMU_RBP]);
        frame = cpu->r[EMU_RSP];
        for (unsigned i = 1; i < level; i++) {
            uint64_t bp = cpu->r[EMU_RBP] - i * os;
            push(cpu, os, emu_read(cpu, emu_lin(cpu, EMU_SS, bp & emu_size_mask(stack_asize(cpu)), stack_asize(cpu)), os));
        }
        if (level) push(cpu, os, frame);
        reg_set(cpu, in, EMU_RBP, os, frame);
        sp_add(cpu, -(uint64_t)(in->imm & 0xffff));
        return;
    }
    case 0xc9: { /* leave */
        unsigned as = stack_asize(cpu);
        uint64_t bp = cpu->r[EMU_RBP] & emu_size_mask(as);
        uint64_t v = emu_read(cpu, emu_lin(cpu, EMU_SS, bp, as), os);
        if (as == 8) cpu->r[EMU_RSP] = bp;
        else cpu->r[EMU_RSP] = (cpu->r[EMU_RSP] & ~emu_size_mask(as)) | bp;
        sp_add(cpu, os);
        reg_set(cpu, in, EMU_RBP, os, v);
        return;
    }
    case 0xcc: emu_deliver(cpu, EMU_BP, false, 0, true, cpu->rip); return;
    case 0xcd: emu_deliver(cpu, (unsigned)(in->imm & 0xff), false, 0, true, cpu->rip); return;
    case 0xce:
        if (emu_flags_status(cpu) & OF) emu_deliver(cpu, EMU_OF, false, 0, true, cpu->rip);
        return;
    case 0xd7: {
        uint64_t off = (cpu->r[EMU_RBX] + (cpu->r[EMU_RAX] & 0xff)) & emu_size_mask(in->asize);
        reg_set(cpu, in, EMU_RAX, 1, emu_read(cpu, emu_lin(cpu, in->seg, off, in->asize), 1));
        return;
    }
    case 0xd8 ... 0xdf: exec_x87(cpu, in); return;
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: {
        unsigned as = in->asize;
        bool take;
        if (op == 0xe3) {
            take = (cpu->r[EMU_RCX] & emu_size_mask(as)) == 0;
        } else {
            str_adv(cpu, EMU_RCX, as, -1);
            take = (cpu->r[EMU_RCX] & emu_size_mask(as)) != 0;
            if (op == 0xe0) take = take && !(emu_flags_status(cpu) & ZF);
            if (op == 0xe1) take = take && (emu_flags_status(cpu) & ZF);
        }
        if (take) jump(cpu, cpu->rip + in->imm, os);
        return;
    }
    case 0xe8: {
        uint64_t t = (cpu->rip + in->imm) & (os == 8 ? ~0ull : emu_size_mask(os));
        if (mode == EMU_MODE_LONG64 && !emu_canonical(t)) emu_gp0(cpu);
        push(cpu, os, cpu->rip);
        cpu->rip = t;
        return;
    }
    case 0xe9: case 0xeb: jump(cpu, cpu->rip + in->imm, os); return;
    case 0xf4:
        if (cpu->cpl) emu_gp0(cpu);
        cpu->halted = true;
        return;
    case 0xf5: set_status(cpu, emu_flags_status(cpu) ^ CF); return;
    case 0xf6: exec_grp3(cpu, in, 1); return;
    case 0xf7: exec_grp3(cpu, in, os); return;
    case 0xf8: set_status(cpu, emu_flags_status(cpu) & ~CF); return;
    case 0xf9: set_status(cpu, emu_flags_status(cpu) | CF); return;
    case 0xfc: cpu->flags &= ~(uint64_t)DF; return;
    case 0xfd: cpu->flags |= DF; return;
    case 0xfe: case 0xff: {
        unsigned size = op == 0xfe ? 1 : os, r = in->reg & 7;
        if (r <= 1) {
            struct loc l = rm_loc(cpu, in);
            uint64_t v = loc_get_rmw(cpu, in, l, size), c = get_cf(cpu);
            uint64_t nv = r == 0 ? v + 1 : v - 1;
            loc_set(cpu, in, l, size, nv);
            set_cc(cpu, r == 0 ? EMU_CC_INC : EMU_CC_DEC, size, nv, v, c);
            return;
        }
        if (r == 2 || r == 4) {
            uint64_t t = loc_get(cpu, in, rm_loc(cpu, in), os);
            if (os != 8) t &= emu_size_mask(os);
            if (mode == EMU_MODE_LONG64 && !emu_canonical(t)) emu_gp0(cpu);
            if (r == 2) push(cpu, os, cpu->rip);
            cpu->rip = t;
            return;
        }
        if (r == 6) {
            uint64_t v = loc_get(cpu, in, rm_loc(cpu, in), os);
            push(cpu, os, v);
            return;
        }
        break; /* far call/jmp: system */
    }
    }
    emu_exec_system(cpu, in);
}

/* ---- two-byte map ---- */

static void exec_map1(struct emu_cpu *cpu, const struct emu_insn *in)
{
    uint8_t op = in->op;
    unsigned os = in->osize;
    switch (op) {
    case 0x0b: emu_ud(cpu);
    case 0x0d: case 0x18 ... 0x1f: return; /* prefetch, hint nops: never fault */
    case 0x40 ... 0x4f: {
        struct loc l = rm_loc(cpu, in);
        uint64_t v = loc_get(cpu, in, l, os);
        if (cond(cpu, op & 15)) reg_set(cpu, in, in->reg, os, v);
        else if (os == 4) reg_set(cpu, in, in->reg, 4, cpu->r[in->reg]); /* zero-extends regardless */
        return;
    }
    case 0x80 ... 0x8f:
        if (cond(cpu, op & 15)) jump(cpu, cpu->rip + in->imm, os);
        return;
    case 0x90 ... 0x9f: loc_set(cpu, in, rm_loc(cpu, in), 1, cond(cpu, op & 15)); return;
    case 0xa0: case 0xa8: push(cpu, os, cpu->seg[op == 0xa0 ? EMU_FS : EMU_GS].sel); return;
    case 0xa1: case 0xa9: {
        uint64_t v = pop_peek(cpu, os, 0);
        emu_load_seg(cpu, op == 0xa1 ? EMU_FS : EMU_GS, (uint16_t)v);
        sp_add(cpu, os);
        return;
    }
    case 0xa3: exec_bt(cpu, in, 0, reg_get(cpu, in, in->reg, os), false); return;
    case 0xab: exec_bt(cpu, in, 1, reg_get(cpu, in, in->reg, os), false); return;
    case 0xb3: exec_bt(cpu, in, 2, reg_get(cpu, in, in->reg, os), false); return;
    case 0xbb: exec_bt(cpu, in, 3, reg_get(cpu, in, in->reg, os), false); return;
    case 0xba: exec_bt(cpu, in, (in->reg & 7) - 4, in->imm & 0xff, true); return;
    case 0xa4: case 0xa5: case 0xac: case 0xad: {
        unsigned count = (op & 1) ? (unsigned)cpu->r[EMU_RCX] & 0xff : (unsigned)in->imm & 0xff;
        struct loc l = rm_loc(cpu, in);
        uint64_t v = loc_get_rmw(cpu, in, l, os);
        uint64_t r = shxd(cpu, op < 0xa8, os, v, reg_get(cpu, in, in->reg, os), count);
        loc_set(cpu, in, l, os, r);
        return;
    }
    case 0xaf: {
        __int128 a = (int64_t)sext(reg_get(cpu, in, in->reg, os), os);
        __int128 b = (int64_t)sext(loc_get(cpu, in, rm_loc(cpu, in), os), os);
        __int128 p = a * b;
        uint64_t lo = (uint64_t)p & emu_size_mask(os), f = 0;
        if ((__int128)(int64_t)sext(lo, os) != p) f |= CF | OF;
        flags_szp(&f, lo, os);
        reg_set(cpu, in, in->reg, os, lo);
        set_status(cpu, f);
        return;
    }
    case 0xb0: case 0xb1: {
        unsigned size = op == 0xb0 ? 1 : os;
        struct loc l = rm_loc(cpu, in);
        uint64_t d = loc_get_rmw(cpu, in, l, size), a = reg_get(cpu, in, EMU_RAX, size);
        alu(cpu, 7, size, a, d);
        if (a == d) {
            loc_set(cpu, in, l, size, reg_get(cpu, in, in->reg, size));
        } else {
            /* The locked cycle writes the value back; with lock, another vCPU's store since the
             * read must not be undone, so the write-back (same value) is left out. */
            if (l.mem && rmw_locked(in)) cpu->rmw_armed = false;
            else if (l.mem) emu_write(cpu, l.lin, size, d);
            reg_set(cpu, in, EMU_RAX, size, d);
        }
        return;
    }
    case 0xb6: case 0xb7: {
        unsigned ss = op == 0xb6 ? 1 : 2;
        reg_set(cpu, in, in->reg, os, loc_get(cpu, in, rm_loc(cpu, in), ss));
        return;
    }
    case 0xbe: case 0xbf: {
        unsigned ss = op == 0xbe ? 1 : 2;
        reg_set(cpu, in, in->reg, os, sext(loc_get(cpu, in, rm_loc(cpu, in), ss), ss));
        return;
    }
    case 0xb8: { /* popcnt */
        uint64_t v = loc_get(cpu, in, rm_loc(cpu, in), os);
        reg_set(cpu, in, in->reg, os, (uint64_t)__builtin_popcountll(v));
        set_status(cpu, v ? 0 : ZF);
        return;
    }
    case 0xbc: case 0xbd: {
        uint64_t v = loc_get(cpu, in, rm_loc(cpu, in), os);
        unsigned bits = os * 8;
        uint64_t f = emu_flags_status(cpu);
        if (in->rep == 0xf3) { /* tzcnt / lzcnt */
            uint64_t n = !v ? bits : op == 0xbc ? (uint64_t)__builtin_ctzll(v) : (uint64_t)(__builtin_clzll(v) - (64 - bits));
            reg_set(cpu, in, in->reg, os, n);
            f &= ~(CF | ZF);
            if (!v) f |= CF;
            if (!n) f |= ZF;
            set_status(cpu, f);
            return;
        }
        f &= ~ZF;
        if (!v) {
            f |= ZF; /* destination unchanged */
        } else {
            reg_set(cpu, in, in->reg, os, op == 0xbc ? (uint64_t)__builtin_ctzll(v) : (uint64_t)(63 - __builtin_clzll(v)));
        }
        set_status(cpu, f);
        return;
    }
    case 0xc0: case 0xc1: {
        unsigned size = op == 0xc0 ? 1 : os;
        struct loc l = rm_loc(cpu, in);
        uint64_t d = loc_get_rmw(cpu, in, l, size), s = reg_get(cpu, in, in->reg, size);
        uint64_t sum = alu(cpu, 0, size, d, s);
        if (l.mem) { /* memory first: a locked write may restart the instruction */
            loc_set(cpu, in, l, size, sum);
            reg_set(cpu, in, in->reg, size, d);
        } else {
            reg_set(cpu, in, in->reg, size, d);
            loc_set(cpu, in, l, size, sum);
        }
        return;
    }
    case 0xc3: emu_write(cpu, ea_lin(cpu, in), os == 8 ? 8 : 4, cpu->r[in->reg]); return; /* movnti */
    case 0xc7: { /* cmpxchg8b / cmpxchg16b */
        uint64_t ea = emu_ea(cpu, in);
        if (os == 8 && ((ea + ((in->seg == EMU_FS || in->seg == EMU_GS) ? cpu->seg[in->seg].base : 0)) & 15))
            emu_gp0(cpu); /* alignment is checked before the canonical-address check */
        uint64_t lin = emu_lin(cpu, in->seg, ea, in->asize);
        uint64_t f = emu_flags_status(cpu) & ~ZF;
        if (os == 8) {
            emu_mem_probe_write(cpu, lin, 8);
            emu_mem_probe_write(cpu, lin + 8, 8);
            uint64_t lo = emu_read(cpu, lin, 8), hi = emu_read(cpu, lin + 8, 8);
            if (lo == cpu->r[EMU_RAX] && hi == cpu->r[EMU_RDX]) {
                emu_write(cpu, lin, 8, cpu->r[EMU_RBX]);
                emu_write(cpu, lin + 8, 8, cpu->r[EMU_RCX]);
                f |= ZF;
            } else {
                emu_write(cpu, lin, 8, lo);
                emu_write(cpu, lin + 8, 8, hi);
                cpu->r[EMU_RAX] = lo;
                cpu->r[EMU_RDX] = hi;
            }
        } else {
            emu_mem_probe_write(cpu, lin, 8);
            uint64_t v = emu_read(cpu, lin, 8);
            uint64_t cmp = (cpu->r[EMU_RAX] & 0xffffffff) | (cpu->r[EMU_RDX] << 32);
            if (v == cmp) {
                emu_write(cpu, lin, 8, (cpu->r[EMU_RBX] & 0xffffffff) | (cpu->r[EMU_RCX] << 32));
                f |= ZF;
            } else {
                emu_write(cpu, lin, 8, v);
                cpu->r[EMU_RAX] = (uint32_t)v;
                cpu->r[EMU_RDX] = v >> 32;
            }
        }
        set_status(cpu, f);
        return;
    }
    case 0xc8 ... 0xcf: {
        unsigned r = (op & 7) | ((in->rex & 1) << 3);
        if (os == 8) cpu->r[r] = __builtin_bswap64(cpu->r[r]);
        else if (os == 4) cpu->r[r] = __builtin_bswap32((uint32_t)cpu->r[r]);
        else reg_set(cpu, in, r, 2, 0); /* 16-bit bswap: undefined, zero like Intel */
        return;
    }
    }
    if ((op >= 0x10 && op <= 0x17) || (op >= 0x28 && op <= 0x2f) || (op >= 0x50 && op <= 0x7f) ||
        (op >= 0xc2 && op <= 0xc6) || op >= 0xd0 || op == 0xae) {
        emu_exec_sse(cpu, in);
        return;
    }
    emu_exec_system(cpu, in);
}

/* ---- decoded-block cache ---- */

#define EMU_BLOCK_MAX 32
/* A Linux boot runs more distinct blocks than 2048 slots hold: 8192 cut its misses (and
 * re-decodes) enough to boot about 5% faster. Slots are only touched when used. */
#define EMU_NBLOCKS 8192

/* Decoded instructions of one straight-line run, keyed by the physical address of its start. */
struct emu_block {
    uint64_t gpa;
    uint8_t mode, n;
    uint32_t gen; /* valid when equal to cpu->block_gen */
    struct emu_insn insn[EMU_BLOCK_MAX];
};

/* Instructions after which the block ends: control flow, and anything that may change the
 * mode, paging, privilege or interrupt state. */
static bool ends_block(const struct emu_insn *in)
{
    uint8_t o = in->op;
    if (in->map == 0) {
        if (o < 0x40) return (o & 7) >= 6;
        switch (o) {
        case 0x50 ... 0x5f: case 0x63: case 0x68 ... 0x6b: case 0x80 ... 0x8b: case 0x8d:
        case 0x8f: case 0x90 ... 0x99: case 0x9c: case 0x9e: case 0x9f: case 0xa0 ... 0xaf:
        case 0xb0 ... 0xbf: case 0xc0: case 0xc1: case 0xc6: case 0xc7: case 0xc8: case 0xc9:
        case 0xd0 ... 0xd3: case 0xf5 ... 0xf9: case 0xfc: case 0xfd: case 0xfe:
            return false;
        case 0xff: return !((in->reg & 7) <= 1 || (in->reg & 7) == 6);
        }
        return true;
    }
    if (in->map != 1) return true;
    switch (o) {
    case 0x10 ... 0x1f: case 0x28 ... 0x2f: case 0x40 ... 0x4f: case 0x50 ... 0x7f: case 0x90 ... 0x9f:
    case 0xa3: case 0xa4: case 0xa5: case 0xab: case 0xac: case 0xad: case 0xaf: case 0xb0 ... 0xbf:
    case 0xc0 ... 0xff:
        return false;
    }
    return true;
}

static void shared_log(struct emu_shared *sh, uint64_t *epoch, uint64_t *log, uint64_t page)
{
    pthread_mutex_lock(&sh->lock);
    uint64_t e = *epoch;
    log[e % EMU_SHARED_LOG] = page;
    __atomic_store_n(epoch, e + 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&sh->lock);
}

static void drop_page_blocks(struct emu_cpu *cpu, uint64_t page)
{
    if (!cpu->blocks) return;
    for (unsigned i = 0; i < EMU_NBLOCKS; i++)
        if ((cpu->blocks[i].gpa >> 12) == page >> 12) cpu->blocks[i].gen = 0;
}

static void drop_page_writes(struct emu_cpu *cpu, uint64_t page)
{
    for (unsigned k = 0; k < 2; k++)
        for (unsigned i = 0; i < EMU_TLB_SIZE; i++)
            if (page == ~0ull || cpu->tlb[k][i].gpa_page == page) cpu->tlb[k][i].tag_w = EMU_TLB_INVALID;
}

void emu_shared_sync(struct emu_cpu *cpu)
{
    struct emu_shared *sh = cpu->shared;
    pthread_mutex_lock(&sh->lock);
    uint64_t te = sh->tlb_epoch, ce = sh->code_epoch;
    if (te - cpu->seen_tlb > EMU_SHARED_LOG)
        drop_page_writes(cpu, ~0ull);
    else
        for (uint64_t e = cpu->seen_tlb; e < te; e++) drop_page_writes(cpu, sh->tlb_log[e % EMU_SHARED_LOG]);
    if (ce - cpu->seen_code > EMU_SHARED_LOG) {
        cpu->block_gen = cpu->block_gen + 1 ? cpu->block_gen + 1 : 1;
    } else {
        for (uint64_t e = cpu->seen_code; e < ce; e++) drop_page_blocks(cpu, sh->code_log[e % EMU_SHARED_LOG]);
    }
    cpu->seen_tlb = te;
    cpu->seen_code = ce;
    pthread_mutex_unlock(&sh->lock);
}

/* The page at gpa (in r) was written: no longer code, and every vCPU sharing sh drops its blocks
 * of it at its next block boundary. */
static void code_page_forget(struct emu_shared *sh, struct emu_ram *r, uint64_t gpa)
{
    uint64_t pg = (gpa - r->gpa) >> 12;
    /* Atomic: with a shared bitmap, other vCPUs set bits of the same byte. */
    __atomic_fetch_and(&r->code_bits[pg >> 3], (uint8_t)~(1u << (pg & 7)), __ATOMIC_SEQ_CST);
    if (sh) shared_log(sh, &sh->code_epoch, sh->code_log, gpa & ~0xfffull);
}

void emu_code_written(struct emu_cpu *cpu, struct emu_ram *r, uint64_t gpa)
{
    code_page_forget(cpu->shared, r, gpa);
    cpu->block_dirty = true;
    drop_page_blocks(cpu, gpa & ~0xfffull);
}

void emu_ram_written(struct emu_shared *sh, struct emu_ram *r, uint64_t gpa, uint64_t len)
{
    uint64_t last = gpa + len - 1, r_last = r->gpa + r->size - 1;
    if (!len || !r->code_bits || !r->size || gpa > r_last || last < r->gpa)
        return;
    if (last < gpa || last > r_last) /* wrapped, or past the range */
        last = r_last;
    if (gpa < r->gpa)
        gpa = r->gpa;
    /* The device's stores before the mark loads (store-load order needs a fence), paired with
     * block_get marking a page before it decodes: either the mark is seen here, or the
     * decoder reads the new bytes. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (uint64_t pg = (gpa - r->gpa) >> 12, end = (last - r->gpa) >> 12; pg <= end; pg++)
        if ((__atomic_load_n(&r->code_bits[pg >> 3], __ATOMIC_RELAXED) >> (pg & 7)) & 1)
            code_page_forget(sh, r, r->gpa + (pg << 12));
}

static struct emu_block *block_get(struct emu_cpu *cpu, enum emu_cpu_mode mode, uint64_t lin)
{
    bool u = emu_user(cpu);
    struct emu_tlb_entry *e = &cpu->tlb[u][(lin >> 12) & (EMU_TLB_SIZE - 1)];
    if (e->tag_x != (lin & ~0xfffull)) return NULL; /* the slow fetch path fills the TLB */
    uint64_t gpa = e->gpa_page | (lin & 0xfff);
    struct emu_block *b = &cpu->blocks[(gpa ^ (gpa >> 11) ^ (gpa >> 23)) & (EMU_NBLOCKS - 1)];
    if (b->gen == cpu->block_gen && b->gpa == gpa && b->mode == mode) {
        cpu->block_hits++;
        return b;
    }
    cpu->block_misses++;
    /* Writes to this page must now go through the slow path, which drops its blocks. Marked
     * before the bytes are read, so that a device writing the page meanwhile sees the mark
     * (emu_ram_written). */
    struct emu_ram *r = emu_ram_find(cpu, gpa);
    if (r) {
        uint64_t pg = (gpa - r->gpa) >> 12;
        uint8_t bit = (uint8_t)(1u << (pg & 7));
        uint8_t was = __atomic_fetch_or(&r->code_bits[pg >> 3], bit, __ATOMIC_SEQ_CST);
        /* Newly code: the other vCPUs must stop writing this page through their TLBs. */
        if (!(was & bit) && cpu->shared)
            shared_log(cpu->shared, &cpu->shared->tlb_epoch, cpu->shared->tlb_log, gpa & ~0xfffull);
    }
    const uint8_t *p = (const uint8_t *)(uintptr_t)(lin + e->addend);
    unsigned off = 0, room = 4096 - (unsigned)(lin & 0xfff);
    b->gen = 0;
    b->n = 0;
    while (b->n < EMU_BLOCK_MAX && off < room) {
        struct emu_insn *in = &b->insn[b->n];
        if (emu_decode(p + off, room - off, mode, in)) break; /* faults and page crossings: step() */
        b->n++;
        off += in->len;
        if (ends_block(in)) break;
    }
    if (!b->n) return NULL;
    b->gpa = gpa;
    b->mode = (uint8_t)mode;
    b->gen = cpu->block_gen;
    for (unsigned k = 0; k < 2; k++)
        for (unsigned i = 0; i < EMU_TLB_SIZE; i++)
            if (cpu->tlb[k][i].gpa_page == (gpa & ~0xfffull)) cpu->tlb[k][i].tag_w = EMU_TLB_INVALID;
    return b;
}

/* ---- run loop ---- */

static inline const uint8_t *fetch(struct emu_cpu *cpu, uint64_t lin, uint8_t *buf, unsigned *avail)
{
    bool u = emu_user(cpu);
    struct emu_tlb_entry *e = &cpu->tlb[u][(lin >> 12) & (EMU_TLB_SIZE - 1)];
    unsigned room = 4096 - (lin & 0xfff);
    if (e->tag_x == (lin & ~0xfffull) && room >= 15) {
        *avail = 15;
        return (const uint8_t *)(uintptr_t)(lin + e->addend);
    }
    /* Slow: byte by byte, so a fault on the second page happens only if the bytes are needed. */
    *avail = 0;
    return buf;
}

static void step(struct emu_cpu *cpu)
{
    struct emu_insn in;
    uint8_t buf[16];
    unsigned avail;
    enum emu_cpu_mode mode = emu_mode(cpu);
    cpu->cur_mode = (uint8_t)mode;
    uint64_t lin = mode == EMU_MODE_LONG64 ? cpu->rip : (uint32_t)(cpu->seg[EMU_CS].base + cpu->rip);
    cpu->insn_rip = cpu->rip;
    const uint8_t *p = fetch(cpu, lin, buf, &avail);
    int rc;
    if (avail) {
        rc = emu_decode(p, avail, mode, &in);
    } else {
        /* Fetch bytes one at a time until the decoder is satisfied (faults only on needed bytes). */
        unsigned n = 0;
        for (;;) {
            if (mode == EMU_MODE_LONG64 && !emu_canonical(lin + n)) emu_gp0(cpu);
            buf[n] = (uint8_t)emu_mem_read_slow(cpu, mode == EMU_MODE_LONG64 ? lin + n : (uint32_t)(lin + n), 1, EMU_ACC_X, emu_user(cpu));
            n++;
            rc = emu_decode(buf, n, mode, &in);
            if (rc != -EAGAIN) break;
        }
    }
    if (rc == -EMU_GP) emu_gp0(cpu);
    if (rc) emu_ud(cpu);
    cpu->rip += in.len;
    if (mode != EMU_MODE_LONG64) cpu->rip &= mode == EMU_MODE_PROT32 ? 0xffffffffull : 0xffffull;
    if (in.map == 0) exec_map0(cpu, &in);
    else if (in.map == 1) exec_map1(cpu, &in);
    else emu_ud(cpu);
}

enum emu_stop emu_run(struct emu_cpu *cpu, uint64_t max_insns)
{
    volatile uint64_t end = cpu->insns + max_insns;
    cpu->budget = end;
    for (;;) {
        int jrc = setjmp(cpu->jb);
        if (jrc == 1) {
            /* An exception was delivered (or is to be reported). */
            if (cpu->exit_on_exception) return EMU_STOP_EXCEPTION;
        } else if (jrc == 2) {
            return EMU_STOP_SHUTDOWN;
        }
        if (!cpu->blocks) cpu->blocks = calloc(EMU_NBLOCKS, sizeof(struct emu_block));
        while (cpu->insns < end) {
            /* NMIs ignore RFLAGS.IF; delivering one blocks the next until iret. */
            if (cpu->nmi_line && !cpu->nmi_blocked && !cpu->intr_shadow && cpu->io && cpu->io->nmi_ack &&
                cpu->io->nmi_ack(cpu->io_opaque)) {
                cpu->insn_rip = cpu->rip;
                cpu->halted = false;
                cpu->nmi_blocked = true;
                emu_deliver(cpu, 2, false, 0, false, cpu->rip);
            }
            if (cpu->intr_line && (cpu->flags & EMU_FLAG_IF) && !cpu->intr_shadow && cpu->io && cpu->io->intr_ack) {
                int v = cpu->io->intr_ack(cpu->io_opaque);
                if (v >= 0) {
                    cpu->insn_rip = cpu->rip;
                    cpu->halted = false;
                    emu_deliver(cpu, (unsigned)v & 0xff, false, 0, false, cpu->rip);
                }
            }
            if (cpu->halted) return EMU_STOP_HLT;
            cpu->intr_shadow = false;
            if (cpu->shared && (__atomic_load_n(&cpu->shared->tlb_epoch, __ATOMIC_RELAXED) != cpu->seen_tlb ||
                                __atomic_load_n(&cpu->shared->code_epoch, __ATOMIC_RELAXED) != cpu->seen_code))
                emu_shared_sync(cpu);
            enum emu_cpu_mode mode = emu_mode(cpu);
            cpu->cur_mode = (uint8_t)mode;
            uint64_t lin = mode == EMU_MODE_LONG64 ? cpu->rip : (uint32_t)(cpu->seg[EMU_CS].base + cpu->rip);
            struct emu_block *b = cpu->blocks && (mode == EMU_MODE_LONG64 || mode == EMU_MODE_PROT32)
                                      ? block_get(cpu, mode, lin) : NULL;
            if (!b) {
                step(cpu);
                cpu->nested_exc = 0;
                cpu->insns++;
                continue;
            }
            cpu->block_dirty = false;
            uint64_t rmask = mode == EMU_MODE_LONG64 ? ~0ull : 0xffffffffull;
            /* hlt ends its block, so cpu->halted needs no check in here. */
            uint64_t rip = cpu->rip;
            for (const struct emu_insn *in = b->insn, *last = b->insn + b->n; in < last; in++) {
                uint64_t next = (rip + in->len) & rmask;
                cpu->insn_rip = rip;
                cpu->rip = next;
                if (in->map == 0) exec_map0(cpu, in);
                else exec_map1(cpu, in);
                cpu->nested_exc = 0;
                cpu->insns++;
                if (cpu->rip != next || cpu->block_dirty || cpu->nmi_line) break;
                rip = next;
            }
        }
        return EMU_STOP_BUDGET;
    }
}
