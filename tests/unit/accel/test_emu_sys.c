/* Software CPU system behaviour: mode switches from real mode to long mode, paging (4K/2M/1G,
 * A/D, WP, NX, U/S, INVLPG), exceptions through the IDT with IST stacks, #PF error codes and
 * CR2, user mode via iretq, syscall/sysret, software interrupts, CPUID and MSRs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/emu/emu_internal.h"

extern const uint8_t guest_boot_start[], guest_boot_end[];
extern const uint8_t guest_kern_start[], guest_kern_end[];
extern const uint8_t k_ud[], k_pf[], k_user[], k_syscall[], k_wp[], k_1g[], k_tlb1[], k_tlb2[], h_ud[], h_pf[],
    k_int80[], h_int80[], k_sti_hlt[], h_irq[], k_nmi[], h_nmi[];

#define RAM_SIZE (8u << 20)
#define KB 0x10000u
#define KADDR(sym) (KB + (uint64_t)((sym) - guest_kern_start))

static uint8_t *ram;
static struct emu_cpu *cpu;

static uint64_t rd64(uint64_t gpa) { uint64_t v; memcpy(&v, ram + gpa, 8); return v; }
static void wr64(uint64_t gpa, uint64_t v) { memcpy(ram + gpa, &v, 8); }

static int setup(void **state)
{
    (void)state;
    ram = calloc(1, RAM_SIZE);
    cpu = calloc(1, sizeof(*cpu));
    emu_cpu_init(cpu);
    assert_int_equal(emu_cpu_add_ram(cpu, 0, RAM_SIZE, ram), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    emu_cpu_destroy(cpu);
    free(cpu);
    free(ram);
    return 0;
}

static void test_boot_real_to_long(void **state)
{
    (void)state;
    /* Identity map the first 1 GiB with 2M pages at 0x10000. */
    wr64(0x10000, 0x11000 | 3);
    wr64(0x11000, 0x12000 | 3);
    for (unsigned i = 0; i < 512; i++) wr64(0x12000 + 8 * i, ((uint64_t)i << 21) | 0x83);
    memcpy(ram + 0x7000, guest_boot_start, (size_t)(guest_boot_end - guest_boot_start));
    cpu->seg[EMU_CS].sel = 0;
    cpu->seg[EMU_CS].base = 0;
    cpu->rip = 0x7000;
    enum emu_stop st = emu_run(cpu, 1000);
    assert_int_equal(st, EMU_STOP_HLT);
    assert_true(cpu->efer & EMU_EFER_LMA);
    assert_int_equal(cpu->seg[EMU_CS].sel, 0x18);
    assert_true(cpu->seg[EMU_CS].l);
    assert_int_equal(cpu->r[EMU_RAX], 0xdeadbeef);
    assert_int_equal(cpu->r[EMU_RBX], 0x55); /* the 32-bit stack worked */
    assert_int_equal(rd64(0x8000), 0x1234);
    /* The walk set the accessed bit on the 2M page it used. */
    assert_true(rd64(0x12000) & 0x20);
}

/* ---- a long-mode environment built by hand ---- */

static void gate(unsigned vec, uint64_t handler, unsigned ist, unsigned dpl)
{
    uint64_t lo = (handler & 0xffff) | (0x08ull << 16) | ((uint64_t)ist << 32) | ((0x8eull | (dpl << 5)) << 40) |
                  ((handler >> 16) & 0xffff) << 48;
    wr64(0x7000 + 16 * vec, lo);
    wr64(0x7000 + 16 * vec + 8, handler >> 32);
}

