/* Unit tests for `vmkit run` command-line parsing: every QEMU spelling and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config_test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB_ (1ULL << 20)
#define GiB_ (1ULL << 30)

static void test_defaults(void **state)
{
    struct vm_config c;
    OK(&c, "-kernel", "bz");
    assert_true(c.ram_size == 512 * MiB_);
    assert_true(c.ram_maxsize == 512 * MiB_);
    assert_int_equal(c.ncpus, 1);
    assert_int_equal(c.maxcpus, 1);
    assert_int_equal(c.sockets * c.dies * c.cores * c.threads, 1);
    assert_string_equal(c.accel, "kvm");
    assert_int_equal(c.naccels, 1);
    assert_string_equal(c.cpu_model, "host");
    assert_string_equal(c.machine_type, "pc");
    assert_string_equal(c.serial, "stdio");
    assert_int_equal(c.nserials, 1);
    assert_false(c.daemonize || c.nographic || c.display_none || c.no_reboot || c.no_shutdown);
    assert_false(c.start_paused);
    assert_null(c.qmp);
    assert_null(c.monitor);
    assert_int_equal(c.ndevices, 0);
    assert_string_equal(c.kernel, "bz");
    vm_config_free(&c);

    /* No options at all is valid: the default guest. */
    OK(&c, NULL);
    assert_null(c.kernel);
    vm_config_free(&c);
}

static void test_memory(void **state)
{
    static const struct {
        const char *arg;
        uint64_t size;
    } cases[] = {
        {"2048", 2048 * MiB_},   {"2G", 2 * GiB_},       {"2g", 2 * GiB_},
        {"size=2G", 2 * GiB_},   {"512M", 512 * MiB_},   {"1.5G", 1536 * MiB_},
        {"1048576K", GiB_},      {"5000B", 8192},        /* aligned up to 4 KiB */
        {"1", MiB_},             {"4096", 4 * GiB_},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vm_config c;
        OK(&c, "-m", cases[i].arg);
        if (c.ram_size != cases[i].size)
            fail_msg("-m %s: got %llu", cases[i].arg, (unsigned long long)c.ram_size);
        assert_true(c.ram_maxsize == c.ram_size);
        vm_config_free(&c);
    }
    struct vm_config c;
    OK(&c, "--m=3G");
    assert_true(c.ram_size == 3 * GiB_);
    vm_config_free(&c);
    OK(&c, "--m", "3G");
    assert_true(c.ram_size == 3 * GiB_);
    vm_config_free(&c);

    OK(&c, "-m", "size=2G,slots=4,maxmem=8G");
    assert_true(c.ram_size == 2 * GiB_);
    assert_true(c.ram_maxsize == 8 * GiB_);
    assert_int_equal(c.mem_slots, 4);
    assert_non_null(strstr(err_text, "hotplug is not supported yet"));
    vm_config_free(&c);

    /* Repeated -m merge per key, as QEMU's, and a later size wins. */
    OK(&c, "-m", "1G", "-m", "slots=2,maxmem=4G");
    assert_true(c.ram_size == GiB_);
    assert_true(c.ram_maxsize == 4 * GiB_);
    vm_config_free(&c);
    OK(&c, "-m", "1G", "-m", "3G");
    assert_true(c.ram_size == 3 * GiB_);
    vm_config_free(&c);

    OK(&c, "-mem-path", "/dev/hugepages", "-mem-prealloc");
    assert_string_equal(c.mem_path, "/dev/hugepages");
    assert_true(c.mem_prealloc);
    vm_config_free(&c);
}

static void test_memory_errors(void **state)
{
    FAILS("-m: invalid size 'x': use e.g. -m 2048 or -m 2G", "-m", "x");
    FAILS("invalid size '2Q'", "-m", "2Q");
    FAILS("invalid size '-1'", "-m", "-1");
    FAILS("invalid size ''", "-m", "");
    FAILS("the guest needs memory", "-m", "0");
    FAILS("the guest needs memory", "-m", "0G");
    FAILS("more than vmkit's limit", "-m", "8T");
    FAILS("more than vmkit's limit", "-m", "99999999999999999999");
    FAILS("slots specified but no max-size", "-m", "2G,slots=2");
    FAILS("must be at least the initial memory size", "-m", "2G,maxmem=1G");
    FAILS("memory slots were specified", "-m", "1G,slots=2,maxmem=1G");
    FAILS("invalid slots", "-m", "1G,slots=x,maxmem=2G");
    FAILS("invalid slots", "-m", "1G,slots=1000,maxmem=2G");
    FAILS("invalid maxmem", "-m", "1G,maxmem=lots");
    FAILS("unknown parameter 'bogus'", "-m", "1G,bogus=1");
    FAILS("-m requires an argument", "-m");
    FAILS("-mem-path: the directory name is empty", "-mem-path", "");
}

