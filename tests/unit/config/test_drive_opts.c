/* Unit tests for -drive, -snapshot and -device virtio-blk-pci: every accepted spelling and every
 * refusal (with what it tells the user to do instead). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/drive_opts.h"
#include "config_test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_virtio_drive_defaults(void **state)
{
    struct vm_config c;
    OK(&c, "-drive", "file=disk.img,if=virtio");
    assert_int_equal(c.ndrives, 1);
    const struct vm_config_drive *d = &c.drives[0];
    assert_string_equal(d->file, "disk.img");
    assert_string_equal(d->id, "virtio0");
    assert_null(d->format);
    assert_null(d->serial);
    assert_int_equal(d->iface, VM_DRIVE_IF_VIRTIO);
    assert_int_equal(d->cache, VM_DRIVE_CACHE_WRITEBACK);
    assert_int_equal(d->aio, VM_DRIVE_AIO_DEFAULT);
    assert_false(d->read_only);
    assert_false(d->snapshot);
    assert_false(d->discard_unmap);
    assert_int_equal(d->index, 0);
    /* if=virtio creates the device, as QEMU does */
    assert_int_equal(c.ndevices, 1);
    assert_string_equal(c.devices[0].driver, "virtio-blk-pci");
    assert_string_equal(c.devices[0].opts, "drive=virtio0");
    vm_config_free(&c);
}

static void test_all_keys(void **state)
{
    struct vm_config c;
    OK(&c, "-drive",
       "file=/x/a,,b.qcow2,if=virtio,format=qcow2,cache=none,readonly=on,snapshot=on,id=d1,"
       "serial=SN-42,discard=unmap,aio=native,index=3,media=disk");
    const struct vm_config_drive *d = &c.drives[0];
    assert_string_equal(d->file, "/x/a,b.qcow2");
    assert_string_equal(d->format, "qcow2");
    assert_int_equal(d->cache, VM_DRIVE_CACHE_NONE);
    assert_true(d->read_only);
    assert_true(d->snapshot);
    assert_string_equal(d->id, "d1");
    assert_string_equal(d->serial, "SN-42");
    assert_true(d->discard_unmap);
    assert_int_equal(d->aio, VM_DRIVE_AIO_IO_URING); /* native is served by io_uring */
    assert_int_equal(d->index, 3);
    assert_string_equal(c.devices[0].opts, "drive=d1");
    vm_config_free(&c);
}

static void test_spellings(void **state)
{
    struct vm_config c;
    static const struct {
        const char *cache;
        enum vm_drive_cache want;
    } caches[] = {
        {"writeback", VM_DRIVE_CACHE_WRITEBACK},   {"writethrough", VM_DRIVE_CACHE_WRITETHROUGH},
        {"none", VM_DRIVE_CACHE_NONE},             {"off", VM_DRIVE_CACHE_NONE},
        {"directsync", VM_DRIVE_CACHE_DIRECTSYNC}, {"unsafe", VM_DRIVE_CACHE_UNSAFE},
    };
    for (unsigned i = 0; i < sizeof(caches) / sizeof(caches[0]); i++) {
        char arg[128];
        snprintf(arg, sizeof(arg), "file=x,if=virtio,cache=%s", caches[i].cache);
        OK(&c, "-drive", arg);
        assert_int_equal(c.drives[0].cache, caches[i].want);
        vm_config_free(&c);
    }
    /* cache.direct / cache.no-flush refine the mode */
    OK(&c, "-drive", "file=x,if=virtio,cache.direct=on");
    assert_int_equal(c.drives[0].cache, VM_DRIVE_CACHE_NONE);
    vm_config_free(&c);
    OK(&c, "-drive", "file=x,if=virtio,cache=writethrough,cache.direct=on");
    assert_int_equal(c.drives[0].cache, VM_DRIVE_CACHE_DIRECTSYNC);
    vm_config_free(&c);
    OK(&c, "-drive", "file=x,if=virtio,cache=none,cache.direct=off");
    assert_int_equal(c.drives[0].cache, VM_DRIVE_CACHE_WRITEBACK);
    vm_config_free(&c);
    OK(&c, "-drive", "file=x,if=virtio,cache.no-flush=on");
    assert_int_equal(c.drives[0].cache, VM_DRIVE_CACHE_UNSAFE);
    vm_config_free(&c);

    OK(&c, "-drive", "file=x,if=virtio,aio=io_uring", "-drive", "file=y,if=virtio,aio=threads");
    assert_int_equal(c.drives[0].aio, VM_DRIVE_AIO_IO_URING);
    assert_int_equal(c.drives[1].aio, VM_DRIVE_AIO_THREADS);
    vm_config_free(&c);

    OK(&c, "-drive", "file=x,if=virtio,format=raw,readonly,snapshot=off,discard=ignore");
    assert_string_equal(c.drives[0].format, "raw");
    assert_true(c.drives[0].read_only);
    assert_false(c.drives[0].snapshot);
    assert_false(c.drives[0].discard_unmap);
    vm_config_free(&c);
    OK(&c, "-drive", "file=x,if=virtio,readonly=yes,snapshot,discard=on");
    assert_true(c.drives[0].read_only);
    assert_true(c.drives[0].snapshot);
    assert_true(c.drives[0].discard_unmap);
    vm_config_free(&c);
    OK(&c, "--drive=file=x,if=virtio,discard=off");
    assert_false(c.drives[0].discard_unmap);
    vm_config_free(&c);
}