static void setup_long(void)
{
    memset(ram, 0, RAM_SIZE);
    memcpy(ram + KB, guest_kern_start, (size_t)(guest_kern_end - guest_kern_start));
    /* Paging: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000 (4K pages below 2M). */
    wr64(0x1000, 0x2000 | 7);
    wr64(0x2000, 0x3000 | 7);
    wr64(0x2000 + 8, 0x83); /* 1G page: linear 1G..2G -> physical 0 */
    wr64(0x3000, 0x4000 | 7);
    wr64(0x3000 + 8, 0x200000 | 0x83); /* 2M page at 2M, supervisor */
    for (unsigned i = 0; i < 512; i++) wr64(0x4000 + 8 * i, ((uint64_t)i << 12) | 3); /* supervisor rw */
    wr64(0x4000 + 8 * 0x10, 0x10000 | 7);  /* kernel+user code page: user */
    wr64(0x4000 + 8 * 0x1e, 0x1e000 | 7);  /* user data */
    wr64(0x4000 + 8 * 0x1f, 0x1f000 | 7);  /* user stack */
    wr64(0x4000 + 8 * 0x30, 0x30000 | 1);  /* read-only */
    wr64(0x4000 + 8 * 0x31, 0x31000 | 3 | (1ull << 63)); /* no-execute */
    /* GDT at 0x5000. */
    wr64(0x5000 + 0x08, 0x00af9a000000ffff);
    wr64(0x5000 + 0x10, 0x00cf92000000ffff);
    wr64(0x5000 + 0x18, 0x00cffa000000ffff);
    wr64(0x5000 + 0x20, 0x00cff2000000ffff);
    wr64(0x5000 + 0x28, 0x00affa000000ffff);
    uint64_t tss = 0x6000;
    wr64(0x5000 + 0x30, 0x67 | ((tss & 0xffffff) << 16) | (0x89ull << 40) | ((tss >> 24) & 0xff) << 56);
    wr64(0x5000 + 0x38, tss >> 32);
    /* TSS: rsp0 0x9000, ist1 0xa000. */
    wr64(0x6000 + 4, 0x9000);
    wr64(0x6000 + 36, 0xa000);
    gate(6, KADDR(h_ud), 0, 0);
    gate(14, KADDR(h_pf), 1, 0);
    gate(0x80, KADDR(h_int80), 0, 3);

    emu_cpu_reset(cpu);
    cpu->cr0 = EMU_CR0_PE | EMU_CR0_PG | EMU_CR0_WP | EMU_CR0_ET | EMU_CR0_NE;
    cpu->cr3 = 0x1000;
    cpu->cr4 = EMU_CR4_PAE | EMU_CR4_OSFXSR;
    cpu->efer = EMU_EFER_LME | EMU_EFER_LMA | EMU_EFER_NXE | EMU_EFER_SCE;
    cpu->seg[EMU_CS] = (struct emu_seg){.sel = 0x08, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .l = 1, .g = 1};
    for (unsigned s = 0; s < EMU_NSEG; s++)
        if (s != EMU_CS) cpu->seg[s] = (struct emu_seg){.sel = 0x10, .limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1};
    cpu->cpl = 0;
    cpu->gdt = (struct emu_dtable){.base = 0x5000, .limit = 0x3f};
    cpu->idt = (struct emu_dtable){.base = 0x7000, .limit = 0xfff};
    cpu->tr = (struct emu_seg){.sel = 0x30, .base = tss, .limit = 0x67, .type = 0xb, .present = 1};
    cpu->star = (0x18ull << 48) | (0x08ull << 32);
    cpu->lstar = KADDR(k_syscall);
    cpu->sfmask = 0x200;
    cpu->r[EMU_RSP] = 0x9800;
    emu_tlb_flush(cpu, true);
}

static enum emu_stop run_at(uint64_t rip)
{
    cpu->rip = rip;
    cpu->halted = false;
    return emu_run(cpu, 10000);
}

static void test_ud_through_idt(void **state)
{
    (void)state;
    setup_long();
    assert_int_equal(run_at(KADDR(k_ud)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8000), KADDR(k_ud)); /* faults push the faulting rip */
    assert_int_equal(rd64(0x8008), 0x08);
    assert_int_equal(rd64(0x8010), 0x9800 - 40); /* same stack, 16-aligned, 5 qwords */
}

static void test_double_and_triple_fault(void **state)
{
    (void)state;
    /* #UD with no gate: #NP for the #UD gate is delivered (benign first). */
    setup_long();
    gate(11, KADDR(h_pf), 1, 0); /* h_pf records the error code */
    wr64(0x7000 + 16 * 6, rd64(0x7000 + 16 * 6) & ~(1ull << 47)); /* gate not present */
    assert_int_equal(run_at(KADDR(k_ud)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8020), 6 * 8 + 2 + 1); /* IDT entry 6, external */
    /* #PF with no gate: #NP while delivering #PF is a double fault. */
    setup_long();
    gate(8, KADDR(h_pf), 1, 0);
    gate(11, KADDR(h_ud), 0, 0);
    wr64(0x7000 + 16 * 14, rd64(0x7000 + 16 * 14) & ~(1ull << 47));
    assert_int_equal(run_at(KADDR(k_pf)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8020), 0);          /* #DF pushes 0 */
    assert_int_equal(rd64(0x8028), KADDR(k_pf)); /* at the faulting instruction */
    /* And with no #DF gate either: shutdown. */
    wr64(0x7000 + 16 * 8, rd64(0x7000 + 16 * 8) & ~(1ull << 47));
    assert_int_equal(run_at(KADDR(k_pf)), EMU_STOP_SHUTDOWN);
}

static void test_pf_error_code_cr2_and_ist(void **state)
{
    (void)state;
    setup_long();
    assert_int_equal(run_at(KADDR(k_pf)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8020), 0);            /* not present, read, supervisor */
    assert_int_equal(rd64(0x8028), KADDR(k_pf));
    assert_int_equal(rd64(0x8030), 0x400000);     /* CR2 */
    assert_int_equal(rd64(0x8038), 0xa000 - 48);  /* on the IST1 stack */
    assert_int_equal(cpu->cr2, 0x400000);
}

