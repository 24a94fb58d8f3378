/* The -device models vmkit knows: each device file adds one entry to the table in
 * device_models.c, and the VM creates devices from it in command-line order. */
#pragma once
#include "config/vm_config.h"

struct machine;
struct pci_host;
struct blk_aio;

/* What a device model gets to build itself with. */
struct vm_device_ctx {
    struct machine *m;
    struct pci_host *pci;
    const struct vm_config *cfg;
    /* The block I/O engine shared by all disks, created on first use; its completions run on
     * the event loop. */
    struct blk_aio *(*blk_aio)(struct vm_device_ctx *ctx);
    void *vm; /* private to the VM layer */
};

struct vm_device_model {
    const char *driver; /* the -device name, e.g. "virtio-rng-pci" */
    /* opts is the text after "DRIVER," (QEMU's key=value list, parse with qemu_opts_parse).
     * 0, or -errno after logging an error that names the device and the bad option. */
    int (*create)(struct vm_device_ctx *ctx, const char *opts);
};

/* NULL-terminated. */
extern const struct vm_device_model vm_device_models[];
const struct vm_device_model *vm_device_model_find(const char *driver);
