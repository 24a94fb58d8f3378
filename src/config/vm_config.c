/* `vmkit run` argv -> struct vm_config, accepting QEMU's spellings so scripts move over unchanged. */
#include "config/vm_config.h"
#include "base/log.h"
#include "base/size.h"
#include "base/util.h"
#include "config/chardev_opts.h"
#include "config/drive_opts.h"
#include "config/qemu_opts.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct vm_config_strings {
    char **v;
    unsigned n;
};

/* Per-key state merged across repeated -m/-smp, as QEMU merges those option lists. */
struct smp_given {
    bool any;
    unsigned cpus, maxcpus, sockets, dies, cores, threads; /* 0: not given */
};

struct parse_ctx {
    struct vm_config *c;
    const char *opt; /* the option being handled, as "-name", for messages */
    bool serial_given;
    bool accel_option_given, machine_accel_given;
    bool mem_size_given, mem_slots_given, mem_maxmem_given;
    uint64_t mem_size, mem_maxmem;
    struct smp_given smp;
};

enum { OPT_OK = 0, OPT_EXIT = 1, OPT_ERROR = -1 };

static const char *own(struct vm_config *c, char *s)
{
    if (!c->owned_)
        c->owned_ = xzalloc(sizeof(*c->owned_));
    struct vm_config_strings *o = c->owned_;
    o->v = xrealloc(o->v, (o->n + 1) * sizeof(*o->v));
    o->v[o->n++] = s;
    return s;
}

void vm_config_init(struct vm_config *c)
{
    memset(c, 0, sizeof(*c));
    c->ram_size = VM_CONFIG_DEFAULT_RAM;
    c->ram_maxsize = VM_CONFIG_DEFAULT_RAM;
    c->ncpus = c->maxcpus = c->sockets = c->dies = c->cores = c->threads = 1;
    c->accel = "kvm";
    c->accels[0] = "kvm";
    c->naccels = 1;
    c->cpu_model = "host";
    c->machine_type = "pc";
    c->serial = "stdio";
    c->serials[0] = "stdio";
    c->nserials = 1;
}

void vm_config_free(struct vm_config *c)
{
    if (c->owned_) {
        for (unsigned i = 0; i < c->owned_->n; i++)
            free(c->owned_->v[i]);
        free(c->owned_->v);
        free(c->owned_);
    }
    vm_config_drives_free(c);
    free(c->devices);
    vm_config_net_free(c);
    vm_config_chardev_free(c);
    vm_config_init(c);
}

/* ---- option string helpers ---- */

static int parse_opts(struct parse_ctx *x, struct qemu_opts *o, const char *arg, const char *implied)
{
    char err[256];
    if (qemu_opts_parse(o, arg, implied, err, sizeof(err)) < 0) {
        log_error("%s %s: %s", x->opt, arg, err);
        return OPT_ERROR;
    }
    return OPT_OK;
}

/* Rejects keys no handler asked for, naming them, so typos are not silently ignored. */
static int reject_unused(struct parse_ctx *x, struct qemu_opts *o, const char *known)
{
    const char *k = qemu_opts_first_unused(o);
    if (!k)
        return OPT_OK;
    log_error("%s: unknown parameter '%s'; vmkit accepts %s", x->opt, k, known);
    return OPT_ERROR;
}

static bool is_help(const char *s)
{
    return strcmp(s, "help") == 0 || strcmp(s, "?") == 0;
}

/* ---- -m ---- */

static int opt_m(struct parse_ctx *x, const char *arg)
{
    if (!*arg) {
        log_error("%s: invalid size '': use e.g. -m 2048 or -m 2G", x->opt);
        return OPT_ERROR;
    }
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, "size"))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    const char *size = qemu_opts_get(&o, "size");
    if (size) {
        uint64_t v;
        int r = size_parse(size, MiB, &v);
        if (r == -ERANGE || (r == 0 && v > VM_CONFIG_MAX_RAM)) {
            log_error("%s: size '%s' is more than vmkit's limit of %llu GiB", x->opt, size,
                      VM_CONFIG_MAX_RAM / GiB);
            goto out;
        }
        if (r < 0) {
            log_error("%s: invalid size '%s': use e.g. -m 2048 or -m 2G", x->opt, size);
            goto out;
        }
        if (v == 0) {
            log_error("%s: size '%s': the guest needs memory; use e.g. -m 512 or -m 2G", x->opt,
                      size);
            goto out;
        }
        x->mem_size = v;
        x->mem_size_given = true;
    }
    const char *maxmem = qemu_opts_get(&o, "maxmem");
    if (maxmem) {
        uint64_t v;
        /* QEMU reads maxmem as a size in bytes (only size= has the legacy MiB default). */
        int r = size_parse(maxmem, 1, &v);
        if (r < 0 || v > VM_CONFIG_MAX_RAM) {
            log_error("%s: invalid maxmem '%s': use a size like 8G, at most %llu GiB", x->opt,
                      maxmem, VM_CONFIG_MAX_RAM / GiB);
            goto out;
        }
        x->mem_maxmem = v;
        x->mem_maxmem_given = true;
    }
    if (qemu_opts_has(&o, "slots")) {
        unsigned slots;
        if (qemu_opts_get_uint(&o, "slots", &slots) < 0 || slots > 256) {
            log_error("%s: invalid slots '%s': use a number from 0 to 256", x->opt,
                      qemu_opts_get(&o, "slots"));
            goto out;
        }
        x->c->mem_slots = slots;
        x->mem_slots_given = true;
    }
    ret = reject_unused(x, &o, "size, slots and maxmem");
out:
    qemu_opts_free(&o);
    return ret;
}

static int finish_memory(struct parse_ctx *x)
{
    struct vm_config *c = x->c;
    if (x->mem_size_given)
        c->ram_size = ALIGN_UP(x->mem_size, 4 * KiB);
    c->ram_maxsize = c->ram_size;
    if (x->mem_maxmem_given) {
        if (x->mem_maxmem < c->ram_size) {
            log_error("-m: invalid value of maxmem: maximum memory size (0x%llx) must be at least "
                      "the initial memory size (0x%llx)",
                      (unsigned long long)x->mem_maxmem, (unsigned long long)c->ram_size);
            return OPT_ERROR;
        }
        if (c->mem_slots && x->mem_maxmem == c->ram_size) {
            log_error("-m: invalid value of maxmem: memory slots were specified but maximum "
                      "memory size (0x%llx) is equal to the initial memory size (0x%llx)",
                      (unsigned long long)x->mem_maxmem, (unsigned long long)c->ram_size);
            return OPT_ERROR;
        }
        c->ram_maxsize = x->mem_maxmem;
        if (x->mem_maxmem > c->ram_size || c->mem_slots)
            log_warn("-m: maxmem and slots are accepted, but memory hotplug is not supported yet");
    } else if (x->mem_slots_given) {
        log_error("-m: slots specified but no max-size; add maxmem=SIZE");
        return OPT_ERROR;
    }
    return OPT_OK;
}

