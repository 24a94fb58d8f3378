/* User-space interrupt controllers and timer (local APICs, IOAPIC, 8259 pair, 8254 PIT) for
 * accelerators without in-kernel ones (-accel emu). */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define IRQCHIP_MAX_CPUS 64
#define IRQCHIP_IOAPIC_PINS 24
#define IRQCHIP_NEVER UINT64_MAX

struct lapic {
    uint32_t id;
    uint32_t tpr, svr, ldr, dfr, esr, icr_lo, icr_hi;
    uint32_t lvt_timer, lvt_lint0, lvt_lint1, lvt_error, lvt_perf, lvt_thermal;
    uint32_t timer_init, timer_div;
    uint32_t irr[8], isr[8], tmr[8];
    uint64_t timer_start; /* ns when the current period started */
    uint64_t timer_deadline; /* ns, or IRQCHIP_NEVER */
    uint64_t tsc_deadline; /* IA32_TSC_DEADLINE as armed by the guest (TSC units), 0: disarmed */
    bool init_pending, wait_sipi;
    bool nmi_pending; /* one NMI waits; more collapse into it */
    bool x2apic;      /* IA32_APIC_BASE.EXTD: registers are MSRs 0x800-0x8ff, the MMIO page is off */
    bool lint0_level; /* last level seen on LINT0 (the 8259's INTR), for edge-triggered NMI mode */
    int sipi_vector; /* -1: none pending */
};

struct ioapic {
    uint32_t id, sel;
    uint64_t redir[IRQCHIP_IOAPIC_PINS];
    uint32_t level; /* pin levels */
};

struct pic8259 {
    uint8_t irr, imr, isr, elcr, base, init_step, read_isr, auto_eoi, level;
    bool icw4;
};

struct pit_channel {
    uint16_t reload;
    uint8_t mode, rw, access_state, latched, latch_state, bcd;
    uint16_t latch_value;
    uint64_t start; /* ns the count was loaded */
    bool armed, gate, out_fired;
};

struct pit {
    struct pit_channel ch[3];
    uint8_t port61;
    uint64_t next_irq; /* ns of channel 0's next edge, or IRQCHIP_NEVER */
};

struct irqchip_ops {
    uint64_t (*now)(void *opaque);            /* the clock timers run on, in ns */
    void (*wake)(void *opaque, unsigned cpu); /* cpu may have an interrupt or startup event */
    void (*nmi)(void *opaque, unsigned cpu);  /* optional: cpu has an NMI pending (then wake) */
};

struct irqchip {
    pthread_mutex_t lock;
    unsigned ncpus;
    struct lapic lapic[IRQCHIP_MAX_CPUS];
    struct ioapic ioapic;
    struct pic8259 pic[2];
    struct pit pit;
    const struct irqchip_ops *ops;
    void *opaque;
};

/* ncpus <= IRQCHIP_MAX_CPUS; apic_ids[i] is vCPU i's APIC ID. vCPU 0 runs, the others wait for
 * INIT/SIPI. 0 or -EINVAL. */
int irqchip_init(struct irqchip *ic, unsigned ncpus, const uint32_t *apic_ids,
                 const struct irqchip_ops *ops, void *opaque);
void irqchip_destroy(struct irqchip *ic);

/* Devices: a GSI's level (IOAPIC pin, and PIC input below 16) and MSI messages. */
void irqchip_set_level(struct irqchip *ic, unsigned gsi, bool level);
void irqchip_send_msi(struct irqchip *ic, uint64_t addr, uint32_t data);

/* Guest accesses; false if the address or port is not an interrupt controller's. */
bool irqchip_mmio(struct irqchip *ic, unsigned cpu, uint64_t apic_base, uint64_t gpa,
                  unsigned size, bool is_write, uint64_t *val);
bool irqchip_pio(struct irqchip *ic, uint16_t port, unsigned size, bool is_write, uint32_t *val);

/* The vCPU's side: fire due timers (returns the next deadline in ns), whether an interrupt is
 * pending for it, and acknowledging one (its vector, or -1). */
