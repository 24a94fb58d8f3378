/* The -accel emu backend: the accelerator vtable over the software CPU (not wired to machines yet). */
#include <errno.h>
#include <stdio.h>

#include "accel/accel.h"

static int emu_probe(char *why, size_t why_len)
{
    /* The CPU core (emu_cpu.h) runs and is differentially tested, but the userspace interrupt
     * controllers and timers a whole machine needs are not there yet. */
    snprintf(why, why_len,
             "the software CPU cannot run whole machines yet; use -accel kvm on a host with /dev/kvm");
    return -ENOTSUP;
}

static int emu_vm_create(struct machine *m, const struct accel_config *cfg, struct accel **out)
{
    (void)m;
    (void)cfg;
    *out = NULL;
    return -ENOTSUP;
}

const struct accel_ops accel_emu_ops = {
    .name = "emu",
    .probe = emu_probe,
    .vm_create = emu_vm_create,
};
