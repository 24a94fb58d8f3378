/* The software x86-64 CPU core: architectural state, memory interface and the run loop. */
#pragma once
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

/* Segment register indexes, in the encoding order of the ModRM reg field for mov Sreg. */
enum { EMU_ES, EMU_CS, EMU_SS, EMU_DS, EMU_FS, EMU_GS, EMU_NSEG };
enum { EMU_RAX, EMU_RCX, EMU_RDX, EMU_RBX, EMU_RSP, EMU_RBP, EMU_RSI, EMU_RDI };

/* Exception vectors the core raises. */
enum {
    EMU_DE = 0, EMU_DB = 1, EMU_BP = 3, EMU_OF = 4, EMU_BR = 5, EMU_UD = 6, EMU_NM = 7, EMU_DF = 8,
    EMU_TS = 10, EMU_NP = 11, EMU_SS_FAULT = 12, EMU_GP = 13, EMU_PF = 14, EMU_MF = 16,
    EMU_AC = 17, EMU_XM = 19,
};

#define EMU_FLAG_CF 0x0001u
#define EMU_FLAG_PF 0x0004u
#define EMU_FLAG_AF 0x0010u
#define EMU_FLAG_ZF 0x0040u
#define EMU_FLAG_SF 0x0080u
#define EMU_FLAG_TF 0x0100u
#define EMU_FLAG_IF 0x0200u
#define EMU_FLAG_DF 0x0400u
#define EMU_FLAG_OF 0x0800u
#define EMU_FLAG_IOPL 0x3000u
#define EMU_FLAG_NT 0x4000u
#define EMU_FLAG_RF 0x10000u
#define EMU_FLAG_VM 0x20000u
#define EMU_FLAG_AC 0x40000u
#define EMU_FLAG_ID 0x200000u
#define EMU_FLAGS_STATUS (EMU_FLAG_CF | EMU_FLAG_PF | EMU_FLAG_AF | EMU_FLAG_ZF | EMU_FLAG_SF | EMU_FLAG_OF)

#define EMU_CR0_PE (1ull << 0)
#define EMU_CR0_MP (1ull << 1)
#define EMU_CR0_EM (1ull << 2)
#define EMU_CR0_TS (1ull << 3)
#define EMU_CR0_ET (1ull << 4)
#define EMU_CR0_NE (1ull << 5)
#define EMU_CR0_WP (1ull << 16)
#define EMU_CR0_AM (1ull << 18)
#define EMU_CR0_PG (1ull << 31)
#define EMU_CR4_PSE (1ull << 4)
#define EMU_CR4_PAE (1ull << 5)
#define EMU_CR4_PGE (1ull << 7)
#define EMU_CR4_OSFXSR (1ull << 9)
#define EMU_CR4_OSXMMEXCPT (1ull << 10)
#define EMU_CR4_FSGSBASE (1ull << 16)
#define EMU_EFER_SCE (1ull << 0)
#define EMU_EFER_LME (1ull << 8)
#define EMU_EFER_LMA (1ull << 10)
#define EMU_EFER_NXE (1ull << 11)

/* The TSC frequency CPUID leaf 0x15 reports, and the rate rdtsc advances at. */
#define EMU_TSC_HZ 1000000000ull

struct emu_seg {
    uint64_t base;
    uint32_t limit;
    uint16_t sel;
    uint8_t type, s, dpl, present, db, l, g;
};

struct emu_dtable {
    uint64_t base;
    uint16_t limit;
};

/* One RAM range the CPU reaches through host pointers. */
struct emu_ram {
    uint64_t gpa, size;
    uint8_t *host;
    bool noexec;   /* test mode (flat_unmapped_faults): instruction fetches here raise #PF */
    bool readonly; /* test mode (flat_unmapped_faults): writes here raise #PF */
    uint8_t *code_bits; /* one bit per 4K page: decoded blocks exist for it */
};

struct emu_block;

/* What vCPUs of one machine share so that code one writes is not run stale by another: all
 * their emu_ram.code_bits point to one bitmap, and two logs of recent pages (guest-physical
 * page addresses) that each vCPU replays at its next block boundary: pages that became code
 * (drop your write TLB entries for them, so writes take the slow path) and code pages that were
 * written (drop your decoded blocks of them). A vCPU that fell more than EMU_SHARED_LOG behind
 * drops everything. */
#define EMU_SHARED_LOG 64
struct emu_shared {
    pthread_mutex_t lock;
    uint64_t tlb_epoch, code_epoch; /* entries ever logged; read without the lock */
    uint64_t tlb_log[EMU_SHARED_LOG], code_log[EMU_SHARED_LOG];
};