/* ---- -smp ---- */

static int opt_smp(struct parse_ctx *x, const char *arg)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"cpus", offsetof(struct smp_given, cpus)},
        {"maxcpus", offsetof(struct smp_given, maxcpus)},
        {"sockets", offsetof(struct smp_given, sockets)},
        {"dies", offsetof(struct smp_given, dies)},
        {"cores", offsetof(struct smp_given, cores)},
        {"threads", offsetof(struct smp_given, threads)},
    };
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, "cpus"))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    for (unsigned i = 0; i < ARRAY_SIZE(keys); i++) {
        unsigned v;
        int r = qemu_opts_get_uint(&o, keys[i].key, &v);
        if (r == -ENOENT)
            continue;
        if (r < 0) {
            log_error("%s: %s='%s' is not a number", x->opt, keys[i].key,
                      qemu_opts_get(&o, keys[i].key));
            goto out;
        }
        if (v == 0) {
            /* QEMU 7.x only warns ("deprecated, considered invalid"); later versions refuse. */
            log_error("%s: Invalid CPU topology: CPU topology parameters must be greater than zero",
                      x->opt);
            goto out;
        }
        *(unsigned *)((char *)&x->smp + keys[i].off) = v;
    }
    unsigned clusters;
    int r = qemu_opts_get_uint(&o, "clusters", &clusters);
    if (r != -ENOENT && (r < 0 || clusters != 1)) {
        log_error("%s: clusters not supported by this machine's CPU topology", x->opt);
        goto out;
    }
    x->smp.any = true;
    ret = reject_unused(x, &o, "cpus, maxcpus, sockets, dies, cores and threads");
out:
    qemu_opts_free(&o);
    return ret;
}

static int finish_smp(struct parse_ctx *x)
{
    if (!x->smp.any)
        return OPT_OK;
    struct vm_config_smp s = {x->smp.cpus,  x->smp.maxcpus, x->smp.sockets,
                              x->smp.dies,  x->smp.cores,   x->smp.threads};
    char err[400];
    if (vm_config_smp_compute(&s, err, sizeof(err)) < 0) {
        log_error("-smp: %s", err);
        return OPT_ERROR;
    }
    struct vm_config *c = x->c;
    c->ncpus = s.cpus;
    c->maxcpus = s.maxcpus;
    c->sockets = s.sockets;
    c->dies = s.dies;
    c->cores = s.cores;
    c->threads = s.threads;
    return OPT_OK;
}

/* ---- character device specs (-serial, -qmp, -monitor) ---- */

/* Checks SPEC against the spellings chardev_open() understands; false after logging why. */
static bool chardev_spec_valid(struct parse_ctx *x, const char *spec)
{
    if (!strcmp(spec, "stdio") || !strcmp(spec, "mon:stdio") || !strcmp(spec, "pty") ||
        !strcmp(spec, "null") || !strcmp(spec, "none"))
        return true;
    if (!strncmp(spec, "file:", 5)) {
        if (!spec[5]) {
            log_error("%s %s: the file name is missing; use file:PATH", x->opt, spec);
            return false;
        }
        return true;
    }
    if (!strncmp(spec, "unix:", 5)) {
        struct qemu_opts o;
        if (parse_opts(x, &o, spec + 5, "path"))
            return false;
        bool ok = false, b;
        const char *path = qemu_opts_get(&o, "path");
        if (!path || !*path) {
            log_error("%s %s: the socket path is missing; use unix:PATH[,server][,nowait]",
                      x->opt, spec);
        } else if (strlen(path) >= 108) { /* sizeof(sockaddr_un.sun_path) */
            log_error("%s %s: the socket path is longer than the 107 bytes a unix socket allows",
                      x->opt, spec);
        } else if (qemu_opts_get_bool(&o, "server", false, &b) < 0 ||
                   qemu_opts_get_bool(&o, "wait", true, &b) < 0) {
            log_error("%s %s: server and wait take on or off", x->opt, spec);
        } else if (qemu_opts_first_unused(&o)) {
            log_error("%s %s: unknown parameter '%s'; use unix:PATH[,server][,nowait]", x->opt,
                      spec, qemu_opts_first_unused(&o));
        } else {
            ok = true;
        }
        qemu_opts_free(&o);
        return ok;
    }
    if (!strcmp(spec, "vc") || !strncmp(spec, "vc:", 3)) {
        log_error("%s %s: vmkit has no graphical console; use stdio, pty or a unix socket",
                  x->opt, spec);
        return false;
    }
    if (!strncmp(spec, "chardev:", 8)) {
        log_error("%s %s: -chardev is not supported yet; give the backend directly, e.g. "
                  "%s unix:PATH,server,nowait",
                  x->opt, spec, x->opt);
        return false;
    }
    if (!strncmp(spec, "mon:", 4)) {
        log_error("%s %s: only mon:stdio is supported; use a separate -monitor SPEC", x->opt, spec);
        return false;
    }
    static const char *const later[] = {"tcp:", "udp:", "telnet:", "websocket:", "pipe:",
                                        "/dev/", "msmouse", "braille", "testdev", "ringbuf"};
    for (unsigned i = 0; i < ARRAY_SIZE(later); i++) {
        if (!strncmp(spec, later[i], strlen(later[i]))) {
            log_error("%s %s: this backend is not supported yet; use stdio, pty, file:PATH or "
                      "unix:PATH[,server][,nowait]",
                      x->opt, spec);
            return false;
        }
    }
    log_error("%s %s: unknown character device; use stdio, mon:stdio, pty, null, none, "
              "file:PATH or unix:PATH[,server][,nowait]",
              x->opt, spec);
    return false;
}

static int opt_serial(struct parse_ctx *x, const char *arg)
{
    struct vm_config *c = x->c;
    if (!chardev_spec_valid(x, arg))
        return OPT_ERROR;
    if (!x->serial_given) {
        x->serial_given = true;
        c->nserials = 0;
    }
    /* As QEMU: "none" suppresses the default port but does not take a COM slot. */
    if (!strcmp(arg, "none"))
        return OPT_OK;
    if (c->nserials == VM_CONFIG_MAX_SERIALS) {
        log_error("%s %s: too many serial ports; vmkit has COM1..COM4", x->opt, arg);
        return OPT_ERROR;
    }
    c->serials[c->nserials++] = arg;
    return OPT_OK;
}