static void test_smp_spellings(void **state)
{
    static const struct {
        const char *arg;
        unsigned cpus, maxcpus, sockets, dies, cores, threads;
    } cases[] = {
        {"4", 4, 4, 1, 1, 4, 1},
        {"cpus=4", 4, 4, 1, 1, 4, 1},
        {"2,maxcpus=4,sockets=2,cores=2,threads=1", 2, 4, 2, 1, 2, 1},
        {"2,maxcpus=4,sockets=2,cores=2,threads=1,dies=1", 2, 4, 2, 1, 2, 1},
        {"8,sockets=2", 8, 8, 2, 1, 4, 1},
        {"8,cores=2", 8, 8, 4, 1, 2, 1},
        {"8,sockets=2,cores=2", 8, 8, 2, 1, 2, 2},
        {"sockets=2,cores=2,threads=2", 8, 8, 2, 1, 2, 2},
        {"4,dies=2", 4, 4, 1, 2, 2, 1},
        {"4,maxcpus=8", 4, 8, 1, 1, 8, 1},
        {"maxcpus=6", 6, 6, 1, 1, 6, 1},
        {"4,threads=2", 4, 4, 1, 1, 2, 2},
        {"255", 255, 255, 1, 1, 255, 1},
        {"4,clusters=1", 4, 4, 1, 1, 4, 1},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vm_config c;
        OK(&c, "-smp", cases[i].arg);
        if (c.ncpus != cases[i].cpus || c.maxcpus != cases[i].maxcpus ||
            c.sockets != cases[i].sockets || c.dies != cases[i].dies ||
            c.cores != cases[i].cores || c.threads != cases[i].threads)
            fail_msg("-smp %s: got cpus %u max %u sockets %u dies %u cores %u threads %u",
                     cases[i].arg, c.ncpus, c.maxcpus, c.sockets, c.dies, c.cores, c.threads);
        vm_config_free(&c);
    }
    /* Repeated -smp merge per key. */
    struct vm_config c;
    OK(&c, "-smp", "4", "-smp", "sockets=2");
    assert_int_equal(c.ncpus, 4);
    assert_int_equal(c.sockets, 2);
    assert_int_equal(c.cores, 2);
    vm_config_free(&c);
    OK(&c, "--smp=2");
    assert_int_equal(c.ncpus, 2);
    vm_config_free(&c);
}

static void test_smp_errors(void **state)
{
    FAILS("product of the hierarchy must match maxcpus: sockets (3) * dies (1) * cores (1) * "
          "threads (1) != maxcpus (4)",
          "-smp", "4,sockets=3");
    FAILS("maxcpus must be equal to or greater than smp: sockets (1) * dies (1) * cores (4) * "
          "threads (1) == maxcpus (4) < smp_cpus (8)",
          "-smp", "8,maxcpus=4");
    FAILS("threads (0) != maxcpus (2)", "-smp", "2,sockets=2,cores=2");
    FAILS("CPU topology parameters must be greater than zero", "-smp", "0");
    FAILS("CPU topology parameters must be greater than zero", "-smp", "cpus=0");
    FAILS("CPU topology parameters must be greater than zero", "-smp", "4,threads=0");
    FAILS("clusters not supported", "-smp", "4,clusters=2");
    FAILS("The max CPUs supported by machine 'pc' is 255", "-smp", "256");
    FAILS("The max CPUs supported by machine 'pc' is 255", "-smp", "sockets=65536,cores=65536");
    FAILS("above the 254", "-smp", "255,sockets=85,threads=3");
    FAILS("is not a number", "-smp", "x");
    FAILS("is not a number", "-smp", "4,cores=two");
    FAILS("unknown parameter 'books'", "-smp", "4,books=1");
    FAILS("-smp requires an argument", "-smp");
}