/* Everything that is not RAM: MMIO and port I/O. NULL callbacks read all ones, drop writes. */
struct emu_io_ops {
    uint64_t (*mmio_read)(void *opaque, uint64_t gpa, unsigned size);
    void (*mmio_write)(void *opaque, uint64_t gpa, uint64_t val, unsigned size);
    uint32_t (*pio_read)(void *opaque, uint16_t port, unsigned size);
    void (*pio_write)(void *opaque, uint16_t port, uint32_t val, unsigned size);
    /* Interrupt acknowledge: the vector of the highest pending interrupt (now in service), or
     * -1 if there is none any more. Called only while intr_line is set and RFLAGS.IF allows. */
    int (*intr_ack)(void *opaque);
    /* The clock rdtsc follows, in ns (the TSC runs at EMU_TSC_HZ, 1 GHz); NULL: host time. */
    uint64_t (*clock_ns)(void *opaque);
    /* MSRs the CPU does not know (the local APIC's): 0, -ENOENT if not handled either (#GP),
     * -EINVAL for #GP. msr_write also hears of IA32_APIC_BASE (0x1b) after the CPU accepted it. */
    int (*msr_read)(void *opaque, uint32_t msr, uint64_t *val);
    int (*msr_write)(void *opaque, uint32_t msr, uint64_t val);
    /* NMI acknowledge: whether an NMI was still pending (it is now taken). Called only while
     * nmi_line is set and NMIs are not blocked; clears nmi_line first. */
    bool (*nmi_ack)(void *opaque);
};

/* Software TLB entry: a linear page and the host address of its RAM, per access kind. */
struct emu_tlb_entry {
    uint64_t tag_r, tag_w, tag_x; /* linear page address, or EMU_TLB_INVALID */
    uintptr_t addend;             /* host = linear + addend */
    uint64_t gpa_page;
    bool global;
};
#define EMU_TLB_SIZE 256
#define EMU_TLB_INVALID 1ull /* never a page address */

/* Why emu_run returned. */
enum emu_stop {
    EMU_STOP_BUDGET,    /* ran the instruction budget */
    EMU_STOP_HLT,       /* halted (hlt) and no interrupt deliverable: wait for intr_line */
    EMU_STOP_EXCEPTION, /* exit_on_exception was set and an exception was raised (see cpu->exc_*) */
    EMU_STOP_SHUTDOWN,  /* triple fault */
    EMU_STOP_INTERNAL,  /* the core cannot go on (see cpu->internal_msg) */
};

struct emu_xmm {
    uint64_t q[2];
};

struct emu_cpu {
    uint64_t r[16];
    uint64_t rip;
    /* Non-status RFLAGS bits, plus the status bits when cc_op is EMU_CC_EFLAGS. */
    uint64_t flags;
    /* Lazy status flags: the last flag-setting operation and its operands. */
    uint32_t cc_op;
    uint64_t cc_res, cc_src1, cc_src2;

    struct emu_seg seg[EMU_NSEG], tr, ldt;
    struct emu_dtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer;
    uint64_t star, lstar, cstar, sfmask, kernel_gs_base, tsc_aux, pat, apic_base;
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip, misc_enable;
    uint64_t tsc_offset; /* rdtsc = io->clock_ns + tsc_offset (EMU_TSC_HZ is 1 GHz) */
    uint32_t apic_id;    /* reported by CPUID; set by whoever creates the vCPU */
    /* Topology for CPUID leaves 1 and 0xB (0: a lone CPU, leaf 0xB reads as zeros): APIC-ID
     * shifts of the SMT and core levels, threads per core, logical CPUs per package. */
    uint8_t topo_smt_shift, topo_pkg_shift;
    uint16_t topo_threads, topo_pkg_cpus;
    uint8_t cpl;
    bool halted;
    volatile bool intr_line; /* the interrupt controller's INTR output; checked between blocks */
    bool intr_shadow; /* sti / mov ss: no interrupt before the next instruction */
    volatile bool nmi_line; /* an NMI is pending at the interrupt controller; checked per instruction */
    bool nmi_blocked;       /* an NMI handler runs: NMIs wait for the next iret */

    struct emu_xmm xmm[16];
    uint32_t mxcsr;
    uint16_t fcw, fsw;
    uint8_t ftw;            /* abridged (fxsave) tag byte: bit i set when physical register i is in use */
    uint8_t x87_st[8][10];  /* ST(0)..ST(7), 80-bit */
    /* The last non-control x87 instruction: its address, opcode and memory operand. */
    uint64_t fip, fdp;
    uint16_t fcs, fds, fop;