static int opt_monitor_spec(struct parse_ctx *x, const char *arg, const char **field)
{
    if (!chardev_spec_valid(x, arg))
        return OPT_ERROR;
    if (!strcmp(arg, "mon:stdio")) {
        log_error("%s mon:stdio: use %s stdio, or -serial mon:stdio to share the terminal",
                  x->opt, x->opt);
        return OPT_ERROR;
    }
    *field = strcmp(arg, "none") ? arg : NULL;
    return OPT_OK;
}

static int opt_qmp(struct parse_ctx *x, const char *arg)
{
    return opt_monitor_spec(x, arg, &x->c->qmp);
}

static int opt_monitor(struct parse_ctx *x, const char *arg)
{
    return opt_monitor_spec(x, arg, &x->c->monitor);
}

/* ---- accelerators, machine, cpu ---- */

/* Appends one accelerator name ("tcg" becomes "emu"), skipping duplicates. */
static int add_accel(struct parse_ctx *x, const char *name)
{
    struct vm_config *c = x->c;
    const char *canon;
    if (!strcmp(name, "kvm"))
        canon = "kvm";
    else if (!strcmp(name, "emu") || !strcmp(name, "tcg"))
        canon = "emu";
    else if (!strcmp(name, "auto"))
        canon = "auto";
    else {
        log_error("%s: accelerator '%s' is not available; vmkit has kvm, emu (tcg is an "
                  "alias of emu) and auto",
                  x->opt, name);
        return OPT_ERROR;
    }
    for (unsigned i = 0; i < c->naccels; i++)
        if (!strcmp(c->accels[i], canon))
            return OPT_OK;
    if (c->naccels == VM_CONFIG_MAX_ACCELS) {
        log_error("%s: too many accelerators", x->opt);
        return OPT_ERROR;
    }
    c->accels[c->naccels++] = canon;
    return OPT_OK;
}

static int opt_accel(struct parse_ctx *x, const char *arg)
{
    if (x->machine_accel_given) {
        log_error("The -accel and \"-machine accel=\" options are incompatible");
        return OPT_ERROR;
    }
    if (is_help(arg)) {
        printf("Accelerators supported in vmkit:\nkvm\nemu (alias: tcg)\n");
        return OPT_EXIT;
    }
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, "accel"))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    const char *name = qemu_opts_get(&o, "accel");
    if (!name || !*name) {
        log_error("%s %s: the accelerator name is missing; use -accel kvm or -accel emu", x->opt,
                  arg);
        goto out;
    }
    if (!x->accel_option_given) {
        x->accel_option_given = true;
        x->c->naccels = 0;
    }
    if (add_accel(x, name))
        goto out;
    const char *thread = qemu_opts_get(&o, "thread");
    if (thread) {
        if (strcmp(thread, "single") && strcmp(thread, "multi")) {
            log_error("%s %s: thread=%s: use thread=single (vCPUs in turns on a virtual clock, "
                      "reproducible) or thread=multi (vCPUs in parallel on host time)", x->opt,
                      arg, thread);
            goto out;
        }
        if (!strcmp(x->c->accels[x->c->naccels - 1], "emu"))
            x->c->emu_multi_thread = !strcmp(thread, "multi");
    }
    /* Tuning knobs of QEMU's accelerators; vmkit picks its own, so they are harmless to drop. */
    static const char *const ignored[] = {"kernel-irqchip", "tb-size", "split-wx",
                                          "dirty-ring-size", "kvm-shadow-mem", "notify-vmexit",
                                          "notify-window", "eager-split-size"};
    for (unsigned i = 0; i < ARRAY_SIZE(ignored); i++)
        if (qemu_opts_get(&o, ignored[i]))
            log_warn("%s %s: '%s' is accepted and ignored", x->opt, arg, ignored[i]);
    ret = reject_unused(x, &o, "kvm or emu and QEMU's tuning options, which it ignores");
out:
    qemu_opts_free(&o);
    return ret;
}

/* -icount shift=N,sleep=on|off: the rate of emu's virtual clock. Unlike QEMU, vmkit's emu
 * always counts instructions (thread=single); -icount only tunes it. */
static int opt_icount(struct parse_ctx *x, const char *arg)
{
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, "shift"))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    struct vm_config *c = x->c;
    const char *shift = qemu_opts_get(&o, "shift");
    if (shift && !strcmp(shift, "auto")) {
        log_error("%s %s: shift=auto follows the host's speed, which would make runs differ; "
                  "give a fixed shift=0..10 (2^N ns per instruction)", x->opt, arg);
        goto out;
    }
    unsigned n = 0;
    int r = shift ? qemu_opts_get_uint(&o, "shift", &n) : 0;
    if (r < 0 || n > 10) {
        log_error("%s %s: shift must be a number from 0 to 10 (2^N ns per instruction)", x->opt,
                  arg);
        goto out;
    }
    bool sleep;
    if (qemu_opts_get_bool(&o, "sleep", false, &sleep) < 0) {
        log_error("%s %s: sleep must be on or off", x->opt, arg);
        goto out;
    }
    const char *align = qemu_opts_get(&o, "align");
    if (align && strcmp(align, "off")) {
        log_error("%s %s: align=on is not supported; leave it out", x->opt, arg);
        goto out;
    }
    if (qemu_opts_get(&o, "rr") || qemu_opts_get(&o, "rrfile") || qemu_opts_get(&o, "rrsnapshot")) {
        log_error("%s %s: record/replay is not supported; leave rr= out", x->opt, arg);
        goto out;
    }
    c->icount_given = true;
    c->icount_shift = n;
    c->icount_sleep = sleep;
    ret = reject_unused(x, &o, "shift=N and sleep=on|off");
out:
    qemu_opts_free(&o);
    return ret;
}