/* The arithmetic alone, as a table (zero = not given). */
static void test_smp_table(void **state)
{
    static const struct {
        struct vm_config_smp in, out;
        int ret;
    } t[] = {
        {{0, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1}, 0},
        {{6, 0, 0, 0, 0, 0}, {6, 6, 1, 1, 6, 1}, 0},
        {{6, 0, 3, 0, 0, 0}, {6, 6, 3, 1, 2, 1}, 0},
        {{6, 0, 0, 0, 3, 0}, {6, 6, 2, 1, 3, 1}, 0},
        {{6, 0, 0, 0, 0, 2}, {6, 6, 1, 1, 3, 2}, 0},
        {{0, 0, 2, 2, 2, 2}, {16, 16, 2, 2, 2, 2}, 0},
        {{4, 16, 0, 2, 0, 2}, {4, 16, 1, 2, 4, 2}, 0},
        {{0, 12, 2, 0, 3, 0}, {12, 12, 2, 1, 3, 2}, 0},
        {{7, 0, 2, 0, 0, 0}, {7, 7, 2, 1, 3, 1}, -22},  /* 2*3 != 7 */
        {{2, 1, 0, 0, 0, 0}, {2, 1, 1, 1, 1, 1}, -22},  /* maxcpus < cpus */
        {{240, 0, 0, 0, 0, 0}, {240, 240, 1, 1, 240, 1}, 0},
        {{0, 0, 4, 1, 16, 4}, {256, 256, 4, 1, 16, 4}, -22}, /* over 255 */
        {{0, 0, 2, 1, 63, 2}, {252, 252, 2, 1, 63, 2}, 0}, /* APIC ID (1<<7)|(62<<1)|1 = 253 */
        {{0, 0, 3, 1, 40, 2}, {240, 240, 3, 1, 40, 2}, -22}, /* APIC ID (2<<7)|... > 254 */
    };
    for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct vm_config_smp s = t[i].in;
        char err[400] = "";
        int r = vm_config_smp_compute(&s, err, sizeof(err));
        if (r != t[i].ret)
            fail_msg("row %u: returned %d (%s)", i, r, err);
        if (r == 0 && memcmp(&s, &t[i].out, sizeof(s)))
            fail_msg("row %u: got %u %u %u %u %u %u", i, s.cpus, s.maxcpus, s.sockets, s.dies,
                     s.cores, s.threads);
        if (r < 0)
            assert_true(strlen(err) > 10);
    }
}

static void test_kernel_boot(void **state)
{
    struct vm_config c;
    OK(&c, "-kernel", "/boot/vmlinuz", "-initrd", "/boot/initrd.img", "-append",
       "console=ttyS0 root=/dev/ram0");
    assert_string_equal(c.kernel, "/boot/vmlinuz");
    assert_string_equal(c.initrd, "/boot/initrd.img");
    assert_string_equal(c.append, "console=ttyS0 root=/dev/ram0");
    vm_config_free(&c);
    /* Later wins, and --opt=value keeps everything after the first '='. */
    OK(&c, "-kernel", "a", "--kernel=b", "--append=root=/dev/vda");
    assert_string_equal(c.kernel, "b");
    assert_string_equal(c.append, "root=/dev/vda");
    vm_config_free(&c);

    FAILS("-append only allowed with -kernel option", "-append", "quiet");
    FAILS("-initrd only allowed with -kernel option", "-initrd", "x.img");
    FAILS("-kernel requires an argument", "-kernel");
    FAILS("-kernel: the file name is empty", "--kernel=");
    FAILS("-initrd: the file name is empty", "-kernel", "k", "-initrd", "");
}

static void test_name_uuid(void **state)
{
    struct vm_config c;
    OK(&c, "-name", "web1");
    assert_string_equal(c.name, "web1");
    assert_false(c.name_debug_threads);
    vm_config_free(&c);
    OK(&c, "-name", "guest=web2,debug-threads=on");
    assert_string_equal(c.name, "web2");
    assert_true(c.name_debug_threads);
    vm_config_free(&c);
    OK(&c, "-name", "a,,b,process=qemu-a");
    assert_string_equal(c.name, "a,b");
    vm_config_free(&c);
    OK(&c, "-uuid", "01234567-89ab-cdef-0123-456789ABCDEF");
    assert_string_equal(c.uuid, "01234567-89ab-cdef-0123-456789ABCDEF");
    vm_config_free(&c);

    FAILS("unknown parameter 'colour'", "-name", "x,colour=red");
    FAILS("debug-threads takes on or off", "-name", "x,debug-threads=maybe");
    FAILS("not a UUID", "-uuid", "0123456789abcdef");
    FAILS("not a UUID", "-uuid", "01234567-89ab-cdef-0123-456789abcdeg");
}

