/* -drive/-snapshot and -device virtio-blk-pci properties: QEMU's spellings, and a clear refusal
 * (saying what to use instead) for every interface vmkit does not emulate. */
#include "config/drive_opts.h"
#include "base/log.h"
#include "base/util.h"
#include "config/qemu_opts.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void drive_free(struct vm_config_drive *d)
{
    free(d->id);
    free(d->file);
    free(d->format);
    free(d->serial);
    free(d->dev_opts_);
}

/* Interfaces QEMU has and vmkit does not, with what to use instead. */
static const struct {
    const char *name;
    const char *why;
} refused_ifs[] = {
    {"ide", "vmkit does not emulate IDE"},
    {"scsi", "vmkit does not emulate SCSI controllers"},
    {"sd", "vmkit has no SD card controller"},
    {"floppy", "vmkit has no floppy controller"},
    {"pflash", "vmkit has no firmware flash (it boots kernels directly)"},
    {"mtd", "vmkit has no MTD flash"},
    {"xen", "vmkit is not a Xen backend"},
};

static bool valid_id(const char *s)
{
    /* QEMU's id rule: a letter first, then letters, digits, '-', '.', '_'. */
    if (!*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '_'))
            return false;
    return true;
}

const struct vm_config_drive *vm_config_drive_find(const struct vm_config *c, const char *id)
{
    for (unsigned i = 0; i < c->ndrives; i++)
        if (!strcmp(c->drives[i].id, id))
            return &c->drives[i];
    return NULL;
}

static int parse_onoff(struct qemu_opts *o, const char *key, bool def, bool *out, const char *opt,
                       const char *arg)
{
    if (qemu_opts_get_bool(o, key, def, out) < 0) {
        log_error("%s %s: %s= takes on or off, not '%s'", opt, arg, key, qemu_opts_get(o, key));
        return -EINVAL;
    }
    return 0;
}

#define DRIVE_KEYS                                                                                 \
    "file, if, format, cache, cache.direct, cache.no-flush, readonly, snapshot, id, serial, "     \
    "discard, aio, index, media"

static int drive_parse(const char *opt, const char *arg,
                       struct vm_config_drive *d)
{
    struct qemu_opts o;
    char err[256];
    if (qemu_opts_parse(&o, arg, NULL, err, sizeof(err)) < 0) {
        log_error("%s %s: %s", opt, arg, err);
        return -EINVAL;
    }
    int ret = -EINVAL;
    d->index = -1;
    static const char *const known[] = {"file", "if", "format", "cache", "cache.direct",
                                        "cache.no-flush", "readonly", "snapshot", "id", "serial",
                                        "discard", "aio", "index", "media"};
    for (unsigned i = 0; i < o.n; i++) {
        bool ok = false;
        for (unsigned k = 0; k < ARRAY_SIZE(known); k++)
            ok |= !strcmp(o.v[i].key, known[k]);
        if (!ok) {
            log_error("%s %s: Invalid parameter '%s'; vmkit's -drive accepts " DRIVE_KEYS, opt,
                      arg, o.v[i].key);
            goto out;
        }
    }

    const char *media = qemu_opts_get(&o, "media");
    if (media && !strcmp(media, "cdrom")) {
        log_error("%s %s: media=cdrom: vmkit has no CD-ROM drive (no IDE, AHCI or SCSI); attach "
                  "the image as a read-only disk with if=virtio,readonly=on instead",
                  opt, arg);
        goto out;
    }
    if (media && strcmp(media, "disk")) {
        log_error("%s %s: '%s' invalid media; use media=disk", opt, arg, media);
        goto out;
    }

    const char *iface = qemu_opts_get(&o, "if");
    if (!iface) {
        log_error("%s %s: -drive without if=: QEMU's default interface is IDE, which vmkit does "
                  "not emulate; add if=virtio (or if=none,id=ID with -device "
                  "virtio-blk-pci,drive=ID)",
                  opt, arg);
        goto out;
    }
    if (!strcmp(iface, "virtio")) {
        d->iface = VM_DRIVE_IF_VIRTIO;
    } else if (!strcmp(iface, "none")) {
        d->iface = VM_DRIVE_IF_NONE;
    } else {
        for (unsigned i = 0; i < ARRAY_SIZE(refused_ifs); i++) {
            if (!strcmp(iface, refused_ifs[i].name)) {
                log_error("%s %s: if=%s: %s; use if=virtio (the guest needs a virtio-blk "
                          "driver, e.g. Linux's CONFIG_VIRTIO_BLK)",
                          opt, arg, iface, refused_ifs[i].why);
                goto out;
            }
        }
        log_error("%s %s: unsupported bus type '%s'; use if=virtio or if=none", opt, arg, iface);
        goto out;
    }