/* -rtc base=utc|localtime|YYYY-MM-DD[THH:MM:SS],clock=host|rt|vm[,driftfix=none|slew]. */
static int opt_rtc(struct parse_ctx *x, const char *arg)
{
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, NULL))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    struct vm_config *c = x->c;
    const char *base = qemu_opts_get(&o, "base");
    if (base && !strcmp(base, "localtime")) {
        c->rtc_localtime = true;
    } else if (base && strcmp(base, "utc")) {
        struct tm tm = {0};
        char *end = strptime(base, "%Y-%m-%d", &tm);
        if (end && *end == 'T')
            end = strptime(end + 1, "%H:%M:%S", &tm);
        time_t t = end && !*end ? timegm(&tm) : (time_t)-1;
        if (t < 0) {
            log_error("%s %s: base=%s: use utc, localtime, or a date and time in UTC such as "
                      "2006-06-17T16:01:21 or 2006-06-17 (from 1970 on)", x->opt, arg, base);
            goto out;
        }
        c->rtc_base_given = true;
        c->rtc_base = t;
    }
    const char *clock = qemu_opts_get(&o, "clock");
    if (clock && strcmp(clock, "host") && strcmp(clock, "rt") && strcmp(clock, "vm")) {
        log_error("%s %s: clock=%s: use host (the host's time), rt (the same in vmkit) or vm "
                  "(the guest's clock: virtual under -accel emu)", x->opt, arg, clock);
        goto out;
    }
    c->rtc_clock_vm = clock && !strcmp(clock, "vm");
    const char *drift = qemu_opts_get(&o, "driftfix");
    if (drift && strcmp(drift, "none") && strcmp(drift, "slew")) {
        log_error("%s %s: driftfix=%s: use none or slew", x->opt, arg, drift);
        goto out;
    }
    /* slew re-injects RTC ticks a busy host lost: vmkit's RTC raises them on its clock. */
    ret = reject_unused(x, &o, "base=, clock= and driftfix=");
out:
    qemu_opts_free(&o);
    return ret;
}

static int opt_enable_kvm(struct parse_ctx *x, const char *arg)
{
    return opt_accel(x, "kvm");
}

static void print_machines(void)
{
    printf("Supported machines are:\n"
           "pc                   Standard PC (i440FX + PIIX, 1996) (default; pc-i440fx-* are "
           "aliases)\n");
}

static int opt_machine(struct parse_ctx *x, const char *arg)
{
    if (is_help(arg)) {
        print_machines();
        return OPT_EXIT;
    }
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, "type"))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    const char *type = qemu_opts_get(&o, "type");
    if (type) {
        if (is_help(type)) {
            print_machines();
            ret = OPT_EXIT;
            goto out;
        }
        if (strcmp(type, "pc") && strncmp(type, "pc-i440fx-", 10)) {
            log_error("%s %s: vmkit emulates one machine type, 'pc'; use -machine pc", x->opt,
                      type);
            goto out;
        }
    }
    const char *accel = qemu_opts_get(&o, "accel");
    if (accel) {
        if (x->accel_option_given) {
            log_error("The -accel and \"-machine accel=\" options are incompatible");
            goto out;
        }
        x->machine_accel_given = true;
        x->c->naccels = 0;
        /* "kvm:tcg" is QEMU's fallback list. */
        char *list = xstrdup(accel), *save = NULL;
        int r = OPT_OK;
        for (char *t = strtok_r(list, ":", &save); t && r == OPT_OK; t = strtok_r(NULL, ":", &save))
            r = add_accel(x, t);
        free(list);
        if (r != OPT_OK)
            goto out;
        if (!x->c->naccels) {
            log_error("%s: accel= is empty; use accel=kvm or accel=emu", x->opt);
            goto out;
        }
    }
    static const struct {
        const char *key;
        bool must_be_off; /* the device it enables does not exist in vmkit */
        const char *what;
    } props[] = {
        {"usb", true, "vmkit has no USB controller"},
        {"vmport", true, "vmkit has no VMware I/O port"},
        {"hpet", true, "vmkit has no HPET"},
        {"dump-guest-core", false, NULL},
        {"mem-merge", false, NULL},
        {"smm", false, NULL},
        {"graphics", false, NULL},
        {"sata", false, NULL},
        {"suppress-vmdesc", false, NULL},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(props); i++) {
        const char *v = qemu_opts_get(&o, props[i].key);
        if (!v)
            continue;
        bool b;
        /* vmport also takes "auto", which means off here. */
        if (!strcmp(props[i].key, "vmport") && !strcmp(v, "auto"))
            continue;
        if (qemu_opts_parse_bool(v, &b) < 0) {
            log_error("%s: %s='%s' must be on or off", x->opt, props[i].key, v);
            goto out;
        }
        if (b && props[i].must_be_off) {
            log_error("%s: %s=on: %s; drop it or use %s=off", x->opt, props[i].key,
                      props[i].what, props[i].key);
            goto out;
        }
    }
    /* The irqchip is in the kernel with kvm and in vmkit with emu: any value is fine. */
    qemu_opts_get(&o, "kernel_irqchip");
    qemu_opts_get(&o, "kernel-irqchip");
    x->c->machine_type = "pc";
    ret = reject_unused(x, &o,
                        "type, accel, usb=off, vmport=off, hpet=off, dump-guest-core, "
                        "mem-merge, smm, graphics, sata and kernel_irqchip");
out:
    qemu_opts_free(&o);
    return ret;
}

static int opt_cpu(struct parse_ctx *x, const char *arg)
{
    static const char *const models[] = {"host", "max", "kvm64", "qemu64"};
    if (is_help(arg)) {
        printf("Available CPUs (the accelerator decides the CPUID the guest sees):\n"
               "host\nmax\nkvm64\nqemu64\n");
        return OPT_EXIT;
    }
    size_t len = strcspn(arg, ",");
    char *model = xmalloc(len + 1);
    memcpy(model, arg, len);
    model[len] = '\0';
    bool known = false;
    for (unsigned i = 0; i < ARRAY_SIZE(models); i++)
        if (!strcmp(model, models[i]))
            known = true;
    if (!known) {
        log_error("%s %s: vmkit has no CPU model '%s'; use -cpu host (or max, kvm64, qemu64)",
                  x->opt, arg, model);
        free(model);
        return OPT_ERROR;
    }
    x->c->cpu_model = own(x->c, model);
    x->c->cpu_features = NULL;
    if (arg[len] == ',' && arg[len + 1]) {
        x->c->cpu_features = arg + len + 1;
        log_warn("%s %s: CPU feature flags are ignored; the accelerator decides the guest's "
                 "CPUID",
                 x->opt, arg);
    }
    return OPT_OK;
}

/* ---- display ---- */

static int no_graphics(struct parse_ctx *x, const char *arg)
{
    log_error("%s %s: vmkit has no graphical display; use -nographic or -display none", x->opt,
              arg);
    return OPT_ERROR;
}