static void test_display(void **state)
{
    struct vm_config c;
    OK(&c, "-nographic", "-display", "none", "-vga", "none");
    assert_true(c.nographic);
    assert_true(c.display_none);
    assert_string_equal(c.serial, "stdio");
    vm_config_free(&c);
    OK(&c, "--nographic");
    assert_true(c.nographic);
    vm_config_free(&c);

    FAILS("vmkit has no graphical display; use -nographic or -display none", "-display", "gtk");
    FAILS("vmkit has no graphical display; use -nographic or -display none", "-display", "sdl");
    FAILS("vmkit has no graphical display; use -nographic or -display none", "-display",
          "curses");
    FAILS("vmkit has no graphical display; use -nographic or -display none", "-vga", "std");
    FAILS("vmkit has no graphical display; use -nographic or -display none", "-vga", "virtio");
    FAILS("vmkit has no graphical display", "-vnc", ":0");
    FAILS("vmkit has no graphical display", "-spice", "port=5900");
    FAILS("-nographic takes no argument", "--nographic=yes");
}

static void test_serial(void **state)
{
    static const char *const good[] = {
        "stdio", "mon:stdio", "pty", "null", "file:/tmp/console.log", "unix:/tmp/s",
        "unix:/tmp/s,server", "unix:/tmp/s,server,nowait", "unix:/tmp/s,server=on,wait=off",
        "unix:path=/tmp/s,server"};
    for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct vm_config c;
        OK(&c, "-serial", good[i]);
        assert_string_equal(c.serial, good[i]);
        assert_int_equal(c.nserials, 1);
        assert_string_equal(c.serials[0], good[i]);
        vm_config_free(&c);
    }
    struct vm_config c;
    OK(&c, "-serial", "none");
    assert_string_equal(c.serial, "none");
    assert_int_equal(c.nserials, 0);
    vm_config_free(&c);
    /* "none" takes no COM slot, as in QEMU. */
    OK(&c, "-serial", "none", "-serial", "pty");
    assert_string_equal(c.serial, "pty");
    assert_int_equal(c.nserials, 1);
    vm_config_free(&c);
    OK(&c, "-serial", "stdio", "-serial", "pty", "-serial", "null", "-serial", "file:/tmp/x");
    assert_int_equal(c.nserials, 4);
    assert_string_equal(c.serial, "stdio");
    assert_string_equal(c.serials[1], "pty");
    assert_string_equal(c.serials[2], "null");
    assert_string_equal(c.serials[3], "file:/tmp/x");
    vm_config_free(&c);
    OK(&c, "-nodefaults");
    assert_string_equal(c.serial, "none");
    assert_int_equal(c.nserials, 0);
    vm_config_free(&c);

    FAILS("too many serial ports", "-serial", "pty", "-serial", "pty", "-serial", "pty",
          "-serial", "pty", "-serial", "pty");
    FAILS("file name is missing", "-serial", "file:");
    FAILS("socket path is missing", "-serial", "unix:");
    FAILS("socket path is missing", "-serial", "unix:,server");
    FAILS("unknown parameter 'reconnect'", "-serial", "unix:/tmp/s,reconnect=1");
    FAILS("server and wait take on or off", "-serial", "unix:/tmp/s,server=maybe");
    FAILS("longer than the 107 bytes",
          "-serial",
          "unix:/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    FAILS("not supported yet", "-serial", "tcp:localhost:4444,server");
    FAILS("not supported yet", "-serial", "/dev/ttyS0");
    FAILS("no graphical console", "-serial", "vc");
    FAILS("-chardev is not supported yet", "-serial", "chardev:c0");
    FAILS("only mon:stdio", "-serial", "mon:pty");
    FAILS("unknown character device", "-serial", "bogus");
    FAILS("cannot use stdio by multiple character devices", "-serial", "stdio", "-serial",
          "stdio");
}

