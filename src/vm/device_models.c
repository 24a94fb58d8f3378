/* The table of -device models; each device's owner adds its line. */
#include "vm/device_models.h"
#include "hw/pci.h"
#include <string.h>

static int testdev_create(struct vm_device_ctx *ctx, const char *opts)
{
    return pci_testdev_create(ctx->pci) ? 0 : -1;
}

const struct vm_device_model vm_device_models[] = {
    {"pci-testdev", testdev_create},
    {NULL, NULL},
};

const struct vm_device_model *vm_device_model_find(const char *driver)
{
    for (const struct vm_device_model *d = vm_device_models; d->driver; d++)
        if (!strcmp(d->driver, driver))
            return d;
    return NULL;
}
