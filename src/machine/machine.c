/* The machine object: buses, lock, and the requests devices make of the VM (reset, power-off). */
#include "machine/machine.h"
#include "base/evloop.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void machine_init(struct machine *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    bus_init(&m->pio, "pio");
    bus_init(&m->mmio, "mmio");
    m->mem.fd = -1;
}

void machine_destroy(struct machine *m)
{
    bus_destroy(&m->pio);
    bus_destroy(&m->mmio);
    free(m->reset_handlers);
    m->reset_handlers = NULL;
    m->nreset_handlers = 0;
    pthread_mutex_destroy(&m->lock);
}

void machine_request(struct machine *m, enum machine_request req)
{
    if (m->on_request)
        m->on_request(m, req);
}

void machine_add_reset_handler(struct machine *m, void (*fn)(void *), void *opaque)
{
    m->reset_handlers =
        xrealloc(m->reset_handlers, sizeof(*m->reset_handlers) * (m->nreset_handlers + 1));
    m->reset_handlers[m->nreset_handlers++] = (struct machine_reset_handler){fn, opaque};
}

void machine_reset_devices(struct machine *m)
{
    for (unsigned i = 0; i < m->nreset_handlers; i++)
        m->reset_handlers[i].fn(m->reset_handlers[i].opaque);
}

int machine_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd,
                      bool assign)
{
    return m->ioeventfd ? m->ioeventfd(m, addr, len, pio, fd, assign) : -ENOTSUP;
}

int machine_irqfd(struct machine *m, int fd, uint64_t msi_addr, uint32_t msi_data, bool assign)
{
    return m->irqfd ? m->irqfd(m, fd, msi_addr, msi_data, assign) : -ENOTSUP;
}

uint64_t machine_clock_ns(struct machine *m)
{
    return m->clock_ns ? m->clock_ns(m) : clock_monotonic_ns();
}

struct machine_timer {
    struct machine *m;
    void (*cb)(void *opaque);
    void *opaque;
    struct evtimer *host; /* when the event loop fires it */
    uint64_t deadline;    /* machine clock ns; UINT64_MAX: disarmed */
    uint64_t period;
    struct machine_timer *next;
};

/* The deadline after t fired at now: one period on, or from now if the clock skipped past
 * several periods (they are not fired late one by one); none for a one-shot timer. */
static void machine_timer_fired(struct machine_timer *t, uint64_t now)
{
    if (!t->period)
        t->deadline = UINT64_MAX;
    else
        t->deadline = t->deadline + t->period > now ? t->deadline + t->period : now + t->period;
}

static void machine_timer_host_fire(void *opaque)
{
    struct machine_timer *t = opaque;
    if (t->m->timers_by_accel) { /* armed before the accelerator took timers over */
        evtimer_arm(t->host, 0, 0);
        return;
    }
    machine_timer_fired(t, machine_clock_ns(t->m));
    t->cb(t->opaque);
}

struct machine_timer *machine_timer_new(struct machine *m, void (*cb)(void *opaque), void *opaque)
{
    struct machine_timer *t = xzalloc(sizeof(*t));
    *t = (struct machine_timer){m, cb, opaque, NULL, UINT64_MAX, 0, m->timers};
    if (m->ev)
        t->host = evtimer_new(m->ev, machine_timer_host_fire, t);
    m->timers = t;
    return t;
}

void machine_timer_arm(struct machine_timer *t, uint64_t ns_from_now, uint64_t period_ns)
{
    t->deadline = ns_from_now ? machine_clock_ns(t->m) + ns_from_now : UINT64_MAX;
    t->period = period_ns;
    if (t->host)
        evtimer_arm(t->host, t->m->timers_by_accel ? 0 : ns_from_now, period_ns);
}

void machine_timer_free(struct machine_timer *t)
{
    for (struct machine_timer **pp = &t->m->timers; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    if (t->host)
        evtimer_free(t->host);
    free(t);
}

uint64_t machine_timers_due_in(struct machine *m)
{
    uint64_t first = UINT64_MAX;
    for (struct machine_timer *t = m->timers; t; t = t->next)
        if (t->deadline < first)
            first = t->deadline;
    if (first == UINT64_MAX)
        return UINT64_MAX;
    uint64_t now = machine_clock_ns(m);
    return first > now ? first - now : 0;
}

void machine_timers_run(struct machine *m)
{
    pthread_mutex_lock(&m->lock);
    uint64_t now = machine_clock_ns(m);
    /* One due timer per round: a callback may arm or free any timer. */
    for (bool fired = true; fired;) {
        fired = false;
        for (struct machine_timer *t = m->timers; t; t = t->next)
            if (t->deadline <= now) {
                machine_timer_fired(t, now);
                t->cb(t->opaque);
                fired = true;
                break;
            }
    }
    pthread_mutex_unlock(&m->lock);
}