    const char *file = qemu_opts_get(&o, "file");
    if (!file || !*file) {
        log_error("%s %s: file= is missing; a virtio-blk disk needs an image (vmkit has no "
                  "removable media)",
                  opt, arg);
        goto out;
    }
    d->file = xstrdup(file);

    const char *format = qemu_opts_get(&o, "format");
    if (format) {
        if (strcmp(format, "raw") && strcmp(format, "qcow2")) {
            log_error("%s %s: Unknown driver '%s': vmkit opens raw and qcow2 images; convert "
                      "others with 'vmkit img convert -O qcow2 IN OUT' (or qemu-img)",
                      opt, arg, format);
            goto out;
        }
        d->format = xstrdup(format);
    }

    const char *cache = qemu_opts_get(&o, "cache");
    static const char *const cache_names[] = {"writeback", "writethrough", "none", "directsync",
                                              "unsafe"};
    d->cache = VM_DRIVE_CACHE_WRITEBACK;
    if (cache) {
        unsigned i;
        for (i = 0; i < ARRAY_SIZE(cache_names); i++)
            if (!strcmp(cache, cache_names[i]))
                break;
        if (!strcmp(cache, "off")) /* QEMU's old spelling of none */
            i = VM_DRIVE_CACHE_NONE;
        if (i == ARRAY_SIZE(cache_names)) {
            log_error("%s %s: invalid cache option '%s'; use writeback, writethrough, none, "
                      "directsync or unsafe",
                      opt, arg, cache);
            goto out;
        }
        d->cache = (enum vm_drive_cache)i;
    }
    /* cache.direct / cache.no-flush refine the mode, as QEMU's -drive allows. */
    bool direct = d->cache == VM_DRIVE_CACHE_NONE || d->cache == VM_DRIVE_CACHE_DIRECTSYNC;
    bool no_flush = d->cache == VM_DRIVE_CACHE_UNSAFE;
    bool writeback = d->cache != VM_DRIVE_CACHE_WRITETHROUGH &&
                     d->cache != VM_DRIVE_CACHE_DIRECTSYNC;
    if (parse_onoff(&o, "cache.direct", direct, &direct, opt, arg) ||
        parse_onoff(&o, "cache.no-flush", no_flush, &no_flush, opt, arg))
        goto out;
    if (no_flush)
        d->cache = VM_DRIVE_CACHE_UNSAFE;
    else if (direct)
        d->cache = writeback ? VM_DRIVE_CACHE_NONE : VM_DRIVE_CACHE_DIRECTSYNC;
    else
        d->cache = writeback ? VM_DRIVE_CACHE_WRITEBACK : VM_DRIVE_CACHE_WRITETHROUGH;

    const char *aio = qemu_opts_get(&o, "aio");
    d->aio = VM_DRIVE_AIO_DEFAULT;
    if (aio) {
        if (!strcmp(aio, "io_uring")) {
            d->aio = VM_DRIVE_AIO_IO_URING;
        } else if (!strcmp(aio, "threads")) {
            d->aio = VM_DRIVE_AIO_THREADS;
        } else if (!strcmp(aio, "native")) {
            /* Linux AIO: vmkit uses io_uring, which does what native does and more; QEMU's
             * rule that native needs O_DIRECT is kept so command lines stay portable. */
            if (!direct) {
                log_error("%s %s: aio=native was specified, but it requires cache.direct=on, "
                          "which was not specified (use cache=none or aio=io_uring)",
                          opt, arg);
                goto out;
            }
            d->aio = VM_DRIVE_AIO_IO_URING;
        } else {
            log_error("%s %s: invalid aio option '%s'; use io_uring, threads or native", opt, arg,
                      aio);
            goto out;
        }
    }

    if (parse_onoff(&o, "readonly", false, &d->read_only, opt, arg) ||
        parse_onoff(&o, "snapshot", false, &d->snapshot, opt, arg))
        goto out;

    const char *discard = qemu_opts_get(&o, "discard");
    if (discard) {
        if (!strcmp(discard, "unmap") || !strcmp(discard, "on")) {
            d->discard_unmap = true;
        } else if (!strcmp(discard, "ignore") || !strcmp(discard, "off")) {
            d->discard_unmap = false;
        } else {
            log_error("%s %s: Invalid discard option '%s'; use discard=unmap or discard=ignore",
                      opt, arg, discard);
            goto out;
        }
    }

