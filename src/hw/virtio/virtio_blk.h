/* virtio-blk-pci: the -device model (and what -drive if=virtio creates). */
#pragma once
#include <stdbool.h>

struct vm_device_ctx;
/* opts: the text after "virtio-blk-pci," (drive=ID required). 0, or -errno after an error that
 * names the device, the drive and what to do. */
int virtio_blk_pci_create(struct vm_device_ctx *ctx, const char *opts);

/* The device without a transport, for unit tests (the caller sets vd->m and vd->tops, as
 * virtio_pci_create would); virtio_blk_free undoes it. 0 or -errno after an error message. */
struct virtio_dev;
int virtio_blk_new(struct vm_device_ctx *ctx, const char *opts, struct virtio_dev **out);
void virtio_blk_free(struct virtio_dev *vd);

/* QEMU's image locks (file-posix "locking=on"): byte-range OFD locks at 100+perm (permissions
 * held) and 200+perm (permissions not shared), so vmkit and QEMU refuse each other's images.
 * Returns an fd holding the locks (close it to release), or -errno after logging an error
 * naming the file. writable: the disk will be written. */
int virtio_blk_lock_image(const char *filename, bool writable);