static void test_user_mode_syscall_and_us_fault(void **state)
{
    (void)state;
    setup_long();
    assert_int_equal(run_at(KADDR(k_user)), EMU_STOP_HLT);
    /* syscall saw rip after it in rcx, rflags in r11, rax from user. */
    uint64_t u_syscall_next = rd64(0x8100);
    assert_true(u_syscall_next > KADDR(k_user) && u_syscall_next < KADDR(k_syscall));
    assert_int_equal(rd64(0x8108) & 0x200, 0x200);
    assert_int_equal(rd64(0x8110), 42);
    assert_int_equal(rd64(0x1e000), 7); /* sysret returned the kernel's rax to user mode */
    /* Then user mode read a supervisor page: #PF with P|U, delivered on IST1 from CPL 3. */
    assert_int_equal(rd64(0x8020), 5);
    assert_int_equal(rd64(0x8030), 0x8000);
    assert_int_equal(rd64(0x8040) & 3, 3); /* the pushed CS is the user's */
    assert_int_equal(cpu->cpl, 0);
}

static void test_write_protect_and_dirty_bits(void **state)
{
    (void)state;
    setup_long();
    cpu->cr0 &= ~EMU_CR0_WP;
    emu_tlb_flush(cpu, true);
    assert_int_equal(run_at(KADDR(k_wp)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x30000), 5); /* supervisor writes ignore R/W without CR0.WP */
    assert_int_equal(rd64(0x4000 + 8 * 0x30) & 0x60, 0x60); /* accessed and dirty */
    assert_int_equal(rd64(0x4000 + 8 * 0x10) & 0x60, 0x20);  /* code page: accessed only */
    setup_long();
    assert_int_equal(run_at(KADDR(k_wp)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8020), 3); /* present, write */
    assert_int_equal(rd64(0x30000), 0);
}

static void test_nx_fetch(void **state)
{
    (void)state;
    setup_long();
    assert_int_equal(run_at(0x31000), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8020), 0x11); /* present, instruction fetch */
    assert_int_equal(rd64(0x8030), 0x31000);
}

static void test_1g_page(void **state)
{
    (void)state;
    setup_long();
    wr64(0x8800, 0x1122334455667788ull);
    assert_int_equal(run_at(KADDR(k_1g)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8300), 0x1122334455667788ull);
}

static void test_invlpg(void **state)
{
    (void)state;
    setup_long();
    wr64(0x50000, 0xaaaa);
    wr64(0x51000, 0xbbbb);
    assert_int_equal(run_at(KADDR(k_tlb1)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8200), 0xaaaa);
    wr64(0x4000 + 8 * 0x50, 0x51000 | 3);
    assert_int_equal(run_at(KADDR(k_tlb2)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8208), 0xbbbb);
}

static void test_software_interrupt_and_iret(void **state)
{
    (void)state;
    setup_long();
    assert_int_equal(run_at(KADDR(k_int80)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8400), 0x33);
    assert_int_equal(cpu->r[EMU_RSP], 0x9800);
}

static void test_self_modifying_code(void **state)
{
    (void)state;
    /* A block runs, then the code is rewritten in place: the next run must see the new code. */
    setup_long();
    static const uint8_t prog1[] = {0xb8, 0x01, 0, 0, 0, 0xf4};   /* mov eax, 1; hlt */
    memcpy(ram + 0x20000, prog1, sizeof(prog1));
    assert_int_equal(run_at(0x20000), EMU_STOP_HLT);
    assert_int_equal(run_at(0x20000), EMU_STOP_HLT); /* now from a cached block */
    assert_int_equal(cpu->r[EMU_RAX], 1);
    /* The guest itself rewrites the immediate: mov byte [0x20001], 3; jmp 0x20000 */
    static const uint8_t patch[] = {0xc6, 0x04, 0x25, 0x01, 0x00, 0x02, 0x00, 0x03, 0xe9, 0xf3, 0xff, 0xff, 0xff};
    memcpy(ram + 0x20008, patch, sizeof(patch));
    /* jmp rel32 from 0x20015 back to 0x20000: -0x15 */
    int32_t rel = 0x20000 - (0x20008 + (int)sizeof(patch));
    memcpy(ram + 0x20008 + 9, &rel, 4);
    assert_int_equal(run_at(0x20008), EMU_STOP_HLT);
    assert_int_equal(cpu->r[EMU_RAX], 3);
}

static void test_cpuid_and_msrs(void **state)
{
    (void)state;
    uint32_t o[4];
    emu_cpuid(cpu, 0, 0, o);
    assert_true(o[0] >= 0x15);
    assert_memory_equal(&o[1], "Genu", 4);
    emu_cpuid(cpu, 1, 0, o);
    assert_true(o[3] & (1u << 26)); /* SSE2 */
    emu_cpuid(cpu, 0x15, 0, o);
    assert_int_equal((uint64_t)o[2] * o[1] / o[0], EMU_TSC_HZ);
    emu_cpuid(cpu, 0x80000001, 0, o);
    assert_true(o[3] & (1u << 29)); /* long mode */
    uint64_t v;
    assert_int_equal(emu_wrmsr(cpu, 0xc0000082, 0xffffffff81000000ull), 0);
    assert_int_equal(emu_rdmsr(cpu, 0xc0000082, &v), 0);
    assert_int_equal(v, 0xffffffff81000000ull);
    assert_int_not_equal(emu_rdmsr(cpu, 0x12345678, &v), 0); /* unknown: the CPU raises #GP */
    assert_int_not_equal(emu_wrmsr(cpu, 0xc0000082, 0x0000800000000000ull), 0); /* non-canonical */
}

