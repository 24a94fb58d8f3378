/* CPU-exception guests: a GDT with user segments, a TSS (RSP0, IST1), an IDT whose handlers see
 * and may edit the full register frame, syscall/sysret with swapgs, and 4 KiB test mappings. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_DS 0x33
#define USER_CS 0x3b

/* What the stubs push: general registers on top of vector, error code (0 when the CPU pushes
 * none) and the CPU's interrupt frame. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};
/* A handler may change the frame (e.g. rip to skip an instruction); iretq resumes from it. */
typedef void (*trap_fn)(struct trap_frame *f);

/* syscall entry: rax = number, rdi/rsi/rdx = arguments; the handler's return goes to rax. The
 * frame's rcx/r11 are what the CPU saved (user rip and rflags). */
typedef uint64_t (*syscall_fn)(struct trap_frame *f);

/* Loads GDT, TSS (RSP0, IST1 for #DF) and an IDT covering vectors 0..31 and 0x80; exceptions
 * without a handler fail the test with the frame. */
void trap_init(void);
/* Marks the gate of vector (0..31, 0x80) present or not present. */
void trap_set_present(uint8_t vector, bool present);
/* Top of the IST1 stack that #DF runs on. */
extern uint64_t trap_ist_top;
/* dpl 3 lets ring 3 raise vector with int n. */
void trap_set_handler(uint8_t vector, trap_fn fn, unsigned dpl);
/* EFER.SCE, STAR, LSTAR, SFMASK (clears IF, TF, DF, AC) and KERNEL_GS_BASE for the entry stub. */
void trap_syscall_init(syscall_fn fn);
/* The per-CPU block GS points at in the kernel after swapgs. */
extern struct trap_percpu {
    uint64_t kstack_top, user_rsp, entries;
} trap_percpu;
/* Sets U/S on the whole identity map, clears SMEP/SMAP, and iretq to fn in ring 3 on a user
 * stack with rflags (IF should be 0). */
__attribute__((noreturn)) void trap_enter_ring3(void (*fn)(void), uint64_t rflags);

/* A 2 MiB window at TEST_VA backed by a page table whose entries the test controls. */
#define TEST_VA 0x80000000ull
/* Returns the PTE for TEST_VA + i * 4096 (i < 512); the table starts all not-present. */
volatile uint64_t *trap_test_pte(unsigned i);
/* Physical address of a free 4 KiB frame from a small static pool (i < 16). */
uint64_t trap_frame_page(unsigned i);
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }
uint64_t rdmsr(uint32_t msr);
void wrmsr(uint32_t msr, uint64_t v);
