/* virtio-net-pci: the guest NIC on a net/ backend (virtio_net.c); see docs/virtio-net.md. */
#pragma once
#include <stdint.h>

struct vm_device_ctx;
struct vm_config_nic;

/* -device virtio-net-pci,netdev=ID[,mac=..][,mq=on][,vectors=N][,csum=off,...]: 0 or -errno
 * (logged, naming the device and the option). */
int virtio_net_pci_create(struct vm_device_ctx *ctx, const char *opts);
/* The NIC of a -nic TYPE or -net nic (the model is always virtio-net-pci). 0 or -errno. */
int virtio_net_pci_create_nic(struct vm_device_ctx *ctx, const struct vm_config_nic *nic);
