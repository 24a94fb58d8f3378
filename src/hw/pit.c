/* The 8254 PIT (ports 0x40-0x43) and port 0x61: channel 0 drives IRQ0 (IOAPIC pin 2 through the
 * MADT override, and PIC IRQ0), channel 2 the speaker gate that calibration loops poll. */
#include "hw/irqchip.h"
#include <string.h>

#define PIT_HZ 1193182ull
#define NS 1000000000ull

void pit_reset(struct pit *p)
{
    memset(p, 0, sizeof(*p));
    for (unsigned i = 0; i < 3; i++)
        p->ch[i].gate = i != 2;
    p->next_irq = IRQCHIP_NEVER;
}

static uint64_t pit_reload(const struct pit_channel *c)
{
    return c->reload ? c->reload : 0x10000;
}

static uint64_t pit_ticks(const struct pit_channel *c, uint64_t now)
{
    /* 128-bit: a periodic timer left alone for hours would overflow 64 bits. */
    return now > c->start ? (uint64_t)((unsigned __int128)(now - c->start) * PIT_HZ / NS) : 0;
}

static uint64_t pit_tick_time(const struct pit_channel *c, uint64_t ticks)
{
    /* ceil, so that at the returned time pit_ticks() has reached ticks */
    return c->start + (uint64_t)(((unsigned __int128)ticks * NS + PIT_HZ - 1) / PIT_HZ);
}

static bool pit_periodic(const struct pit_channel *c)
{
    return (c->mode & 3) == 2 || (c->mode & 3) == 3; /* modes 2, 3 (6, 7 alias them) */
}

static uint16_t pit_count(const struct pit_channel *c, uint64_t now)
{
    if (!c->armed)
        return c->reload;
    uint64_t t = pit_ticks(c, now), r = pit_reload(c);
    if (pit_periodic(c))
        return (uint16_t)(r - t % r);
    return (uint16_t)(t >= r ? (0x10000 - (t - r) % 0x10000) & 0xFFFF : r - t);
}

static bool pit_out(const struct pit_channel *c, uint64_t now)
{
    if (!c->armed)
        return (c->mode & 3) != 0;
    uint64_t t = pit_ticks(c, now), r = pit_reload(c);
    switch (c->mode) {
    case 0: return t >= r;
    case 2: case 6: return t % r != r - 1;
    case 3: case 7: return t % r < (r + 1) / 2;
    default: return t != r; /* 1, 4, 5: a one-tick low pulse */
    }
}

static void pit_update_next(struct irqchip *ic, uint64_t now)
{
    struct pit *p = &ic->pit;
    struct pit_channel *c = &p->ch[0];
    if (!c->armed) {
        p->next_irq = IRQCHIP_NEVER;
        return;
    }
    uint64_t t = pit_ticks(c, now), r = pit_reload(c);
    if (pit_periodic(c))
        p->next_irq = pit_tick_time(c, (t / r + 1) * r);
    else
        p->next_irq = c->out_fired ? IRQCHIP_NEVER : pit_tick_time(c, r);
}

uint64_t pit_poll(struct irqchip *ic, uint64_t now)
{
    struct pit *p = &ic->pit;
    if (p->next_irq == IRQCHIP_NEVER || now < p->next_irq)
        return p->next_irq;
    /* One edge for however many periods passed: a late timer does not storm the guest. */
    ioapic_set_pin(ic, 2, true);
    ioapic_set_pin(ic, 2, false);
    pic_set_irq(ic, 0, true);
    pic_set_irq(ic, 0, false);
    if (!pit_periodic(&p->ch[0]))
        p->ch[0].out_fired = true;
    pit_update_next(ic, now);
    return p->next_irq;
}

static void pit_load(struct irqchip *ic, unsigned n, uint64_t now)
{
    struct pit_channel *c = &ic->pit.ch[n];
    c->start = now;
    c->armed = c->gate || n != 2 ? true : false;
    c->out_fired = false;
    if (n == 0)
        pit_update_next(ic, now);
}

uint32_t pit_read(struct irqchip *ic, uint16_t port)
{
    struct pit *p = &ic->pit;
    uint64_t now = ic->ops->now(ic->opaque);
    if (port == 0x61) {
        struct pit_channel *c2 = &p->ch[2];
        bool out = c2->gate && pit_out(c2, now);
        /* Bit 4 toggles with DRAM refresh (every 15 us); some delay loops poll it. */
        bool refresh = (now / 15000) & 1;
        return (p->port61 & 0x0F) | (out << 5) | (refresh << 4);
    }
    if (port == 0x43)
        return 0xFF;
    struct pit_channel *c = &p->ch[port - 0x40];
    uint16_t v;
    if (c->latched) {
        v = c->latch_value;
        if (c->rw == 3) {
            c->latch_state ^= 1;
            if (!c->latch_state)
                c->latched = 0;
            return c->latch_state ? v & 0xFF : v >> 8;
        }
        c->latched = 0;
    } else {
        v = pit_count(c, now);
    }
    switch (c->rw) {
    case 1: return v & 0xFF;
    case 2: return v >> 8;
    default:
        c->access_state ^= 1;
        return c->access_state ? v & 0xFF : v >> 8;
    }
}

void pit_write(struct irqchip *ic, uint16_t port, uint32_t v)
{
    struct pit *p = &ic->pit;
    uint64_t now = ic->ops->now(ic->opaque);
    if (port == 0x61) {
        struct pit_channel *c2 = &p->ch[2];
        bool gate = v & 1;
        if (gate && !c2->gate) { /* a rising gate restarts the count */
            c2->start = now;
            c2->armed = true;
        }
        c2->gate = gate;
        p->port61 = v & 0x0F;
        return;
    }
    if (port == 0x43) {
        unsigned n = (v >> 6) & 3;
        if (n == 3) { /* read-back: latch the counts asked for */
            for (unsigned i = 0; i < 3; i++)
                if ((v & (2u << i)) && !(v & 0x20) && !p->ch[i].latched) {
                    p->ch[i].latch_value = pit_count(&p->ch[i], now);
                    p->ch[i].latched = 1;
                    p->ch[i].latch_state = 0;
                }
            return;
        }
        struct pit_channel *c = &p->ch[n];
        unsigned rw = (v >> 4) & 3;
        if (rw == 0) { /* counter latch */
            if (!c->latched) {
                c->latch_value = pit_count(c, now);
                c->latched = 1;
                c->latch_state = 0;
            }
            return;
        }
        c->rw = (uint8_t)rw;
        c->mode = (v >> 1) & 7;
        c->bcd = v & 1;
        c->access_state = 0;
        c->armed = false;
        if (n == 0)
            pit_update_next(ic, now);
        return;
    }
    unsigned n = port - 0x40;
    struct pit_channel *c = &p->ch[n];
    switch (c->rw) {
    case 1: c->reload = (c->reload & 0xFF00) | (v & 0xFF); pit_load(ic, n, now); break;
    case 2: c->reload = (uint16_t)((c->reload & 0xFF) | ((v & 0xFF) << 8)); pit_load(ic, n, now); break;
    case 3:
        if (!c->access_state) {
            c->reload = (c->reload & 0xFF00) | (v & 0xFF);
            c->access_state = 1;
        } else {
            c->reload = (uint16_t)((c->reload & 0xFF) | ((v & 0xFF) << 8));
            c->access_state = 0;
            pit_load(ic, n, now);
        }
        break;
    default: break;
    }
}