static void test_unknown_msr_raises_gp(void **state)
{
    (void)state;
    setup_long();
    /* mov ecx, 0x12345678; rdmsr */
    static const uint8_t prog[] = {0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x32, 0xf4};
    memcpy(ram + 0x20000, prog, sizeof(prog));
    cpu->exit_on_exception = true;
    assert_int_equal(run_at(0x20000), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, 13);
    assert_int_equal(cpu->rip, 0x20005);
}

static uint32_t rd32(uint64_t gpa) { uint32_t v; memcpy(&v, ram + gpa, 4); return v; }
static void wr32(uint64_t gpa, uint32_t v) { memcpy(ram + gpa, &v, 4); }

/* 32-bit protected mode with paging: two-level (4M PSE page + 4K page) and PAE. */
static void run_prot32_paging(bool pae)
{
    memset(ram, 0, RAM_SIZE);
    /* mov dword [0x400000], 0x12345678; mov eax, [0x400000]; hlt */
    static const uint8_t prog[] = {0xc7, 0x05, 0x00, 0x00, 0x40, 0x00, 0x78, 0x56, 0x34, 0x12,
                                   0xa1, 0x00, 0x00, 0x40, 0x00, 0xf4};
    memcpy(ram + 0x20000, prog, sizeof(prog));
    emu_cpu_reset(cpu);
    if (!pae) {
        wr32(0x4000, 0x83);          /* 0-4M: 4M page (PSE) */
        wr32(0x4004, 0x5000 | 3);    /* 4M-8M: page table */
        wr32(0x5000, 0x30000 | 3);   /* 4M -> 0x30000 */
        cpu->cr3 = 0x4000;
        cpu->cr4 = EMU_CR4_PSE;
    } else {
        wr64(0x6000, 0x7000 | 1);    /* PDPT[0] */
        wr64(0x7000, 0x83);          /* 0-2M: 2M page */
        wr64(0x7010, 0x8000 | 3);    /* 4M-6M: page table */
        wr64(0x8000, 0x31000 | 3);   /* 4M -> 0x31000 */
        cpu->cr3 = 0x6000;
        cpu->cr4 = EMU_CR4_PAE;
    }
    cpu->cr0 = EMU_CR0_PE | EMU_CR0_PG | EMU_CR0_ET;
    for (unsigned i = 0; i < EMU_NSEG; i++)
        cpu->seg[i] = (struct emu_seg){.sel = 0x10, .limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1};
    cpu->seg[EMU_CS] = (struct emu_seg){.sel = 0x08, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .db = 1, .g = 1};
    cpu->cpl = 0;
    emu_tlb_flush(cpu, true);
    assert_int_equal(run_at(0x20000), EMU_STOP_HLT);
    assert_int_equal(cpu->r[EMU_RAX], 0x12345678);
}

static void test_prot32_two_level_paging(void **state)
{
    (void)state;
    run_prot32_paging(false);
    assert_int_equal(rd32(0x30000), 0x12345678);
    assert_int_equal(rd32(0x5000) & 0x60, 0x60); /* accessed, dirty */
    assert_int_equal(rd32(0x4004) & 0x20, 0x20);
}

static void test_prot32_pae_paging(void **state)
{
    (void)state;
    run_prot32_paging(true);
    assert_int_equal(rd32(0x31000), 0x12345678);
    assert_int_equal(rd64(0x8000) & 0x60, 0x60);
}

static void test_fxsave_fxrstor(void **state)
{
    (void)state;
    setup_long();
    static const uint8_t prog[] = {
        0x0f, 0xae, 0x04, 0x25, 0x00, 0x86, 0x00, 0x00,       /* fxsave [0x8600] */
        0x66, 0x0f, 0xef, 0xc0,                               /* pxor xmm0, xmm0 */
        0x0f, 0xae, 0x0c, 0x25, 0x00, 0x86, 0x00, 0x00,       /* fxrstor [0x8600] */
        0x66, 0x0f, 0xd6, 0x04, 0x25, 0x00, 0x87, 0x00, 0x00, /* movq [0x8700], xmm0 */
        0x0f, 0xae, 0x1c, 0x25, 0x10, 0x87, 0x00, 0x00,       /* stmxcsr [0x8710] */
        0x0f, 0xae, 0x04, 0x25, 0x08, 0x86, 0x00, 0x00,       /* fxsave [0x8608]: misaligned */
        0xf4};
    memcpy(ram + 0x20000, prog, sizeof(prog));
    cpu->xmm[0].q[0] = 0x0123456789abcdefull;
    cpu->xmm[0].q[1] = 0xfedcba9876543210ull;
    cpu->exit_on_exception = true;
    assert_int_equal(run_at(0x20000), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, 13); /* the misaligned fxsave */
    assert_int_equal(rd64(0x8700), 0x0123456789abcdefull);
    assert_int_equal(rd64(0x8600 + 160), 0x0123456789abcdefull);
    assert_int_equal(rd64(0x8600 + 168), 0xfedcba9876543210ull);
    assert_int_equal(rd32(0x8600 + 24), 0x1f80);
    assert_int_equal(rd32(0x8710), 0x1f80);
    assert_int_equal(rd32(0x8600), 0x37f); /* FCW after reset */
}

