/* Dropping to ring 3 for benchmark guests: their hot loops run there, natively on hosts whose
 * KVM emulates kernel mode (PVM). */
#include "rt.h"

/* Sets U/S on every present entry of the identity map, so ring 3 can reach all of it. */
static void make_user(uint64_t *table, int level)
{
    for (unsigned i = 0; i < 512; i++) {
        uint64_t e = table[i];
        if (!(e & 1))
            continue;
        table[i] = e | 4;
        if (level > 1 && !(e & 0x80))
            make_user((uint64_t *)(uintptr_t)(e & 0x000ffffffffff000ull), level - 1);
    }
}

/* Kernel segments as the runtime has them, a TSS at 0x20 (the TR selector vmkit boots with),
 * user data 0x30 and user code 0x38. */
static uint64_t gdt[8] __attribute__((aligned(16))) = {
    0,
    0x00AF9A000000FFFFull, /* 0x08 kernel code64 */
    0x00CF92000000FFFFull, /* 0x10 kernel data */
    0x00CF9A000000FFFFull, /* 0x18 32-bit code */
    0, 0,                  /* 0x20 TSS, filled in */
    0x00CFF2000000FFFFull, /* 0x30 user data, DPL 3 */
    0x00AFFA000000FFFFull, /* 0x38 user code64, DPL 3 */
};
static uint32_t tss[26] __attribute__((aligned(16)));
static uint8_t kernel_stack[4096] __attribute__((aligned(16)));
static uint8_t user_stack[65536] __attribute__((aligned(16)));

void rt_enter_ring3(void (*user_main)(void))
{
    uint64_t cr3, cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    cr4 &= ~((1ull << 20) | (1ull << 21) | (1ull << 2)); /* SMEP, SMAP, TSD (rdtsc in ring 3) */
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4));
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    make_user((uint64_t *)(uintptr_t)(cr3 & ~0xfffull), 4);
    __asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");

    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) gp = {sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt};
    uint64_t rsp0 = (uint64_t)(uintptr_t)(kernel_stack + sizeof(kernel_stack));
    tss[1] = (uint32_t)rsp0;
    tss[2] = (uint32_t)(rsp0 >> 32);
    tss[25] = sizeof(tss) << 16; /* no I/O bitmap */
    uint64_t tb = (uint64_t)(uintptr_t)tss;
    gdt[4] = (sizeof(tss) - 1) | (tb & 0xffffff) << 16 | 0x89ull << 40 | ((tb >> 24) & 0xff) << 56;
    gdt[5] = tb >> 32;
    __asm__ volatile("lgdt %0" ::"m"(gp));
    __asm__ volatile("ltr %w0" ::"r"(0x20));

    uint64_t sp = (uint64_t)(uintptr_t)(user_stack + sizeof(user_stack) - 8);
    __asm__ volatile("pushq $0x33\n\t"
                     "pushq %0\n\t"
                     "pushq $0x0002\n\t" /* IF 0: the hot loops poll */
                     "pushq $0x3b\n\t"
                     "pushq %1\n\t"
                     "iretq" ::"r"(sp),
                     "r"((uint64_t)(uintptr_t)user_main)
                     : "memory");
    __builtin_unreachable();
}
