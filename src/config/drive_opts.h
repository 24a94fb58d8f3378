/* -drive, -snapshot and the virtio-blk-pci device's properties, in QEMU's spelling. */
#pragma once
#include "config/vm_config.h"
#include <stdbool.h>

#define VM_DRIVE_MAX 64 /* more -drive options than this is a script gone wrong */

/* Parses one -drive argument (opt is "-drive" for messages) and appends it to c->drives.
 * 0, or -EINVAL after logging an error that names the option and says what to use instead. */
int vm_config_drive_add(struct vm_config *c, const char *opt, const char *arg);
/* After all options: applies -snapshot, creates the virtio-blk-pci devices of if=virtio drives
 * (after every -device, as QEMU orders them) and checks that every drive= names a drive that
 * exists and is used by one device only. 0 or -EINVAL. */
int vm_config_drives_finish(struct vm_config *c);
void vm_config_drives_free(struct vm_config *c);
const struct vm_config_drive *vm_config_drive_find(const struct vm_config *c, const char *id);

/* -device virtio-blk-pci properties. */
struct vm_blk_device_opts {
    char *drive;                  /* drive= (required) */
    char *serial;                 /* serial=, or NULL (then the drive's serial=) */
    unsigned num_queues;          /* num-queues=; 0 = as many as vCPUs (QEMU's "auto") */
    unsigned queue_size;          /* queue-size=, default 256 */
    unsigned logical_block_size;  /* default 512 */
    unsigned physical_block_size; /* default logical_block_size */
    unsigned min_io_size, opt_io_size; /* bytes, default 0 */
    bool discard, write_zeroes;   /* discard=/write-zeroes=: offer the features (default on) */
    bool config_wce;              /* config-wce=: let the guest see the write cache (on) */
    int slot;                     /* addr=: PCI slot, -1 = first free */
};
#define VM_BLK_MAX_QUEUES 16
/* opts is the text after "virtio-blk-pci,". 0, or -EINVAL after logging an error naming the
 * device and the property. */
int vm_blk_device_opts_parse(const char *driver, const char *opts, struct vm_blk_device_opts *o);
void vm_blk_device_opts_free(struct vm_blk_device_opts *o);
/* -device virtio-blk-pci,help: prints the properties and returns true; false for other drivers. */
bool vm_blk_device_print_help(const char *driver);
