/* Local APIC per vCPU (xAPIC MMIO and x2APIC MSRs): IRR/ISR, TPR, EOI, timer (one-shot,
 * periodic, TSC-deadline), IPIs including NMI and INIT/SIPI, LINT0/LINT1. */
#include "hw/irqchip.h"
#include <errno.h>
#include <string.h>

enum {
    LAPIC_ID = 0x20, LAPIC_VER = 0x30, LAPIC_TPR = 0x80, LAPIC_APR = 0x90, LAPIC_PPR = 0xA0,
    LAPIC_EOI = 0xB0, LAPIC_LDR = 0xD0, LAPIC_DFR = 0xE0, LAPIC_SVR = 0xF0, LAPIC_ISR = 0x100,
    LAPIC_TMR = 0x180, LAPIC_IRR = 0x200, LAPIC_ESR = 0x280, LAPIC_CMCI = 0x2F0,
    LAPIC_ICR_LO = 0x300, LAPIC_ICR_HI = 0x310, LAPIC_LVT_TIMER = 0x320, LAPIC_LVT_THERMAL = 0x330,
    LAPIC_LVT_PERF = 0x340, LAPIC_LVT_LINT0 = 0x350, LAPIC_LVT_LINT1 = 0x360,
    LAPIC_LVT_ERROR = 0x370, LAPIC_TIMER_INIT = 0x380, LAPIC_TIMER_CUR = 0x390,
    LAPIC_TIMER_DIV = 0x3E0, LAPIC_SELF_IPI = 0x3F0,
};
#define LVT_MASKED (1u << 16)
#define MSR_TSC_DEADLINE 0x6E0
#define MSR_X2APIC_FIRST 0x800
#define MSR_X2APIC_LAST 0x8FF
#define X2APIC_BROADCAST 0xFFFFFFFFu

enum { TIMER_ONESHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE };
static unsigned timer_mode(uint32_t lvt) { return lvt >> 17 & 3; }

/* x2APIC logical ID: cluster (ID bits 4 and up) in 31:16, one bit of 16 in 15:0. */
static uint32_t x2apic_ldr(uint32_t id) { return (id >> 4) << 16 | 1u << (id & 0xF); }

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
    if (l->x2apic) { /* cluster model only: 16-bit cluster, 16-bit member mask */
        uint32_t ldr = x2apic_ldr(l->id);
        return (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xFFFF);
    }
    uint32_t mda = dest & 0xFF, ldr = l->ldr >> 24;
    if (mda == 0xFF)
        return true;
    if ((l->dfr >> 28) == 0xF) /* flat */
        return (ldr & mda) != 0;
    return (ldr >> 4) == (mda >> 4) && (ldr & mda & 0xF); /* cluster */
}

/* dest is 32 bits from an x2APIC ICR (x2), else 8 bits (xAPIC ICR, IOAPIC, MSI); either way
 * all ones is a broadcast. An x2APIC receiving an 8-bit destination matches it as a 32-bit one. */
static bool lapic_match(const struct lapic *l, uint32_t dest, bool logical, bool x2)
{
    if (!x2)
        dest &= 0xFF;
    if (x2 ? dest == X2APIC_BROADCAST : dest == 0xFF)
        return true;
    if (!l->x2apic && dest > 0xFF)
        return false;
    return logical ? lapic_match_logical(l, dest) : dest == l->id;
}

static void lapic_nmi(struct irqchip *ic, unsigned cpu)
{
    ic->lapic[cpu].nmi_pending = true;
    if (ic->ops->nmi)
        ic->ops->nmi(ic->opaque, cpu);
    ic->ops->wake(ic->opaque, cpu);
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
    case 4: /* NMI: the vector is ignored; even a software-disabled APIC takes it */
        lapic_nmi(ic, cpu);
        break;
    case 6: /* SIPI: only a CPU waiting for one takes it; an INIT its vCPU has not handled yet
               * counts as done (on hardware INIT takes effect at once) */
        if ((l->wait_sipi || l->init_pending) && l->sipi_vector < 0) {
            l->sipi_vector = vector;
            ic->ops->wake(ic->opaque, cpu);
        }
        break;
    default: /* SMI and ExtINT through IPIs are not modelled (docs/emu.md) */
        break;
    }
}

