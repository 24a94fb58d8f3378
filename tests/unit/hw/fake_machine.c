/* Test double for machine.c, bus.c and the event loop's timers, so device tests stand alone. */
#include "fake_machine.h"

#include "base/evloop.h"
#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fake_irq_state fake_irq;
enum machine_request fake_last_request;
unsigned fake_request_count;
uint64_t fake_mono_ns = 1000000000ULL;

static void fake_set_level(void *opaque, unsigned gsi, bool level)
{
    if (gsi >= FAKE_IRQS)
        return;
    fake_irq.calls[gsi]++;
    if (level && !fake_irq.level[gsi])
        fake_irq.rises[gsi]++;
    fake_irq.level[gsi] = level;
}

static void fake_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
}

static const struct irq_ops fake_irq_ops = {.set_level = fake_set_level,
                                            .send_msi = fake_send_msi};

static struct evloop *fake_ev = (struct evloop *)&fake_ev; /* any non-NULL token */

#define FAKE_MAX_TIMERS 16
static struct evtimer *fake_timers[FAKE_MAX_TIMERS];
static unsigned fake_ntimers;

void fake_machine_reset_records(void)
{
    memset(&fake_irq, 0, sizeof(fake_irq));
    fake_last_request = MACHINE_REQ_NONE;
    fake_request_count = 0;
}

void fake_machine_init(struct machine *m, bool with_ev)
{
    memset(m, 0, sizeof(*m));
    bus_init(&m->pio, "pio");
    bus_init(&m->mmio, "mmio");
    m->irq.ops = &fake_irq_ops;
    m->ev = with_ev ? fake_ev : NULL;
    fake_machine_reset_records();
    /* Devices of an earlier test are abandoned with their timers: forget those timers so they
     * cannot fire into this test. */
    fake_ntimers = 0;
}

void machine_request(struct machine *m, enum machine_request req)
{
    fake_last_request = req;
    fake_request_count++;
}

void machine_add_reset_handler(struct machine *m, void (*fn)(void *), void *opaque)
{
    m->reset_handlers =
        xrealloc(m->reset_handlers, (m->nreset_handlers + 1) * sizeof(*m->reset_handlers));
    m->reset_handlers[m->nreset_handlers++] = (struct machine_reset_handler){fn, opaque};
}

void machine_reset_devices(struct machine *m)
{
    for (unsigned i = 0; i < m->nreset_handlers; i++)
        m->reset_handlers[i].fn(m->reset_handlers[i].opaque);
}

/* ---- bus: exact containment, as bus.h promises ---- */

void bus_init(struct bus *b, const char *name)
{
    /* An assignment, not memset: gcc 12 with ASan misjudges the object size here. */
    *b = (struct bus){.name = name};
}

void bus_destroy(struct bus *b)
{
    free(b->ranges);
    *b = (struct bus){0};
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
                 void *opaque, const char *name)
{
    if (!len || base + len < base)
        return -EINVAL;
    for (unsigned i = 0; i < b->count; i++)
        if (base < b->ranges[i].base + b->ranges[i].len && b->ranges[i].base < base + len)
            return -EEXIST;
    b->ranges = xrealloc(b->ranges, (b->count + 1) * sizeof(*b->ranges));
    b->ranges[b->count++] = (struct bus_range){base, len, ops, opaque, name};
    return 0;
}

int bus_unregister(struct bus *b, uint64_t base, void *opaque)
{
    for (unsigned i = 0; i < b->count; i++) {
        if (b->ranges[i].base == base && b->ranges[i].opaque == opaque) {
            b->ranges[i] = b->ranges[--b->count];
            return 0;
        }
    }
    return -ENOENT;
}

const struct bus_range *bus_find(const struct bus *b, uint64_t addr)
{
    for (unsigned i = 0; i < b->count; i++)
        if (addr >= b->ranges[i].base && addr - b->ranges[i].base < b->ranges[i].len)
            return &b->ranges[i];
    return NULL;
}