    /* Memory: RAM ranges (sorted by gpa) and everything else. */
    struct emu_ram ram[8];
    unsigned nram;
    const struct emu_io_ops *io;
    void *io_opaque;
    /* Test mode: with paging off, an access to an address that is neither RAM nor MMIO raises
     * #PF like a user process sees, instead of reaching MMIO. */
    bool flat_unmapped_faults;
    /* Stop instead of delivering exceptions through the IDT (differential tests). */
    bool exit_on_exception;
    uint8_t exc_vector;
    bool exc_has_error;
    uint32_t exc_error;
    uint64_t exc_addr; /* CR2 for #PF */

    struct emu_tlb_entry tlb[2][EMU_TLB_SIZE]; /* [user?][page] */

    /* Run-loop internals. */
    uint64_t insn_rip; /* start of the current instruction, for faults */
    bool rmw_armed;    /* a locked read-modify-write read rmw_old at rmw_lin (emu_exec.c) */
    uint64_t rmw_lin, rmw_old;
    uint64_t insns;    /* retired instruction count */
    uint64_t budget;
    int nested_exc;    /* exceptions being delivered: 2 = double fault in progress */
    uint8_t delivering; /* the vector being delivered while nested_exc is 1 */
    jmp_buf jb;
    const char *internal_msg;
    struct emu_block *blocks; /* decoded-block cache, allocated on first run */
    bool block_dirty;         /* a code page was written: leave the current block */
    uint32_t block_gen;       /* blocks of other generations are invalid */
    uint8_t cur_mode;         /* enum emu_cpu_mode of the running block */
    uint64_t block_hits, block_misses;
    struct emu_shared *shared;    /* NULL: a lone CPU (tests) */
    uint64_t seen_tlb, seen_code; /* log entries of *shared already replayed */
};

/* Power-on state (real mode at f000:fff0), RAM list empty. */
void emu_cpu_init(struct emu_cpu *cpu);
/* Architectural reset (as emu_cpu_init) keeping the RAM list and allocations; drops all
 * decoded blocks. */
void emu_cpu_reset(struct emu_cpu *cpu);
/* Free what the CPU allocated (block cache, code-page bitmaps). */
void emu_cpu_destroy(struct emu_cpu *cpu);
/* Add a RAM range (not overlapping another); up to 8. 0 or -ENOSPC/-EINVAL/-ENOMEM. */
int emu_cpu_add_ram(struct emu_cpu *cpu, uint64_t gpa, uint64_t size, void *host);
/* Put the CPU in 64-bit mode with paging off and flat segments (tests, benchmarks). */
void emu_cpu_set_flat64(struct emu_cpu *cpu);
/* Replay the shared logs (called by the run loop at block boundaries when they moved). */
void emu_shared_sync(struct emu_cpu *cpu);
/* A device wrote [gpa, gpa+len) (clipped to r, a RAM range whose code bitmap the vCPUs of sh
 * share): code pages in it lose their mark and every vCPU drops its blocks of them at its next
 * block boundary. From any thread; after the data is in RAM, before the guest is told. */
void emu_ram_written(struct emu_shared *sh, struct emu_ram *r, uint64_t gpa, uint64_t len);
/* Run up to max_insns instructions. */
enum emu_stop emu_run(struct emu_cpu *cpu, uint64_t max_insns);

uint64_t emu_get_rflags(struct emu_cpu *cpu);
void emu_set_rflags(struct emu_cpu *cpu, uint64_t v);
/* Drop TLB entries (all, or all but global pages). Needed after changing CR0/CR3/CR4/EFER,
 * the CPL or the RAM list from outside the CPU. */
void emu_tlb_flush(struct emu_cpu *cpu, bool include_global);

/* Decoder, also used alone by the length test. */
struct emu_insn {
    uint8_t len;
    uint8_t map;     /* 0: one byte, 1: 0F, 2: 0F38, 3: 0F3A */
    uint8_t op;
    uint8_t modrm_present, mod, reg, rm; /* reg/rm include REX bits */
    uint8_t osize, asize;                /* bytes */
    uint8_t rex;                         /* 0 if none */
    uint8_t rep;                         /* 0, 0xF2 or 0xF3 */
    uint8_t lock, opsize_prefix;
    int8_t seg;                          /* override, or -1 */
    uint8_t base, index, scale;          /* 16/17 = none; index 4 w/o REX.X = none */
    bool rip_rel, mem;
    int64_t disp;
    uint64_t imm, imm2;
};
#define EMU_NOREG 16

enum emu_cpu_mode { EMU_MODE_REAL, EMU_MODE_PROT16, EMU_MODE_PROT32, EMU_MODE_LONG64 };

/* Decode at most len bytes. 0 on success; -EMU_UD if undefined or not implemented;
 * -EMU_GP if longer than 15 bytes; -EAGAIN if more bytes are needed than len. */
int emu_decode(const uint8_t *bytes, unsigned len, enum emu_cpu_mode mode, struct emu_insn *in);