    const char *serial = qemu_opts_get(&o, "serial");
    if (serial)
        d->serial = xstrdup(serial);

    unsigned index;
    int r = qemu_opts_get_uint(&o, "index", &index);
    if (r == -EINVAL || r == -ERANGE || (r == 0 && index > 1000)) {
        log_error("%s %s: index= takes a unit number from 0 to 1000, not '%s'", opt, arg,
                  qemu_opts_get(&o, "index"));
        goto out;
    }
    if (r == 0)
        d->index = (int)index;

    const char *id = qemu_opts_get(&o, "id");
    if (id) {
        if (!valid_id(id)) {
            log_error("%s %s: Parameter 'id' expects an identifier: a letter, then letters, "
                      "digits, '-', '.' or '_'",
                      opt, arg);
            goto out;
        }
        d->id = xstrdup(id);
    }

    ret = 0;
out:
    qemu_opts_free(&o);
    return ret;
}

int vm_config_drive_add(struct vm_config *c, const char *opt, const char *arg)
{
    if (c->ndrives >= VM_DRIVE_MAX) {
        log_error("%s %s: too many drives (vmkit takes up to %d)", opt, arg, VM_DRIVE_MAX);
        return -EINVAL;
    }
    struct vm_config_drive d = {0};
    if (drive_parse(opt, arg, &d) < 0) {
        drive_free(&d);
        return -EINVAL;
    }
    /* QEMU's unit numbers: index= or the first unit no drive of that interface has yet. */
    for (unsigned i = 0; i < c->ndrives; i++) {
        if (d.index >= 0 && c->drives[i].iface == d.iface && c->drives[i].index == d.index) {
            log_error("%s %s: drive with bus=0, unit=%d exists; give each drive its own index=",
                      opt, arg, d.index);
            drive_free(&d);
            return -EINVAL;
        }
    }
    if (d.index < 0) {
        for (int u = 0; d.index < 0; u++) {
            bool used = false;
            for (unsigned i = 0; i < c->ndrives; i++)
                used |= c->drives[i].iface == d.iface && c->drives[i].index == u;
            if (!used)
                d.index = u;
        }
    }
    if (!d.id) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%s%d", d.iface == VM_DRIVE_IF_VIRTIO ? "virtio" : "none",
                 d.index);
        d.id = xstrdup(buf);
    }
    if (vm_config_drive_find(c, d.id)) {
        log_error("%s %s: Duplicate ID '%s' for drive; give each drive its own id=", opt, arg,
                  d.id);
        drive_free(&d);
        return -EINVAL;
    }
    c->drives = xrealloc(c->drives, (c->ndrives + 1) * sizeof(*c->drives));
    c->drives[c->ndrives++] = d;
    return 0;
}

static bool is_blk_driver(const char *driver)
{
    return !strcmp(driver, "virtio-blk-pci") || !strcmp(driver, "virtio-blk");
}

/* The drive= of a -device's raw options, malloc'd, or NULL. */
static char *device_drive(const char *opts)
{
    struct qemu_opts o;
    char err[256];
    if (qemu_opts_parse(&o, opts, NULL, err, sizeof(err)) < 0)
        return NULL;
    char *r = dup_or_null(qemu_opts_get(&o, "drive"));
    qemu_opts_free(&o);
    return r;
}

