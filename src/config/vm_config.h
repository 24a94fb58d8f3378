/* Everything one VM is made of, filled from QEMU-style argv (and later from domain XML). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "net/net.h"

#ifndef VMKIT_VERSION
#define VMKIT_VERSION "0.1.0"
#endif

#define VM_CONFIG_MAX_SERIALS 4 /* COM1..COM4 */
#define VM_CONFIG_MAX_ACCELS 4
#define VM_CONFIG_MAX_CPUS 255 /* as QEMU's pc machine: xAPIC IDs, no interrupt remapping */
/* Guest RAM above this is refused as a typo rather than tried: no host here has more. */
#define VM_CONFIG_MAX_RAM (4ULL << 40)
#define VM_CONFIG_DEFAULT_RAM (512ULL << 20)

/* One -device DRIVER[,opts]: kept raw so each device model parses its own options with
 * qemu_opts_parse(opts, NULL, ...). */
struct vm_config_device {
    const char *driver; /* "pci-testdev" */
    const char *opts;   /* everything after "DRIVER,", "" when none; ",," escapes intact */
};

/* One network backend: -netdev TYPE,id=..., or the backend half of -net TYPE / -nic TYPE
 * (their ids are generated: "_net0", "_nic0", ...). Create it with
 * net_backend_new(&nd->backend, ev, &nb); see net/net.h. */
struct vm_config_netdev {
    const char *id;   /* == backend.id */
    const char *type; /* "tap", "bridge", "user", "socket" */
    const char *opts; /* the raw option string as given, for messages and "info network" */
    struct net_backend_opts backend; /* parsed and checked with net_backend_opts_check */
};

/* One NIC from -net nic or -nic (not -device virtio-net-pci: that is in devices[], and its
 * model calls vm_config_net_alloc_mac() when it has no mac=). */
struct vm_config_nic {
    const char *netdev; /* id of the backend it is paired with; NULL = not connected */
    const char *model;  /* always "virtio-net-pci" (other models are refused at parse time) */
    const char *name;   /* -net nic,name= or generated "_nic0"; for messages */
    uint8_t mac[6];     /* macaddr=/mac=, else 52:54:00:12:34:56 + n, unique in this VM */
};

struct vm_config_strings; /* strings the parser allocated; freed by vm_config_free */

/* One -drive (see drive_opts.c, docs/disks.md). The enums mirror block.h's so config/ needs
 * no block layer. */
enum vm_drive_if { VM_DRIVE_IF_VIRTIO, VM_DRIVE_IF_NONE };
enum vm_drive_cache { /* same order as enum blk_cache_mode */
    VM_DRIVE_CACHE_WRITEBACK, VM_DRIVE_CACHE_WRITETHROUGH, VM_DRIVE_CACHE_NONE,
    VM_DRIVE_CACHE_DIRECTSYNC, VM_DRIVE_CACHE_UNSAFE,
};
enum vm_drive_aio { VM_DRIVE_AIO_DEFAULT, VM_DRIVE_AIO_IO_URING, VM_DRIVE_AIO_THREADS };
struct vm_config_drive {
    char *id;       /* id=, or QEMU's generated "virtio0"/"none0" */
    char *file;     /* file= */
    char *format;   /* "raw", "qcow2", or NULL: probe (a raw guess warns and guards sector 0) */
    char *serial;   /* serial=, or NULL */
    enum vm_drive_if iface;
    enum vm_drive_cache cache;
    enum vm_drive_aio aio;
    bool read_only, snapshot, discard_unmap;
    int index;      /* index=, or the unit QEMU would assign */
    char *dev_opts_; /* private: the opts of the virtio-blk-pci device if=virtio creates */
};

struct vm_config {
    uint64_t ram_size;     /* bytes; -m, default 512 MiB, aligned up to 4 KiB */
    uint64_t ram_maxsize;  /* -m ...,maxmem= (accepted; memory hotplug is not supported yet); else ram_size */
    const char *mem_path;  /* -mem-path DIR (hugetlbfs) */
    bool mem_prealloc;     /* -mem-prealloc */

    unsigned ncpus, maxcpus, sockets, dies, cores, threads; /* -smp, all filled in consistently */

    const char *kernel, *initrd, *append; /* -kernel/-initrd/-append; kernel NULL = default guest */
    const char *name;                     /* -name NAME or -name guest=NAME */
    const char *accel;                    /* -accel/-enable-kvm/-machine accel=; default "kvm" */
    const char *cpu_model;                /* -cpu; "host" by default */
    const char *machine_type;             /* -machine/-M; only "pc" (and aliases) exist */

    bool nographic;       /* -nographic */
    bool display_none;    /* -display none */
    const char *serial;   /* -serial SPEC; default "stdio" ("none" when daemonized) */
    bool daemonize;       /* -daemonize */
    const char *pidfile;  /* -pidfile PATH */
    bool no_reboot;       /* -no-reboot: a guest reset exits the VMM */
    bool no_shutdown;     /* -no-shutdown: S5 stops the guest but keeps the process */