static int opt_display(struct parse_ctx *x, const char *arg)
{
    if (is_help(arg)) {
        printf("Available display backend types:\nnone\n");
        return OPT_EXIT;
    }
    if (strcmp(arg, "none"))
        return no_graphics(x, arg);
    x->c->display_none = true;
    return OPT_OK;
}

static int opt_vga(struct parse_ctx *x, const char *arg)
{
    if (is_help(arg)) {
        printf("none                 no VGA card (the only choice in vmkit)\n");
        return OPT_EXIT;
    }
    return strcmp(arg, "none") ? no_graphics(x, arg) : OPT_OK;
}

static int opt_nographic(struct parse_ctx *x, const char *arg)
{
    x->c->nographic = true;
    return OPT_OK;
}

/* ---- simple options ---- */

static int opt_kernel(struct parse_ctx *x, const char *arg)
{
    if (!*arg) {
        log_error("%s: the file name is empty", x->opt);
        return OPT_ERROR;
    }
    x->c->kernel = arg;
    return OPT_OK;
}

static int opt_initrd(struct parse_ctx *x, const char *arg)
{
    if (!*arg) {
        log_error("%s: the file name is empty", x->opt);
        return OPT_ERROR;
    }
    x->c->initrd = arg;
    return OPT_OK;
}

static int opt_append(struct parse_ctx *x, const char *arg)
{
    x->c->append = arg;
    return OPT_OK;
}

static int opt_name(struct parse_ctx *x, const char *arg)
{
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, "guest"))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    bool dt;
    const char *guest = qemu_opts_get(&o, "guest");
    if (qemu_opts_get_bool(&o, "debug-threads", false, &dt) < 0) {
        log_error("%s: debug-threads takes on or off", x->opt);
        goto out;
    }
    qemu_opts_get(&o, "process"); /* QEMU's process title: vmkit's title is its own */
    if (guest)
        x->c->name = own(x->c, xstrdup(guest));
    x->c->name_debug_threads = dt;
    ret = reject_unused(x, &o, "guest, debug-threads and process");
out:
    qemu_opts_free(&o);
    return ret;
}

static int opt_uuid(struct parse_ctx *x, const char *arg)
{
    static const char pattern[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    bool ok = strlen(arg) == strlen(pattern);
    for (size_t i = 0; ok && pattern[i]; i++)
        ok = pattern[i] == '-' ? arg[i] == '-' : isxdigit((unsigned char)arg[i]);
    if (!ok) {
        log_error("%s %s: not a UUID; use the form 01234567-89ab-cdef-0123-456789abcdef", x->opt,
                  arg);
        return OPT_ERROR;
    }
    x->c->uuid = arg;
    return OPT_OK;
}

static int opt_daemonize(struct parse_ctx *x, const char *arg)
{
    x->c->daemonize = true;
    return OPT_OK;
}

static int opt_pidfile(struct parse_ctx *x, const char *arg)
{
    if (!*arg) {
        log_error("%s: the file name is empty", x->opt);
        return OPT_ERROR;
    }
    x->c->pidfile = arg;
    return OPT_OK;
}

static int opt_no_reboot(struct parse_ctx *x, const char *arg)
{
    x->c->no_reboot = true;
    return OPT_OK;
}

static int opt_no_shutdown(struct parse_ctx *x, const char *arg)
{
    x->c->no_shutdown = true;
    return OPT_OK;
}

static int opt_version(struct parse_ctx *x, const char *arg)
{
    printf("vmkit version %s (QEMU-compatible command line)\n", VMKIT_VERSION);
    return OPT_EXIT;
}

static int opt_help(struct parse_ctx *x, const char *arg)
{
    vm_config_print_help();
    return OPT_EXIT;
}

static int opt_mem_path(struct parse_ctx *x, const char *arg)
{
    if (!*arg) {
        log_error("%s: the directory name is empty", x->opt);
        return OPT_ERROR;
    }
    x->c->mem_path = arg;
    return OPT_OK;
}

static int opt_mem_prealloc(struct parse_ctx *x, const char *arg)
{
    x->c->mem_prealloc = true;
    return OPT_OK;
}

static int opt_S(struct parse_ctx *x, const char *arg)
{
    x->c->start_paused = true;
    return OPT_OK;
}

static int opt_nodefaults(struct parse_ctx *x, const char *arg)
{
    x->c->nodefaults = true;
    return OPT_OK;
}

static int opt_noop(struct parse_ctx *x, const char *arg)
{
    return OPT_OK;
}

static int opt_parallel(struct parse_ctx *x, const char *arg)
{
    if (strcmp(arg, "none")) {
        log_error("%s %s: vmkit has no parallel port; drop the option or use -parallel none",
                  x->opt, arg);
        return OPT_ERROR;
    }
    return OPT_OK;
}

/* -overcommit: QEMU's defaults (everything off) are what vmkit does; anything else is not. */
static int opt_overcommit(struct parse_ctx *x, const char *arg)
{
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, NULL))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    static const char *const keys[] = {"mem-lock", "cpu-pm"};
    for (unsigned i = 0; i < ARRAY_SIZE(keys); i++) {
        bool b;
        if (qemu_opts_get_bool(&o, keys[i], false, &b) < 0) {
            log_error("%s: %s takes on or off", x->opt, keys[i]);
            goto out;
        }
        if (b) {
            log_error("%s: %s=on is not supported yet; drop it or use %s=off", x->opt, keys[i],
                      keys[i]);
            goto out;
        }
    }
    ret = reject_unused(x, &o, "mem-lock=off and cpu-pm=off");
out:
    qemu_opts_free(&o);
    return ret;
}

/* -msg: message formatting knobs; vmkit's format is fixed, so they are accepted and ignored. */
static int opt_msg(struct parse_ctx *x, const char *arg)
{
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, NULL))
        return OPT_ERROR;
    int ret = OPT_ERROR;
    bool b;
    if (qemu_opts_get_bool(&o, "timestamp", false, &b) < 0 ||
        qemu_opts_get_bool(&o, "guest-name", false, &b) < 0) {
        log_error("%s: timestamp and guest-name take on or off", x->opt);
        goto out;
    }
    ret = reject_unused(x, &o, "timestamp and guest-name (both ignored)");
out:
    qemu_opts_free(&o);
    return ret;
}

/* ---- -device ---- */

/* Device models and whether the VMM has them. Flip a line to true when its model lands; a
 * false entry explains why it is refused. */
