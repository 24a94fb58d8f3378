/* CPU-exception guests: GDT/TSS/IDT with full-frame handlers, syscall entry, ring 3, test PTEs. */
#include "trap.h"
#include "rt.h"

/* Stubs for vectors 0..31 and 0x80, 16 bytes apart: push 0 where the CPU pushes no error code,
 * push the vector, then save every general register and call trap_dispatch(frame). */
__asm__(".text\n"
        ".balign 16\n"
        "trap_stubs:\n"
        ".set trap_i, 0\n"
        ".rept 33\n"
        ".balign 16\n"
        ".if trap_i == 32\n"
        "pushq $0\n pushq $0x80\n"
        ".elseif (trap_i == 8) || (trap_i >= 10 && trap_i <= 14) || (trap_i == 17) || (trap_i == 21) || (trap_i == 29) || (trap_i == 30)\n"
        "pushq $trap_i\n"
        ".else\n"
        "pushq $0\n pushq $trap_i\n"
        ".endif\n"
        "jmp trap_common\n"
        ".set trap_i, trap_i + 1\n"
        ".endr\n"
        "trap_common:\n"
        "push %rax\n push %rbx\n push %rcx\n push %rdx\n push %rsi\n push %rdi\n push %rbp\n"
        "push %r8\n push %r9\n push %r10\n push %r11\n push %r12\n push %r13\n push %r14\n push %r15\n"
        "mov %rsp, %rdi\n"
        "cld\n"
        "call trap_dispatch\n"
        "pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %r11\n pop %r10\n pop %r9\n pop %r8\n"
        "pop %rbp\n pop %rdi\n pop %rsi\n pop %rdx\n pop %rcx\n pop %rbx\n pop %rax\n"
        "add $16, %rsp\n"
        "iretq\n"
        /* syscall: the user stack is untouched; switch to the kernel stack through GS (swapgs
         * makes KERNEL_GS_BASE = &trap_percpu visible) and build the same frame. */
        ".balign 16\n"
        ".globl trap_syscall_entry\n"
        "trap_syscall_entry:\n"
        "swapgs\n"
        "mov %rsp, %gs:8\n"
        "mov %gs:0, %rsp\n"
        "incq %gs:16\n"
        "pushq $0x33\n pushq %gs:8\n pushq %r11\n pushq $0x3b\n pushq %rcx\n pushq $0\n pushq $0x100\n"
        "push %rax\n push %rbx\n push %rcx\n push %rdx\n push %rsi\n push %rdi\n push %rbp\n"
        "push %r8\n push %r9\n push %r10\n push %r11\n push %r12\n push %r13\n push %r14\n push %r15\n"
        "mov %rsp, %rdi\n"
        "cld\n"
        "call trap_syscall_dispatch\n"
        "pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %r11\n pop %r10\n pop %r9\n pop %r8\n"
        "pop %rbp\n pop %rdi\n pop %rsi\n pop %rdx\n pop %rcx\n pop %rbx\n pop %rax\n"
        "add $16, %rsp\n"
        "pop %rcx\n add $8, %rsp\n pop %r11\n"
        "mov (%rsp), %rsp\n"
        "swapgs\n"
        "sysretq\n");
extern const uint8_t trap_stubs[];
extern const uint8_t trap_syscall_entry[];

struct idt_entry {
    uint16_t off_lo, sel;
    uint8_t ist, attr;
    uint16_t off_mid;
    uint32_t off_hi, zero;
} __attribute__((packed));

static uint64_t gdt[8] __attribute__((aligned(16))) = {
    0,
    0x00AF9A000000FFFFull, /* 0x08 kernel code64 */
    0x00CF92000000FFFFull, /* 0x10 kernel data */
    0x00CF9A000000FFFFull, /* 0x18 32-bit code */
    0, 0,                  /* 0x20 TSS */
    0x00CFF2000000FFFFull, /* 0x30 user data (sysret: STAR[63:48] + 8) */
    0x00AFFA000000FFFFull, /* 0x38 user code64 (sysret: STAR[63:48] + 16) */
};
static uint32_t tss[26] __attribute__((aligned(16)));
static struct idt_entry idt[256] __attribute__((aligned(16)));
static trap_fn handlers[256];
static syscall_fn syscall_handler;
static uint8_t kernel_stack[8192] __attribute__((aligned(16)));
static uint8_t ist_stack[4096] __attribute__((aligned(16)));
static uint8_t user_stack[16384] __attribute__((aligned(16)));
static uint64_t window_pt[512] __attribute__((aligned(4096)));
static uint8_t frame_pool[16][4096] __attribute__((aligned(4096)));
struct trap_percpu trap_percpu;

uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}

void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

void trap_dispatch(struct trap_frame *f);
void trap_dispatch(struct trap_frame *f)
{
    uint8_t v = (uint8_t)f->vector;
    if (handlers[v]) {
        handlers[v](f);
        return;
    }
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    test_fail("unexpected exception %lu error %lx at rip %lx cs %lx rflags %lx cr2 %lx", f->vector,
              f->error, f->rip, f->cs, f->rflags, cr2);
}

uint64_t trap_syscall_dispatch(struct trap_frame *f);
uint64_t trap_syscall_dispatch(struct trap_frame *f)
{
    if (!syscall_handler)
        test_fail("syscall without a handler from rip %lx", f->rcx);
    f->rax = syscall_handler(f);
    return f->rax;
}