uint64_t irqchip_poll(struct irqchip *ic, unsigned cpu);
bool irqchip_pending(struct irqchip *ic, unsigned cpu);
int irqchip_ack(struct irqchip *ic, unsigned cpu);
/* NMIs: take the pending one (true if there was one). The CPU blocks further NMIs itself until
 * iret; meanwhile one more stays pending here. irqchip_nmi raises LINT1 on every local APIC
 * (the NMI button): each delivers it as its LVT LINT1 says. */
bool irqchip_nmi_ack(struct irqchip *ic, unsigned cpu);
bool irqchip_nmi_pending(struct irqchip *ic, unsigned cpu);
/* Whether cpu's LINT0 is unmasked in NMI mode: the 8259's output (the PIT) then raises NMIs. */
bool irqchip_lint0_nmi(struct irqchip *ic, unsigned cpu);
void irqchip_nmi(struct irqchip *ic);

/* MSRs of the local APIC: IA32_TSC_DEADLINE (0x6e0) and, in x2APIC mode, 0x800-0x8ff.
 * tsc_offset is the vCPU's TSC minus the irqchip clock (ops->now). 0, -ENOENT if msr is not
 * the APIC's, -EINVAL for an access the CPU must answer with #GP. */
int irqchip_msr_read(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t *val,
                     uint64_t tsc_offset);
int irqchip_msr_write(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t val,
                      uint64_t tsc_offset);
/* IA32_APIC_BASE as the CPU accepted it (legal transitions are the CPU's to check): selects
 * xAPIC or x2APIC mode. An INIT puts the APIC back in xAPIC mode (the CPU resets the MSR too). */
void irqchip_set_apic_base(struct irqchip *ic, unsigned cpu, uint64_t apic_base);

/* Startup IPIs: *init if an INIT arrived (reset the CPU and wait), *sipi_vector >= 0 if a
 * SIPI starts it. Returns whether the CPU must keep waiting for a SIPI. */
bool irqchip_startup(struct irqchip *ic, unsigned cpu, bool *init, int *sipi_vector);

/* Models, used by the functions above with ic->lock held (irqchip internals, and tests). */
void lapic_reset(struct lapic *l, uint32_t id, bool bsp);
void lapic_accept(struct irqchip *ic, unsigned cpu, uint8_t vector, bool level);
void lapic_deliver(struct irqchip *ic, uint32_t dest, bool logical, unsigned mode, uint8_t vector,
                   bool level);
void lapic_lint(struct irqchip *ic, unsigned cpu, unsigned pin); /* edge on LINT0/LINT1 */
void lapic_lint0(struct irqchip *ic, bool level);                /* the 8259's INTR wire */
int lapic_msr_read(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t *val,
                   uint64_t tsc_offset);
int lapic_msr_write(struct irqchip *ic, unsigned cpu, uint32_t msr, uint64_t val,
                    uint64_t tsc_offset);
uint32_t lapic_read(struct irqchip *ic, unsigned cpu, unsigned off);
void lapic_write(struct irqchip *ic, unsigned cpu, unsigned off, uint32_t v);
int lapic_highest_irr(const struct lapic *l); /* deliverable (above ISR and TPR), or -1 */
uint64_t lapic_timer_poll(struct irqchip *ic, unsigned cpu, uint64_t now);
void ioapic_reset(struct ioapic *io);
void ioapic_set_pin(struct irqchip *ic, unsigned pin, bool level);
uint32_t ioapic_read(struct irqchip *ic, unsigned off);
void ioapic_write(struct irqchip *ic, unsigned off, uint32_t v);
void ioapic_eoi(struct irqchip *ic, uint8_t vector);
void pic_reset(struct pic8259 *p);
void pic_set_irq(struct irqchip *ic, unsigned irq, bool level);
bool pic_output(struct irqchip *ic);     /* INTR of the master */
int pic_ack(struct irqchip *ic);         /* vector, spurious IRQ7 if nothing */
uint8_t pic_read(struct irqchip *ic, uint16_t port);
void pic_write(struct irqchip *ic, uint16_t port, uint8_t v);
void pit_reset(struct pit *p);
uint32_t pit_read(struct irqchip *ic, uint16_t port);
void pit_write(struct irqchip *ic, uint16_t port, uint32_t v);
uint64_t pit_poll(struct irqchip *ic, uint64_t now); /* raises IRQ0/GSI2 edges; next edge */
