/* The machine object: buses, lock, and the requests devices make of the VM (reset, power-off). */
#include "machine/machine.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void machine_init(struct machine *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    bus_init(&m->pio, "pio");
    bus_init(&m->mmio, "mmio");
    m->mem.fd = -1;
}

void machine_destroy(struct machine *m)
{
    bus_destroy(&m->pio);
    bus_destroy(&m->mmio);
    free(m->reset_handlers);
    m->reset_handlers = NULL;
    m->nreset_handlers = 0;
    pthread_mutex_destroy(&m->lock);
}

void machine_request(struct machine *m, enum machine_request req)
{
    if (m->on_request)
        m->on_request(m, req);
}

void machine_add_reset_handler(struct machine *m, void (*fn)(void *), void *opaque)
{
    m->reset_handlers =
        xrealloc(m->reset_handlers, sizeof(*m->reset_handlers) * (m->nreset_handlers + 1));
    m->reset_handlers[m->nreset_handlers++] = (struct machine_reset_handler){fn, opaque};
}

void machine_reset_devices(struct machine *m)
{
    for (unsigned i = 0; i < m->nreset_handlers; i++)
        m->reset_handlers[i].fn(m->reset_handlers[i].opaque);
}

int machine_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd,
                      bool assign)
{
    return m->ioeventfd ? m->ioeventfd(m, addr, len, pio, fd, assign) : -ENOTSUP;
}

int machine_irqfd(struct machine *m, int fd, uint64_t msi_addr, uint32_t msi_data, bool assign)
{
    return m->irqfd ? m->irqfd(m, fd, msi_addr, msi_data, assign) : -ENOTSUP;
}
