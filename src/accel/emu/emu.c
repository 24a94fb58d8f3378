/* The -accel emu backend: the accelerator vtable over the software CPU, with the user-space
 * interrupt controllers and PIT (src/hw/irqchip.h) and a virtual clock. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include "accel/accel.h"
#include "accel/emu/emu_accel.h"
#include "accel/emu/emu_cpu.h"
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "hw/irqchip.h"
#include "machine/machine.h"
#include "machine/topology.h"

#define EMU_SLICE_MULTI 20000 /* thread=multi: instructions between looks at kicks and timers */
#define EMU_STACK (1u << 20)

/* The vCPU whose vcpu_run this thread is in: only it may read its own instruction count. */
static __thread struct vcpu *emu_self;

uint64_t emu_host_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void emu_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

uint64_t emu_clock_ns(struct accel *a)
{
    if (a->multi_thread)
        return emu_host_ns() - a->clock_base;
    return emu_sched_now(a, emu_self);
}

static uint64_t emu_now(void *opaque)
{
    return emu_clock_ns(opaque);
}

static void emu_wake(void *opaque, unsigned cpu)
{
    struct accel *a = opaque;
    if (cpu >= a->ncpus || !a->vcpus[cpu])
        return;
    struct vcpu *v = a->vcpus[cpu];
    v->cpu.intr_line = true; /* re-evaluated by the vCPU before it sleeps or runs a slice */
    __atomic_store_n(&v->woken, true, __ATOMIC_SEQ_CST);
    if (!a->multi_thread)
        return; /* thread=single: the end of the slice or of the host events looks at it */
    pthread_mutex_lock(&v->lock);
    v->event = true;
    pthread_cond_signal(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

static void emu_nmi(void *opaque, unsigned cpu)
{
    struct accel *a = opaque;
    if (cpu < a->ncpus && a->vcpus[cpu])
        a->vcpus[cpu]->cpu.nmi_line = true; /* the core takes it at its next instruction boundary */
}

static const struct irqchip_ops emu_irqchip_ops = {emu_now, emu_wake, emu_nmi};

/* --- The CPU coroutine: the core runs on its own stack so that an I/O access in the middle of
 * an instruction can return to vcpu_run as an exit and resume with the data later. --- */

static void emu_yield(struct vcpu *v)
{
    swapcontext(&v->cpu_uc, &v->host_uc);
}

static void emu_exit_io(struct vcpu *v, uint16_t port, unsigned size, bool is_write)
{
    struct vcpu_exit *e = v->exit;
    e->reason = VCPU_EXIT_IO;
    e->io.port = port;
    e->io.size = (uint8_t)size;
    e->io.is_write = is_write;
    e->io.count = 1;
    e->io.data = v->data;
    emu_yield(v);
}

static void emu_exit_mmio(struct vcpu *v, uint64_t gpa, unsigned size, bool is_write)
{
    struct vcpu_exit *e = v->exit;
    e->reason = VCPU_EXIT_MMIO;
    e->mmio.addr = gpa;
    e->mmio.len = (uint8_t)size;
    e->mmio.is_write = is_write;
    e->mmio.data = v->data;
    emu_yield(v);
}

static uint64_t emu_mmio_read(void *opaque, uint64_t gpa, unsigned size)
{
    struct vcpu *v = opaque;
    uint64_t val = 0;
    if (irqchip_mmio(&v->a->ic, v->index, v->cpu.apic_base, gpa, size, false, &val))
        return val;
    memset(v->data, 0, sizeof(v->data));
    emu_exit_mmio(v, gpa, size, false);
    memcpy(&val, v->data, size <= 8 ? size : 8);
    return val;
}

static void emu_mmio_write(void *opaque, uint64_t gpa, uint64_t val, unsigned size)
{
    struct vcpu *v = opaque;
    if (irqchip_mmio(&v->a->ic, v->index, v->cpu.apic_base, gpa, size, true, &val))
        return;
    memcpy(v->data, &val, sizeof(val));
    emu_exit_mmio(v, gpa, size, true);
}

static uint32_t emu_pio_read(void *opaque, uint16_t port, unsigned size)
{
    struct vcpu *v = opaque;
    uint32_t val = 0;
    if (irqchip_pio(&v->a->ic, port, size, false, &val))
        return val;
    memset(v->data, 0, sizeof(v->data));
    emu_exit_io(v, port, size, false);
    memcpy(&val, v->data, size <= 4 ? size : 4);
    return val;
}

static void emu_pio_write(void *opaque, uint16_t port, uint32_t val, unsigned size)
{
    struct vcpu *v = opaque;
    if (irqchip_pio(&v->a->ic, port, size, true, &val))
        return;
    memcpy(v->data, &val, sizeof(val));
    emu_exit_io(v, port, size, true);
}

static int emu_intr_ack(void *opaque)
{
    struct vcpu *v = opaque;
    int vec = irqchip_ack(&v->a->ic, v->index);
    v->cpu.intr_line = irqchip_pending(&v->a->ic, v->index);
    return vec;
}

static uint64_t emu_vcpu_clock(void *opaque)
{
    struct vcpu *v = opaque;
    return emu_clock_ns(v->a);
}

/* The local APIC's MSRs (x2APIC, TSC deadline) and NMIs. The irqchip works in clock ns and the
 * TSC deadline comes in TSC units: rdtsc is the clock plus tsc_offset (1 GHz). */
static int emu_msr_read(void *opaque, uint32_t msr, uint64_t *val)
{
    struct vcpu *v = opaque;
    return irqchip_msr_read(&v->a->ic, v->index, msr, val, v->cpu.tsc_offset);
}

static int emu_msr_write(void *opaque, uint32_t msr, uint64_t val)
{
    struct vcpu *v = opaque;
    if (msr == 0x1b) { /* IA32_APIC_BASE, as the core accepted it: xAPIC or x2APIC mode */
        irqchip_set_apic_base(&v->a->ic, v->index, val);
        return 0;
    }
    return irqchip_msr_write(&v->a->ic, v->index, msr, val, v->cpu.tsc_offset);
}

static bool emu_nmi_ack(void *opaque)
{
    struct vcpu *v = opaque;
    v->cpu.nmi_line = false; /* before the ack: an NMI arriving in between sets it again */
    return irqchip_nmi_ack(&v->a->ic, v->index);
}

static const struct emu_io_ops emu_vcpu_io = {emu_mmio_read, emu_mmio_write, emu_pio_read,
                                              emu_pio_write, emu_intr_ack, emu_vcpu_clock,
                                              emu_msr_read, emu_msr_write, emu_nmi_ack};

static void emu_exit_simple(struct vcpu *v, enum vcpu_exit_reason reason)
{
    v->exit->reason = reason;
    emu_yield(v);
}

/* thread=multi: sleep until an event for this vCPU, a kick, or the deadline (host ns). */
static void emu_sleep(struct vcpu *v, uint64_t deadline)
{
    struct accel *a = v->a;
    pthread_mutex_lock(&v->lock);
    while (!v->event && !__atomic_load_n(&v->kicked, __ATOMIC_SEQ_CST)) {
        uint64_t now = emu_clock_ns(a);
        if (deadline != IRQCHIP_NEVER && now >= deadline)
            break;
        uint64_t wait = deadline == IRQCHIP_NEVER ? 1000000000ull : deadline - now;
        if (wait > 1000000000ull)
            wait = 1000000000ull;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + wait;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&v->cond, &v->lock, &ts);
    }
    v->event = false;
    pthread_mutex_unlock(&v->lock);
}

static void emu_start_ap(struct vcpu *v, int vector)
{
    struct emu_cpu *c = &v->cpu;
    /* Real mode at vector:0000, as a SIPI starts an AP. */
    c->seg[EMU_CS].sel = (uint16_t)(vector << 8);
    c->seg[EMU_CS].base = (uint64_t)vector << 12;
    c->rip = 0;
    c->halted = false;
}

/* INIT and SIPI: returns whether the vCPU must (still) wait for a SIPI. */
static bool emu_startup(struct vcpu *v)
{
    bool init;
    int sipi;
    bool wait = irqchip_startup(&v->a->ic, v->index, &init, &sipi);
    if (init) {
        uint64_t tsc_offset = v->cpu.tsc_offset; /* INIT leaves the TSC running */
        emu_cpu_reset(&v->cpu);
        v->cpu.tsc_offset = tsc_offset;
        v->cpu.apic_base = 0xfee00800 | (v->index == 0 ? 0x100 : 0);
    }
    if (sipi >= 0)
        emu_start_ap(v, sipi);
    return wait;
}

/* Whether a halted vCPU has something to take: an interrupt it allows, or an NMI. */
static bool emu_hlt_wakes(struct vcpu *v)
{
    bool intr = (v->cpu.flags & EMU_FLAG_IF) && irqchip_pending(&v->a->ic, v->index);
    return intr || (irqchip_nmi_pending(&v->a->ic, v->index) && !v->cpu.nmi_blocked);
}

/* A stop that leaves the slice: the exit, after the baton is free for the others. */
static bool emu_stop_exits(struct vcpu *v, enum emu_stop s)
{
    if (s == EMU_STOP_SHUTDOWN) {
        if (!v->a->multi_thread)
            emu_sched_end(v, true, false);
        emu_exit_simple(v, VCPU_EXIT_SHUTDOWN);
        return true;
    }
    if (s == EMU_STOP_INTERNAL) {
        if (!v->a->multi_thread)
            emu_sched_end(v, true, false);
        snprintf(v->msg, sizeof(v->msg), "%s", v->cpu.internal_msg ? v->cpu.internal_msg
                                                                    : "unknown");
        v->exit->internal.code = 1;
        emu_exit_simple(v, VCPU_EXIT_INTERNAL_ERROR);
        return true;
    }
    return false;
}

/* thread=single: one slice in this vCPU's turn (emu_sched.c). */
static void emu_step_single(struct vcpu *v)
{
    struct accel *a = v->a;
    if (!emu_sched_begin(v)) {
        __atomic_store_n(&v->kicked, false, __ATOMIC_SEQ_CST);
        emu_exit_simple(v, VCPU_EXIT_INTR);
        return;
    }
    if (machine_timers_due_in(a->m) == 0)
        machine_timers_run(a->m);
    if (emu_startup(v)) { /* waiting for a SIPI */
        emu_sched_end(v, true, false);
        return;
    }
    v->cpu.intr_line = irqchip_pending(&a->ic, v->index);
    v->cpu.nmi_line = irqchip_nmi_pending(&a->ic, v->index);
    enum emu_stop s = emu_run(&v->cpu, emu_sched_budget(v));
    if (emu_stop_exits(v, s))
        return;
    bool idle = false, wakes_on_timer = false;
    if (s == EMU_STOP_HLT) {
        __atomic_store_n(&v->woken, false, __ATOMIC_SEQ_CST);
        /* With IF clear only an NMI wakes it, which the PIT raises through an NMI-mode LINT0. */
        wakes_on_timer = (v->cpu.flags & EMU_FLAG_IF) || irqchip_lint0_nmi(&a->ic, v->index);
        idle = !emu_hlt_wakes(v);
    }
    emu_sched_end(v, idle, wakes_on_timer);
}

/* thread=multi: this vCPU runs on its own, on host time. */
static void emu_step_multi(struct vcpu *v)
{
    struct accel *a = v->a;
    if (__atomic_exchange_n(&v->kicked, false, __ATOMIC_SEQ_CST)) {
        emu_exit_simple(v, VCPU_EXIT_INTR);
        return;
    }
    if (emu_startup(v)) {
        /* Clear the event first: a SIPI arriving after the re-check still wakes us. */
        pthread_mutex_lock(&v->lock);
        v->event = false;
        pthread_mutex_unlock(&v->lock);
        if (emu_startup(v))
            emu_sleep(v, IRQCHIP_NEVER);
        return;
    }
    irqchip_poll(&a->ic, v->index);
    v->cpu.intr_line = irqchip_pending(&a->ic, v->index);
    v->cpu.nmi_line = irqchip_nmi_pending(&a->ic, v->index);
    enum emu_stop s = emu_run(&v->cpu, EMU_SLICE_MULTI);
    if (emu_stop_exits(v, s) || s != EMU_STOP_HLT)
        return;
    pthread_mutex_lock(&v->lock);
    v->event = false;
    pthread_mutex_unlock(&v->lock);
    uint64_t next = irqchip_poll(&a->ic, v->index);
    if (!emu_hlt_wakes(v))
        emu_sleep(v, next); /* even with IF clear: a timer may raise an NMI (LINT0) */
}

static void emu_vcpu_loop(struct vcpu *v)
{
    for (;;) {
        if (v->a->multi_thread)
            emu_step_multi(v);
        else
            emu_step_single(v);
    }
}

static void emu_vcpu_entry(unsigned lo, unsigned hi)
{
    struct vcpu *v = (struct vcpu *)(((uintptr_t)hi << 32) | lo);
    emu_vcpu_loop(v);
}

/* --- The vtable --- */

static int emu_probe(char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    return 0;
}

static int emu_vm_create(struct machine *m, const struct accel_config *cfg, struct accel **out)
{
    if (cfg->ncpus == 0 || cfg->ncpus > IRQCHIP_MAX_CPUS) {
        log_error("-smp %u: -accel emu supports 1 to %u vCPUs", cfg->ncpus, IRQCHIP_MAX_CPUS);
        return -EINVAL;
    }
    struct accel *a = xzalloc(sizeof(*a));
    a->m = m;
    a->ncpus = cfg->ncpus;
    a->vcpus = xzalloc(sizeof(*a->vcpus) * cfg->ncpus);
    a->topo = (struct cpu_topology){cfg->sockets, cfg->dies, cfg->cores, cfg->threads};
    for (unsigned i = 0; i < cfg->ncpus; i++)
        a->apic_ids[i] = topology_apic_id(&a->topo, i);
    a->clock_base = emu_host_ns();
    a->multi_thread = cfg->multi_thread;
    a->shift = cfg->icount_shift;
    a->sleep = cfg->icount_sleep;
    if (!a->multi_thread)
        emu_sched_init(a);
    pthread_mutex_init(&a->shared.lock, NULL);
    int r = irqchip_init(&a->ic, a->ncpus, a->apic_ids, &emu_irqchip_ops, a);
    if (r < 0) {
        if (!a->multi_thread)
            emu_sched_destroy(a);
        pthread_mutex_destroy(&a->shared.lock);
        free(a->vcpus);
        free(a);
        return r;
    }
    *out = a;
    return 0;
}

static void emu_vm_destroy(struct accel *a)
{
    irqchip_destroy(&a->ic);
    for (unsigned i = 0; i < a->nram; i++)
        free(a->ram[i].code_bits);
    pthread_mutex_destroy(&a->shared.lock);
    if (!a->multi_thread)
        emu_sched_destroy(a);
    free(a->vcpus);
    free(a);
}

static int emu_map_memory(struct accel *a, unsigned slot, uint64_t gpa, uint64_t size, void *host)
{
    (void)slot;
    if (a->nram >= 8)
        return -ENOSPC;
    a->ram[a->nram].gpa = gpa;
    a->ram[a->nram].size = size;
    a->ram[a->nram].host = host;
    /* One bit per 4 KiB page, sized as emu_cpu_add_ram sizes its own. */
    a->ram[a->nram].code_bits = calloc((size + 4095) / 4096 / 8 + 1, 1);
    if (!a->ram[a->nram].code_bits)
        return -ENOMEM;
    a->nram++;
    return 0;
}

/* The shared bitmaps belong to the accel, not to the CPU that emu_cpu_destroy frees. */
static void emu_vcpu_unshare(struct vcpu *v)
{
    for (unsigned j = 0; j < v->cpu.nram; j++)
        for (unsigned i = 0; i < v->a->nram; i++)
            if (v->cpu.ram[j].code_bits == v->a->ram[i].code_bits)
                v->cpu.ram[j].code_bits = NULL;
}

static int emu_vcpu_create(struct accel *a, unsigned index, struct vcpu **out)
{
    if (index >= a->ncpus)
        return -EINVAL;
    struct vcpu *v = xzalloc(sizeof(*v));
    v->a = a;
    v->index = index;
    emu_cpu_init(&v->cpu);
    v->cpu.apic_id = a->apic_ids[index];
    /* CPUID's topology, as kvm_cpuid.c reports it: leaf 0xB's core level spans the package. */
    const struct cpu_topology *t = &a->topo;
    v->cpu.topo_smt_shift = (uint8_t)topology_thread_bits(t);
    v->cpu.topo_pkg_shift = (uint8_t)(topology_thread_bits(t) + topology_core_bits(t) +
                                      topology_die_bits(t));
    v->cpu.topo_threads = (uint16_t)(t->threads ? t->threads : 1);
    unsigned pkg = t->threads * t->cores * t->dies;
    v->cpu.topo_pkg_cpus = (uint16_t)(pkg ? pkg : 1);
    v->cpu.apic_base = 0xfee00800 | (index == 0 ? 0x100 : 0);
    v->cpu.io = &emu_vcpu_io;
    /* The TSC counts the VM's clock from 0 at creation, on every vCPU alike (tsc_offset 0). */
    v->cpu.io_opaque = v;
    for (unsigned i = 0; i < a->nram; i++) {
        int r = emu_cpu_add_ram(&v->cpu, a->ram[i].gpa, a->ram[i].size, a->ram[i].host);
        if (r < 0) {
            emu_vcpu_unshare(v);
            emu_cpu_destroy(&v->cpu);
            free(v);
            return r;
        }
    }
    /* One code-page bitmap for all vCPUs, so a write by any of them sees code pages (the core
     * keeps its list sorted by address: match by address). */
    for (unsigned j = 0; j < v->cpu.nram; j++)
        for (unsigned i = 0; i < a->nram; i++)
            if (v->cpu.ram[j].gpa == a->ram[i].gpa) {
                free(v->cpu.ram[j].code_bits);
                v->cpu.ram[j].code_bits = a->ram[i].code_bits;
            }
    v->cpu.shared = &a->shared;
    v->stack = mmap(NULL, EMU_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v->stack == MAP_FAILED) {
        emu_cpu_destroy(&v->cpu);
        free(v);
        return -ENOMEM;
    }
    pthread_mutex_init(&v->lock, NULL);
    emu_cond_init(&v->cond);
    __atomic_store_n(&a->vcpus[index], v, __ATOMIC_SEQ_CST);
    *out = v;
    return 0;
}

static void emu_vcpu_destroy(struct vcpu *v)
{
    pthread_mutex_lock(&v->a->ic.lock); /* no wake-up may be using it */
    v->a->vcpus[v->index] = NULL;
    pthread_mutex_unlock(&v->a->ic.lock);
    emu_vcpu_unshare(v);
    emu_cpu_destroy(&v->cpu);
    munmap(v->stack, EMU_STACK);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

static int emu_vcpu_run(struct vcpu *v, struct vcpu_exit *exit)
{
    v->exit = exit;
    emu_self = v;
    if (!v->started) {
        if (getcontext(&v->cpu_uc) < 0)
            return -errno;
        v->cpu_uc.uc_stack.ss_sp = v->stack;
        v->cpu_uc.uc_stack.ss_size = EMU_STACK;
        v->cpu_uc.uc_link = NULL;
        uintptr_t p = (uintptr_t)v;
        makecontext(&v->cpu_uc, (void (*)(void))emu_vcpu_entry, 2, (unsigned)(p & 0xFFFFFFFFu),
                    (unsigned)(p >> 32));
        v->started = true;
    }
    /* Resumes the core where it left: an I/O read returns exit->*.data to the instruction. */
    if (swapcontext(&v->host_uc, &v->cpu_uc) < 0)
        return -errno;
    return 0;
}

static void emu_vcpu_kick(struct vcpu *v)
{
    __atomic_store_n(&v->kicked, true, __ATOMIC_SEQ_CST);
    if (!v->a->multi_thread) {
        emu_sched_poke(v->a);
        return;
    }
    pthread_mutex_lock(&v->lock);
    v->event = true;
    pthread_cond_signal(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

static int emu_get_regs(struct vcpu *v, struct vcpu_regs *r)
{
    const uint64_t *g = v->cpu.r;
    *r = (struct vcpu_regs){g[EMU_RAX], g[EMU_RBX], g[EMU_RCX], g[EMU_RDX], g[EMU_RSI], g[EMU_RDI],
                            g[EMU_RSP], g[EMU_RBP], g[8], g[9], g[10], g[11], g[12], g[13], g[14],
                            g[15], v->cpu.rip, emu_get_rflags(&v->cpu)};
    return 0;
}

static int emu_set_regs(struct vcpu *v, const struct vcpu_regs *r)
{
    uint64_t *g = v->cpu.r;
    g[EMU_RAX] = r->rax, g[EMU_RBX] = r->rbx, g[EMU_RCX] = r->rcx, g[EMU_RDX] = r->rdx;
    g[EMU_RSI] = r->rsi, g[EMU_RDI] = r->rdi, g[EMU_RSP] = r->rsp, g[EMU_RBP] = r->rbp;
    g[8] = r->r8, g[9] = r->r9, g[10] = r->r10, g[11] = r->r11;
    g[12] = r->r12, g[13] = r->r13, g[14] = r->r14, g[15] = r->r15;
    v->cpu.rip = r->rip;
    emu_set_rflags(&v->cpu, r->rflags);
    return 0;
}

static void seg_to_vcpu(const struct emu_seg *s, struct vcpu_segment *o)
{
    *o = (struct vcpu_segment){.base = s->base, .limit = s->limit, .selector = s->sel,
                               .type = s->type, .present = s->present, .dpl = s->dpl, .db = s->db,
                               .s = s->s, .l = s->l, .g = s->g, .unusable = !s->present};
}

static void seg_from_vcpu(const struct vcpu_segment *o, struct emu_seg *s)
{
    *s = (struct emu_seg){.base = o->base, .limit = o->limit, .sel = o->selector, .type = o->type,
                          .s = o->s, .dpl = o->dpl, .present = o->present && !o->unusable,
                          .db = o->db, .l = o->l, .g = o->g};
}

static int emu_get_sregs(struct vcpu *v, struct vcpu_sregs *s)
{
    struct emu_cpu *c = &v->cpu;
    seg_to_vcpu(&c->seg[EMU_CS], &s->cs);
    seg_to_vcpu(&c->seg[EMU_DS], &s->ds);
    seg_to_vcpu(&c->seg[EMU_ES], &s->es);
    seg_to_vcpu(&c->seg[EMU_FS], &s->fs);
    seg_to_vcpu(&c->seg[EMU_GS], &s->gs);
    seg_to_vcpu(&c->seg[EMU_SS], &s->ss);
    seg_to_vcpu(&c->tr, &s->tr);
    seg_to_vcpu(&c->ldt, &s->ldt);
    s->gdt = (struct vcpu_dtable){c->gdt.base, c->gdt.limit};
    s->idt = (struct vcpu_dtable){c->idt.base, c->idt.limit};
    s->cr0 = c->cr0, s->cr2 = c->cr2, s->cr3 = c->cr3, s->cr4 = c->cr4, s->cr8 = c->cr8;
    s->efer = c->efer;
    s->apic_base = c->apic_base;
    return 0;
}

static int emu_set_sregs(struct vcpu *v, const struct vcpu_sregs *s)
{
    struct emu_cpu *c = &v->cpu;
    seg_from_vcpu(&s->cs, &c->seg[EMU_CS]);
    seg_from_vcpu(&s->ds, &c->seg[EMU_DS]);
    seg_from_vcpu(&s->es, &c->seg[EMU_ES]);
    seg_from_vcpu(&s->fs, &c->seg[EMU_FS]);
    seg_from_vcpu(&s->gs, &c->seg[EMU_GS]);
    seg_from_vcpu(&s->ss, &c->seg[EMU_SS]);
    seg_from_vcpu(&s->tr, &c->tr);
    seg_from_vcpu(&s->ldt, &c->ldt);
    c->gdt = (struct emu_dtable){s->gdt.base, s->gdt.limit};
    c->idt = (struct emu_dtable){s->idt.base, s->idt.limit};
    c->cr0 = s->cr0, c->cr2 = s->cr2, c->cr3 = s->cr3, c->cr4 = s->cr4, c->cr8 = s->cr8;
    c->efer = s->efer;
    if (s->apic_base) {
        c->apic_base = s->apic_base;
        irqchip_set_apic_base(&v->a->ic, v->index, s->apic_base);
    }
    c->cpl = (c->cr0 & EMU_CR0_PE) ? c->seg[EMU_CS].dpl : 0;
    emu_tlb_flush(c, true);
    return 0;
}

static void emu_vcpu_dump(struct vcpu *v, FILE *out)
{
    struct emu_cpu *c = &v->cpu;
    fprintf(out, "emu vCPU %u: %s\n", v->index, v->msg[0] ? v->msg : "");
    fprintf(out, " rip %016llx rflags %08llx cpl %u cr0 %llx cr3 %llx cr4 %llx efer %llx\n",
            (unsigned long long)c->rip, (unsigned long long)emu_get_rflags(c), c->cpl,
            (unsigned long long)c->cr0, (unsigned long long)c->cr3, (unsigned long long)c->cr4,
            (unsigned long long)c->efer);
    static const char *const names[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                          "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
    for (unsigned i = 0; i < 16; i++)
        fprintf(out, " %-3s %016llx%s", names[i], (unsigned long long)c->r[i],
                i % 4 == 3 ? "\n" : "");
    fprintf(out, " cs %04x base %llx  insns %llu\n", c->seg[EMU_CS].sel,
            (unsigned long long)c->seg[EMU_CS].base, (unsigned long long)c->insns);
}

static void emu_set_irq(struct accel *a, unsigned gsi, bool level)
{
    irqchip_set_level(&a->ic, gsi, level);
}

static void emu_send_msi(struct accel *a, uint64_t addr, uint32_t data)
{
    irqchip_send_msi(&a->ic, addr, data);
}

static uint64_t emu_accel_clock_ns(struct accel *a)
{
    return emu_clock_ns(a);
}

static void emu_host_events(struct accel *a, bool enter)
{
    if (!a->multi_thread)
        emu_sched_host_events(a, enter);
}

/* A device wrote guest RAM (guest_mem_written): its code pages must not run stale. */
static void emu_mem_written(struct accel *a, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < a->nram; i++) {
        struct emu_ram r = {.gpa = a->ram[i].gpa, .size = a->ram[i].size,
                            .code_bits = a->ram[i].code_bits};
        emu_ram_written(&a->shared, &r, gpa, len);
    }
}

const struct accel_ops accel_emu_ops = {
    .name = "emu",
    .probe = emu_probe,
    .vm_create = emu_vm_create,
    .vm_destroy = emu_vm_destroy,
    .map_memory = emu_map_memory,
    .vcpu_create = emu_vcpu_create,
    .vcpu_destroy = emu_vcpu_destroy,
    .vcpu_run = emu_vcpu_run,
    .vcpu_kick = emu_vcpu_kick,
    .vcpu_get_regs = emu_get_regs,
    .vcpu_set_regs = emu_set_regs,
    .vcpu_get_sregs = emu_get_sregs,
    .vcpu_set_sregs = emu_set_sregs,
    .vcpu_dump = emu_vcpu_dump,
    .set_irq = emu_set_irq,
    .send_msi = emu_send_msi,
    .clock_ns = emu_accel_clock_ns,
    .host_events = emu_host_events,
    .mem_written = emu_mem_written,
};
