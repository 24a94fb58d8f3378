/* How devices raise interrupts: GSI lines and MSI messages, whoever implements the controllers. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct irq_ops {
    void (*set_level)(void *opaque, unsigned gsi, bool level);
    void (*send_msi)(void *opaque, uint64_t addr, uint32_t data);
};

struct irq_chip {
    const struct irq_ops *ops;
    void *opaque;
};

static inline void irq_set_level(struct irq_chip *c, unsigned gsi, bool level)
{
    c->ops->set_level(c->opaque, gsi, level);
}

/* ISA devices are edge-triggered: a rising edge is the interrupt. */
static inline void irq_pulse(struct irq_chip *c, unsigned gsi)
{
    c->ops->set_level(c->opaque, gsi, true);
    c->ops->set_level(c->opaque, gsi, false);
}

static inline void irq_send_msi(struct irq_chip *c, uint64_t addr, uint32_t data)
{
    c->ops->send_msi(c->opaque, addr, data);
}