/* SSE floating point under the control registers: #NM with CR0.TS, #UD with CR0.EM or without
 * CR4.OSFXSR; an unmasked MXCSR exception raises #XM with CR4.OSXMMEXCPT, #UD without, and
 * leaves the destination alone. (Results and flags are proven against the host by emu_difftest.) */
static enum emu_stop run_sse_fp(uint64_t cr0_set, uint64_t cr4_clear, uint64_t cr4_set, uint32_t mxcsr)
{
    setup_long();
    static const uint8_t prog[] = {0xf3, 0x0f, 0x5e, 0xc1, /* divss xmm0, xmm1 */
                                   0xf4};
    memcpy(ram + 0x20000, prog, sizeof(prog));
    cpu->cr0 |= cr0_set;
    cpu->cr4 = (cpu->cr4 & ~cr4_clear) | cr4_set;
    cpu->mxcsr = mxcsr;
    cpu->xmm[0].q[0] = 0x3f800000;     /* 1.0f */
    cpu->xmm[1].q[0] = 0;              /* 0.0f */
    cpu->xmm[2].q[0] = 0x40000000;
    cpu->exit_on_exception = true;
    return run_at(0x20000);
}

static void test_sse_fp_faults(void **state)
{
    (void)state;
    assert_int_equal(run_sse_fp(EMU_CR0_TS, 0, 0, 0x1f80), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, EMU_NM);
    assert_int_equal(run_sse_fp(EMU_CR0_EM, 0, 0, 0x1f80), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, EMU_UD);
    assert_int_equal(run_sse_fp(0, EMU_CR4_OSFXSR, 0, 0x1f80), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, EMU_UD);
    /* Masked: 1/0 = +inf, ZE set. */
    assert_int_equal(run_sse_fp(0, 0, 0, 0x1f80), EMU_STOP_HLT);
    assert_int_equal(cpu->xmm[0].q[0], 0x7f800000);
    assert_int_equal(cpu->mxcsr, 0x1f84);
    /* Divide-by-zero unmasked: #XM at the divss, xmm0 unchanged, ZE set. */
    assert_int_equal(run_sse_fp(0, 0, EMU_CR4_OSXMMEXCPT, 0x1d80), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, EMU_XM);
    assert_int_equal(cpu->rip, 0x20000);
    assert_int_equal(cpu->xmm[0].q[0], 0x3f800000);
    assert_int_equal(cpu->mxcsr, 0x1d84);
    assert_int_equal(run_sse_fp(0, EMU_CR4_OSXMMEXCPT, 0, 0x1d80), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, EMU_UD);
    assert_int_equal(cpu->xmm[0].q[0], 0x3f800000);
}

/* x87 arithmetic (results are proven against the host by emu_difftest): fld1 + fld1 stored
 * as a double is 2.0, the stack is empty again; #NM with CR0.TS; fxsave carries ST(i). */
static void test_x87_basics(void **state)
{
    (void)state;
    static const uint8_t prog[] = {
        0xd9, 0xe8,                                     /* fld1 */
        0xd9, 0xe8,                                     /* fld1 */
        0xde, 0xc1,                                     /* faddp st(1), st */
        0xd9, 0xee,                                     /* fldz */
        0x0f, 0xae, 0x04, 0x25, 0x00, 0x86, 0x00, 0x00, /* fxsave [0x8600] */
        0xdd, 0xd8,                                     /* fstp st(0) */
        0xdd, 0x1c, 0x25, 0x00, 0x87, 0x00, 0x00,       /* fstp qword [0x8700] */
        0xf4};
    setup_long();
    memcpy(ram + 0x20000, prog, sizeof(prog));
    cpu->exit_on_exception = true;
    assert_int_equal(run_at(0x20000), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8700), 0x4000000000000000ull); /* 2.0 */
    assert_int_equal(cpu->ftw, 0);
    assert_int_equal((cpu->fsw >> 11) & 7, 0);
    assert_int_equal(rd64(0x8600 + 32), 0);                      /* ST(0) = +0 */
    assert_int_equal(rd64(0x8600 + 48), 0x8000000000000000ull);  /* ST(1) = 2.0 */
    assert_int_equal(rd32(0x8600 + 56) & 0xffff, 0x4000);
    assert_int_equal(ram[0x8600 + 4], 0xc0);                     /* abridged tags: two in use */
    setup_long();
    memcpy(ram + 0x20000, prog, sizeof(prog));
    cpu->cr0 |= EMU_CR0_TS;
    cpu->exit_on_exception = true;
    assert_int_equal(run_at(0x20000), EMU_STOP_EXCEPTION);
    assert_int_equal(cpu->exc_vector, EMU_NM);
}