static const struct {
    const char *driver;
    bool supported;
    const char *desc;
} device_models[] = {
    {"pci-testdev", true, "PCI test device (QEMU's, for kvm-unit-tests)"},
    {"virtio-blk-pci", true, "virtio block device (disk); -drive if=none,id=ID then drive=ID"},
    {"virtio-blk", true, "alias of virtio-blk-pci"},
    {"virtio-net-pci", true, "virtio network card; -netdev TYPE,id=ID then netdev=ID[,mac=]"},
    {"virtio-net", true, "alias of virtio-net-pci"},
    {"virtio-rng-pci", true, "virtio entropy source (host getrandom)"},
    {"virtio-serial-pci", true, "virtio console controller (bus for virtconsole)"},
    {"virtio-serial", true, "alias of virtio-serial-pci"},
    {"virtio-balloon-pci", false, "virtio devices come in a later release"},
    {"virtio-scsi-pci", false, "vmkit has no disks until the virtio-blk release"},
    {"virtconsole", true, "virtio console port (hvc0), chardev=ID"},
    {"e1000", false, "vmkit will only have virtio-net-pci network cards"},
    {"rtl8139", false, "vmkit will only have virtio-net-pci network cards"},
    {"ide-hd", false, "vmkit will only have virtio-blk disks"},
    {"ide-cd", false, "vmkit will only have virtio-blk disks"},
    {"scsi-hd", false, "vmkit will only have virtio-blk disks"},
    {"isa-serial", false, "use -serial SPEC (up to 4 times) for serial ports"},
};

static void print_devices(void)
{
    printf("Devices vmkit has:\n");
    for (unsigned i = 0; i < ARRAY_SIZE(device_models); i++)
        if (device_models[i].supported)
            printf("name \"%s\", %s\n", device_models[i].driver, device_models[i].desc);
}

static int opt_device(struct parse_ctx *x, const char *arg)
{
    struct vm_config *c = x->c;
    if (is_help(arg)) {
        print_devices();
        return OPT_EXIT;
    }
    /* Syntax check now, so a broken option string fails before the VM is built. */
    struct qemu_opts o;
    if (parse_opts(x, &o, arg, "driver"))
        return OPT_ERROR;
    const char *drv = qemu_opts_get(&o, "driver");
    char *driver = drv ? xstrdup(drv) : NULL;
    bool help = qemu_opts_has(&o, "help") || qemu_opts_has(&o, "?");
    qemu_opts_free(&o);
    if (!driver || !*driver) {
        log_error("%s %s: the driver name is missing; use -device DRIVER[,prop=value...]", x->opt,
                  arg);
        free(driver);
        return OPT_ERROR;
    }
    own(c, driver);
    int idx = -1;
    for (unsigned i = 0; i < ARRAY_SIZE(device_models); i++)
        if (!strcmp(device_models[i].driver, driver))
            idx = (int)i;
    if (idx < 0) {
        log_error("%s %s: '%s' is not a valid device model name; -device help lists vmkit's",
                  x->opt, arg, driver);
        return OPT_ERROR;
    }
    if (!device_models[idx].supported) {
        log_error("%s %s: '%s' is not supported yet: %s", x->opt, arg, driver,
                  device_models[idx].desc);
        return OPT_ERROR;
    }
    if (help && vm_blk_device_print_help(driver))
        return OPT_EXIT;
    if (help) {
        printf("%s: %s; vmkit's model has no properties to set\n", driver, device_models[idx].desc);
        return OPT_EXIT;
    }
    /* The rest of the string after "DRIVER," (or the whole string minus "driver=..."), raw. */
    const char *opts = "";
    if (strncmp(arg, "driver=", 7)) {
        const char *comma = strchr(arg, ',');
        opts = comma ? comma + 1 : "";
    } else {
        /* Rebuild without the driver key: rare spelling, keep it simple and exact. */
        struct qemu_opts all;
        parse_opts(x, &all, arg, NULL);
        size_t cap = strlen(arg) * 2 + 1, len = 0;
        char *buf = xzalloc(cap);
        for (unsigned i = 0; i < all.n; i++) {
            if (!strcmp(all.v[i].key, "driver"))
                continue;
            len += (size_t)snprintf(buf + len, cap - len, "%s%s=", len ? "," : "", all.v[i].key);
            for (const char *p = all.v[i].value; *p; p++) {
                if (*p == ',')
                    buf[len++] = ',';
                buf[len++] = *p;
            }
        }
        qemu_opts_free(&all);
        opts = own(c, buf);
    }
    c->devices = xrealloc(c->devices, (c->ndevices + 1) * sizeof(*c->devices));
    c->devices[c->ndevices++] = (struct vm_config_device){.driver = driver, .opts = opts};
    return OPT_OK;
}

/* ---- networking: parsed in net_opts.c ---- */

static int opt_netdev(struct parse_ctx *x, const char *arg)
{
    int r = vm_config_add_netdev(x->c, arg);
    return r < 0 ? OPT_ERROR : r > 0 ? OPT_EXIT : OPT_OK;
}

static int opt_net(struct parse_ctx *x, const char *arg)
{
    int r = vm_config_add_net(x->c, arg);
    return r < 0 ? OPT_ERROR : r > 0 ? OPT_EXIT : OPT_OK;
}

static int opt_nic(struct parse_ctx *x, const char *arg)
{
    int r = vm_config_add_nic(x->c, arg);
    return r < 0 ? OPT_ERROR : r > 0 ? OPT_EXIT : OPT_OK;
}

/* ---- -drive, -snapshot: drive_opts.c ---- */

static int opt_drive(struct parse_ctx *x, const char *arg)
{
    return vm_config_drive_add(x->c, x->opt, arg) ? OPT_ERROR : OPT_OK;
}

static int opt_snapshot(struct parse_ctx *x, const char *arg)
{
    x->c->snapshot = true;
    return OPT_OK;
}

static int opt_chardev(struct parse_ctx *x, const char *arg)
{
    return vm_config_add_chardev(x->c, arg) < 0 ? OPT_ERROR : OPT_OK;
}

/* ---- the option table ---- */

typedef int (*opt_fn)(struct parse_ctx *x, const char *arg);

struct opt_def {
    const char *name;
    bool has_arg;
    opt_fn fn;          /* NULL: refused with msg */
    const char *msg;    /* why it is refused and what to do */
};

