/* The user-space interrupt controllers as one unit: routing GSIs and MSIs, guest accesses, the
 * vCPU's interrupt acknowledge and timers. One lock covers all models. */
#include "hw/irqchip.h"
#include "machine/layout.h"
#include <errno.h>
#include <string.h>

int irqchip_init(struct irqchip *ic, unsigned ncpus, const uint32_t *apic_ids,
                 const struct irqchip_ops *ops, void *opaque)
{
    if (ncpus == 0 || ncpus > IRQCHIP_MAX_CPUS)
        return -EINVAL;
    memset(ic, 0, sizeof(*ic));
    pthread_mutex_init(&ic->lock, NULL);
    ic->ncpus = ncpus;
    ic->ops = ops;
    ic->opaque = opaque;
    for (unsigned i = 0; i < ncpus; i++)
        lapic_reset(&ic->lapic[i], apic_ids[i], i == 0);
    ioapic_reset(&ic->ioapic);
    pic_reset(&ic->pic[0]);
    pic_reset(&ic->pic[1]);
    pit_reset(&ic->pit);
    return 0;
}

void irqchip_destroy(struct irqchip *ic)
{
    pthread_mutex_destroy(&ic->lock);
}

void irqchip_set_level(struct irqchip *ic, unsigned gsi, bool level)
{
    pthread_mutex_lock(&ic->lock);
    ioapic_set_pin(ic, gsi, level);
    /* ISA IRQ n is GSI n except IRQ0, which the MADT override puts on GSI 2 (the PIT's). */
    if (gsi < 16 && gsi != 2)
        pic_set_irq(ic, gsi, level);
    pthread_mutex_unlock(&ic->lock);
}

static void irqchip_msi_locked(struct irqchip *ic, uint64_t addr, uint32_t data)
{
    if ((addr & 0xFFF00000ull) != LAYOUT_LAPIC)
        return; /* not an interrupt message: a real bus would write memory; drop it */
    unsigned mode = (data >> 8) & 7;
    /* MSIs are edge-triggered: there is no remote IRR to clear. */
    lapic_deliver(ic, (uint32_t)(addr >> 12) & 0xFF, addr >> 2 & 1, mode, data & 0xFF, false);
}

void irqchip_send_msi(struct irqchip *ic, uint64_t addr, uint32_t data)
{
    pthread_mutex_lock(&ic->lock);
    irqchip_msi_locked(ic, addr, data);
    pthread_mutex_unlock(&ic->lock);
}

bool irqchip_mmio(struct irqchip *ic, unsigned cpu, uint64_t apic_base, uint64_t gpa,
                  unsigned size, bool is_write, uint64_t *val)
{
    uint64_t lapic = apic_base & ~0xFFFull;
    /* In x2APIC mode (EXTD) the page is not the APIC's any more: accesses go to the bus. */
    bool is_lapic = (apic_base & 0xC00) == 0x800 && gpa >= lapic && gpa < lapic + 0x1000;
    bool is_ioapic = gpa >= LAYOUT_IOAPIC && gpa < LAYOUT_IOAPIC + 0x1000;
    if (!is_lapic && !is_ioapic)
        return false;
    /* Registers are 32-bit at 16-byte strides; other accesses read as zero, writes are lost. */
    unsigned off = (unsigned)(gpa & 0xFFF);
    bool ok = size == 4 && (off & 3) == 0;
    pthread_mutex_lock(&ic->lock);
    if (is_lapic && ic->lapic[cpu].x2apic) {
        is_lapic = false;
        if (!is_ioapic) {
            pthread_mutex_unlock(&ic->lock);
            return false;
        }
    }
    if (is_write) {
        if (ok && is_lapic)
            lapic_write(ic, cpu, off & ~0xFu, (uint32_t)*val);
        else if (ok)
            ioapic_write(ic, off & 0xFF, (uint32_t)*val);
    } else {
        *val = !ok ? 0 : is_lapic ? lapic_read(ic, cpu, off & ~0xFu) : ioapic_read(ic, off & 0xFF);
    }
    pthread_mutex_unlock(&ic->lock);
    return true;
}

bool irqchip_pio(struct irqchip *ic, uint16_t port, unsigned size, bool is_write, uint32_t *val)
{
    bool pic = port == 0x20 || port == 0x21 || port == 0xA0 || port == 0xA1 || port == 0x4D0 ||
               port == 0x4D1;
    bool pit = (port >= 0x40 && port <= 0x43) || port == 0x61;
    if (!pic && !pit)
        return false;
    pthread_mutex_lock(&ic->lock);
    if (is_write) {
        if (pic)
            pic_write(ic, port, (uint8_t)*val);
        else
            pit_write(ic, port, *val & 0xFF);
    } else {
        uint32_t v = pic ? pic_read(ic, port) : pit_read(ic, port);
        /* Wider reads see the byte repeated on real hardware only for some chips: keep one byte. */
        *val = size == 1 ? v : (v | 0xFFFFFF00u);
    }
    pthread_mutex_unlock(&ic->lock);
    return true;
}