static void test_daemonize(void **state)
{
    struct vm_config c;
    OK(&c, "-daemonize", "-pidfile", "/run/vm.pid");
    assert_true(c.daemonize);
    assert_string_equal(c.pidfile, "/run/vm.pid");
    assert_string_equal(c.serial, "none");
    assert_int_equal(c.nserials, 0);
    vm_config_free(&c);
    OK(&c, "-daemonize", "-serial", "pty", "-display", "none");
    assert_string_equal(c.serial, "pty");
    vm_config_free(&c);
    OK(&c, "-pidfile", "p");
    assert_false(c.daemonize);
    assert_string_equal(c.pidfile, "p");
    vm_config_free(&c);

    FAILS("-nographic cannot be used with -daemonize", "-daemonize", "-nographic");
    FAILS("cannot use stdio with -daemonize", "-daemonize", "-serial", "stdio");
    FAILS("cannot use stdio with -daemonize", "-serial", "mon:stdio", "-daemonize");
    FAILS("cannot use stdio with -daemonize", "-daemonize", "-qmp", "stdio");
    FAILS("-pidfile: the file name is empty", "-pidfile", "");
}

static void test_accel(void **state)
{
    static const struct {
        const char *args[4];
        const char *accel;
        unsigned n;
        const char *second;
    } cases[] = {
        {{"-accel", "kvm"}, "kvm", 1, NULL},
        {{"-accel", "kvm,kernel-irqchip=on"}, "kvm", 1, NULL},
        {{"-accel", "accel=kvm"}, "kvm", 1, NULL},
        {{"-enable-kvm"}, "kvm", 1, NULL},
        {{"--enable-kvm"}, "kvm", 1, NULL},
        {{"-accel", "emu"}, "emu", 1, NULL},
        {{"-accel", "tcg"}, "emu", 1, NULL},
        {{"-accel", "tcg,thread=single"}, "emu", 1, NULL},
        {{"-machine", "accel=kvm"}, "kvm", 1, NULL},
        {{"-machine", "pc,accel=tcg"}, "emu", 1, NULL},
        {{"-machine", "accel=kvm:tcg"}, "kvm", 2, "emu"},
        {{"-accel", "kvm", "-accel", "tcg"}, "kvm", 2, "emu"},
        {{"-enable-kvm", "-accel", "kvm"}, "kvm", 1, NULL},
        {{"-accel", "tcg", "-enable-kvm"}, "emu", 2, "kvm"},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[5] = {0};
        memcpy(argv, cases[i].args, sizeof(cases[i].args));
        struct vm_config c;
        if (parse_argv(&c, argv) != VM_CONFIG_RUN)
            fail_msg("case %u (%s %s) failed: %s", i, argv[0], argv[1] ? argv[1] : "", err_text);
        assert_string_equal(c.accel, cases[i].accel);
        assert_string_equal(c.accels[0], cases[i].accel);
        assert_int_equal(c.naccels, cases[i].n);
        if (cases[i].second)
            assert_string_equal(c.accels[1], cases[i].second);
        vm_config_free(&c);
    }
    FAILS("accelerator 'xen' is not available", "-accel", "xen");
    FAILS("accelerator 'hvf' is not available", "-machine", "accel=hvf");
    FAILS("-accel and \"-machine accel=\" options are incompatible", "-accel", "kvm", "-machine",
          "accel=tcg");
    FAILS("-accel and \"-machine accel=\" options are incompatible", "-machine", "accel=tcg",
          "-enable-kvm");
    FAILS("unknown parameter 'bogus'", "-accel", "kvm,bogus=1");
    FAILS("accelerator name is missing", "-accel", "thread=single");
}

/* -accel emu,thread= and -icount: how the software CPU keeps time (docs/emu.md). */
static void test_emu_clock(void **state)
{
    struct vm_config c;
    OK(&c, "-accel", "emu");
    assert_false(c.emu_multi_thread);
    assert_false(c.icount_given);
    assert_int_equal(c.icount_shift, 0);
    assert_false(c.icount_sleep);
    vm_config_free(&c);
    OK(&c, "-accel", "tcg,thread=multi");
    assert_true(c.emu_multi_thread);
    vm_config_free(&c);
    OK(&c, "-accel", "kvm,thread=multi", "-accel", "tcg"); /* thread= belongs to its -accel */
    assert_false(c.emu_multi_thread);
    vm_config_free(&c);
    OK(&c, "-accel", "emu", "-icount", "3");
    assert_true(c.icount_given);
    assert_int_equal(c.icount_shift, 3);
    assert_false(c.icount_sleep);
    vm_config_free(&c);
    OK(&c, "-accel", "kvm", "-accel", "emu", "-icount", "shift=10,sleep=on,align=off");
    assert_int_equal(c.icount_shift, 10);
    assert_true(c.icount_sleep);
    vm_config_free(&c);
    FAILS("thread=both: use thread=single", "-accel", "emu,thread=both");
    FAILS("shift=auto follows the host's speed", "-accel", "emu", "-icount", "shift=auto");
    FAILS("shift must be a number from 0 to 10", "-accel", "emu", "-icount", "11");
    FAILS("shift must be a number from 0 to 10", "-accel", "emu", "-icount", "shift=x");
    FAILS("sleep must be on or off", "-accel", "emu", "-icount", "sleep=maybe");
    FAILS("align=on is not supported", "-accel", "emu", "-icount", "align=on");
    FAILS("record/replay is not supported", "-accel", "emu", "-icount", "rr=record");
    FAILS("unknown parameter 'bogus'", "-accel", "emu", "-icount", "bogus=1");
    FAILS("-icount: only the emu accelerator counts instructions", "-icount", "2");
    FAILS("-icount: vCPUs running in parallel", "-accel", "emu,thread=multi", "-icount", "2");
}