static uint64_t mmio_last_addr, mmio_last_val;
static unsigned mmio_last_size, pio_out_port, pio_out_val;
static uint64_t t_mmio_read(void *o, uint64_t gpa, unsigned size)
{
    (void)o;
    mmio_last_addr = gpa;
    mmio_last_size = size;
    return 0x11223344;
}
static void t_mmio_write(void *o, uint64_t gpa, uint64_t val, unsigned size)
{
    (void)o;
    mmio_last_addr = gpa;
    mmio_last_val = val;
    mmio_last_size = size;
}
static uint32_t t_pio_read(void *o, uint16_t port, unsigned size)
{
    (void)o;
    return port == 0x3fd && size == 1 ? 0x60 : 0xffffffff;
}
static void t_pio_write(void *o, uint16_t port, uint32_t val, unsigned size)
{
    (void)o;
    (void)size;
    pio_out_port = port;
    pio_out_val = val;
}

static void test_mmio_and_port_io(void **state)
{
    (void)state;
    static const struct emu_io_ops io = {.mmio_read = t_mmio_read, .mmio_write = t_mmio_write,
                                         .pio_read = t_pio_read, .pio_write = t_pio_write};
    static const uint8_t prog[] = {
        0xbb, 0x30, 0x00, 0xe0, 0xfe,                   /* mov ebx, 0xfee00030 */
        0x8b, 0x03,                                     /* mov eax, [rbx] */
        0x89, 0x04, 0x25, 0x00, 0x88, 0x00, 0x00,       /* mov [0x8800], eax */
        0xc7, 0x43, 0x10, 0x55, 0x00, 0x00, 0x00,       /* mov dword [rbx+0x10], 0x55 */
        0x66, 0xba, 0xf8, 0x03,                         /* mov dx, 0x3f8 */
        0xb0, 0x41,                                     /* mov al, 'A' */
        0xee,                                           /* out dx, al */
        0x66, 0xba, 0xfd, 0x03,                         /* mov dx, 0x3fd */
        0xec,                                           /* in al, dx */
        0x88, 0x04, 0x25, 0x08, 0x88, 0x00, 0x00,       /* mov [0x8808], al */
        0xf4};
    memset(ram, 0, RAM_SIZE);
    memcpy(ram + 0x20000, prog, sizeof(prog));
    emu_cpu_reset(cpu);
    emu_cpu_set_flat64(cpu);
    cpu->cpl = 0;
    cpu->io = &io;
    assert_int_equal(run_at(0x20000), EMU_STOP_HLT);
    assert_int_equal(rd32(0x8800), 0x11223344);
    assert_int_equal(mmio_last_addr, 0xfee00040);
    assert_int_equal(mmio_last_val, 0x55);
    assert_int_equal(mmio_last_size, 4);
    assert_int_equal(pio_out_port, 0x3f8);
    assert_int_equal(pio_out_val, 'A');
    assert_int_equal(ram[0x8808], 0x60);
    /* At CPL 3 with IOPL 0 port I/O raises #GP. */
    emu_cpu_reset(cpu);
    emu_cpu_set_flat64(cpu);
    cpu->io = &io;
    cpu->exit_on_exception = true;
    assert_int_equal(run_at(0x20000 + 25), EMU_STOP_EXCEPTION); /* at mov al; out */
    assert_int_equal(cpu->exc_vector, 13);
    cpu->io = NULL;
}

static void test_verr_verw(void **state)
{
    (void)state;
    setup_long();
    static const uint8_t prog[] = {
        0xb8, 0x10, 0, 0, 0, 0x0f, 0x00, 0xe8, 0x0f, 0x94, 0x04, 0x25, 0x00, 0x89, 0, 0, /* verw data */
        0xb8, 0x08, 0, 0, 0, 0x0f, 0x00, 0xe8, 0x0f, 0x94, 0x04, 0x25, 0x01, 0x89, 0, 0, /* verw code */
        0x0f, 0x00, 0xe0, 0x0f, 0x94, 0x04, 0x25, 0x02, 0x89, 0, 0,                   /* verr code */
        0xf4};
    memcpy(ram + 0x20000, prog, sizeof(prog));
    assert_int_equal(run_at(0x20000), EMU_STOP_HLT);
    assert_int_equal(ram[0x8900], 1); /* kernel data segment: writable */
    assert_int_equal(ram[0x8901], 0); /* code segment: not writable */
    assert_int_equal(ram[0x8902], 1); /* but readable */
}