bool bus_read(struct bus *b, uint64_t addr, unsigned size, uint64_t *value)
{
    const struct bus_range *r = bus_find(b, addr);
    if (!r || addr + size > r->base + r->len) {
        *value = ~0ULL;
        return false;
    }
    *value = r->ops->read(r->opaque, addr - r->base, size);
    return true;
}

bool bus_write(struct bus *b, uint64_t addr, unsigned size, uint64_t value)
{
    const struct bus_range *r = bus_find(b, addr);
    if (!r || addr + size > r->base + r->len)
        return false;
    r->ops->write(r->opaque, addr - r->base, value, size);
    return true;
}

uint32_t pio_in(struct machine *m, uint16_t port, unsigned size)
{
    uint64_t v;
    bus_read(&m->pio, port, size, &v);
    return size == 4 ? (uint32_t)v : (uint32_t)(v & ((1u << (8 * size)) - 1));
}

void pio_out(struct machine *m, uint16_t port, unsigned size, uint32_t v)
{
    bus_write(&m->pio, port, size, v);
}

uint8_t pio_in8(struct machine *m, uint16_t port)
{
    return pio_in(m, port, 1);
}

void pio_out8(struct machine *m, uint16_t port, uint8_t v)
{
    pio_out(m, port, 1, v);
}

/* ---- clock and timers ---- */

struct evtimer {
    evtimer_cb cb;
    void *opaque;
    uint64_t deadline; /* 0 = disarmed */
    uint64_t period;
};

uint64_t clock_monotonic_ns(void)
{
    return fake_mono_ns;
}

uint64_t machine_clock_ns(struct machine *m)
{
    return fake_mono_ns;
}

/* Device timers on the fake clock, through the fake evtimers below. */
struct machine_timer *machine_timer_new(struct machine *m, void (*cb)(void *), void *opaque)
{
    return (struct machine_timer *)evtimer_new(m->ev, cb, opaque);
}

void machine_timer_arm(struct machine_timer *t, uint64_t ns_from_now, uint64_t period_ns)
{
    evtimer_arm((struct evtimer *)t, ns_from_now, period_ns);
}

void machine_timer_free(struct machine_timer *t)
{
    evtimer_free((struct evtimer *)t);
}

struct evtimer *evtimer_new(struct evloop *ev, evtimer_cb cb, void *opaque)
{
    if (fake_ntimers == FAKE_MAX_TIMERS)
        abort();
    struct evtimer *t = xzalloc(sizeof(*t));
    t->cb = cb;
    t->opaque = opaque;
    fake_timers[fake_ntimers++] = t;
    return t;
}

void evtimer_arm(struct evtimer *t, uint64_t ns_from_now, uint64_t period_ns)
{
    t->deadline = ns_from_now ? fake_mono_ns + ns_from_now : 0;
    t->period = period_ns;
}

void evtimer_free(struct evtimer *t)
{
    for (unsigned i = 0; i < fake_ntimers; i++) {
        if (fake_timers[i] == t) {
            fake_timers[i] = fake_timers[--fake_ntimers];
            break;
        }
    }
    free(t);
}

unsigned fake_timers_armed(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < fake_ntimers; i++)
        n += fake_timers[i]->deadline != 0;
    return n;
}

void fake_advance(uint64_t ns)
{
    uint64_t end = fake_mono_ns + ns;
    for (;;) {
        struct evtimer *next = NULL;
        for (unsigned i = 0; i < fake_ntimers; i++) {
            struct evtimer *t = fake_timers[i];
            if (t->deadline && t->deadline <= end && (!next || t->deadline < next->deadline))
                next = t;
        }
        if (!next)
            break;
        fake_mono_ns = next->deadline;
        next->deadline = next->period ? next->deadline + next->period : 0;
        next->cb(next->opaque);
    }
    fake_mono_ns = end;
}