static void test_rtc(void **state)
{
    struct vm_config c;
    OK(&c, "-rtc", "base=utc");
    assert_false(c.rtc_base_given || c.rtc_localtime || c.rtc_clock_vm);
    vm_config_free(&c);
    OK(&c, "-rtc", "base=localtime,clock=vm,driftfix=slew");
    assert_true(c.rtc_localtime && c.rtc_clock_vm);
    vm_config_free(&c);
    OK(&c, "-rtc", "base=2006-06-17T16:01:21,clock=host");
    assert_true(c.rtc_base_given);
    assert_int_equal(c.rtc_base, 1150560081);
    assert_false(c.rtc_clock_vm);
    vm_config_free(&c);
    OK(&c, "-rtc", "base=2006-06-17");
    assert_int_equal(c.rtc_base, 1150502400);
    vm_config_free(&c);
    FAILS("base=yesterday: use utc, localtime, or a date", "-rtc", "base=yesterday");
    FAILS("base=2006-06-17T16:01: use utc", "-rtc", "base=2006-06-17T16:01");
    FAILS("base=2006-13-01: use utc", "-rtc", "base=2006-13-01");
    FAILS("clock=wall: use host", "-rtc", "clock=wall");
    FAILS("driftfix=fast: use none or slew", "-rtc", "driftfix=fast");
    FAILS("unknown parameter 'bogus'", "-rtc", "bogus=1");
}

static void test_cpu(void **state)
{
    static const char *const models[] = {"host", "max", "kvm64", "qemu64"};
    for (unsigned i = 0; i < 4; i++) {
        struct vm_config c;
        OK(&c, "-cpu", models[i]);
        assert_string_equal(c.cpu_model, models[i]);
        assert_null(c.cpu_features);
        vm_config_free(&c);
    }
    struct vm_config c;
    OK(&c, "-cpu", "host,+x2apic,-vmx");
    assert_string_equal(c.cpu_model, "host");
    assert_string_equal(c.cpu_features, "+x2apic,-vmx");
    assert_non_null(strstr(err_text, "feature flags are ignored"));
    vm_config_free(&c);
    FAILS("vmkit has no CPU model 'Skylake-Client'", "-cpu", "Skylake-Client");
    FAILS("vmkit has no CPU model ''", "-cpu", ",+vmx");
}

static void test_machine(void **state)
{
    static const char *const good[] = {"pc",
                                       "pc-i440fx-7.2",
                                       "type=pc",
                                       "pc,accel=kvm,usb=off,dump-guest-core=off",
                                       "pc,vmport=off,hpet=off,mem-merge=on,kernel_irqchip=on",
                                       "pc-i440fx-2.12,vmport=auto,smm=off"};
    for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct vm_config c;
        OK(&c, "-machine", good[i]);
        assert_string_equal(c.machine_type, "pc");
        vm_config_free(&c);
        OK(&c, "-M", good[i]);
        assert_string_equal(c.machine_type, "pc");
        vm_config_free(&c);
    }
    FAILS("vmkit emulates one machine type, 'pc'; use -machine pc", "-machine", "q35");
    FAILS("vmkit emulates one machine type, 'pc'; use -machine pc", "-M", "microvm");
    FAILS("vmkit emulates one machine type, 'pc'; use -machine pc", "-M", "pc-q35-7.2");
    FAILS("vmkit emulates one machine type", "-machine", "type=isapc,accel=kvm");
    FAILS("vmkit has no USB controller", "-machine", "pc,usb=on");
    FAILS("must be on or off", "-machine", "pc,usb=perhaps");
    FAILS("unknown parameter 'nvdimm'", "-machine", "pc,nvdimm=on");
}

