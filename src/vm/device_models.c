/* The table of -device models; each device's owner adds its line. */
#include "vm/device_models.h"
#include "hw/pci.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio_blk.h"
#include "hw/virtio/virtio_net.h"
#include <string.h>

static int testdev_create(struct vm_device_ctx *ctx, const char *opts)
{
    return pci_testdev_create(ctx->pci) ? 0 : -1;
}

const struct vm_device_model vm_device_models[] = {
    {"pci-testdev", testdev_create},
    {"virtio-rng-pci", virtio_rng_pci_create},
    {"virtio-serial-pci", virtio_serial_pci_create},
    {"virtio-serial", virtio_serial_pci_create},
    {"virtconsole", virtconsole_create},
    {"virtio-blk-pci", virtio_blk_pci_create}, {"virtio-blk", virtio_blk_pci_create},
    {"virtio-net-pci", virtio_net_pci_create}, {"virtio-net", virtio_net_pci_create},
    {NULL, NULL},
};

const struct vm_device_model *vm_device_model_find(const char *driver)
{
    for (const struct vm_device_model *d = vm_device_models; d->driver; d++)
        if (!strcmp(d->driver, driver))
            return d;
    return NULL;
}
