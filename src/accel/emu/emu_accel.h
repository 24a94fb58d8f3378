/* The -accel emu backend's state, shared by its glue (emu.c) and its scheduler (emu_sched.c). */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <ucontext.h>

#include "accel/accel.h"
#include "accel/emu/emu_cpu.h"
#include "hw/irqchip.h"
#include "machine/topology.h"

/* thread=single: vCPUs take turns on one baton, in slices, on a virtual clock that advances
 * 2^shift ns per instruction and skips idle time; the event loop runs device callbacks only
 * between slices. Everything the guest sees then depends only on what it executes and on
 * outside input, so runs repeat exactly. */
struct emu_sched {
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* broadcast on any change below, on kicks and on I/O completions */
    int owner;              /* the vCPU in its slice, or -1 */
    int turn;               /* the vCPU whose slice is next, or -1: the next pass decides */
    unsigned last;          /* the vCPU that ran last: the round robin goes on after it */
    bool host_in;           /* the event loop is running device callbacks */
    unsigned host_waiting;  /* event-loop batches waiting for the end of a slice */
    uint64_t vclock;        /* virtual ns when the running slice began (or the last one ended) */
    uint64_t slice_start;   /* the running vCPU's instruction count when its slice began */
    uint64_t next_deadline; /* the earliest timer that can wake a vCPU, as of the last pass */
    /* sleep=on: when the current idle period began, in host and virtual ns, and its end. */
    bool idling;
    uint64_t idle_host, idle_virtual, idle_deadline;
};

struct accel {
    struct machine *m;
    unsigned ncpus;
    struct vcpu **vcpus;
    struct { uint64_t gpa, size; void *host; uint8_t *code_bits; } ram[8];
    unsigned nram;
    struct emu_shared shared; /* code pages across vCPUs (emu_cpu.h) */
    struct irqchip ic;
    uint32_t apic_ids[IRQCHIP_MAX_CPUS];
    struct cpu_topology topo;
    bool multi_thread;     /* thread=multi: vCPUs in parallel, the clock is host time */
    unsigned shift;        /* thread=single: 2^shift virtual ns per instruction */
    bool sleep;            /* thread=single: idle time passes in host time instead of skipping */
    uint64_t clock_base;   /* thread=multi: host ns at creation (the clock's zero) */
    struct emu_sched sched; /* thread=single */
    struct vcpu *running;   /* thread=single: the vCPU in its slice (written by it) */
};

struct vcpu {
    struct accel *a;
    unsigned index;
    struct emu_cpu cpu;
    ucontext_t host_uc, cpu_uc;
    void *stack;
    bool started;
    struct vcpu_exit *exit; /* where the current vcpu_run wants its exit */
    uint8_t data[8];        /* exit.io/mmio data */
    bool kicked;            /* atomic */
    bool woken;             /* atomic: the irqchip may have an interrupt or startup event for it */
    /* thread=single, written by the vCPU at the end of its slice: it has nothing to run until
     * woken, and whether an interrupt can wake it (halted with IF set) or only other events. */
    bool idle, wakes_on_timer;
    /* thread=multi: sleeping in HLT. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool event; /* under lock: something may have changed for this vCPU */
    char msg[128];
};

uint64_t emu_host_ns(void);
/* A condition variable whose timed waits count CLOCK_MONOTONIC (emu_host_ns), not wall time. */
void emu_cond_init(pthread_cond_t *c);
/* The VM's clock in ns (0 at creation): what the TSC, the APIC timers and the PIT follow. */
uint64_t emu_clock_ns(struct accel *a);

/* thread=single (emu_sched.c). */
void emu_sched_init(struct accel *a);
void emu_sched_destroy(struct accel *a);
/* The virtual clock; self is the calling thread's vCPU (or NULL), whose slice may be running. */
uint64_t emu_sched_now(struct accel *a, const struct vcpu *self);
/* Wait for this vCPU's turn: true when its slice may begin, false if it was kicked first. */
bool emu_sched_begin(struct vcpu *v);
/* How many instructions the slice may run: up to the next timer deadline. */
uint64_t emu_sched_budget(struct vcpu *v);
/* End the slice: idle if it has nothing to run until woken. */
void emu_sched_end(struct vcpu *v, bool idle, bool wakes_on_timer);
/* Kicks and wake-ups: make waiting vCPU threads look again. */
void emu_sched_poke(struct accel *a);
/* The event-loop gate (accel_ops.host_events). */
void emu_sched_host_events(struct accel *a, bool enter);
