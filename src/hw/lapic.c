/* Local APIC (xAPIC MMIO) per vCPU: IRR/ISR, TPR, EOI, timer, IPIs including INIT/SIPI. */
#include "hw/irqchip.h"
#include <string.h>

enum {
    LAPIC_ID = 0x20, LAPIC_VER = 0x30, LAPIC_TPR = 0x80, LAPIC_APR = 0x90, LAPIC_PPR = 0xA0,
    LAPIC_EOI = 0xB0, LAPIC_LDR = 0xD0, LAPIC_DFR = 0xE0, LAPIC_SVR = 0xF0, LAPIC_ISR = 0x100,
    LAPIC_TMR = 0x180, LAPIC_IRR = 0x200, LAPIC_ESR = 0x280, LAPIC_CMCI = 0x2F0,
    LAPIC_ICR_LO = 0x300, LAPIC_ICR_HI = 0x310, LAPIC_LVT_TIMER = 0x320, LAPIC_LVT_THERMAL = 0x330,
    LAPIC_LVT_PERF = 0x340, LAPIC_LVT_LINT0 = 0x350, LAPIC_LVT_LINT1 = 0x360,
    LAPIC_LVT_ERROR = 0x370, LAPIC_TIMER_INIT = 0x380, LAPIC_TIMER_CUR = 0x390,
    LAPIC_TIMER_DIV = 0x3E0,
};
#define LVT_MASKED (1u << 16)

void lapic_reset(struct lapic *l, uint32_t id, bool bsp)
{
    memset(l, 0, sizeof(*l));
    l->id = id;
    l->dfr = 0xFFFFFFFF;
    l->svr = 0xFF;
    l->lvt_timer = l->lvt_thermal = l->lvt_perf = l->lvt_error = LVT_MASKED;
    /* What firmware leaves on a PC: the BSP takes the 8259's INTR as ExtINT, NMIs on LINT1. */
    l->lvt_lint0 = bsp ? 0x700 : LVT_MASKED;
    l->lvt_lint1 = bsp ? 0x400 : LVT_MASKED;
    l->timer_deadline = IRQCHIP_NEVER;
    l->sipi_vector = -1;
    l->wait_sipi = !bsp;
}

static int vec_highest(const uint32_t *bits)
{
    for (int i = 7; i >= 0; i--)
        if (bits[i])
            return i * 32 + 31 - __builtin_clz(bits[i]);
    return -1;
}

static bool bit_test(const uint32_t *bits, unsigned v) { return bits[v / 32] >> (v % 32) & 1; }
static void bit_set(uint32_t *bits, unsigned v) { bits[v / 32] |= 1u << (v % 32); }
static void bit_clear(uint32_t *bits, unsigned v) { bits[v / 32] &= ~(1u << (v % 32)); }

static uint32_t lapic_ppr(const struct lapic *l)
{
    int isr = vec_highest(l->isr);
    uint32_t isrc = isr < 0 ? 0 : (uint32_t)isr & 0xF0;
    return (l->tpr & 0xF0) >= isrc ? l->tpr & 0xFF : isrc;
}

int lapic_highest_irr(const struct lapic *l)
{
    int irr = vec_highest(l->irr);
    if (irr < 0 || !(l->svr & 0x100))
        return -1;
    if ((uint32_t)(irr & 0xF0) <= (lapic_ppr(l) & 0xF0))
        return -1;
    return irr;
}

void lapic_accept(struct irqchip *ic, unsigned cpu, uint8_t vector, bool level)
{
    struct lapic *l = &ic->lapic[cpu];
    if (vector < 16) {
        l->esr |= 1u << 6; /* illegal vector received */
        return;
    }
    bit_set(l->irr, vector);
    if (level)
        bit_set(l->tmr, vector);
    else
        bit_clear(l->tmr, vector);
    ic->ops->wake(ic->opaque, cpu);
}

static bool lapic_match_logical(const struct lapic *l, uint32_t dest)
{
    uint32_t mda = dest & 0xFF, ldr = l->ldr >> 24;
    if (mda == 0xFF)
        return true;
    if ((l->dfr >> 28) == 0xF) /* flat */
        return (ldr & mda) != 0;
    return (ldr >> 4) == (mda >> 4) && (ldr & mda & 0xF); /* cluster */
}

