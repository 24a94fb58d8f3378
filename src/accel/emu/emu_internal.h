/* Internals shared by the software CPU's files: memory fast paths, exceptions, flags. */
#pragma once
#include <string.h>

#include "accel/emu/emu_cpu.h"

enum { EMU_ACC_R = 0, EMU_ACC_W = 1, EMU_ACC_X = 2 };

/* Lazy flag kinds (cc_op = kind << 2 | log2(size)). */
enum { EMU_CC_EFLAGS = 0, EMU_CC_ADD, EMU_CC_SUB, EMU_CC_LOGIC, EMU_CC_INC, EMU_CC_DEC };

__attribute__((noreturn)) void emu_raise(struct emu_cpu *cpu, unsigned vec, bool has_err, uint32_t err);
static inline __attribute__((noreturn)) void emu_gp0(struct emu_cpu *cpu) { emu_raise(cpu, EMU_GP, true, 0); }
static inline __attribute__((noreturn)) void emu_ud(struct emu_cpu *cpu) { emu_raise(cpu, EMU_UD, false, 0); }

/* Slow paths (emu_mem.c): translate, fill the TLB, handle MMIO and page crossings. */
uint64_t emu_mem_read_slow(struct emu_cpu *cpu, uint64_t lin, unsigned size, int acc, bool user);
void emu_mem_write_slow(struct emu_cpu *cpu, uint64_t lin, unsigned size, uint64_t val, bool user);
/* Check that [lin, lin+size) is writable (RMW instructions, before they change registers). */
void emu_mem_probe_write(struct emu_cpu *cpu, uint64_t lin, unsigned size);
/* Physical access for page walks and descriptor tables. */
uint64_t emu_phys_read(struct emu_cpu *cpu, uint64_t gpa, unsigned size);
void emu_phys_write(struct emu_cpu *cpu, uint64_t gpa, uint64_t val, unsigned size);
void *emu_phys_ptr(struct emu_cpu *cpu, uint64_t gpa, uint64_t len);
void emu_invlpg(struct emu_cpu *cpu, uint64_t lin);
struct emu_ram *emu_ram_find(struct emu_cpu *cpu, uint64_t gpa);
/* Block cache (emu_exec.c): drop decoded blocks of a physical page that is being written. */
void emu_code_written(struct emu_cpu *cpu, struct emu_ram *r, uint64_t gpa);
static inline bool emu_is_code_page(const struct emu_ram *r, uint64_t gpa)
{
    uint64_t pg = (gpa - r->gpa) >> 12;
    return r->code_bits && (r->code_bits[pg >> 3] >> (pg & 7)) & 1;
}

static inline bool emu_user(const struct emu_cpu *cpu) { return cpu->cpl == 3; }
static inline bool emu_canonical(uint64_t v) { return (uint64_t)((int64_t)(v << 16) >> 16) == v; }

static inline uint64_t emu_load_host(const void *p, unsigned size)
{
    switch (size) {
    case 1: return *(const uint8_t *)p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

static inline void emu_store_host(void *p, unsigned size, uint64_t v)
{
    switch (size) {
    case 1: *(uint8_t *)p = (uint8_t)v; break;
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
    }
}

/* Linear-address access, user/supervisor by CPL. */
static inline uint64_t emu_read(struct emu_cpu *cpu, uint64_t lin, unsigned size)
{
    bool u = emu_user(cpu);
    struct emu_tlb_entry *e = &cpu->tlb[u][(lin >> 12) & (EMU_TLB_SIZE - 1)];
    if (__builtin_expect(e->tag_r == (lin & ~0xfffull) && (lin & 0xfff) + size <= 4096, 1))
        return emu_load_host((void *)(uintptr_t)(lin + e->addend), size);
    return emu_mem_read_slow(cpu, lin, size, EMU_ACC_R, u);
}

static inline void emu_write(struct emu_cpu *cpu, uint64_t lin, unsigned size, uint64_t val)
{
    bool u = emu_user(cpu);
    struct emu_tlb_entry *e = &cpu->tlb[u][(lin >> 12) & (EMU_TLB_SIZE - 1)];
    if (__builtin_expect(e->tag_w == (lin & ~0xfffull) && (lin & 0xfff) + size <= 4096, 1)) {
        emu_store_host((void *)(uintptr_t)(lin + e->addend), size, val);
        return;
    }
    emu_mem_write_slow(cpu, lin, size, val, u);
}

static inline uint64_t emu_size_mask(unsigned size)
{
    return size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

enum emu_cpu_mode emu_mode(const struct emu_cpu *cpu);
uint64_t emu_flags_status(struct emu_cpu *cpu);

/* System parts (emu_sys.c). */
void emu_exec_system(struct emu_cpu *cpu, const struct emu_insn *in);
void emu_deliver(struct emu_cpu *cpu, unsigned vec, bool has_err, uint32_t err, bool soft, uint64_t next_rip);
int emu_rdmsr(struct emu_cpu *cpu, uint32_t idx, uint64_t *val);
int emu_wrmsr(struct emu_cpu *cpu, uint32_t idx, uint64_t val);
void emu_cpuid(struct emu_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t out[4]);
void emu_load_seg(struct emu_cpu *cpu, unsigned seg, uint16_t sel);
uint64_t emu_rdtsc(struct emu_cpu *cpu);
void emu_exec_sse(struct emu_cpu *cpu, const struct emu_insn *in);
/* pfx: the mandatory prefix, 0 none, 1 66, 2 F2, 3 F3. */
void emu_exec_sse_fp(struct emu_cpu *cpu, const struct emu_insn *in, unsigned pfx);
void emu_exec_x87(struct emu_cpu *cpu, const struct emu_insn *in);
void emu_x87_fninit(struct emu_cpu *cpu);
/* fldenv fnstenv frstor fnsave (D9/DD /4 /6). */
void emu_x87_env(struct emu_cpu *cpu, const struct emu_insn *in);
/* Whether the x87 instruction op (D8-DF) with this ModRM is implemented. */
bool emu_x87_valid(uint8_t op, uint8_t modrm);
uint64_t emu_ea(struct emu_cpu *cpu, const struct emu_insn *in);
uint64_t emu_lin(struct emu_cpu *cpu, int seg, uint64_t off, unsigned asize);
