/* Everything one VM is made of, filled from QEMU-style argv (and later from domain XML). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct vm_config {
    uint64_t ram_size;     /* bytes; -m, default 512 MiB */
    uint64_t ram_maxsize;  /* -m ...,maxmem= (accepted; memory hotplug is not supported yet) */
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
};

/* Result of parsing: run the VM, or the invocation is finished (-help, -version printed). */
enum vm_config_parse_result {
    VM_CONFIG_RUN = 0,
    VM_CONFIG_EXIT_OK = 1,  /* e.g. -help printed: exit 0 */
    VM_CONFIG_ERROR = -1,   /* a message naming the option has been printed: exit 1 */
};

void vm_config_init(struct vm_config *c);
/* argv[0] is the first option (not the program name). Options may start with - or --. */
enum vm_config_parse_result vm_config_parse_args(struct vm_config *c, int argc, char **argv);
void vm_config_print_help(void);