int vm_config_drives_finish(struct vm_config *c)
{
    if (c->snapshot)
        for (unsigned i = 0; i < c->ndrives; i++)
            c->drives[i].snapshot = true;

    /* Who uses each drive: explicit -device first, then the devices if=virtio creates. */
    unsigned *users = xzalloc((c->ndrives + 1) * sizeof(*users));
    int ret = 0;
    for (unsigned i = 0; i < c->ndevices && !ret; i++) {
        if (!is_blk_driver(c->devices[i].driver))
            continue;
        char *id = device_drive(c->devices[i].opts);
        if (!id) {
            /* the device reports a missing drive= itself, with its own options */
            continue;
        }
        const struct vm_config_drive *d = vm_config_drive_find(c, id);
        if (!d) {
            log_error("-device %s,%s: Property '%s.drive' can't find value '%s'; define it with "
                      "-drive file=IMAGE,if=none,id=%s",
                      c->devices[i].driver, c->devices[i].opts, c->devices[i].driver, id, id);
            ret = -EINVAL;
        } else if (d->iface != VM_DRIVE_IF_NONE || users[d - c->drives]++) {
            log_error("-device %s,%s: drive '%s' is already in use by another device (an "
                      "if=virtio drive gets its own device; use if=none for -device)",
                      c->devices[i].driver, c->devices[i].opts, id);
            ret = -EINVAL;
        }
        free(id);
    }
    free(users);
    if (ret)
        return ret;

    for (unsigned i = 0; i < c->ndrives; i++) {
        struct vm_config_drive *d = &c->drives[i];
        if (d->iface != VM_DRIVE_IF_VIRTIO || d->dev_opts_)
            continue;
        /* ",," escapes a comma inside an id; ids cannot hold one, so this is exact. */
        size_t n = strlen(d->id) + 8;
        d->dev_opts_ = xmalloc(n);
        snprintf(d->dev_opts_, n, "drive=%s", d->id);
        c->devices = xrealloc(c->devices, (c->ndevices + 1) * sizeof(*c->devices));
        c->devices[c->ndevices++] =
            (struct vm_config_device){.driver = "virtio-blk-pci", .opts = d->dev_opts_};
    }
    return 0;
}

void vm_config_drives_free(struct vm_config *c)
{
    for (unsigned i = 0; i < c->ndrives; i++)
        drive_free(&c->drives[i]);
    free(c->drives);
    c->drives = NULL;
    c->ndrives = 0;
}

/* ---- -device virtio-blk-pci ---- */

#define BLK_DEVICE_KEYS                                                                            \
    "drive, serial, num-queues, queue-size, logical_block_size, physical_block_size, "            \
    "min_io_size, opt_io_size, discard, write-zeroes, config-wce, id, bus, addr, bootindex"

static bool is_pow2(unsigned v)
{
    return v && !(v & (v - 1));
}

static int get_uint_prop(struct qemu_opts *o, const char *key, unsigned *out, const char *driver,
                         const char *opts)
{
    int r = qemu_opts_get_uint(o, key, out);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        log_error("-device %s,%s: Property '%s.%s' takes a number, not '%s'", driver, opts,
                  driver, key, qemu_opts_get(o, key));
        return -EINVAL;
    }
    return 0;
}