static void test_ids_and_units(void **state)
{
    struct vm_config c;
    OK(&c, "-drive", "file=a,if=virtio", "-drive", "file=b,if=virtio,index=2", "-drive",
       "file=c,if=virtio", "-drive", "file=d,if=none");
    assert_int_equal(c.ndrives, 4);
    assert_string_equal(c.drives[0].id, "virtio0");
    assert_string_equal(c.drives[1].id, "virtio2");
    assert_string_equal(c.drives[2].id, "virtio1");
    assert_string_equal(c.drives[3].id, "none0");
    /* three devices, in drive order; the if=none drive gets none */
    assert_int_equal(c.ndevices, 3);
    assert_string_equal(c.devices[0].opts, "drive=virtio0");
    assert_string_equal(c.devices[1].opts, "drive=virtio2");
    assert_string_equal(c.devices[2].opts, "drive=virtio1");
    assert_non_null(vm_config_drive_find(&c, "none0"));
    assert_null(vm_config_drive_find(&c, "nope"));
    vm_config_free(&c);

    FAILS("drive with bus=0, unit=1 exists", "-drive", "file=a,if=virtio,index=1", "-drive",
          "file=b,if=virtio,index=1");
    FAILS("Duplicate ID 'x' for drive", "-drive", "file=a,if=none,id=x", "-drive",
          "file=b,if=virtio,id=x");
    FAILS("Parameter 'id' expects an identifier", "-drive", "file=a,if=none,id=1abc");
    FAILS("index= takes a unit number", "-drive", "file=a,if=virtio,index=-1");
    FAILS("index= takes a unit number", "-drive", "file=a,if=virtio,index=x");
}

static void test_device_pairing(void **state)
{
    struct vm_config c;
    /* -device first, then the devices if=virtio creates (QEMU's order) */
    OK(&c, "-drive", "file=a,if=virtio", "-drive", "file=b,if=none,id=d0", "-device",
       "virtio-blk-pci,drive=d0,num-queues=4");
    assert_int_equal(c.ndevices, 2);
    assert_string_equal(c.devices[0].driver, "virtio-blk-pci");
    assert_string_equal(c.devices[0].opts, "drive=d0,num-queues=4");
    assert_string_equal(c.devices[1].opts, "drive=virtio0");
    vm_config_free(&c);
    OK(&c, "-drive", "file=b,if=none,id=d0", "-device", "virtio-blk,drive=d0");
    assert_string_equal(c.devices[0].driver, "virtio-blk");
    vm_config_free(&c);
    /* an unused if=none drive is allowed, as in QEMU */
    OK(&c, "-drive", "file=b,if=none,id=d0");
    assert_int_equal(c.ndevices, 0);
    vm_config_free(&c);

    FAILS("Property 'virtio-blk-pci.drive' can't find value 'nope'", "-device",
          "virtio-blk-pci,drive=nope");
    FAILS("drive 'd0' is already in use", "-drive", "file=b,if=none,id=d0", "-device",
          "virtio-blk-pci,drive=d0", "-device", "virtio-blk-pci,drive=d0");
    FAILS("drive 'virtio0' is already in use", "-drive", "file=b,if=virtio", "-device",
          "virtio-blk-pci,drive=virtio0");
}

static void test_snapshot_option(void **state)
{
    struct vm_config c;
    OK(&c, "-drive", "file=a,if=virtio", "-snapshot", "-drive", "file=b,if=none,id=x");
    assert_true(c.snapshot);
    assert_true(c.drives[0].snapshot);
    assert_true(c.drives[1].snapshot);
    vm_config_free(&c);
    OK(&c, "-drive", "file=a,if=virtio");
    assert_false(c.drives[0].snapshot);
    vm_config_free(&c);
}

