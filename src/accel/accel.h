/* The accelerator boundary: what runs guest instructions (KVM, or the software CPU). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct machine;
struct accel;
struct vcpu;

struct vcpu_regs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
};

struct vcpu_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint8_t type, present, dpl, db, s, l, g, avl, unusable;
};

struct vcpu_dtable {
    uint64_t base;
    uint16_t limit;
};

struct vcpu_sregs {
    struct vcpu_segment cs, ds, es, fs, gs, ss, tr, ldt;
    struct vcpu_dtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
};

enum vcpu_exit_reason {
    VCPU_EXIT_IO,             /* port I/O: see exit.io */
    VCPU_EXIT_MMIO,           /* access to an address that is not RAM: see exit.mmio */
    VCPU_EXIT_HLT,            /* halted with interrupts off, or no in-kernel irqchip */
    VCPU_EXIT_SHUTDOWN,       /* triple fault */
    VCPU_EXIT_SYSTEM_RESET,   /* the accelerator saw a reset request */
    VCPU_EXIT_SYSTEM_OFF,     /* the accelerator saw a power-off request */
    VCPU_EXIT_INTR,           /* vcpu_kick() or a signal interrupted the run */
    VCPU_EXIT_INTERNAL_ERROR, /* the accelerator cannot go on; vcpu_dump() says why */
};

struct vcpu_exit {
    enum vcpu_exit_reason reason;
    union {
        struct {
            uint16_t port;
            uint8_t size;     /* 1, 2 or 4 */
            uint8_t is_write;
            uint32_t count;   /* > 1 for rep ins/outs */
            uint8_t *data;    /* count*size bytes; for reads, fill before the next vcpu_run */
        } io;
        struct {
            uint64_t addr;
            uint8_t *data; /* for reads, fill before the next vcpu_run */
            uint8_t len;   /* 1..8 */
            uint8_t is_write;
        } mmio;
        struct {
            uint32_t code;
        } internal;
    };
};

/* What the accelerator must know to shape CPUID and the APIC IDs. */
struct accel_config {
    unsigned ncpus, maxcpus, sockets, dies, cores, threads;
    const char *cpu_model; /* "host", or a named model */
    /* emu only (docs/emu.md): vCPUs in parallel on host time, or in turns on a virtual clock
     * of 2^icount_shift ns per instruction whose idle time is skipped, or slept if icount_sleep. */
    bool multi_thread;
    unsigned icount_shift;
    bool icount_sleep;
};

struct accel_ops {
    const char *name;
    /* 0 if usable on this host; otherwise -errno and a message in why, saying how to fix it. */
    int (*probe)(char *why, size_t why_len);
    int (*vm_create)(struct machine *m, const struct accel_config *cfg, struct accel **out);
    void (*vm_destroy)(struct accel *a);
    int (*map_memory)(struct accel *a, unsigned slot, uint64_t gpa, uint64_t size, void *host);

    int (*vcpu_create)(struct accel *a, unsigned index, struct vcpu **out);
    void (*vcpu_destroy)(struct vcpu *v);
    /* Runs until an exit; 0 with *exit filled, or -errno. Completes the previous exit first. */
    int (*vcpu_run)(struct vcpu *v, struct vcpu_exit *exit);
    /* From any thread: make the current or next vcpu_run return VCPU_EXIT_INTR soon. */
    void (*vcpu_kick)(struct vcpu *v);
    int (*vcpu_get_regs)(struct vcpu *v, struct vcpu_regs *r);
    int (*vcpu_set_regs)(struct vcpu *v, const struct vcpu_regs *r);
    int (*vcpu_get_sregs)(struct vcpu *v, struct vcpu_sregs *s);
    int (*vcpu_set_sregs)(struct vcpu *v, const struct vcpu_sregs *s);
    /* Registers and state, for internal-error reports. */
    void (*vcpu_dump)(struct vcpu *v, FILE *out);

    void (*set_irq)(struct accel *a, unsigned gsi, bool level);
    void (*send_msi)(struct accel *a, uint64_t addr, uint32_t data);

    /* Optional fast paths (NULL if absent): a guest write to [addr,addr+len) signals fd without
     * an exit; a write to fd raises the MSI (addr,data) without a userspace round trip. */
    int (*ioeventfd)(struct accel *a, uint64_t addr, unsigned len, bool pio, int fd, bool assign);
    int (*irqfd)(struct accel *a, int fd, uint64_t msi_addr, uint32_t msi_data, bool assign);

    /* Optional (NULL: host CLOCK_MONOTONIC): the clock the guest's timers and TSC follow, in
     * ns; devices with timers of their own (the ACPI PM timer) read it too. */
    uint64_t (*clock_ns)(struct accel *a);
    /* Optional: the event loop is about to run (enter) or has run (!enter) device callbacks for
     * host events (I/O completions, input). A deterministic accelerator admits them only
     * between vCPU slices, so they land at the same guest instruction run after run. */
    void (*host_events)(struct accel *a, bool enter);
    /* Optional (NULL when the CPU sees device writes by itself, as KVM's does): a device wrote
     * guest RAM [gpa, gpa+len) behind the CPU's back; drop anything decoded from it. From any
     * thread, while vCPUs run. */
    void (*mem_written)(struct accel *a, uint64_t gpa, uint64_t len);
};

extern const struct accel_ops accel_kvm_ops;
extern const struct accel_ops accel_emu_ops; /* software CPU */

/* "kvm", "emu" (alias "tcg"), "auto" or "" (see accel_pick_auto); NULL if unknown. */
const struct accel_ops *accel_find(const char *name);
/* kvm if /dev/kvm works and the host CPU has VT-x/SVM, emu otherwise; logs which and why. */
const struct accel_ops *accel_pick_auto(void);