static void test_lsl_lar(void **state)
{
    (void)state;
    setup_long();
    /* A per-CPU segment like Linux's __CPUNODE_SEG: limit = cpu number 5, DPL 3, at 0x40. */
    wr64(0x5000 + 0x40, 0x0040f50000000005ull);
    static const uint8_t prog[] = {
        0xb9, 0x43, 0, 0, 0,       /* mov ecx, 0x43 */
        0x0f, 0x03, 0xc1,          /* lsl eax, ecx */
        0x0f, 0x02, 0xd9,          /* lar ebx, ecx */
        0xba, 0x48, 0, 0, 0,       /* mov edx, 0x48 (beyond the GDT limit) */
        0x0f, 0x03, 0xf2,          /* lsl esi, edx: fails, esi unchanged */
        0x0f, 0x94, 0x04, 0x25, 0x00, 0x8a, 0, 0, /* setz [0x8a00] */
        0xf4};
    memcpy(ram + 0x20000, prog, sizeof(prog));
    cpu->gdt.limit = 0x47;
    cpu->r[EMU_RSI] = 0x1234;
    assert_int_equal(run_at(0x20000), EMU_STOP_HLT);
    assert_int_equal(cpu->r[EMU_RAX], 5);
    assert_int_equal(cpu->r[EMU_RBX], 0x0040f500);
    assert_int_equal(cpu->r[EMU_RSI], 0x1234);
    assert_int_equal(ram[0x8a00], 0);
}

static int irq_pending_vector = -1;
static int test_intr_ack(void *opaque)
{
    (void)opaque;
    int v = irq_pending_vector;
    irq_pending_vector = -1;
    cpu->intr_line = false;
    return v;
}

static void test_external_interrupt_wakes_hlt(void **state)
{
    (void)state;
    static const struct emu_io_ops io = {.intr_ack = test_intr_ack};
    setup_long();
    cpu->io = &io;
    gate(0x20, KADDR(h_irq), 0, 0);
    assert_int_equal(run_at(KADDR(k_sti_hlt)), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8500), 0); /* nothing pending yet */
    /* Raise the line: the halted CPU takes vector 0x20, the handler irets past the hlt. */
    irq_pending_vector = 0x20;
    cpu->intr_line = true;
    assert_int_equal(emu_run(cpu, 1000), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8500), 0x77);
    assert_int_equal(rd64(0x8508), 0x99);
    assert_int_equal(rd64(0x8510) & 0x200, 0x200); /* interrupted with IF set */
    assert_false(cpu->flags & EMU_FLAG_IF);        /* then cli */
    /* With IF clear the line is ignored and the CPU stays halted. */
    irq_pending_vector = 0x20;
    cpu->intr_line = true;
    wr64(0x8500, 0);
    assert_int_equal(emu_run(cpu, 1000), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8500), 0);
    cpu->io = NULL;
}

static int nmi_pending_count;
static bool t_nmi_ack(void *opaque)
{
    (void)opaque;
    cpu->nmi_line = false;
    bool r = nmi_pending_count > 0;
    nmi_pending_count = 0; /* NMIs that came meanwhile collapse into one */
    return r;
}

static void t_nmi_pio_write(void *opaque, uint16_t port, uint32_t val, unsigned size)
{
    (void)opaque, (void)val, (void)size;
    if (port == 0x80) {
        nmi_pending_count++;
        cpu->nmi_line = true;
    }
}

static void test_nmi_blocking(void **state)
{
    (void)state;
    static const struct emu_io_ops io = {.pio_write = t_nmi_pio_write, .nmi_ack = t_nmi_ack};
    setup_long();
    cpu->io = &io;
    gate(2, KADDR(h_nmi), 0, 0);
    assert_int_equal(run_at(KADDR(k_nmi)), EMU_STOP_HLT);
    assert_false(cpu->flags & EMU_FLAG_IF);
    /* An NMI wakes the hlt with IF clear; inside the handler a second one waits for iretq, then
     * runs; then the code after the hlt. */
    nmi_pending_count = 1;
    cpu->nmi_line = true;
    assert_int_equal(emu_run(cpu, 1000), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8608), 1);
    assert_int_equal(rd64(0x8600), 2);
    assert_int_equal(rd64(0x8610) & 0x200, 0); /* taken with IF clear */
    assert_int_equal(rd64(0x8508), 0x99);
    assert_false(cpu->nmi_blocked);
    /* While an NMI handler runs (blocked), a pending NMI does not wake hlt; iret unblocks. */
    cpu->nmi_blocked = true;
    nmi_pending_count = 1;
    cpu->nmi_line = true;
    assert_int_equal(emu_run(cpu, 1000), EMU_STOP_HLT);
    assert_int_equal(rd64(0x8600), 2);
    cpu->io = NULL;
}

static int apic_base_seen_count;
static uint64_t apic_base_seen;
static int t_msr_read(void *opaque, uint32_t msr, uint64_t *val)
{
    (void)opaque;
    if (msr == 0x830) {
        *val = 0x1234;
        return 0;
    }
    return msr == 0x831 ? -EINVAL : -ENOENT;
}

static int t_msr_write(void *opaque, uint32_t msr, uint64_t val)
{
    (void)opaque;
    if (msr == 0x1b) {
        apic_base_seen = val;
        apic_base_seen_count++;
        return 0;
    }
    return msr == 0x830 ? 0 : -ENOENT;
}