int vm_blk_device_opts_parse(const char *driver, const char *opts, struct vm_blk_device_opts *b)
{
    memset(b, 0, sizeof(*b));
    b->queue_size = 256;
    b->logical_block_size = 512;
    b->discard = b->write_zeroes = b->config_wce = true;
    struct qemu_opts o;
    char err[256];
    if (qemu_opts_parse(&o, opts, NULL, err, sizeof(err)) < 0) {
        log_error("-device %s,%s: %s", driver, opts, err);
        return -EINVAL;
    }
    int ret = -EINVAL;
    const char *drive = qemu_opts_get(&o, "drive");
    if (!drive || !*drive) {
        log_error("-device %s,%s: drive property not set; add drive=ID naming a -drive "
                  "if=none,id=ID",
                  driver, opts);
        goto out;
    }
    b->drive = xstrdup(drive);
    b->serial = dup_or_null(qemu_opts_get(&o, "serial"));
    unsigned pbs = 0;
    if (get_uint_prop(&o, "num-queues", &b->num_queues, driver, opts) ||
        get_uint_prop(&o, "queue-size", &b->queue_size, driver, opts) ||
        get_uint_prop(&o, "logical_block_size", &b->logical_block_size, driver, opts) ||
        get_uint_prop(&o, "physical_block_size", &pbs, driver, opts) ||
        get_uint_prop(&o, "min_io_size", &b->min_io_size, driver, opts) ||
        get_uint_prop(&o, "opt_io_size", &b->opt_io_size, driver, opts))
        goto out;
    if (qemu_opts_has(&o, "num-queues") && (b->num_queues < 1 || b->num_queues > VM_BLK_MAX_QUEUES)) {
        log_error("-device %s,%s: num-queues property must be between 1 and %d", driver, opts,
                  VM_BLK_MAX_QUEUES);
        goto out;
    }
    if (b->queue_size < 2 || b->queue_size > 1024 || !is_pow2(b->queue_size)) {
        log_error("-device %s,%s: queue-size property must be a power of 2 between 2 and 1024",
                  driver, opts);
        goto out;
    }
    if (b->logical_block_size < 512 || b->logical_block_size > 32768 ||
        !is_pow2(b->logical_block_size)) {
        log_error("-device %s,%s: logical_block_size must be a power of 2 between 512 and "
                  "32768",
                  driver, opts);
        goto out;
    }
    b->physical_block_size = pbs ? pbs : b->logical_block_size;
    if (b->physical_block_size > 32768 || !is_pow2(b->physical_block_size) ||
        b->physical_block_size < b->logical_block_size) {
        log_error("-device %s,%s: physical_block_size must be a power of 2, at least "
                  "logical_block_size (%u) and at most 32768",
                  driver, opts, b->logical_block_size);
        goto out;
    }
    if ((b->min_io_size % b->logical_block_size) || (b->opt_io_size % b->logical_block_size) ||
        b->min_io_size / b->logical_block_size > 0xffff) {
        log_error("-device %s,%s: min_io_size and opt_io_size must be multiples of "
                  "logical_block_size (%u)",
                  driver, opts, b->logical_block_size);
        goto out;
    }
    const char *bad_bool = NULL;
    if (qemu_opts_get_bool(&o, "discard", true, &b->discard) < 0)
        bad_bool = "discard";
    else if (qemu_opts_get_bool(&o, "write-zeroes", true, &b->write_zeroes) < 0)
        bad_bool = "write-zeroes";
    else if (qemu_opts_get_bool(&o, "config-wce", true, &b->config_wce) < 0)
        bad_bool = "config-wce";
    if (bad_bool) {
        log_error("-device %s,%s: Property '%s.%s' takes on or off", driver, opts, driver,
                  bad_bool);
        goto out;
    }
    qemu_opts_get(&o, "id"); /* names the device for the monitor; nothing to configure */
    const char *bus = qemu_opts_get(&o, "bus");
    if (bus && strcmp(bus, "pci.0") && strcmp(bus, "pcie.0")) {
        log_error("-device %s,%s: Bus '%s' not found; vmkit has one PCI bus, pci.0", driver, opts,
                  bus);
        goto out;
    }
    b->slot = -1;
    const char *addr = qemu_opts_get(&o, "addr");
    if (addr) {
        char *end;
        unsigned long slot = strtoul(addr, &end, 16);
        if (end == addr || (*end && strcmp(end, ".0") && strcmp(end, ".00")) || slot > 31) {
            log_error("-device %s,%s: addr= takes a PCI slot (0x0-0x1f, function 0), e.g. "
                      "addr=0x5 or addr=05.0",
                      driver, opts);
            goto out;
        }
        b->slot = (int)slot;
    }
    if (qemu_opts_get(&o, "bootindex"))
        log_warn("-device %s,%s: bootindex is ignored: vmkit has no firmware and boots "
                 "-kernel directly",
                 driver, opts);
    const char *bad = qemu_opts_first_unused(&o);
    if (bad) {
        log_error("-device %s,%s: Property '%s.%s' not found; vmkit's %s has " BLK_DEVICE_KEYS,
                  driver, opts, driver, bad, driver);
        goto out;
    }
    ret = 0;
out:
    qemu_opts_free(&o);
    if (ret)
        vm_blk_device_opts_free(b);
    return ret;
}

void vm_blk_device_opts_free(struct vm_blk_device_opts *b)
{
    free(b->drive);
    free(b->serial);
    b->drive = b->serial = NULL;
}

bool vm_blk_device_print_help(const char *driver)
{
    if (!is_blk_driver(driver))
        return false;
    printf("%s options (docs/disks.md):\n"
           "  drive=<str>               the -drive if=none,id=... it shows the guest (required)\n"
           "  num-queues=<uint>         1..%d request queues (default: one per vCPU)\n"
           "  queue-size=<uint>         ring entries, a power of 2 from 2 to 1024 (default 256)\n"
           "  serial=<str>              what GET_ID returns (default: the drive's serial=)\n"
           "  logical_block_size=<uint> 512..32768, a power of 2 (default 512)\n"
           "  physical_block_size=<uint> at least logical_block_size (default: the same)\n"
           "  min_io_size=<uint>, opt_io_size=<uint>  topology hints in bytes (default 0)\n"
           "  discard=<bool>, write-zeroes=<bool>  offer those requests (default on)\n"
           "  config-wce=<bool>         let the guest toggle the write cache (default on)\n"
           "  addr=<slot>, bus=pci.0, id=<str>, bootindex=<int> (ignored)\n",
           driver, VM_BLK_MAX_QUEUES);
    return true;
}