static void test_flags(void **state)
{
    struct vm_config c;
    OK(&c, "-no-reboot", "-no-shutdown", "-S", "-no-user-config", "-no-hpet", "-parallel",
       "none");
    assert_true(c.no_reboot);
    assert_true(c.no_shutdown);
    assert_true(c.start_paused);
    vm_config_free(&c);
    FAILS("vmkit has no parallel port", "-parallel", "stdio");

    OK(&c, "-overcommit", "mem-lock=off", "-overcommit", "cpu-pm=off", "-msg", "timestamp=on");
    vm_config_free(&c);
    FAILS("mem-lock=on is not supported yet", "-overcommit", "mem-lock=on");
    FAILS("unknown parameter 'bogus'", "-overcommit", "bogus=1");
    FAILS("timestamp and guest-name take on or off", "-msg", "timestamp=sometimes");
}

static void test_monitors(void **state)
{
    struct vm_config c;
    OK(&c, "-qmp", "unix:/tmp/vm.qmp,server,nowait", "-monitor", "pty");
    assert_string_equal(c.qmp, "unix:/tmp/vm.qmp,server,nowait");
    assert_string_equal(c.monitor, "pty");
    vm_config_free(&c);
    OK(&c, "-qmp", "stdio", "-serial", "pty");
    assert_string_equal(c.qmp, "stdio");
    vm_config_free(&c);
    OK(&c, "-monitor", "none");
    assert_null(c.monitor);
    vm_config_free(&c);
    FAILS("cannot use stdio by multiple character devices", "-monitor", "stdio");
    FAILS("use -monitor stdio", "-monitor", "mon:stdio");
    OK(&c, "-chardev", "socket,id=c0,path=/tmp/s,server=on,wait=off");
    vm_config_free(&c);
    FAILS("-mon is not supported yet", "-mon", "chardev=c0,mode=control");
}

static void test_accel_auto(void **state)
{
    struct vm_config c;
    OK(&c, "-accel", "auto");
    assert_string_equal(c.accels[0], "auto");
    vm_config_free(&c);
    /* -accel with no value, last or followed by another option, means auto. */
    OK(&c, "-m", "1G", "-accel");
    assert_int_equal(c.naccels, 1);
    assert_string_equal(c.accels[0], "auto");
    vm_config_free(&c);
    OK(&c, "-accel", "-m", "1G");
    assert_string_equal(c.accels[0], "auto");
    assert_int_equal(c.ram_size, 1ULL << 30);
    vm_config_free(&c);
    OK(&c, "-accel", "tcg");
    assert_string_equal(c.accels[0], "emu");
    vm_config_free(&c);
    FAILS("accelerator 'hvf' is not available", "-accel", "hvf");
}

static void test_devices(void **state)
{
    struct vm_config c;
    OK(&c, "-device", "pci-testdev", "-device", "pci-testdev,id=t1,addr=05.0",
       "--device=driver=pci-testdev,id=t,,2");
    assert_int_equal(c.ndevices, 3);
    assert_string_equal(c.devices[0].driver, "pci-testdev");
    assert_string_equal(c.devices[0].opts, "");
    assert_string_equal(c.devices[1].driver, "pci-testdev");
    assert_string_equal(c.devices[1].opts, "id=t1,addr=05.0");
    assert_string_equal(c.devices[2].driver, "pci-testdev");
    assert_string_equal(c.devices[2].opts, "id=t,,2");
    vm_config_free(&c);
    assert_int_equal(c.ndevices, 0);
    assert_null(c.devices);

    assert_int_equal(PARSE(&c, "-device", "help"), VM_CONFIG_EXIT_OK);
    assert_non_null(strstr(out_text, "pci-testdev"));
    vm_config_free(&c);

    FAILS("Property 'virtio-blk-pci.drive' can't find value 'd0'", "-device",
          "virtio-blk-pci,drive=d0");
    OK(&c, "-device", "virtio-net-pci", "-device", "virtio-rng-pci");
    assert_int_equal(c.ndevices, 2);
    vm_config_free(&c);
    FAILS("'frobnicator' is not a valid device model name", "-device", "frobnicator");
    FAILS("driver name is missing", "-device", "id=x");
    FAILS("empty option name", "-device", "pci-testdev,=x");
}