static void test_apic_base_and_apic_msrs(void **state)
{
    (void)state;
    static const struct emu_io_ops io = {.msr_read = t_msr_read, .msr_write = t_msr_write};
    uint32_t o[4];
    emu_cpuid(cpu, 1, 0, o);
    assert_true(o[2] & (1u << 21)); /* x2APIC */
    assert_true(o[2] & (1u << 24)); /* TSC-deadline timer */
    cpu->io = &io;
    uint64_t v;
    assert_int_equal(cpu->apic_base, 0xfee00900); /* xAPIC, BSP */
    /* xAPIC -> x2APIC, and the interrupt controller hears of it. */
    assert_int_equal(emu_wrmsr(cpu, 0x1b, 0xfee00d00), 0);
    assert_int_equal(apic_base_seen, 0xfee00d00);
    assert_int_equal(emu_rdmsr(cpu, 0x1b, &v), 0);
    assert_int_equal(v, 0xfee00d00);
    /* x2APIC -> xAPIC directly is #GP, and changes nothing. */
    int seen = apic_base_seen_count;
    assert_int_not_equal(emu_wrmsr(cpu, 0x1b, 0xfee00900), 0);
    assert_int_equal(cpu->apic_base, 0xfee00d00);
    assert_int_equal(apic_base_seen_count, seen);
    /* EXTD without EN is invalid from any state. */
    assert_int_not_equal(emu_wrmsr(cpu, 0x1b, 0xfee00500), 0);
    /* x2APIC -> disabled -> xAPIC is the way back. */
    assert_int_equal(emu_wrmsr(cpu, 0x1b, 0xfee00100), 0);
    assert_int_not_equal(emu_wrmsr(cpu, 0x1b, 0xfee00d00), 0); /* disabled -> x2APIC */
    assert_int_not_equal(emu_wrmsr(cpu, 0x1b, 0xfee00500), 0);
    assert_int_equal(emu_wrmsr(cpu, 0x1b, 0xfee00900), 0);
    assert_int_equal(apic_base_seen, 0xfee00900);
    /* Reserved bits: 0-7, 9, and above the 40-bit physical address width. */
    assert_int_not_equal(emu_wrmsr(cpu, 0x1b, 0xfee00901), 0);
    assert_int_not_equal(emu_wrmsr(cpu, 0x1b, 0xfee00b00), 0);
    assert_int_not_equal(emu_wrmsr(cpu, 0x1b, 0x10000000000ull | 0xfee00900), 0);
    assert_int_equal(cpu->apic_base, 0xfee00900);
    /* MSRs the core does not know go to the hooks: handled, #GP, or not theirs (#GP). */
    assert_int_equal(emu_rdmsr(cpu, 0x830, &v), 0);
    assert_int_equal(v, 0x1234);
    assert_int_equal(emu_wrmsr(cpu, 0x830, 5), 0);
    assert_int_not_equal(emu_rdmsr(cpu, 0x831, &v), 0);
    assert_int_not_equal(emu_rdmsr(cpu, 0x12345678, &v), 0);
    assert_int_not_equal(emu_wrmsr(cpu, 0x12345678, 0), 0);
    cpu->io = NULL;
    assert_int_not_equal(emu_rdmsr(cpu, 0x830, &v), 0);
}

/* The guest is untrusted: random code at CPL 0 (which may rewrite control registers, tables
 * and its own page tables) must end in a halt, a shutdown or the budget, never a crash. */
static void test_random_code_is_contained(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    unsigned stops[5] = {0};
    const char *rs = getenv("VMKIT_EMU_FUZZ_ROUNDS");
    unsigned rounds = rs ? (unsigned)strtoul(rs, NULL, 0) : 3000;
    for (unsigned round = 0; round < rounds; round++) {
        setup_long();
        for (unsigned i = 0; i < 4096; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ram[0x20000 + i] = (uint8_t)x;
        }
        for (unsigned i = 0; i < 16; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cpu->r[i] = (i == EMU_RSP) ? 0x9800 : (round & 1) ? x & 0x7fffff : x;
        }
        enum emu_stop st = run_at(0x20000);
        assert_true(st <= EMU_STOP_INTERNAL);
        stops[st]++;
        /* Exceptions ended in a handler's hlt, or the budget ran out. */
    }
    print_message("random code: %u budget, %u hlt, %u shutdown\n", stops[EMU_STOP_BUDGET], stops[EMU_STOP_HLT], stops[EMU_STOP_SHUTDOWN]);
    assert_true(stops[EMU_STOP_HLT] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_boot_real_to_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ud_through_idt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pf_error_code_cr2_and_ist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_and_triple_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_mode_syscall_and_us_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_protect_and_dirty_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nx_fetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_1g_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invlpg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_software_interrupt_and_iret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_modifying_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpuid_and_msrs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nmi_blocking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apic_base_and_apic_msrs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_msr_raises_gp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external_interrupt_wakes_hlt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prot32_two_level_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prot32_pae_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fxsave_fxrstor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_fp_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_x87_basics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mmio_and_port_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verr_verw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lsl_lar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_code_is_contained, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
