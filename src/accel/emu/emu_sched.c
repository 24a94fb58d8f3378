/* -accel emu,thread=single: vCPUs take turns in slices on a virtual clock, and host events
 * (I/O completions, input) reach devices only between slices, so that a run repeats exactly.
 *
 * One baton: the vCPU that holds it (owner) runs a slice of at most EMU_SLICE instructions, up
 * to the next timer deadline; the clock advances 2^shift ns per instruction it retires. At the
 * end of a slice the baton is free: the event loop may run its pending callbacks, device
 * requests still in flight are waited for, and then a pass fires due timers and picks the next
 * vCPU round robin. When no vCPU has anything to run, the clock jumps to the next deadline (or,
 * with sleep=on, gets there in host time unless an event comes first). */
#include <time.h>

#include "accel/emu/emu_accel.h"
#include "base/util.h"
#include "machine/machine.h"

#define EMU_SLICE 20000 /* instructions: bounds how late another vCPU's interrupt is taken */

void emu_sched_init(struct accel *a)
{
    struct emu_sched *s = &a->sched;
    a->m->timers_by_accel = true;
    pthread_mutex_init(&s->lock, NULL);
    emu_cond_init(&s->cond);
    s->owner = -1;
    s->turn = -1;
    s->last = a->ncpus - 1; /* so the first pass starts with vCPU 0 */
    s->next_deadline = IRQCHIP_NEVER;
}

void emu_sched_destroy(struct accel *a)
{
    a->m->timers_by_accel = false;
    pthread_cond_destroy(&a->sched.cond);
    pthread_mutex_destroy(&a->sched.lock);
}

/* The virtual time now: the running slice's progress counts only on the running vCPU's own
 * thread (the only one that may read its instruction count). */
uint64_t emu_sched_now(struct accel *a, const struct vcpu *self)
{
    uint64_t t = __atomic_load_n(&a->sched.vclock, __ATOMIC_RELAXED);
    if (self && __atomic_load_n(&a->running, __ATOMIC_RELAXED) == self)
        t += (self->cpu.insns - a->sched.slice_start) << a->shift;
    return t;
}

static bool emu_sched_io_busy(struct accel *a)
{
    return __atomic_load_n(&a->m->io_inflight, __ATOMIC_SEQ_CST) != 0;
}

/* With the lock held, the baton free and no host event pending: fire due timers and choose
 * the next vCPU (sets turn). Otherwise every vCPU is idle: returns how many host ns to wait
 * for an event (sleep=on), or 0 to wait for one without limit. */
static uint64_t emu_sched_pass(struct accel *a)
{
    struct emu_sched *s = &a->sched;
    for (;;) {
        if (s->idling) { /* sleep=on: the idle time that passed, up to the deadline */
            uint64_t t = s->idle_virtual + (emu_host_ns() - s->idle_host);
            if (t > s->idle_deadline)
                t = s->idle_deadline;
            if (t > s->vclock)
                __atomic_store_n(&s->vclock, t, __ATOMIC_RELAXED);
            s->idling = false;
        }
        uint64_t first = IRQCHIP_NEVER;
        for (unsigned k = 1; k <= a->ncpus; k++) {
            unsigned j = (s->last + k) % a->ncpus;
            struct vcpu *v = a->vcpus[j];
            if (!v)
                continue;
            uint64_t d = irqchip_poll(&a->ic, j); /* fires due timers: may wake vCPUs */
            if ((!v->idle || v->wakes_on_timer) && d < first)
                first = d;
        }
        /* Device timers (the RTC) fire at the start of the next slice, whoever runs it. */
        uint64_t in = machine_timers_due_in(a->m);
        uint64_t dev = in == UINT64_MAX ? IRQCHIP_NEVER : s->vclock + in;
        if (dev < first)
            first = dev;
        s->next_deadline = first;
        for (unsigned k = 1; k <= a->ncpus; k++) {
            unsigned j = (s->last + k) % a->ncpus;
            struct vcpu *v = a->vcpus[j];
            if (v && (!v->idle || __atomic_load_n(&v->woken, __ATOMIC_SEQ_CST) ||
                      dev <= s->vclock)) {
                s->turn = (int)j;
                return 0;
            }
        }
        if (first == IRQCHIP_NEVER)
            return 0; /* nothing will happen until something from outside */
        if (!a->sleep) {
            __atomic_store_n(&s->vclock, first, __ATOMIC_RELAXED); /* skip the idle time */
            continue;
        }
        s->idling = true;
        s->idle_host = emu_host_ns();
        s->idle_virtual = s->vclock;
        s->idle_deadline = first;
        return first - s->vclock;
    }
}