#define NO_IDE "vmkit does not emulate IDE; use -drive file=IMAGE,if=virtio"
#define NO_BLOCKDEV "vmkit has no -blockdev graph yet; use -drive file=IMAGE,if=none,id=ID with -device virtio-blk-pci,drive=ID"
#define NO_FIRMWARE "vmkit has no firmware; boot a kernel directly with -kernel"
#define NO_GRAPHICS "vmkit has no graphical display; use -nographic or -display none"
#define NO_CHARDEV                                                                                 \
    "give backends directly with -serial SPEC, -qmp SPEC or -monitor SPEC (e.g. "                 \
    "unix:PATH,server,nowait)"

static const struct opt_def options[] = {
    {"m", true, opt_m, NULL},
    {"smp", true, opt_smp, NULL},
    {"kernel", true, opt_kernel, NULL},
    {"initrd", true, opt_initrd, NULL},
    {"append", true, opt_append, NULL},
    {"name", true, opt_name, NULL},
    {"uuid", true, opt_uuid, NULL},
    {"nographic", false, opt_nographic, NULL},
    {"display", true, opt_display, NULL},
    {"vga", true, opt_vga, NULL},
    {"serial", true, opt_serial, NULL},
    {"daemonize", false, opt_daemonize, NULL},
    {"pidfile", true, opt_pidfile, NULL},
    {"accel", true, opt_accel, NULL},
    {"icount", true, opt_icount, NULL},
    {"rtc", true, opt_rtc, NULL},
    {"enable-kvm", false, opt_enable_kvm, NULL},
    {"cpu", true, opt_cpu, NULL},
    {"machine", true, opt_machine, NULL},
    {"M", true, opt_machine, NULL},
    {"no-reboot", false, opt_no_reboot, NULL},
    {"no-shutdown", false, opt_no_shutdown, NULL},
    {"version", false, opt_version, NULL},
    {"help", false, opt_help, NULL},
    {"h", false, opt_help, NULL},
    {"mem-path", true, opt_mem_path, NULL},
    {"mem-prealloc", false, opt_mem_prealloc, NULL},
    {"device", true, opt_device, NULL},
    {"S", false, opt_S, NULL},
    {"qmp", true, opt_qmp, NULL},
    {"monitor", true, opt_monitor, NULL},
    {"nodefaults", false, opt_nodefaults, NULL},
    {"no-user-config", false, opt_noop, NULL}, /* vmkit reads no configuration files */
    {"no-hpet", false, opt_noop, NULL},        /* vmkit has no HPET */
    {"parallel", true, opt_parallel, NULL},
    {"overcommit", true, opt_overcommit, NULL},
    {"msg", true, opt_msg, NULL},
    {"netdev", true, opt_netdev, NULL},
    {"net", true, opt_net, NULL},
    {"nic", true, opt_nic, NULL},

    {"drive", true, opt_drive, NULL},
    {"snapshot", false, opt_snapshot, NULL},
    {"blockdev", true, NULL, "is not supported yet: " NO_BLOCKDEV},
    {"hda", true, NULL, "is not supported: " NO_IDE},
    {"hdb", true, NULL, "is not supported: " NO_IDE},
    {"hdc", true, NULL, "is not supported: " NO_IDE},
    {"hdd", true, NULL, "is not supported: " NO_IDE},
    {"cdrom", true, NULL, "is not supported: vmkit has no CD-ROM drive (no IDE, AHCI or SCSI); "
                          "use -drive file=IMAGE,if=virtio,readonly=on"},
    {"fda", true, NULL, "is not supported: vmkit has no floppy controller; use -drive "
                        "file=IMAGE,if=virtio"},
    {"fdb", true, NULL, "is not supported: vmkit has no floppy controller; use -drive "
                        "file=IMAGE,if=virtio"},
    {"sd", true, NULL, "is not supported: vmkit has no SD card controller; use -drive "
                       "file=IMAGE,if=virtio"},
    {"pflash", true, NULL, "is not supported: " NO_FIRMWARE},
    {"boot", true, NULL, "is not supported: " NO_FIRMWARE},
    {"bios", true, NULL, "is not supported: " NO_FIRMWARE},
    {"L", true, NULL, "is not supported: " NO_FIRMWARE},
    {"fw_cfg", true, NULL, "is not supported: " NO_FIRMWARE},
    {"option-rom", true, NULL, "is not supported: " NO_FIRMWARE},
    {"smbios", true, NULL, "is not supported yet: vmkit provides no SMBIOS tables"},
    {"no-acpi", false, NULL, "is not supported: vmkit's pc machine always has ACPI"},
    {"usb", false, NULL, "is not supported: vmkit has no USB controller"},
    {"usbdevice", true, NULL, "is not supported: vmkit has no USB controller"},
    {"soundhw", true, NULL, "is not supported: vmkit has no sound devices"},
    {"audiodev", true, NULL, "is not supported: vmkit has no sound devices"},
    {"audio", true, NULL, "is not supported: vmkit has no sound devices"},
    {"vnc", true, NULL, "is not supported: " NO_GRAPHICS},
    {"spice", true, NULL, "is not supported: " NO_GRAPHICS},
    {"sdl", false, NULL, "is not supported: " NO_GRAPHICS},
    {"curses", false, NULL, "is not supported: " NO_GRAPHICS},
    {"full-screen", false, NULL, "is not supported: " NO_GRAPHICS},
    {"k", true, NULL, "is not supported: vmkit has no graphical console, so keyboard layouts "
                      "do not apply; the serial console takes what the terminal sends"},
    {"object", true, NULL, "is not supported yet: vmkit has no user-creatable objects; use "
                           "-mem-path for file-backed memory"},
    {"global", true, NULL, "is not supported yet: vmkit's devices have no global properties"},
    {"loadvm", true, NULL, "is not supported yet: vmkit has no VM snapshots yet"},
    {"incoming", true, NULL, "is not supported yet: vmkit cannot receive a migration yet"},
    {"chardev", true, opt_chardev, NULL},
    {"mon", true, NULL, "is not supported yet: " NO_CHARDEV},
    {"virtfs", true, NULL, "is not supported yet: vmkit has no 9p file sharing"},
    {"fsdev", true, NULL, "is not supported yet: vmkit has no 9p file sharing"},
    {"numa", true, NULL, "is not supported yet: vmkit's guests have one NUMA node"},
    {"watchdog", true, NULL, "is not supported: vmkit has no watchdog device"},
    {"watchdog-action", true, NULL, "is not supported: vmkit has no watchdog device"},
    {"balloon", true, NULL, "is not supported yet: vmkit has no balloon device"},
    {"tpmdev", true, NULL, "is not supported: vmkit has no TPM"},
    {"gdb", true, NULL, "is not supported yet: vmkit has no gdb stub"},
    {"s", false, NULL, "is not supported yet: vmkit has no gdb stub"},
    {"d", true, NULL, "is not supported: vmkit logs to stderr; QEMU's log items do not apply"},
    {"D", true, NULL, "is not supported: vmkit logs to stderr; redirect it to a file"},
    {"runas", true, NULL, "is not supported yet: start vmkit as the user it should run as"},
    {"chroot", true, NULL, "is not supported yet: start vmkit inside the chroot"},
    {"sandbox", true, NULL, "is not supported yet: vmkit installs no seccomp filter"},
    {"add-fd", true, NULL, "is not supported yet: pass paths instead of file descriptors"},
    {"readconfig", true, NULL, "is not supported: vmkit reads no configuration files; put the "
                               "options on the command line"},
    {"writeconfig", true, NULL, "is not supported: vmkit writes no configuration files"},
    {"trace", true, NULL, "is not supported: vmkit has no trace events"},
    {"plugin", true, NULL, "is not supported: vmkit has no TCG plugins"},
    {"semihosting", false, NULL, "is not supported: vmkit has no semihosting"},
    {"qmp-pretty", true, NULL, "is not supported yet; use -qmp SPEC"},
};