static void test_refusals(void **state)
{
    FAILS("-drive without if=: QEMU's default interface is IDE, which vmkit does not emulate; "
          "add if=virtio",
          "-drive", "file=disk.img");
    FAILS("if=ide: vmkit does not emulate IDE; use if=virtio", "-drive", "file=d,if=ide");
    FAILS("if=scsi: vmkit does not emulate SCSI controllers; use if=virtio", "-drive",
          "file=d,if=scsi");
    FAILS("if=sd: vmkit has no SD card controller; use if=virtio", "-drive", "file=d,if=sd");
    FAILS("if=floppy: vmkit has no floppy controller", "-drive", "file=d,if=floppy");
    FAILS("if=pflash: vmkit has no firmware flash", "-drive", "file=d,if=pflash");
    FAILS("if=mtd", "-drive", "file=d,if=mtd");
    FAILS("if=xen", "-drive", "file=d,if=xen");
    FAILS("unsupported bus type 'usb'", "-drive", "file=d,if=usb");
    FAILS("media=cdrom: vmkit has no CD-ROM drive", "-drive", "file=x.iso,if=virtio,media=cdrom");
    FAILS("media=cdrom: vmkit has no CD-ROM drive", "-drive", "file=x.iso,media=cdrom");
    FAILS("'tape' invalid media", "-drive", "file=x,if=virtio,media=tape");
    FAILS("file= is missing", "-drive", "if=virtio");
    FAILS("file= is missing", "-drive", "if=none,id=x,file=");
    FAILS("Unknown driver 'vmdk'", "-drive", "file=x,if=virtio,format=vmdk");
    FAILS("invalid cache option 'fast'", "-drive", "file=x,if=virtio,cache=fast");
    FAILS("cache.direct= takes on or off", "-drive", "file=x,if=virtio,cache.direct=maybe");
    FAILS("invalid aio option 'posix'", "-drive", "file=x,if=virtio,aio=posix");
    FAILS("aio=native was specified, but it requires cache.direct=on", "-drive",
          "file=x,if=virtio,aio=native");
    FAILS("readonly= takes on or off", "-drive", "file=x,if=virtio,readonly=sure");
    FAILS("snapshot= takes on or off", "-drive", "file=x,if=virtio,snapshot=2");
    FAILS("Invalid discard option 'trim'", "-drive", "file=x,if=virtio,discard=trim");
    FAILS("Invalid parameter 'werror'", "-drive", "file=x,if=virtio,werror=stop");
    FAILS("Invalid parameter 'disk.img'", "-drive", "disk.img");
    FAILS("-drive requires an argument", "-drive");
    /* IDE, CD-ROM, floppy, SD shortcuts */
    FAILS("-hda is not supported: vmkit does not emulate IDE; use -drive file=IMAGE,if=virtio",
          "-hda", "disk.img");
    FAILS("-hdb is not supported: vmkit does not emulate IDE", "-hdb", "disk.img");
    FAILS("-hdc is not supported", "-hdc", "disk.img");
    FAILS("-hdd is not supported", "-hdd", "disk.img");
    FAILS("-cdrom is not supported: vmkit has no CD-ROM drive", "-cdrom", "x.iso");
    FAILS("-fda is not supported: vmkit has no floppy controller", "-fda", "f.img");
    FAILS("-sd is not supported: vmkit has no SD card controller", "-sd", "s.img");
    FAILS("-blockdev is not supported yet", "-blockdev", "driver=file,filename=x,node-name=n");
    FAILS("QEMU would use it as -hda, an IDE disk, which vmkit does not emulate); use -drive "
          "file=disk.img,if=virtio",
          "disk.img");
}