static void lapic_deliver_dest(struct irqchip *ic, uint32_t dest, bool logical, unsigned mode,
                               uint8_t vector, bool level, bool x2)
{
    for (unsigned i = 0; i < ic->ncpus; i++) {
        if (lapic_match(&ic->lapic[i], dest, logical, x2)) {
            lapic_deliver_one(ic, i, mode, vector, level);
            /* Lowest priority goes to one CPU: the first match stands in for the lowest TPR. */
            if (mode == 1)
                break;
        }
    }
}

void lapic_deliver(struct irqchip *ic, uint32_t dest, bool logical, unsigned mode, uint8_t vector,
                   bool level)
{
    lapic_deliver_dest(ic, dest, logical, mode, vector, level, false);
}

void lapic_lint(struct irqchip *ic, unsigned cpu, unsigned pin)
{
    uint32_t lvt = pin ? ic->lapic[cpu].lvt_lint1 : ic->lapic[cpu].lvt_lint0;
    if (lvt & LVT_MASKED)
        return;
    switch (lvt >> 8 & 7) {
    case 0: /* fixed */
        lapic_accept(ic, cpu, lvt & 0xFF, false);
        break;
    case 4:
        lapic_nmi(ic, cpu);
        break;
    default: /* ExtINT is polled (irqchip_extint); SMI and INIT are not modelled */
        break;
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
        if (l->x2apic)
            lapic_deliver_dest(ic, l->icr_hi, lo >> 11 & 1, mode, vector, false, true);
        else
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
    if (timer_mode(l->lvt_timer) == TIMER_TSC_DEADLINE)
        return; /* the initial count does nothing in TSC-deadline mode */
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
    if (timer_mode(l->lvt_timer) == TIMER_PERIODIC && p) { /* skip missed periods */
        uint64_t n = (now - l->timer_deadline) / p + 1;
        l->timer_start = l->timer_deadline + (n - 1) * p;
        l->timer_deadline = l->timer_start + p;
    } else {
        l->timer_deadline = IRQCHIP_NEVER;
        l->tsc_deadline = 0; /* a TSC deadline fires once and reads 0 afterwards */
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
        if (l->timer_deadline == IRQCHIP_NEVER || now >= l->timer_deadline || !p ||
            timer_mode(l->lvt_timer) == TIMER_TSC_DEADLINE)
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
    case LAPIC_LVT_TIMER: {
        uint32_t old = l->lvt_timer;
        l->lvt_timer = v & 0x700FF;
        /* Entering or leaving TSC-deadline mode disarms the timer, whichever way it was armed. */
        if ((timer_mode(old) == TIMER_TSC_DEADLINE) != (timer_mode(v) == TIMER_TSC_DEADLINE)) {
            l->timer_deadline = IRQCHIP_NEVER;
            l->tsc_deadline = 0;
            l->timer_init = 0;
        }
        break;
    }
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

void lapic_lint0(struct irqchip *ic, bool level)
{
    /* LINT0 is one wire to every local APIC; in fixed or NMI mode it acts on the rising edge. */
    for (unsigned i = 0; i < ic->ncpus; i++) {
        struct lapic *l = &ic->lapic[i];
        bool rise = level && !l->lint0_level;
        l->lint0_level = level;
        if (rise)
            lapic_lint(ic, i, 0);
    }
}

static void lapic_tsc_deadline(struct irqchip *ic, unsigned cpu, uint64_t tsc, uint64_t tsc_offset)
{
    struct lapic *l = &ic->lapic[cpu];
    if (timer_mode(l->lvt_timer) != TIMER_TSC_DEADLINE)
        return; /* the SDM: writes are ignored in the other timer modes */
    l->tsc_deadline = tsc;
    if (!tsc) {
        l->timer_deadline = IRQCHIP_NEVER;
        return;
    }
    /* Compare in TSC units first so that a deadline in the past cannot wrap the clock value;
     * one beyond the clock's range never comes. */
    uint64_t now = ic->ops->now(ic->opaque), tsc_now = now + tsc_offset;
    uint64_t ahead = tsc <= tsc_now ? 0 : tsc - tsc_now;
    l->timer_deadline = ahead >= IRQCHIP_NEVER - now ? IRQCHIP_NEVER : now + ahead;
    ic->ops->wake(ic->opaque, cpu); /* the vCPU polls timers again before it sleeps */
}

/* The register offset an x2APIC MSR stands for: -ENOENT if msr is not one, -EINVAL (#GP) if
 * the APIC is not in x2APIC mode. */
static int x2apic_register(const struct lapic *l, uint32_t msr, unsigned *off)
{
    if (msr < MSR_X2APIC_FIRST || msr > MSR_X2APIC_LAST)
        return -ENOENT;
    if (!l->x2apic)
        return -EINVAL;
    *off = (msr - MSR_X2APIC_FIRST) << 4;
    return 0;
}

int lapic_msr_read(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t *val,
                   uint64_t tsc_offset)
{
    (void)tsc_offset;
    struct lapic *l = &ic->lapic[cpu];
    if (msr == MSR_TSC_DEADLINE) {
        *val = timer_mode(l->lvt_timer) == TIMER_TSC_DEADLINE ? l->tsc_deadline : 0;
        return 0;
    }
    unsigned off;
    int r = x2apic_register(l, msr, &off);
    if (r < 0)
        return r;
    if ((off >= LAPIC_ISR && off < LAPIC_ISR + 0x80) || (off >= LAPIC_TMR && off < LAPIC_TMR + 0x80) ||
        (off >= LAPIC_IRR && off < LAPIC_IRR + 0x80)) {
        *val = lapic_read(ic, cpu, off);
        return 0;
    }
    switch (off) {
    case LAPIC_ID: *val = l->id; return 0;
    case LAPIC_LDR: *val = x2apic_ldr(l->id); return 0;
    case LAPIC_ICR_LO: *val = (uint64_t)l->icr_hi << 32 | (l->icr_lo & ~(1u << 12)); return 0;
    case LAPIC_VER: case LAPIC_TPR: case LAPIC_PPR: case LAPIC_SVR: case LAPIC_ESR:
    case LAPIC_LVT_TIMER: case LAPIC_LVT_THERMAL: case LAPIC_LVT_PERF: case LAPIC_LVT_LINT0:
    case LAPIC_LVT_LINT1: case LAPIC_LVT_ERROR: case LAPIC_TIMER_INIT: case LAPIC_TIMER_CUR:
    case LAPIC_TIMER_DIV:
        *val = lapic_read(ic, cpu, off);
        return 0;
    default: /* write-only (EOI, SELF_IPI), absent in x2APIC mode (DFR, APR, ICR high), reserved */
        return -EINVAL;
    }
}

int lapic_msr_write(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t val,
                    uint64_t tsc_offset)
{
    struct lapic *l = &ic->lapic[cpu];
    if (msr == MSR_TSC_DEADLINE) {
        lapic_tsc_deadline(ic, cpu, val, tsc_offset);
        return 0;
    }
    unsigned off;
    int r = x2apic_register(l, msr, &off);
    if (r < 0)
        return r;
    if (off == LAPIC_ICR_LO) {
        /* One write sends: the destination is the whole upper half. */
        l->icr_hi = (uint32_t)(val >> 32);
        l->icr_lo = (uint32_t)val & 0x000CCFFF;
        lapic_send_ipi(ic, cpu);
        return 0;
    }
    if (val >> 32)
        return -EINVAL;
    uint32_t v = (uint32_t)val;
    switch (off) {
    case LAPIC_EOI:
    case LAPIC_ESR:
        if (v) /* the SDM: a non-zero write to these is #GP in x2APIC mode */
            return -EINVAL;
        lapic_write(ic, cpu, off, v);
        return 0;
    case LAPIC_SELF_IPI:
        if (v & ~0xFFu)
            return -EINVAL;
        lapic_accept(ic, cpu, (uint8_t)v, false);
        return 0;
    case LAPIC_TPR: case LAPIC_SVR: case LAPIC_LVT_TIMER: case LAPIC_LVT_THERMAL:
    case LAPIC_LVT_PERF: case LAPIC_LVT_LINT0: case LAPIC_LVT_LINT1: case LAPIC_LVT_ERROR:
    case LAPIC_TIMER_INIT: case LAPIC_TIMER_DIV:
        lapic_write(ic, cpu, off, v);
        return 0;
    default: /* read-only (ID, VER, PPR, LDR, ISR/TMR/IRR, current count), absent, reserved */
        return -EINVAL;
    }
}