static void lapic_deliver_one(struct irqchip *ic, unsigned cpu, unsigned mode, uint8_t vector,
                              bool level)
{
    struct lapic *l = &ic->lapic[cpu];
    switch (mode) {
    case 0: /* fixed */
    case 1: /* lowest priority: lapic_deliver picks one target */
        lapic_accept(ic, cpu, vector, level);
        break;
    case 5: /* INIT: the vCPU resets and waits for a SIPI */
        l->init_pending = true;
        ic->ops->wake(ic->opaque, cpu);
        break;
    case 6: /* SIPI: only a CPU waiting for one takes it */
        if (l->wait_sipi && l->sipi_vector < 0) {
            l->sipi_vector = vector;
            ic->ops->wake(ic->opaque, cpu);
        }
        break;
    default: /* SMI, NMI, ExtINT through IPIs are not modelled (docs/emu.md) */
        break;
    }
}

void lapic_deliver(struct irqchip *ic, uint32_t dest, bool logical, unsigned mode, uint8_t vector,
                   bool level)
{
    for (unsigned i = 0; i < ic->ncpus; i++) {
        bool hit = logical ? lapic_match_logical(&ic->lapic[i], dest)
                           : ((dest & 0xFF) == 0xFF || (dest & 0xFF) == ic->lapic[i].id);
        if (hit) {
            lapic_deliver_one(ic, i, mode, vector, level);
            /* Lowest priority goes to one CPU: the first match stands in for the lowest TPR. */
            if (mode == 1)
                break;
        }
    }
}

static void lapic_send_ipi(struct irqchip *ic, unsigned cpu)
{
    struct lapic *l = &ic->lapic[cpu];
    uint32_t lo = l->icr_lo;
    unsigned mode = (lo >> 8) & 7, shorthand = (lo >> 18) & 3;
    uint8_t vector = lo & 0xFF;
    bool level = lo >> 15 & 1;
    /* INIT level de-assert: no action on modern CPUs. */
    if (mode == 5 && level && !(lo & (1u << 14)))
        return;
    switch (shorthand) {
    case 0:
        lapic_deliver(ic, l->icr_hi >> 24, lo >> 11 & 1, mode, vector, false);
        break;
    case 1:
        lapic_deliver_one(ic, cpu, mode, vector, false);
        break;
    default:
        for (unsigned i = 0; i < ic->ncpus; i++)
            if (shorthand == 2 || i != cpu)
                lapic_deliver_one(ic, i, mode, vector, false);
        break;
    }
}

static uint64_t lapic_period(const struct lapic *l)
{
    /* A 1 GHz bus clock (as KVM): the divide configuration is bits 0, 1 and 3. */
    unsigned d = (l->timer_div & 3) | ((l->timer_div >> 1) & 4);
    uint64_t div = d == 7 ? 1 : 2ull << d;
    return (uint64_t)l->timer_init * div;
}

static void lapic_timer_start(struct irqchip *ic, struct lapic *l)
{
    uint64_t p = lapic_period(l);
    l->timer_start = ic->ops->now(ic->opaque);
    l->timer_deadline = p ? l->timer_start + p : IRQCHIP_NEVER;
}

uint64_t lapic_timer_poll(struct irqchip *ic, unsigned cpu, uint64_t now)
{
    struct lapic *l = &ic->lapic[cpu];
    if (l->timer_deadline == IRQCHIP_NEVER || now < l->timer_deadline)
        return l->timer_deadline;
    if (!(l->lvt_timer & LVT_MASKED))
        lapic_accept(ic, cpu, l->lvt_timer & 0xFF, false);
    uint64_t p = lapic_period(l);
    if ((l->lvt_timer >> 17 & 3) == 1 && p) { /* periodic: skip missed periods */
        uint64_t n = (now - l->timer_deadline) / p + 1;
        l->timer_start = l->timer_deadline + (n - 1) * p;
        l->timer_deadline = l->timer_start + p;
    } else {
        l->timer_deadline = IRQCHIP_NEVER;
    }
    return l->timer_deadline;
}

