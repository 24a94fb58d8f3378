/* IOAPIC: 24 redirection entries, edge and level pins (remote IRR), delivery to the local APICs. */
#include "hw/irqchip.h"

#define RTE_MASKED (1ull << 16)
#define RTE_LEVEL (1ull << 15)
#define RTE_REMOTE_IRR (1ull << 14)
#define RTE_ACTIVE_LOW (1ull << 13)

void ioapic_reset(struct ioapic *io)
{
    io->id = 0;
    io->sel = 0;
    io->level = 0;
    for (unsigned i = 0; i < IRQCHIP_IOAPIC_PINS; i++)
        io->redir[i] = RTE_MASKED;
}

/* NMI, SMI, INIT and ExtINT are edge-triggered whatever the trigger-mode bit says (82093AA):
 * only fixed and lowest-priority entries are level-triggered with a remote IRR. */
static bool rte_level(uint64_t e)
{
    return (e & RTE_LEVEL) && ((e >> 8) & 7) <= 1;
}

static void ioapic_service(struct irqchip *ic, unsigned pin)
{
    struct ioapic *io = &ic->ioapic;
    uint64_t e = io->redir[pin];
    if (e & RTE_MASKED)
        return;
    bool level = rte_level(e);
    if (level) {
        /* Polarity: the device models drive active-high lines; active-low inverts. */
        bool asserted = ((io->level >> pin) & 1) ^ !!(e & RTE_ACTIVE_LOW);
        if (!asserted || (e & RTE_REMOTE_IRR))
            return;
        io->redir[pin] |= RTE_REMOTE_IRR;
    }
    unsigned mode = (e >> 8) & 7;
    if (mode == 7) /* ExtINT through the IOAPIC: the 8259 answers the acknowledge */
        return;
    lapic_deliver(ic, (uint32_t)(e >> 56), e >> 11 & 1, mode, e & 0xFF, level);
}

void ioapic_set_pin(struct irqchip *ic, unsigned pin, bool level)
{
    struct ioapic *io = &ic->ioapic;
    if (pin >= IRQCHIP_IOAPIC_PINS)
        return;
    bool old = (io->level >> pin) & 1;
    io->level = (io->level & ~(1u << pin)) | ((uint32_t)level << pin);
    uint64_t e = io->redir[pin];
    if (rte_level(e))
        ioapic_service(ic, pin);
    else if (level && !old) /* edge: the rising edge is the interrupt */
        ioapic_service(ic, pin);
}

uint32_t ioapic_read(struct irqchip *ic, unsigned off)
{
    struct ioapic *io = &ic->ioapic;
    if (off == 0x00)
        return io->sel;
    if (off != 0x10)
        return 0;
    switch (io->sel) {
    case 0: return io->id << 24;
    case 1: return ((IRQCHIP_IOAPIC_PINS - 1) << 16) | 0x20; /* version 0x20 */
    case 2: return io->id << 24;
    default:
        if (io->sel >= 0x10 && io->sel < 0x10 + 2 * IRQCHIP_IOAPIC_PINS) {
            uint64_t e = io->redir[(io->sel - 0x10) / 2];
            return (io->sel & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
        }
        return 0;
    }
}

void ioapic_write(struct irqchip *ic, unsigned off, uint32_t v)
{
    struct ioapic *io = &ic->ioapic;
    if (off == 0x00) {
        io->sel = v & 0xFF;
        return;
    }
    if (off == 0x40) { /* EOI register (version 0x20) */
        ioapic_eoi(ic, v & 0xFF);
        return;
    }
    if (off != 0x10)
        return;
    if (io->sel == 0) {
        io->id = (v >> 24) & 0xF;
        return;
    }
    if (io->sel < 0x10 || io->sel >= 0x10 + 2 * IRQCHIP_IOAPIC_PINS)
        return;
    unsigned pin = (io->sel - 0x10) / 2;
    uint64_t e = io->redir[pin];
    if (io->sel & 1) {
        e = (e & 0xFFFFFFFFull) | ((uint64_t)v << 32);
    } else {
        /* Delivery status and remote IRR are read-only. */
        uint64_t ro = RTE_REMOTE_IRR | (1ull << 12);
        e = (e & ~0xFFFFFFFFull) | (e & ro) | (v & ~(uint32_t)ro);
        if (!rte_level(e))
            e &= ~RTE_REMOTE_IRR;
    }
    io->redir[pin] = e;
    /* A level line still asserted when unmasked interrupts now. */
    if (rte_level(e) && !(e & RTE_MASKED))
        ioapic_service(ic, pin);
}

void ioapic_eoi(struct irqchip *ic, uint8_t vector)
{
    struct ioapic *io = &ic->ioapic;
    for (unsigned pin = 0; pin < IRQCHIP_IOAPIC_PINS; pin++) {
        uint64_t e = io->redir[pin];
        if ((e & 0xFF) != vector || !(e & RTE_REMOTE_IRR))
            continue;
        io->redir[pin] &= ~RTE_REMOTE_IRR;
        ioapic_service(ic, pin); /* still asserted: interrupt again */
    }
}