static void emu_sched_wait(struct emu_sched *s, uint64_t ns)
{
    if (!ns) {
        pthread_cond_wait(&s->cond, &s->lock);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t n = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(n / 1000000000ull);
    ts.tv_nsec = (long)(n % 1000000000ull);
    pthread_cond_timedwait(&s->cond, &s->lock, &ts);
}

bool emu_sched_begin(struct vcpu *v)
{
    struct accel *a = v->a;
    struct emu_sched *s = &a->sched;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (__atomic_load_n(&v->kicked, __ATOMIC_SEQ_CST)) {
            pthread_mutex_unlock(&s->lock);
            return false;
        }
        /* The end of a slice: host events first, then device requests must have completed. */
        bool between = s->owner < 0 && !s->host_in && !s->host_waiting && !emu_sched_io_busy(a);
        if (between && s->turn == (int)v->index) {
            s->owner = (int)v->index;
            s->turn = -1;
            s->slice_start = v->cpu.insns;
            __atomic_store_n(&v->woken, false, __ATOMIC_SEQ_CST);
            __atomic_store_n(&a->running, v, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&s->lock);
            return true;
        }
        if (between && s->turn < 0) {
            /* Any waiting vCPU thread may make the pass: the result is the same. */
            uint64_t wait = emu_sched_pass(a);
            if (s->turn >= 0) {
                pthread_cond_broadcast(&s->cond);
                continue;
            }
            emu_sched_wait(s, wait);
            continue;
        }
        pthread_cond_wait(&s->cond, &s->lock);
    }
}

uint64_t emu_sched_budget(struct vcpu *v)
{
    struct accel *a = v->a;
    uint64_t d = a->sched.next_deadline, now = a->sched.vclock;
    if (d == IRQCHIP_NEVER)
        return EMU_SLICE;
    uint64_t left = d > now ? (d - now) >> a->shift : 0;
    return left < 1 ? 1 : left < EMU_SLICE ? left : EMU_SLICE;
}

void emu_sched_end(struct vcpu *v, bool idle, bool wakes_on_timer)
{
    struct accel *a = v->a;
    struct emu_sched *s = &a->sched;
    pthread_mutex_lock(&s->lock);
    __atomic_store_n(&s->vclock, emu_sched_now(a, v), __ATOMIC_RELAXED);
    __atomic_store_n(&a->running, NULL, __ATOMIC_RELAXED);
    v->idle = idle;
    v->wakes_on_timer = wakes_on_timer;
    s->last = v->index;
    s->owner = -1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void emu_sched_poke(struct accel *a)
{
    pthread_mutex_lock(&a->sched.lock);
    pthread_cond_broadcast(&a->sched.cond);
    pthread_mutex_unlock(&a->sched.lock);
}

/* The event loop waits for the end of the running slice. A kicked owner may be on its way out
 * (the VM is stopping, and its thread may never run another slice): then it goes in anyway. */
void emu_sched_host_events(struct accel *a, bool enter)
{
    struct emu_sched *s = &a->sched;
    pthread_mutex_lock(&s->lock);
    if (enter) {
        s->host_waiting++;
        while (s->host_in ||
               (s->owner >= 0 && !__atomic_load_n(&a->vcpus[s->owner]->kicked, __ATOMIC_SEQ_CST)))
            pthread_cond_wait(&s->cond, &s->lock);
        s->host_waiting--;
        s->host_in = true;
    } else {
        s->host_in = false;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}
