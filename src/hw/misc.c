/* Small pc ports: the POST-code sink at 0x80, reset control at 0xCF9, system control port A. */
#include "hw/devices.h"

#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include "machine/machine.h"

#define RCR_SYS_RST 0x02 /* hard (system) reset rather than CPU-only: both mean reset here */
#define RCR_RST_CPU 0x04
#define PORT_SYSCTL_A 0x92
#define SYSCTL_A_FAST_RESET 0x01
#define SYSCTL_A_A20 0x02

struct misc_ports {
    struct machine *m;
    uint8_t reset_control;
    uint8_t sysctl_a;
};

/* Linux's io_delay writes here; firmware writes POST codes. Nothing to see. */
static uint64_t post_read(void *opaque, uint64_t offset, unsigned size)
{
    return ~0ULL;
}

static void post_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
}

static const struct bus_ops post_ops = {.read = post_read, .write = post_write};

static uint64_t rcr_read(void *opaque, uint64_t offset, unsigned size)
{
    struct misc_ports *p = opaque;
    return p->reset_control;
}

static void rcr_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct misc_ports *p = opaque;
    p->reset_control = value & 0xFF;
    if (value & RCR_RST_CPU)
        machine_request(p->m, MACHINE_REQ_RESET);
}

static const struct bus_ops rcr_ops = {.read = rcr_read, .write = rcr_write};

static uint64_t sysctl_read(void *opaque, uint64_t offset, unsigned size)
{
    struct misc_ports *p = opaque;
    return p->sysctl_a | SYSCTL_A_A20;
}

static void sysctl_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct misc_ports *p = opaque;
    /* A20 stays enabled whatever the guest writes; bit 0 rising is a fast CPU reset. */
    bool rising = (value & SYSCTL_A_FAST_RESET) && !(p->sysctl_a & SYSCTL_A_FAST_RESET);
    p->sysctl_a = value & ~SYSCTL_A_FAST_RESET;
    if (rising)
        machine_request(p->m, MACHINE_REQ_RESET);
}

static const struct bus_ops sysctl_ops = {.read = sysctl_read, .write = sysctl_write};

static void misc_reset(void *opaque)
{
    struct misc_ports *p = opaque;
    p->reset_control = 0;
    p->sysctl_a = 0;
}

static void misc_register(struct machine *m, uint16_t port, const struct bus_ops *ops,
                          void *opaque, const char *name)
{
    int ret = bus_register(&m->pio, port, 1, ops, opaque, name);
    if (ret < 0)
        log_error("%s: port 0x%x already in use (%d); the port stays unclaimed", name, port, ret);
}

void misc_ports_create(struct machine *m)
{
    struct misc_ports *p = xzalloc(sizeof(*p));
    p->m = m;
    misc_register(m, PORT_POST, &post_ops, p, "post");
    /* Exactly [0xCF9, 0xCFA): 0xCF8-0xCFB around it belong to PCI configuration. */
    misc_register(m, PORT_RESET_CONTROL, &rcr_ops, p, "reset-control");
    misc_register(m, PORT_SYSCTL_A, &sysctl_ops, p, "sysctl-a");
    machine_add_reset_handler(m, misc_reset, p);
}