uint64_t irqchip_poll(struct irqchip *ic, unsigned cpu)
{
    pthread_mutex_lock(&ic->lock);
    uint64_t now = ic->ops->now(ic->opaque);
    uint64_t next = lapic_timer_poll(ic, cpu, now);
    if (cpu == 0) { /* the boot vCPU runs the PIT: its thread always exists */
        uint64_t p = pit_poll(ic, now);
        if (p < next)
            next = p;
    }
    pthread_mutex_unlock(&ic->lock);
    return next;
}

static bool irqchip_extint(struct irqchip *ic, unsigned cpu)
{
    const struct lapic *l = &ic->lapic[cpu];
    /* LINT0 in ExtINT mode and unmasked: the 8259's INTR reaches the boot vCPU. */
    bool wire = !(l->lvt_lint0 & (1u << 16)) && ((l->lvt_lint0 >> 8) & 7) == 7;
    return cpu == 0 && wire && pic_output(ic);
}

bool irqchip_pending(struct irqchip *ic, unsigned cpu)
{
    pthread_mutex_lock(&ic->lock);
    bool r = lapic_highest_irr(&ic->lapic[cpu]) >= 0 || irqchip_extint(ic, cpu);
    pthread_mutex_unlock(&ic->lock);
    return r;
}

int irqchip_ack(struct irqchip *ic, unsigned cpu)
{
    pthread_mutex_lock(&ic->lock);
    struct lapic *l = &ic->lapic[cpu];
    int v = lapic_highest_irr(l);
    if (v >= 0) {
        l->irr[v / 32] &= ~(1u << (v % 32));
        l->isr[v / 32] |= 1u << (v % 32);
    } else if (irqchip_extint(ic, cpu)) {
        v = pic_ack(ic);
    }
    pthread_mutex_unlock(&ic->lock);
    return v;
}

bool irqchip_startup(struct irqchip *ic, unsigned cpu, bool *init, int *sipi_vector)
{
    pthread_mutex_lock(&ic->lock);
    struct lapic *l = &ic->lapic[cpu];
    *init = l->init_pending;
    *sipi_vector = -1;
    if (l->init_pending) {
        /* INIT resets the APIC except its ID, and the CPU waits for a SIPI. A SIPI that came
         * right behind the INIT, before this vCPU got here, still counts. */
        int sipi = l->sipi_vector;
        lapic_reset(l, l->id, false);
        l->wait_sipi = true;
        l->sipi_vector = sipi;
    }
    if (l->wait_sipi && l->sipi_vector >= 0) {
        *sipi_vector = l->sipi_vector;
        l->sipi_vector = -1;
        l->wait_sipi = false;
    }
    bool wait = l->wait_sipi;
    pthread_mutex_unlock(&ic->lock);
    return wait;
}

bool irqchip_nmi_ack(struct irqchip *ic, unsigned cpu)
{
    pthread_mutex_lock(&ic->lock);
    bool r = ic->lapic[cpu].nmi_pending;
    ic->lapic[cpu].nmi_pending = false;
    pthread_mutex_unlock(&ic->lock);
    return r;
}

bool irqchip_nmi_pending(struct irqchip *ic, unsigned cpu)
{
    pthread_mutex_lock(&ic->lock);
    bool r = ic->lapic[cpu].nmi_pending;
    pthread_mutex_unlock(&ic->lock);
    return r;
}

bool irqchip_lint0_nmi(struct irqchip *ic, unsigned cpu)
{
    pthread_mutex_lock(&ic->lock);
    uint32_t lvt = ic->lapic[cpu].lvt_lint0;
    pthread_mutex_unlock(&ic->lock);
    return !(lvt & (1u << 16)) && (lvt >> 8 & 7) == 4;
}

void irqchip_nmi(struct irqchip *ic)
{
    pthread_mutex_lock(&ic->lock);
    for (unsigned i = 0; i < ic->ncpus; i++)
        lapic_lint(ic, i, 1);
    pthread_mutex_unlock(&ic->lock);
}

int irqchip_msr_read(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t *val,
                     uint64_t tsc_offset)
{
    if (cpu >= ic->ncpus)
        return -ENOENT;
    pthread_mutex_lock(&ic->lock);
    int r = lapic_msr_read(ic, cpu, msr, val, tsc_offset);
    pthread_mutex_unlock(&ic->lock);
    return r;
}

int irqchip_msr_write(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t val,
                      uint64_t tsc_offset)
{
    if (cpu >= ic->ncpus)
        return -ENOENT;
    pthread_mutex_lock(&ic->lock);
    int r = lapic_msr_write(ic, cpu, msr, val, tsc_offset);
    pthread_mutex_unlock(&ic->lock);
    return r;
}

void irqchip_set_apic_base(struct irqchip *ic, unsigned cpu, uint64_t apic_base)
{
    if (cpu >= ic->ncpus)
        return;
    pthread_mutex_lock(&ic->lock);
    ic->lapic[cpu].x2apic = (apic_base & 0xC00) == 0xC00;
    pthread_mutex_unlock(&ic->lock);
}