static void set_gate(uint8_t vector, const void *fn, unsigned dpl, unsigned ist)
{
    uint64_t a = (uint64_t)(uintptr_t)fn;
    idt[vector] = (struct idt_entry){(uint16_t)a, KERNEL_CS, (uint8_t)ist,
                                     (uint8_t)(0x8E | (dpl & 3) << 5), (uint16_t)(a >> 16),
                                     (uint32_t)(a >> 32), 0};
}

void trap_init(void)
{
    for (unsigned i = 0; i < 32; i++)
        set_gate((uint8_t)i, trap_stubs + 16 * i, 0, i == 8 ? 1 : 0);
    set_gate(0x80, trap_stubs + 16 * 32, 0, 0);

    uint64_t rsp0 = (uint64_t)(uintptr_t)(kernel_stack + sizeof(kernel_stack));
    uint64_t ist1 = (uint64_t)(uintptr_t)(ist_stack + sizeof(ist_stack));
    tss[1] = (uint32_t)rsp0;
    tss[2] = (uint32_t)(rsp0 >> 32);
    tss[9] = (uint32_t)ist1;
    tss[10] = (uint32_t)(ist1 >> 32);
    tss[25] = sizeof(tss) << 16; /* no I/O bitmap */
    uint64_t tb = (uint64_t)(uintptr_t)tss;
    gdt[4] = (sizeof(tss) - 1) | (tb & 0xffffff) << 16 | 0x89ull << 40 | ((tb >> 24) & 0xff) << 56;
    gdt[5] = tb >> 32;
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) gp = {sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt},
      ip = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lgdt %0" ::"m"(gp));
    __asm__ volatile("ltr %w0" ::"r"(0x20));
    __asm__ volatile("lidt %0" ::"m"(ip));
    trap_percpu.kstack_top = rsp0;
    trap_ist_top = ist1;
}

uint64_t trap_ist_top;

void trap_set_present(uint8_t vector, bool present)
{
    idt[vector].attr = (uint8_t)((idt[vector].attr & 0x7f) | (present ? 0x80 : 0));
}

void trap_set_handler(uint8_t vector, trap_fn fn, unsigned dpl)
{
    handlers[vector] = fn;
    if (vector < 32)
        idt[vector].attr = (uint8_t)(0x8E | (dpl & 3) << 5);
    else if (vector == 0x80)
        set_gate(0x80, trap_stubs + 16 * 32, dpl, 0);
}

void trap_syscall_init(syscall_fn fn)
{
    syscall_handler = fn;
    wrmsr(0xC0000080, rdmsr(0xC0000080) | 1);                      /* EFER.SCE */
    wrmsr(0xC0000081, (uint64_t)0x28 << 48 | (uint64_t)KERNEL_CS << 32); /* STAR */
    wrmsr(0xC0000082, (uint64_t)(uintptr_t)trap_syscall_entry);     /* LSTAR */
    wrmsr(0xC0000084, 0x40700);                                     /* SFMASK: AC DF IF TF */
    wrmsr(0xC0000102, (uint64_t)(uintptr_t)&trap_percpu);           /* KERNEL_GS_BASE */
}

static uint64_t *table_of(uint64_t e) { return (uint64_t *)(uintptr_t)(e & 0x000ffffffffff000ull); }

static void make_user(uint64_t *table, int level)
{
    for (unsigned i = 0; i < 512; i++) {
        uint64_t e = table[i];
        if (!(e & 1))
            continue;
        table[i] = e | 4;
        /* The test window's PTEs keep the U/S bits the test gave them. */
        if (level > 1 && !(e & 0x80) && table_of(e) != window_pt)
            make_user(table_of(e), level - 1);
    }
}

static uint64_t *pd_entry(uint64_t va)
{
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t *pml4 = table_of(cr3);
    uint64_t *pdpt = table_of(pml4[(va >> 39) & 511]);
    uint64_t *pd = table_of(pdpt[(va >> 30) & 511]);
    return &pd[(va >> 21) & 511];
}

volatile uint64_t *trap_test_pte(unsigned i)
{
    uint64_t *pde = pd_entry(TEST_VA);
    uint64_t want = (uint64_t)(uintptr_t)window_pt | 7;
    if (*pde != want) {
        *pde = want;
        uint64_t cr3;
        __asm__ volatile("mov %%cr3, %0\n\tmov %0, %%cr3" : "=r"(cr3)::"memory");
    }
    return &window_pt[i & 511];
}

uint64_t trap_frame_page(unsigned i) { return (uint64_t)(uintptr_t)frame_pool[i & 15]; }

void trap_enter_ring3(void (*fn)(void), uint64_t rflags)
{
    uint64_t cr3, cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    cr4 &= ~((1ull << 20) | (1ull << 21)); /* SMEP, SMAP */
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4));
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    make_user(table_of(cr3), 4);
    __asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
    uint64_t sp = (uint64_t)(uintptr_t)(user_stack + sizeof(user_stack) - 8);
    __asm__ volatile("pushq $0x33\n\t"
                     "pushq %0\n\t"
                     "pushq %2\n\t"
                     "pushq $0x3b\n\t"
                     "pushq %1\n\t"
                     "iretq" ::"r"(sp),
                     "r"((uint64_t)(uintptr_t)fn), "r"(rflags)
                     : "memory");
    __builtin_unreachable();
}