static void test_blk_device_opts(void **state)
{
    struct vm_blk_device_opts o;
    assert_int_equal(vm_blk_device_opts_parse("virtio-blk-pci", "drive=d0", &o), 0);
    assert_string_equal(o.drive, "d0");
    assert_null(o.serial);
    assert_int_equal(o.num_queues, 0); /* auto: one per vCPU */
    assert_int_equal(o.queue_size, 256);
    assert_int_equal(o.logical_block_size, 512);
    assert_int_equal(o.physical_block_size, 512);
    assert_true(o.discard);
    assert_true(o.write_zeroes);
    assert_true(o.config_wce);
    assert_int_equal(o.slot, -1);
    vm_blk_device_opts_free(&o);

    assert_int_equal(vm_blk_device_opts_parse("virtio-blk-pci",
                                              "drive=d0,num-queues=4,serial=ABC,,1,"
                                              "logical_block_size=4096,physical_block_size=8192,"
                                              "queue-size=128,min_io_size=4096,"
                                              "opt_io_size=65536,discard=off,write-zeroes=off,"
                                              "config-wce=off,id=blk0,bus=pci.0,addr=0x7",
                                              &o),
                     0);
    assert_int_equal(o.num_queues, 4);
    assert_string_equal(o.serial, "ABC,1");
    assert_int_equal(o.logical_block_size, 4096);
    assert_int_equal(o.physical_block_size, 8192);
    assert_int_equal(o.queue_size, 128);
    assert_int_equal(o.min_io_size, 4096);
    assert_int_equal(o.opt_io_size, 65536);
    assert_false(o.discard);
    assert_false(o.write_zeroes);
    assert_false(o.config_wce);
    assert_int_equal(o.slot, 7);
    vm_blk_device_opts_free(&o);
    assert_int_equal(vm_blk_device_opts_parse("virtio-blk-pci", "drive=d0,addr=0a.0", &o), 0);
    assert_int_equal(o.slot, 10);
    vm_blk_device_opts_free(&o);

    assert_int_equal(vm_blk_device_opts_parse("virtio-blk-pci",
                                              "drive=d0,logical_block_size=4096", &o),
                     0);
    assert_int_equal(o.physical_block_size, 4096); /* follows the logical size */
    vm_blk_device_opts_free(&o);

    static const struct {
        const char *opts, *msg;
    } bad[] = {
        {"", "drive property not set"},
        {"num-queues=2", "drive property not set"},
        {"drive=d0,num-queues=0", "num-queues property must be between 1 and 16"},
        {"drive=d0,num-queues=17", "num-queues property must be between 1 and 16"},
        {"drive=d0,num-queues=x", "Property 'virtio-blk-pci.num-queues' takes a number"},
        {"drive=d0,queue-size=100", "queue-size property must be a power of 2"},
        {"drive=d0,queue-size=2048", "queue-size property must be a power of 2"},
        {"drive=d0,logical_block_size=1000", "logical_block_size must be a power of 2"},
        {"drive=d0,logical_block_size=256", "logical_block_size must be a power of 2"},
        {"drive=d0,logical_block_size=4096,physical_block_size=512",
         "physical_block_size must be a power of 2, at least logical_block_size (4096)"},
        {"drive=d0,min_io_size=1000", "must be multiples of logical_block_size"},
        {"drive=d0,discard=maybe", "Property 'virtio-blk-pci.discard' takes on or off"},
        {"drive=d0,iothread=io0", "Property 'virtio-blk-pci.iothread' not found"},
        {"drive=d0,scsi=on", "Property 'virtio-blk-pci.scsi' not found"},
        {"drive=d0,bus=pci.1", "Bus 'pci.1' not found"},
        {"drive=d0,addr=0x20", "addr= takes a PCI slot"},
        {"drive=d0,addr=5.1", "addr= takes a PCI slot"},
        {"drive=d0,addr=zz", "addr= takes a PCI slot"},
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *eo = tmpfile();
        fflush(stderr);
        int save = dup(2);
        dup2(fileno(eo), 2);
        int r = vm_blk_device_opts_parse("virtio-blk-pci", bad[i].opts, &o);
        fflush(stderr);
        dup2(save, 2);
        close(save);
        rewind(eo);
        size_t n = fread(err_text, 1, sizeof(err_text) - 1, eo);
        err_text[n] = '\0';
        fclose(eo);
        if (r != -22)
            fail_msg("'%s': expected -EINVAL, got %d", bad[i].opts, r);
        if (!strstr(err_text, bad[i].msg))
            fail_msg("'%s': expected \"%s\" in: %s", bad[i].opts, bad[i].msg, err_text);
        assert_null(o.drive);
    }
}

static void test_device_help(void **state)
{
    struct vm_config c;
    enum vm_config_parse_result r = PARSE(&c, "-device", "virtio-blk-pci,help");
    vm_config_free(&c);
    assert_int_equal(r, VM_CONFIG_EXIT_OK);
    assert_non_null(strstr(out_text, "num-queues=<uint>"));
    assert_non_null(strstr(out_text, "logical_block_size"));
    assert_false(vm_blk_device_print_help("pci-testdev"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_virtio_drive_defaults),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_spellings),
        cmocka_unit_test(test_ids_and_units),
        cmocka_unit_test(test_device_pairing),
        cmocka_unit_test(test_snapshot_option),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_blk_device_opts),
        cmocka_unit_test(test_device_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