    /* Added with the full command line parser. */
    unsigned mem_slots;  /* -m ...,slots=N (accepted; hotplug is not supported yet) */
    /* The serial ports that exist, in order: serials[i] is COM(i+1). serial == serials[0], or
     * "none" when nserials == 0. As in QEMU, "-serial none" takes no slot (it only drops the
     * default port) while "null" is a port with no backend. */
    const char *serials[VM_CONFIG_MAX_SERIALS];
    unsigned nserials;
    /* Accelerators to try in order: "kvm" or "emu" ("tcg" is stored as "emu").
     * -accel kvm -accel tcg or -machine accel=kvm:tcg give two. accel == accels[0]. */
    const char *accels[VM_CONFIG_MAX_ACCELS];
    unsigned naccels;
    const char *cpu_features; /* "+x,-y" after -cpu MODEL,: accepted, warned about, ignored */
    /* -accel emu: thread=multi runs vCPUs in parallel on host time; the default (single) runs
     * them in turns on a virtual clock, so runs are reproducible (docs/emu.md). */
    bool emu_multi_thread;
    bool icount_given;     /* -icount given (valid only with emu, thread=single) */
    unsigned icount_shift; /* -icount shift=N: 2^N virtual ns per instruction; default 0 */
    bool icount_sleep;     /* -icount sleep=on: idle time passes in real time, not skipped */
    /* -rtc base=utc|localtime|DATETIME,clock=host|rt|vm: the RTC starts at rtc_base (UTC
     * seconds) when rtc_base_given, else at the host's time (local time with rtc_localtime),
     * and runs on the guest's clock with rtc_clock_vm (virtual under -accel emu). */
    bool rtc_base_given, rtc_localtime, rtc_clock_vm;
    int64_t rtc_base;
    bool name_debug_threads;  /* -name ...,debug-threads=on: name vCPU threads "CPU n/KVM" */
    struct vm_config_device *devices; /* -device, in command-line order */
    unsigned ndevices;
    bool start_paused;   /* -S: do not start vCPUs until the monitor says "cont" */
    const char *qmp;     /* -qmp SPEC (chardev spelling, e.g. "unix:PATH,server,nowait"); NULL none */
    const char *monitor; /* -monitor SPEC (HMP); NULL none */
    bool nodefaults;     /* -nodefaults: no default serial */
    const char *uuid;    /* -uuid, validated 8-4-4-4-12 hex; NULL none */

    /* Networking (config/net_opts.c). */
    struct vm_config_netdev *netdevs; /* -netdev, and backends of -net/-nic, in order */
    unsigned nnetdevs;
    struct vm_config_nic *nics;       /* -net nic and -nic, in order */
    unsigned nnics;
    uint8_t (*macs_used)[6];          /* private: MACs handed out, for uniqueness */
    unsigned nmacs_used;
    void *net_owned_;                 /* private: strings net_opts.c allocated */
    struct vm_config_drive *drives; /* -drive, in command-line order; -snapshot applied */
    unsigned ndrives;
    bool snapshot;       /* -snapshot: every drive snapshot=on */

    struct vm_config_strings *owned_; /* private */
};

/* Result of parsing: run the VM, or the invocation is finished (-help, -version printed). */
enum vm_config_parse_result {
    VM_CONFIG_RUN = 0,
    VM_CONFIG_EXIT_OK = 1,  /* e.g. -help printed: exit 0 */
    VM_CONFIG_ERROR = -1,   /* a message naming the option has been printed: exit 1 */
};

void vm_config_init(struct vm_config *c);
/* Call vm_config_init first. argv[0] is the first option, not the program name: for
 * "vmkit run ..." pass argc - 2, argv + 2. Options may start with - or --, and "--opt=value"
 * is accepted as well as "-opt value". Strings in c point into argv or into memory c owns:
 * keep argv alive as long as c, and call vm_config_free when done. */
enum vm_config_parse_result vm_config_parse_args(struct vm_config *c, int argc, char **argv);
void vm_config_print_help(void);
/* Frees what the parser allocated (not argv); c is left initialised to defaults. */
void vm_config_free(struct vm_config *c);

/* Network options (config/net_opts.c); vm_config_parse_args calls them. Each returns 0, 1
 * when it printed help (TYPE "help", model=help: exit 0), or -EINVAL after a message. */
int vm_config_add_netdev(struct vm_config *c, const char *arg);  /* -netdev */
int vm_config_add_net(struct vm_config *c, const char *arg);     /* -net */
int vm_config_add_nic(struct vm_config *c, const char *arg);     /* -nic */
/* After all options: pairs -net nic with -net backends, checks netdev ids NICs name. */
int vm_config_net_finish(struct vm_config *c);
void vm_config_net_free(struct vm_config *c);
/* A MAC for a NIC without one: the lowest 52:54:00:12:34:56+n no NIC of c has. When the
 * caller has its own mac= (-device ...,mac=), it calls vm_config_net_use_mac() so later
 * defaults skip it. */
void vm_config_net_alloc_mac(struct vm_config *c, uint8_t mac[6]);
void vm_config_net_use_mac(struct vm_config *c, const uint8_t mac[6]);
/* The netdev configured under id, or NULL. */
struct vm_config_netdev *vm_config_find_netdev(struct vm_config *c, const char *id);

/* -smp's arithmetic alone (exposed for tests and for domain XML later): fills zero fields the
 * way QEMU >= 6.2 does for pc (cores preferred over sockets) and checks the product and the
 * limits. Zero means "not given". Returns 0, or -EINVAL with a QEMU-like message in err. */
struct vm_config_smp {
    unsigned cpus, maxcpus, sockets, dies, cores, threads;
};
int vm_config_smp_compute(struct vm_config_smp *s, char *err, unsigned errlen);
