/* Guest interrupts: an IDT with per-vector C handlers, LAPIC EOI, IOAPIC routing, bounded waits. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

/* Mask and remap the 8259s; load an IDT whose vectors 32..255 call the installed handler (if
 * any) then send a LAPIC EOI, and whose vectors 0..31 fail the test with the exception name;
 * enable the LAPIC (SVR). Idempotent. */
void irq_init(void);
typedef void (*irq_handler_fn)(uint8_t vector, void *opaque);
/* Install fn for IDT vector (32..255). */
void irq_set_handler(uint8_t vector, irq_handler_fn fn, void *opaque);
/* Times vector fired since irq_init (counted before the handler runs). */
uint32_t irq_count(uint8_t vector);
/* Route IOAPIC input pin to IDT vector on the BSP: edge/level, active high/low, unmasked. */
void ioapic_route(unsigned pin, uint8_t vector, bool level, bool active_low);
void ioapic_mask(unsigned pin);
/* GSI for an ISA IRQ, following the MADT's interrupt source overrides (identity when none).
 * level and active_low get the override's polarity/trigger (ISA default: edge, high). */
unsigned irq_isa_to_gsi(unsigned isa_irq, bool *level, bool *active_low);
/* Enable interrupts and halt until irq_count(vector) >= count or about ms milliseconds passed
 * (bounded: the PM timer or a spin counter ends the wait). Leaves interrupts enabled.
 * Returns true when the count was reached. */
bool irq_wait(uint8_t vector, uint32_t count, unsigned ms);
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
/* MSI address/data for delivering vector to the BSP (fixed, edge). */
uint64_t msi_addr_bsp(void);
uint32_t msi_data(uint8_t vector);
