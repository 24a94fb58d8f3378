/* Test double for the machine the pc devices plug into: a recording bus, irq chip, clock and timers. */
#pragma once
#include "machine/machine.h"

#include <stdbool.h>
#include <stdint.h>

#define FAKE_IRQS 24

struct fake_irq_state {
    bool level[FAKE_IRQS];
    unsigned rises[FAKE_IRQS]; /* low-to-high transitions: what an edge-triggered pin counts */
    unsigned calls[FAKE_IRQS];
};

extern struct fake_irq_state fake_irq;
extern enum machine_request fake_last_request;
extern unsigned fake_request_count;
extern uint64_t fake_mono_ns; /* what clock_monotonic_ns() returns */

/* A machine with an empty PIO bus, the recording irq chip and, if with_ev, fake timers. */
void fake_machine_init(struct machine *m, bool with_ev);
void fake_machine_reset_records(void);

uint8_t pio_in8(struct machine *m, uint16_t port);
void pio_out8(struct machine *m, uint16_t port, uint8_t v);
uint32_t pio_in(struct machine *m, uint16_t port, unsigned size);
void pio_out(struct machine *m, uint16_t port, unsigned size, uint32_t v);

/* Fake timers: advance the monotonic clock by ns, firing due timers in order. */
void fake_advance(uint64_t ns);
/* Number of timers armed right now. */
unsigned fake_timers_armed(void);