static const struct opt_def *find_option(const char *name)
{
    for (unsigned i = 0; i < ARRAY_SIZE(options); i++)
        if (!strcmp(options[i].name, name))
            return &options[i];
    return NULL;
}

/* Combinations QEMU refuses too, checked after every option is in. */
static int finish(struct parse_ctx *x)
{
    struct vm_config *c = x->c;
    if (finish_memory(x) || finish_smp(x) || vm_config_net_finish(c))
        return OPT_ERROR;
    if (vm_config_drives_finish(c))
        return OPT_ERROR;

    if (c->icount_given) {
        bool emu = false;
        for (unsigned i = 0; i < c->naccels; i++)
            emu |= !strcmp(c->accels[i], "emu");
        if (!emu) {
            log_error("-icount: only the emu accelerator counts instructions; add -accel emu");
            return OPT_ERROR;
        }
        if (c->emu_multi_thread) {
            log_error("-icount: vCPUs running in parallel (-accel emu,thread=multi) follow host "
                      "time; use thread=single or leave -icount out");
            return OPT_ERROR;
        }
    }
    if (c->initrd && !c->kernel) {
        log_error("-initrd only allowed with -kernel option");
        return OPT_ERROR;
    }
    if (c->append && !c->kernel) {
        log_error("-append only allowed with -kernel option");
        return OPT_ERROR;
    }

    if (!x->serial_given) {
        c->nserials = 0;
        if (!c->daemonize && !c->nodefaults)
            c->serials[c->nserials++] = "stdio";
    }
    c->serial = c->nserials ? c->serials[0] : "none";

    unsigned stdio_users = 0;
    const char *stdio_user = NULL;
    for (unsigned i = 0; i < c->nserials; i++) {
        if (!strcmp(c->serials[i], "stdio") || !strcmp(c->serials[i], "mon:stdio")) {
            stdio_users++;
            stdio_user = "-serial";
        }
    }
    if (c->qmp && !strcmp(c->qmp, "stdio")) {
        stdio_users++;
        stdio_user = "-qmp";
    }
    if (c->monitor && !strcmp(c->monitor, "stdio")) {
        stdio_users++;
        stdio_user = "-monitor";
    }
    if (stdio_users > 1) {
        log_error("cannot use stdio by multiple character devices; use -serial mon:stdio to "
                  "share the terminal between the serial port and the monitor");
        return OPT_ERROR;
    }
    if (c->daemonize) {
        if (c->nographic) {
            log_error("-nographic cannot be used with -daemonize");
            return OPT_ERROR;
        }
        if (stdio_users) {
            log_error("%s stdio: cannot use stdio with -daemonize; use pty, file:PATH or "
                      "unix:PATH,server,nowait",
                      stdio_user);
            return OPT_ERROR;
        }
    }

    c->accel = c->accels[0];
    return OPT_OK;
}

enum vm_config_parse_result vm_config_parse_args(struct vm_config *c, int argc, char **argv)
{
    struct parse_ctx x = {.c = c};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            log_error("'%s': not an option; vmkit run takes only options (QEMU would use it as "
                      "-hda, an IDE disk, which vmkit does not emulate); use -drive "
                      "file=%s,if=virtio",
                      a, a);
            return VM_CONFIG_ERROR;
        }
        const char *name = a + 1;
        bool dd = name[0] == '-';
        if (dd)
            name++;
        /* --opt=value: split off the value; QEMU's single-dash spelling never carries one. */
        char namebuf[64];
        const char *inline_val = NULL;
        const char *eq = dd ? strchr(name, '=') : NULL;
        if (eq) {
            size_t n = (size_t)(eq - name);
            if (n >= sizeof(namebuf))
                n = sizeof(namebuf) - 1;
            memcpy(namebuf, name, n);
            namebuf[n] = '\0';
            name = namebuf;
            inline_val = eq + 1;
        }
        const struct opt_def *d = find_option(name);
        char optbuf[80];
        snprintf(optbuf, sizeof(optbuf), "-%s", name);
        x.opt = optbuf;
        if (!d) {
            log_error("-%s: unknown option; see vmkit run -help", name);
            return VM_CONFIG_ERROR;
        }
        const char *arg = NULL;
        if (d->has_arg) {
            if (inline_val) {
                arg = inline_val;
            } else if (!strcmp(name, "accel") && (i + 1 >= argc || argv[i + 1][0] == '-')) {
                arg = "auto"; /* -accel alone: kvm with hardware virtualization, else emu */
            } else if (i + 1 < argc) {
                arg = argv[++i];
            } else {
                log_error("-%s requires an argument", name);
                return VM_CONFIG_ERROR;
            }
        } else if (inline_val) {
            log_error("-%s takes no argument", name);
            return VM_CONFIG_ERROR;
        }
        if (!d->fn) {
            log_error("-%s %s", name, d->msg);
            return VM_CONFIG_ERROR;
        }
        int r = d->fn(&x, arg);
        if (r == OPT_EXIT)
            return VM_CONFIG_EXIT_OK;
        if (r != OPT_OK)
            return VM_CONFIG_ERROR;
    }
    x.opt = "";
    return finish(&x) == OPT_OK ? VM_CONFIG_RUN : VM_CONFIG_ERROR;
}
