/* The machine a VM process runs: RAM, buses, interrupt routing, and the devices' way to ask for
 * reset or power-off. Devices see this, never the accelerator. */
#pragma once
#include "base/evloop.h"
#include "machine/bus.h"
#include "machine/guest_mem.h"
#include "machine/irq.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum machine_request {
    MACHINE_REQ_NONE,
    MACHINE_REQ_RESET,    /* guest asked for a reset (0xCF9, i8042, ACPI reset, triple fault) */
    MACHINE_REQ_POWEROFF, /* guest entered S5 */
    MACHINE_REQ_QUIT,     /* the host side asked to stop (signal, Ctrl-a x, monitor) */
    MACHINE_REQ_ERROR,    /* internal error, already reported */
};

struct machine_reset_handler {
    void (*fn)(void *opaque);
    void *opaque;
};

struct machine {
    /* The big lock: held by vCPU threads while they dispatch I/O and by the event loop while it
     * runs device callbacks, so device models need no locks of their own. */
    pthread_mutex_t lock;
    /* Devices that write RAM through pointers report it with guest_mem_written(&m->mem, ...)
     * before telling the guest (virtq_push does for virtio); the VM layer sets its hook. */
    struct guest_mem mem;
    struct bus pio, mmio;
    struct irq_chip irq;
    struct evloop *ev;
    unsigned ncpus;

    /* Set by the VM layer: called (lock held) when a device asks to reset or power off. */
    void (*on_request)(struct machine *m, enum machine_request req);
    void *owner;

    struct machine_reset_handler *reset_handlers;
    unsigned nreset_handlers;

    /* Accelerator fast paths, set by the VM layer; NULL when the accelerator has none. Devices
     * call them through machine_ioeventfd()/machine_irqfd(), which say -ENOTSUP then, so every
     * device also works on the plain exit path. Registrations do not survive a machine reset:
     * devices drop theirs in their reset handlers and set them up again when the guest does. */
    int (*ioeventfd)(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd,
                     bool assign);
    int (*irqfd)(struct machine *m, int fd, uint64_t msi_addr, uint32_t msi_data, bool assign);

    /* The guest's clock (ns), set by the VM layer from the accelerator; NULL: host monotonic. */
    uint64_t (*clock_ns)(struct machine *m);
    /* Device requests started and not yet completed (atomic): a deterministic accelerator
     * waits for them between slices, so their completions land at a reproducible point. */
    unsigned io_inflight;
    /* Device timers (machine_timer_*); the accelerator sets timers_by_accel when it fires them
     * itself on its own clock (machine_timers_run) instead of the event loop on host time. */
    struct machine_timer *timers;
    bool timers_by_accel;
};

void machine_init(struct machine *m);
void machine_destroy(struct machine *m);
void machine_request(struct machine *m, enum machine_request req);
/* Device reset hooks, run in registration order when the machine resets. */
void machine_add_reset_handler(struct machine *m, void (*fn)(void *), void *opaque);
void machine_reset_devices(struct machine *m);

/* A guest write of any value to [addr, addr+len) signals fd instead of exiting to the VMM. */
int machine_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd,
                      bool assign);
/* Writing to fd (an eventfd) delivers the MSI (msi_addr, msi_data) without the VMM. */
int machine_irqfd(struct machine *m, int fd, uint64_t msi_addr, uint32_t msi_data, bool assign);

/* The guest's clock in ns (what its timers and TSC follow): virtual under -accel emu. */
uint64_t machine_clock_ns(struct machine *m);
/* Timers on the guest's clock, for devices (the RTC): like evtimers (base/evloop.h), but under
 * -accel emu they fire at the same guest instruction run after run. Callbacks run with the
 * machine lock held. ns_from_now 0 disarms; period_ns 0 is one-shot. */
struct machine_timer *machine_timer_new(struct machine *m, void (*cb)(void *opaque), void *opaque);
void machine_timer_arm(struct machine_timer *t, uint64_t ns_from_now, uint64_t period_ns);
void machine_timer_free(struct machine_timer *t);
/* For an accelerator with timers_by_accel: ns until the earliest deadline (0: due now,
 * UINT64_MAX: none), and firing the due ones (takes the machine lock). */
uint64_t machine_timers_due_in(struct machine *m);
void machine_timers_run(struct machine *m);

/* A device request that completes later (from the event loop) starts / has completed. */
static inline void machine_io_begin(struct machine *m)
{
    __atomic_add_fetch(&m->io_inflight, 1, __ATOMIC_SEQ_CST);
}
static inline void machine_io_end(struct machine *m)
{
    __atomic_sub_fetch(&m->io_inflight, 1, __ATOMIC_SEQ_CST);
}
