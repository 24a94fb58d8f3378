/* The 8259 PIC pair (ports 0x20/0x21, 0xA0/0xA1, ELCR 0x4D0/0x4D1): legacy and ExtINT delivery. */
#include "hw/irqchip.h"
#include <string.h>

void pic_reset(struct pic8259 *p)
{
    uint8_t elcr = p->elcr;
    memset(p, 0, sizeof(*p));
    p->elcr = elcr;
    p->imr = 0xFF;
}

static int pic_highest(const struct pic8259 *p)
{
    uint8_t req = p->irr & ~p->imr;
    for (int i = 0; i < 8; i++) {
        if (p->isr & (1u << i))
            return -1; /* fully nested: an in-service IRQ blocks lower priorities */
        if (req & (1u << i))
            return i;
    }
    return -1;
}

/* The slave's INTR is the master's IRQ2. */
static void pic_cascade(struct irqchip *ic)
{
    struct pic8259 *m = &ic->pic[0];
    if (pic_highest(&ic->pic[1]) >= 0)
        m->irr |= 1u << 2;
    else
        m->irr &= ~(1u << 2);
    if (ic->ncpus && pic_highest(m) >= 0)
        ic->ops->wake(ic->opaque, 0);
    lapic_lint0(ic, pic_highest(m) >= 0); /* LINT0 in NMI or fixed mode takes edges */
}

void pic_set_irq(struct irqchip *ic, unsigned irq, bool level)
{
    if (irq >= 16)
        return;
    struct pic8259 *p = &ic->pic[irq >> 3];
    uint8_t bit = 1u << (irq & 7);
    bool old = p->level & bit;
    if (level)
        p->level |= bit;
    else
        p->level &= ~bit;
    if (p->elcr & bit) {
        if (level)
            p->irr |= bit;
        else
            p->irr &= ~bit;
    } else if (level && !old) {
        p->irr |= bit;
    }
    pic_cascade(ic);
}

bool pic_output(struct irqchip *ic)
{
    return pic_highest(&ic->pic[0]) >= 0;
}

static int pic_ack_one(struct pic8259 *p)
{
    int irq = pic_highest(p);
    if (irq < 0)
        return 7; /* spurious */
    uint8_t bit = 1u << irq;
    if (!(p->elcr & bit))
        p->irr &= ~bit;
    if (!p->auto_eoi)
        p->isr |= bit;
    return irq;
}

int pic_ack(struct irqchip *ic)
{
    struct pic8259 *m = &ic->pic[0];
    int irq = pic_ack_one(m);
    int vec;
    if (irq == 2) {
        int s = pic_ack_one(&ic->pic[1]);
        vec = ic->pic[1].base + s;
    } else {
        vec = m->base + irq;
    }
    pic_cascade(ic);
    return vec;
}

uint8_t pic_read(struct irqchip *ic, uint16_t port)
{
    if (port == 0x4D0 || port == 0x4D1)
        return ic->pic[port & 1].elcr;
    struct pic8259 *p = &ic->pic[port >= 0xA0];
    if (port & 1)
        return p->imr;
    return p->read_isr ? p->isr : p->irr;
}

void pic_write(struct irqchip *ic, uint16_t port, uint8_t v)
{
    if (port == 0x4D0 || port == 0x4D1) {
        /* IRQ0-2 and 8, 13 are edge-only on a PC. */
        ic->pic[port & 1].elcr = v & (port == 0x4D0 ? 0xF8 : 0xDE);
        return;
    }
    struct pic8259 *p = &ic->pic[port >= 0xA0];
    if (!(port & 1)) {
        if (v & 0x10) { /* ICW1 */
            p->init_step = 2;
            p->icw4 = v & 1;
            p->imr = 0;
            p->isr = 0;
            p->irr = 0;
            p->read_isr = 0;
            p->auto_eoi = 0;
        } else if (v & 0x08) { /* OCW3 */
            if (v & 0x02)
                p->read_isr = v & 1;
        } else { /* OCW2 */
            unsigned cmd = v >> 5;
            if (cmd == 1) { /* non-specific EOI */
                for (int i = 0; i < 8; i++)
                    if (p->isr & (1u << i)) {
                        p->isr &= ~(1u << i);
                        break;
                    }
            } else if (cmd == 3) { /* specific EOI */
                p->isr &= ~(1u << (v & 7));
            }
        }
    } else {
        switch (p->init_step) {
        case 2: p->base = v & 0xF8; p->init_step = 3; break;
        case 3: p->init_step = p->icw4 ? 4 : 0; break;
        case 4: p->auto_eoi = (v >> 1) & 1; p->init_step = 0; break;
        default: p->imr = v; break;
        }
    }
    pic_cascade(ic);
}