uint32_t lapic_read(struct irqchip *ic, unsigned cpu, unsigned off)
{
    struct lapic *l = &ic->lapic[cpu];
    if (off >= LAPIC_ISR && off < LAPIC_ISR + 0x80)
        return l->isr[(off - LAPIC_ISR) >> 4];
    if (off >= LAPIC_TMR && off < LAPIC_TMR + 0x80)
        return l->tmr[(off - LAPIC_TMR) >> 4];
    if (off >= LAPIC_IRR && off < LAPIC_IRR + 0x80)
        return l->irr[(off - LAPIC_IRR) >> 4];
    switch (off) {
    case LAPIC_ID: return l->id << 24;
    case LAPIC_VER: return 0x50014; /* version 0x14, 6 LVT entries */
    case LAPIC_TPR: return l->tpr;
    case LAPIC_PPR: return lapic_ppr(l);
    case LAPIC_LDR: return l->ldr;
    case LAPIC_DFR: return l->dfr;
    case LAPIC_SVR: return l->svr;
    case LAPIC_ESR: return l->esr;
    case LAPIC_ICR_LO: return l->icr_lo & ~(1u << 12); /* delivery is immediate: never busy */
    case LAPIC_ICR_HI: return l->icr_hi;
    case LAPIC_LVT_TIMER: return l->lvt_timer;
    case LAPIC_LVT_THERMAL: return l->lvt_thermal;
    case LAPIC_LVT_PERF: return l->lvt_perf;
    case LAPIC_LVT_LINT0: return l->lvt_lint0;
    case LAPIC_LVT_LINT1: return l->lvt_lint1;
    case LAPIC_LVT_ERROR: return l->lvt_error;
    case LAPIC_TIMER_INIT: return l->timer_init;
    case LAPIC_TIMER_DIV: return l->timer_div;
    case LAPIC_TIMER_CUR: {
        uint64_t now = ic->ops->now(ic->opaque), p = lapic_period(l);
        if (l->timer_deadline == IRQCHIP_NEVER || now >= l->timer_deadline || !p)
            return 0;
        return (uint32_t)((unsigned __int128)(l->timer_deadline - now) * l->timer_init / p);
    }
    default: return 0;
    }
}

void lapic_write(struct irqchip *ic, unsigned cpu, unsigned off, uint32_t v)
{
    struct lapic *l = &ic->lapic[cpu];
    switch (off) {
    case LAPIC_TPR: l->tpr = v & 0xFF; ic->ops->wake(ic->opaque, cpu); break;
    case LAPIC_EOI: {
        int isr = vec_highest(l->isr);
        if (isr >= 0) {
            bit_clear(l->isr, (unsigned)isr);
            if (bit_test(l->tmr, (unsigned)isr))
                ioapic_eoi(ic, (uint8_t)isr);
            ic->ops->wake(ic->opaque, cpu);
        }
        break;
    }
    case LAPIC_LDR: l->ldr = v & 0xFF000000; break;
    case LAPIC_DFR: l->dfr = v | 0x0FFFFFFF; break;
    case LAPIC_SVR:
        l->svr = v & 0x3FF;
        if (!(v & 0x100)) /* software disable masks every LVT entry */
            l->lvt_timer |= LVT_MASKED, l->lvt_lint0 |= LVT_MASKED, l->lvt_lint1 |= LVT_MASKED,
                l->lvt_error |= LVT_MASKED, l->lvt_perf |= LVT_MASKED, l->lvt_thermal |= LVT_MASKED;
        ic->ops->wake(ic->opaque, cpu);
        break;
    case LAPIC_ESR: l->esr = 0; break;
    case LAPIC_ICR_HI: l->icr_hi = v & 0xFF000000; break;
    case LAPIC_ICR_LO: l->icr_lo = v & 0x000CDFFF; lapic_send_ipi(ic, cpu); break;
    case LAPIC_LVT_TIMER: l->lvt_timer = v & 0x700FF; break;
    case LAPIC_LVT_THERMAL: l->lvt_thermal = v & 0x107FF; break;
    case LAPIC_LVT_PERF: l->lvt_perf = v & 0x107FF; break;
    case LAPIC_LVT_LINT0: l->lvt_lint0 = v & 0x1A7FF; ic->ops->wake(ic->opaque, cpu); break;
    case LAPIC_LVT_LINT1: l->lvt_lint1 = v & 0x1A7FF; break;
    case LAPIC_LVT_ERROR: l->lvt_error = v & 0x100FF; break;
    case LAPIC_TIMER_INIT: l->timer_init = v; lapic_timer_start(ic, l); break;
    case LAPIC_TIMER_DIV: l->timer_div = v & 0xB; break;
    default: break; /* read-only or reserved */
    }
}