static void test_not_supported(void **state)
{
    /* Disks and NICs exist now; what is still refused says what to use instead. */
    FAILS("-drive without if=: QEMU's default interface is IDE", "-drive", "file=disk.qcow2");
    FAILS("-hda is not supported: vmkit does not emulate IDE", "-hda", "disk.img");
    FAILS("-cdrom is not supported: vmkit has no CD-ROM drive", "-cdrom", "x.iso");
    FAILS("-boot is not supported: vmkit has no firmware; boot a kernel directly with -kernel",
          "-boot", "c");
    FAILS("-bios is not supported: vmkit has no firmware", "-bios", "OVMF.fd");
    FAILS("-usb is not supported", "-usb");
    FAILS("-soundhw is not supported", "-soundhw", "ac97");
    FAILS("-audiodev is not supported", "-audiodev", "none,id=a");
    FAILS("-object is not supported yet", "-object", "rng-random,id=r");
    FAILS("-global is not supported yet", "-global", "kvm-pit.lost_tick_policy=delay");
    FAILS("-k is not supported", "-k", "de");
    FAILS("-loadvm is not supported yet", "-loadvm", "snap1");
    FAILS("-incoming is not supported yet", "-incoming", "tcp:0:4444");
    FAILS("-no-acpi is not supported", "-no-acpi");
    FAILS("-gdb is not supported yet", "-gdb", "tcp::1234");
    /* A refused option still consumes its argument, so a missing one is reported as such. */
    FAILS("-drive requires an argument", "-drive");
}

static void test_unknown_and_syntax(void **state)
{
    FAILS("-foo: unknown option; see vmkit run -help", "-foo");
    FAILS("-foo: unknown option; see vmkit run -help", "--foo");
    FAILS("-m=2G: unknown option", "-m=2G");
    FAILS("-: unknown option", "--");
    FAILS("'disk.img': not an option", "disk.img");
    FAILS("'-': not an option", "-");
}

static void test_help_version(void **state)
{
    struct vm_config c;
    assert_int_equal(PARSE(&c, "-version"), VM_CONFIG_EXIT_OK);
    assert_non_null(strstr(out_text, "vmkit version " VMKIT_VERSION " (QEMU-compatible command line)"));
    vm_config_free(&c);
    assert_int_equal(PARSE(&c, "--version"), VM_CONFIG_EXIT_OK);
    assert_non_null(strstr(out_text, "vmkit version "));
    vm_config_free(&c);
    static const char *const spellings[] = {"-help", "-h", "--help"};
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(PARSE(&c, spellings[i]), VM_CONFIG_EXIT_OK);
        assert_non_null(strstr(out_text, "-smp"));
        assert_non_null(strstr(out_text, "-serial"));
        assert_string_equal(err_text, "");
        vm_config_free(&c);
    }
    assert_int_equal(PARSE(&c, "-machine", "help"), VM_CONFIG_EXIT_OK);
    assert_non_null(strstr(out_text, "pc "));
    vm_config_free(&c);
    assert_int_equal(PARSE(&c, "-cpu", "help"), VM_CONFIG_EXIT_OK);
    assert_non_null(strstr(out_text, "host"));
    vm_config_free(&c);
    /* Options are handled in order: an error before -version still fails. */
    assert_int_equal(PARSE(&c, "-m", "x", "-version"), VM_CONFIG_ERROR);
    vm_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_memory),
        cmocka_unit_test(test_memory_errors),  cmocka_unit_test(test_smp_spellings),
        cmocka_unit_test(test_smp_errors),     cmocka_unit_test(test_smp_table),
        cmocka_unit_test(test_kernel_boot),    cmocka_unit_test(test_name_uuid),
        cmocka_unit_test(test_display),        cmocka_unit_test(test_serial),
        cmocka_unit_test(test_daemonize),      cmocka_unit_test(test_accel),
        cmocka_unit_test(test_emu_clock),      cmocka_unit_test(test_rtc),
        cmocka_unit_test(test_cpu),            cmocka_unit_test(test_machine),
        cmocka_unit_test(test_flags),          cmocka_unit_test(test_monitors),
        cmocka_unit_test(test_accel_auto),
        cmocka_unit_test(test_devices),        cmocka_unit_test(test_not_supported),
        cmocka_unit_test(test_unknown_and_syntax), cmocka_unit_test(test_help_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
