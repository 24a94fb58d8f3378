/* One VM: builds the machine from a vm_config, runs a thread per vCPU plus the event loop, and
 * carries out what devices and the host ask for: reset, power-off, quit. */
#include "vm/vm.h"
#include "accel/accel.h"
#include "base/log.h"
#include "base/size.h"
#include "base/util.h"
#include "chardev/chardev.h"
#include "hw/devices.h"
#include "hw/pci.h"
#include "hw/virtio/virtio_net.h"
#include "machine/acpi.h"
#include "machine/boot.h"
#include "machine/layout.h"
#include "machine/machine.h"
#include "machine/topology.h"
#include "vm/default_guest.h"
#include "vm/device_models.h"
#include "block/block.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

struct vm;

struct vm_vcpu {
    struct vm *vm;
    unsigned index;
    struct vcpu *vcpu;
    pthread_t thread;
    bool running;
};

struct vm {
    const struct vm_config *cfg;
    struct machine m;
    const struct accel_ops *ops;
    struct accel *accel;
    struct accel_config accel_cfg;
    struct vm_vcpu *vcpus;
    struct chardev *serial_chr[VM_CONFIG_MAX_SERIALS];
    struct acpi_pm *pm; /* for the host's power-button requests */
    struct pci_host *pci;
    struct blk_aio *aio; /* disks' I/O engine, created when the first disk needs it */
    uint64_t mmio64_base;
    uint8_t *kernel, *initrd;
    size_t kernel_len, initrd_len;
    const char *kernel_name;
    struct boot_info boot;
    uint64_t clock_carry; /* the machine clock at the last accelerator's end (see vm_clock_ns) */
    enum machine_request request; /* the strongest pending request; under m.lock */
    bool stopping;                /* vCPU threads leave their loops */
    int sigfd;
};

/* --- Interrupts: devices raise them through the machine; the accelerator delivers them --- */

static void vm_irq_set_level(void *opaque, unsigned gsi, bool level)
{
    struct vm *vm = opaque;
    if (vm->accel)
        vm->ops->set_irq(vm->accel, gsi, level);
}

static void vm_irq_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
    struct vm *vm = opaque;
    if (vm->accel)
        vm->ops->send_msi(vm->accel, addr, data);
}

static const struct irq_ops vm_irq_ops = {vm_irq_set_level, vm_irq_send_msi};

/* --- Requests: called with the machine lock held, from a vCPU or the event loop --- */

static void vm_on_request(struct machine *m, enum machine_request req)
{
    struct vm *vm = m->owner;
    /* Stronger requests win: an error beats a quit beats a power-off beats a reset. */
    if (req > vm->request)
        vm->request = req;
    __atomic_store_n(&vm->stopping, true, __ATOMIC_SEQ_CST);
    /* Only threads not yet joined may be signalled: vm_join_vcpus clears `running` under this
     * lock before it joins. */
    for (unsigned i = 0; i < m->ncpus; i++)
        if (vm->vcpus[i].running)
            vm->ops->vcpu_kick(vm->vcpus[i].vcpu);
    evloop_stop(m->ev);
}

static void vm_quit_from_console(void *opaque)
{
    struct vm *vm = opaque;
    machine_request(&vm->m, MACHINE_REQ_QUIT);
}

static void vm_on_signal(void *opaque, uint32_t events)
{
    struct vm *vm = opaque;
    struct signalfd_siginfo si;
    if (read(vm->sigfd, &si, sizeof(si)) != sizeof(si))
        return;
    chardev_restore_terminal();
    log_info("terminating on signal %u", si.ssi_signo);
    machine_request(&vm->m, MACHINE_REQ_QUIT);
}

/* --- vCPU threads --- */

static void vm_handle_io(struct vm *vm, struct vcpu_exit *e)
{
    pthread_mutex_lock(&vm->m.lock);
    for (uint32_t i = 0; i < e->io.count; i++) {
        uint8_t *d = e->io.data + (size_t)i * e->io.size;
        uint64_t v = 0;
        if (e->io.is_write) {
            memcpy(&v, d, e->io.size);
            bus_write(&vm->m.pio, e->io.port, e->io.size, v);
        } else {
            bus_read(&vm->m.pio, e->io.port, e->io.size, &v);
            memcpy(d, &v, e->io.size);
        }
    }
    pthread_mutex_unlock(&vm->m.lock);
}

static void vm_handle_mmio(struct vm *vm, struct vcpu_exit *e)
{
    unsigned len = e->mmio.len;
    bool natural = len == 1 || len == 2 || len == 4 || len == 8;
    pthread_mutex_lock(&vm->m.lock);
    /* Odd sizes (some string and SSE moves) are split into bytes rather than refused. */
    for (unsigned off = 0; off < len; off += natural ? len : 1) {
        unsigned size = natural ? len : 1;
        uint64_t v = 0;
        bool claimed;
        if (e->mmio.is_write) {
            memcpy(&v, e->mmio.data + off, size);
            claimed = bus_write(&vm->m.mmio, e->mmio.addr + off, size, v);
        } else {
            claimed = bus_read(&vm->m.mmio, e->mmio.addr + off, size, &v);
            memcpy(e->mmio.data + off, &v, size);
        }
        if (!claimed)
            log_once(LOG_DEBUG, "guest accessed unassigned MMIO at 0x%llx",
                     (unsigned long long)e->mmio.addr);
    }
    pthread_mutex_unlock(&vm->m.lock);
}

static void vm_vcpu_request(struct vm *vm, enum machine_request req)
{
    pthread_mutex_lock(&vm->m.lock);
    machine_request(&vm->m, req);
    pthread_mutex_unlock(&vm->m.lock);
}

static void *vm_vcpu_thread(void *arg)
{
    struct vm_vcpu *vc = arg;
    struct vm *vm = vc->vm;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1); /* the accelerator's kick */
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    struct vcpu_exit e;
    while (!__atomic_load_n(&vm->stopping, __ATOMIC_SEQ_CST)) {
        int r = vm->ops->vcpu_run(vc->vcpu, &e);
        if (r < 0) {
            log_error("vCPU %u: %s failed: %s", vc->index, vm->ops->name, strerror(-r));
            vm->ops->vcpu_dump(vc->vcpu, stderr);
            vm_vcpu_request(vm, MACHINE_REQ_ERROR);
            break;
        }
        switch (e.reason) {
        case VCPU_EXIT_IO:
            vm_handle_io(vm, &e);
            break;
        case VCPU_EXIT_MMIO:
            vm_handle_mmio(vm, &e);
            break;
        case VCPU_EXIT_INTR:
        case VCPU_EXIT_HLT: /* with an in-kernel irqchip HLT never leaves KVM; nothing to do */
            break;
        case VCPU_EXIT_SHUTDOWN: /* triple fault: a PC resets */
        case VCPU_EXIT_SYSTEM_RESET:
            vm_vcpu_request(vm, MACHINE_REQ_RESET);
            break;
        case VCPU_EXIT_SYSTEM_OFF:
            vm_vcpu_request(vm, MACHINE_REQ_POWEROFF);
            break;
        case VCPU_EXIT_INTERNAL_ERROR:
            chardev_restore_terminal();
            log_error("vCPU %u: %s internal error (code %u); guest state:", vc->index,
                      vm->ops->name, e.internal.code);
            vm->ops->vcpu_dump(vc->vcpu, stderr);
            vm_vcpu_request(vm, MACHINE_REQ_ERROR);
            return NULL;
        }
    }
    return NULL;
}

/* --- Building the machine --- */

static int vm_check_host_memory(const struct vm_config *cfg)
{
    struct sysinfo si;
    if (sysinfo(&si) < 0)
        return 0;
    uint64_t host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
    if (cfg->ram_size > host) {
        char want[32], have[32];
        size_format(cfg->ram_size, want, sizeof(want));
        size_format(host, have, sizeof(have));
        log_error("-m: %s of guest memory is more than this host has (%s of RAM and swap); "
                  "use a smaller -m", want, have);
        return -ENOMEM;
    }
    return 0;
}

static int vm_read_file(const char *opt, const char *path, uint8_t **data, size_t *len)
{
    int r = file_read_all(path, data, len);
    if (r == -EINVAL)
        log_error("%s %s: not a regular file", opt, path);
    else if (r < 0)
        log_error("%s %s: cannot read: %s", opt, path, strerror(-r));
    return r;
}

static void vm_blk_aio_ready(void *opaque, uint32_t events)
{
    blk_aio_process(opaque);
}

static struct blk_aio *vm_blk_aio(struct vm_device_ctx *ctx)
{
    struct vm *vm = ctx->vm;
    if (!vm->aio) {
        if (blk_aio_new(BLK_AIO_DEFAULT, &vm->aio) < 0)
            return NULL;
        evloop_add_fd(vm->m.ev, blk_aio_eventfd(vm->aio), EPOLLIN, vm_blk_aio_ready, vm->aio);
    }
    return vm->aio;
}

/* The accelerator's fast paths, for devices; a no-op between two KVM VMs during a reset. */
static int vm_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd,
                        bool assign)
{
    struct vm *vm = m->owner;
    if (!vm->ops->ioeventfd)
        return -ENOTSUP;
    return vm->accel ? vm->ops->ioeventfd(vm->accel, addr, len, pio, fd, assign) : 0;
}

static int vm_irqfd(struct machine *m, int fd, uint64_t msi_addr, uint32_t msi_data, bool assign)
{
    struct vm *vm = m->owner;
    if (!vm->ops->irqfd)
        return -ENOTSUP;
    return vm->accel ? vm->ops->irqfd(vm->accel, fd, msi_addr, msi_data, assign) : 0;
}

/* Device writes to RAM, for accelerators that cache decoded code (guest_mem_written). No
 * accelerator during a reset: the new one starts with nothing cached. */
static void vm_mem_written(void *opaque, uint64_t gpa, uint64_t len)
{
    struct vm *vm = opaque;
    if (vm->accel)
        vm->ops->mem_written(vm->accel, gpa, len);
}

static int vm_add_devices(struct vm *vm)
{
    struct machine *m = &vm->m;
    const struct vm_config *cfg = vm->cfg;
    /* COM1-COM4 at the PC's ports; -serial none leaves a port out, as in QEMU. */
    static const uint16_t com_ports[VM_CONFIG_MAX_SERIALS] = {PORT_COM1, 0x2F8, 0x3E8, 0x2E8};
    static const uint8_t com_irqs[VM_CONFIG_MAX_SERIALS] = {IRQ_COM1, 3, 4, 3};
    for (unsigned i = 0; i < cfg->nserials && i < VM_CONFIG_MAX_SERIALS; i++) {
        char label[16];
        snprintf(label, sizeof(label), "serial%u", i);
        if (chardev_open_label(cfg->serials[i], label, m->ev, vm_quit_from_console, vm,
                               &vm->serial_chr[i]) < 0)
            return -EINVAL;
        if (!serial_create(m, com_ports[i], com_irqs[i], vm->serial_chr[i]))
            return -EINVAL;
    }
    vm->pm = acpi_pm_create(m);
    struct rtc *rtc = rtc_create(m);
    if (rtc)
        rtc_configure(rtc, cfg->rtc_base_given, cfg->rtc_base, cfg->rtc_localtime,
                      cfg->rtc_clock_vm);
    if (!i8042_create(m) || !rtc || !vm->pm)
        return -EINVAL;
    misc_ports_create(m);
    vm->mmio64_base = ALIGN_UP(LAYOUT_4G + guest_mem_high_size(&m->mem), GiB);
    vm->pci = pci_host_create(m, vm->mmio64_base, LAYOUT_PCI_MMIO64_SIZE);
    if (!vm->pci)
        return -EINVAL;
    struct vm_device_ctx ctx = {.m = m, .pci = vm->pci, .cfg = cfg, .blk_aio = vm_blk_aio,
                                .vm = vm};
    /* The backends of -netdev/-net/-nic exist before any NIC looks them up (an id that two
     * options share is created once). */
    for (unsigned i = 0; i < cfg->nnetdevs; i++) {
        struct net_backend *nb;
        if (!net_backend_lookup(cfg->netdevs[i].id) &&
            net_backend_new(&cfg->netdevs[i].backend, m->ev, &nb) < 0)
            return -EINVAL;
    }
    for (unsigned i = 0; i < cfg->ndevices; i++) {
        const struct vm_device_model *model = vm_device_model_find(cfg->devices[i].driver);
        if (!model) {
            log_error("-device %s: vmkit has no such device", cfg->devices[i].driver);
            return -EINVAL;
        }
        if (model->create(&ctx, cfg->devices[i].opts) < 0)
            return -EINVAL;
    }
    /* The NICs of -nic and -net nic (always virtio-net-pci), after the -device list as in QEMU. */
    for (unsigned i = 0; i < cfg->nnics; i++)
        if (virtio_net_pci_create_nic(&ctx, &cfg->nics[i]) < 0)
            return -EINVAL;
    return pci_assign_resources(vm->pci);
}

/* ACPI tables and the kernel go into RAM at every (re)boot: the guest may have overwritten both. */
static int vm_load_guest(struct vm *vm)
{
    struct machine *m = &vm->m;
    uint32_t *apic_ids = xmalloc(sizeof(uint32_t) * m->ncpus);
    struct cpu_topology topo = {vm->cfg->sockets, vm->cfg->dies, vm->cfg->cores,
                                vm->cfg->threads};
    for (unsigned i = 0; i < m->ncpus; i++)
        apic_ids[i] = topology_apic_id(&topo, i);
    struct acpi_config acfg = {
        .ncpus = m->ncpus,
        .apic_ids = apic_ids,
        .pci_mmio32_base = LAYOUT_PCI_MMIO,
        .pci_mmio32_size = LAYOUT_PCI_MMIO_SIZE,
        .pci_mmio64_base = vm->mmio64_base,
        .pci_mmio64_size = LAYOUT_PCI_MMIO64_SIZE,
        .pci_io_base = PORT_PCI_IO_WINDOW,
        .pci_io_end = PORT_PCI_IO_WINDOW_END,
        .has_com1 = vm->cfg->nserials > 0,
    };
    void *acpi = guest_mem_ptr(&m->mem, LAYOUT_ACPI, LAYOUT_ACPI_SIZE);
    int r = acpi ? acpi_build_tables(&acfg, acpi, LAYOUT_ACPI_SIZE, LAYOUT_ACPI) : -ENOSPC;
    free(apic_ids);
    if (r < 0) {
        log_error("cannot build the ACPI tables: %s", strerror(-r));
        return r;
    }
    struct boot_request req = {
        .kernel_name = vm->kernel_name,
        .kernel = vm->kernel,
        .kernel_len = vm->kernel_len,
        .initrd = vm->initrd,
        .initrd_len = vm->initrd_len,
        .cmdline = vm->cfg->append,
        .rsdp_addr = LAYOUT_ACPI,
    };
    return boot_load(&m->mem, &req, &vm->boot);
}

static void vm_segment(struct vcpu_segment *s, uint16_t sel, bool code, bool code64)
{
    *s = (struct vcpu_segment){.base = 0, .limit = 0xFFFFFFFF, .selector = sel,
                               .type = code ? 0xB : 0x3, .present = 1, .s = 1, .g = 1,
                               .db = code64 ? 0 : 1, .l = code64 ? 1 : 0};
}

static int vm_set_boot_cpu(struct vm *vm, struct vcpu *v)
{
    const struct boot_info *b = &vm->boot;
    bool lm = b->mode == BOOT_MODE_LONG64;
    struct vcpu_sregs s;
    int r = vm->ops->vcpu_get_sregs(v, &s);
    if (r < 0)
        return r;
    vm_segment(&s.cs, 0x10, true, lm);
    vm_segment(&s.ds, 0x18, false, false);
    s.es = s.fs = s.gs = s.ss = s.ds;
    s.tr = (struct vcpu_segment){.base = 0, .limit = 0x67, .selector = 0x20, .type = 0xB,
                                 .present = 1};
    s.gdt = (struct vcpu_dtable){b->gdt_base, b->gdt_limit};
    s.idt = (struct vcpu_dtable){0, 0};
    s.cr0 = 0x11; /* PE, ET */
    s.cr4 = 0;
    s.efer = 0;
    if (lm) {
        s.cr0 |= 0x80000000;  /* PG */
        s.cr4 = 0x20;         /* PAE */
        s.efer = 0x500;       /* LME, LMA */
        s.cr3 = b->cr3;
    }
    r = vm->ops->vcpu_set_sregs(v, &s);
    if (r < 0)
        return r;
    struct vcpu_regs regs = {.rip = b->entry, .rflags = 2, .rsi = b->rsi, .rbx = b->rbx};
    return vm->ops->vcpu_set_regs(v, &regs);
}

/* The accelerator's clock and event gate, for the machine and the event loop. */
/* An accelerator with a clock of its own starts it at 0, and a reset makes a new one: the
 * machine clock goes on from where the last one ended, so devices see one continuous clock. */
static uint64_t vm_clock_ns(struct machine *m)
{
    struct vm *vm = m->owner;
    return vm->clock_carry + (vm->accel ? vm->ops->clock_ns(vm->accel) : 0);
}

static void vm_host_events(void *opaque, bool enter)
{
    struct vm *vm = opaque;
    vm->ops->host_events(vm->accel, enter);
}

static int vm_start_accel(struct vm *vm)
{
    struct machine *m = &vm->m;
    int r = vm->ops->vm_create(m, &vm->accel_cfg, &vm->accel);
    if (r < 0)
        return r;
    if (vm->ops->host_events)
        evloop_set_gate(m->ev, vm_host_events, vm);
    for (unsigned i = 0; i < m->mem.nregions; i++) {
        r = vm->ops->map_memory(vm->accel, i, m->mem.regions[i].gpa, m->mem.regions[i].size,
                                m->mem.regions[i].host);
        if (r < 0)
            return r;
    }
    for (unsigned i = 0; i < m->ncpus; i++) {
        r = vm->ops->vcpu_create(vm->accel, i, &vm->vcpus[i].vcpu);
        if (r < 0)
            return r;
    }
    r = vm_set_boot_cpu(vm, vm->vcpus[0].vcpu);
    if (r < 0) {
        log_error("cannot set the boot vCPU's registers: %s", strerror(-r));
        return r;
    }
    return 0;
}

static void vm_stop_accel(struct vm *vm)
{
    if (vm->accel && vm->ops->clock_ns)
        vm->clock_carry += vm->ops->clock_ns(vm->accel);
    if (vm->m.ev)
        evloop_set_gate(vm->m.ev, NULL, NULL);
    for (unsigned i = 0; vm->vcpus && i < vm->m.ncpus; i++) {
        if (vm->vcpus[i].vcpu)
            vm->ops->vcpu_destroy(vm->vcpus[i].vcpu);
        vm->vcpus[i].vcpu = NULL;
    }
    if (vm->accel)
        vm->ops->vm_destroy(vm->accel);
    vm->accel = NULL;
}

static int vm_start_vcpus(struct vm *vm)
{
    /* Under the lock, so a vCPU asking for a stop while its siblings start sees them all. */
    pthread_mutex_lock(&vm->m.lock);
    vm->stopping = false;
    int r = 0;
    for (unsigned i = 0; i < vm->m.ncpus && !r; i++) {
        struct vm_vcpu *vc = &vm->vcpus[i];
        r = pthread_create(&vc->thread, NULL, vm_vcpu_thread, vc);
        if (r)
            log_error("cannot start the thread of vCPU %u: %s", i, strerror(r));
        else
            vc->running = true;
    }
    pthread_mutex_unlock(&vm->m.lock);
    return -r;
}

static void vm_join_vcpus(struct vm *vm)
{
    /* One kick is enough (a kicked vCPU sees `stopping` before it runs again). Clearing
     * `running` under the lock, before joining, keeps vm_on_request on another vCPU thread from
     * signalling a thread that has been joined. */
    bool joinable[vm->m.ncpus];
    pthread_mutex_lock(&vm->m.lock);
    __atomic_store_n(&vm->stopping, true, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < vm->m.ncpus; i++) {
        joinable[i] = vm->vcpus[i].running;
        if (joinable[i])
            vm->ops->vcpu_kick(vm->vcpus[i].vcpu);
        vm->vcpus[i].running = false;
    }
    pthread_mutex_unlock(&vm->m.lock);
    for (unsigned i = 0; i < vm->m.ncpus; i++)
        if (joinable[i])
            pthread_join(vm->vcpus[i].thread, NULL);
}

/* A reset rebuilds the accelerator's VM and reloads the guest: RAM is cleared, devices return to
 * power-on state (CMOS NVRAM survives, as on a PC). */
static int vm_reset(struct vm *vm)
{
    vm_stop_accel(vm);
    guest_mem_clear(&vm->m.mem);
    pthread_mutex_lock(&vm->m.lock);
    machine_reset_devices(&vm->m);
    int r = pci_assign_resources(vm->pci);
    vm->request = MACHINE_REQ_NONE;
    pthread_mutex_unlock(&vm->m.lock);
    if (r == 0)
        r = vm_load_guest(vm);
    if (r == 0)
        r = vm_start_accel(vm);
    return r;
}

/* -daemonize: fork before any thread or KVM VM exists (a KVM VM belongs to the process that
 * made it); the parent waits until the child reports it is running, so errors still reach the
 * user's terminal and the exit status. */
static int vm_daemonize(int *ready_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0) {
        close(p[1]);
        char status = 1;
        if (read(p[0], &status, 1) != 1)
            status = 1;
        _exit(status);
    }
    close(p[0]);
    setsid();
    *ready_fd = p[1];
    return 0;
}

static void vm_daemon_ready(int ready_fd, char status)
{
    if (ready_fd < 0)
        return;
    if (status == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            close(null);
        }
    }
    if (write(ready_fd, &status, 1) < 0)
        status = 1;
    close(ready_fd);
}

static int vm_write_pidfile(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("-pidfile %s: %s", path, strerror(errno));
        return -errno;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", getpid());
    int r = write_full(fd, buf, (size_t)n);
    close(fd);
    return r;
}

static int vm_setup(struct vm *vm)
{
    const struct vm_config *cfg = vm->cfg;
    struct machine *m = &vm->m;
    char why[512];

    if (cfg->start_paused || cfg->qmp || cfg->monitor) {
        log_error("%s: the monitor is not supported yet, and without it a paused VM could never "
                  "start; leave it out", cfg->start_paused ? "-S" : cfg->qmp ? "-qmp" : "-monitor");
        return -ENOTSUP;
    }
    /* -accel kvm -accel tcg: the first one that works on this host, as QEMU does. */
    static const char *const default_accels[] = {"kvm"};
    const char *const *accels = cfg->naccels ? cfg->accels : default_accels;
    unsigned naccels = cfg->naccels ? cfg->naccels : 1;
    for (unsigned i = 0; i < naccels && !vm->ops; i++) {
        const struct accel_ops *ops = accel_find(accels[i]);
        if (!ops) {
            log_error("-accel %s: unknown accelerator; use kvm or emu", accels[i]);
            return -EINVAL;
        }
        if (ops->probe(why, sizeof(why)) == 0)
            vm->ops = ops;
        else if (i + 1 < naccels)
            log_warn("-accel %s: %s; trying %s", ops->name, why, accels[i + 1]);
        else
            log_error("-accel %s: %s", ops->name, why);
    }
    if (!vm->ops)
        return -ENODEV;
    if (vm_check_host_memory(cfg) < 0)
        return -ENOMEM;
    if (cfg->kernel) {
        vm->kernel_name = cfg->kernel;
        if (vm_read_file("-kernel", cfg->kernel, &vm->kernel, &vm->kernel_len) < 0)
            return -ENOENT;
    } else {
        vm->kernel_name = "the built-in default guest";
        vm->kernel = xmalloc(default_guest_elf_len);
        memcpy(vm->kernel, default_guest_elf, default_guest_elf_len);
        vm->kernel_len = default_guest_elf_len;
    }
    if (cfg->initrd && vm_read_file("-initrd", cfg->initrd, &vm->initrd, &vm->initrd_len) < 0)
        return -ENOENT;

    m->ncpus = cfg->ncpus;
    m->on_request = vm_on_request;
    m->owner = vm;
    m->irq = (struct irq_chip){&vm_irq_ops, vm};
    m->ioeventfd = vm_ioeventfd;
    m->irqfd = vm_irqfd;
    if (vm->ops->clock_ns)
        m->clock_ns = vm_clock_ns;
    int r = guest_mem_init(&m->mem, cfg->ram_size, cfg->mem_path, cfg->mem_prealloc);
    if (r < 0) {
        char want[32];
        size_format(cfg->ram_size, want, sizeof(want));
        if (cfg->mem_path)
            log_error("-mem-path %s: cannot allocate %s of guest memory there: %s",
                      cfg->mem_path, want, strerror(-r));
        else
            log_error("-m: cannot allocate %s of guest memory: %s", want, strerror(-r));
        return r;
    }
    if (vm->ops->mem_written) { /* guest_mem_init cleared the hook */
        m->mem.written = vm_mem_written;
        m->mem.written_opaque = vm;
    }
    m->ev = evloop_new();
    evloop_set_lock(m->ev, &m->lock);
    vm->vcpus = xzalloc(sizeof(*vm->vcpus) * m->ncpus);
    for (unsigned i = 0; i < m->ncpus; i++)
        vm->vcpus[i] = (struct vm_vcpu){.vm = vm, .index = i};
    vm->accel_cfg = (struct accel_config){cfg->ncpus, cfg->maxcpus, cfg->sockets, cfg->dies,
                                          cfg->cores, cfg->threads, cfg->cpu_model,
                                          cfg->emu_multi_thread, cfg->icount_shift,
                                          cfg->icount_sleep};

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    vm->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (vm->sigfd >= 0)
        evloop_add_fd(m->ev, vm->sigfd, EPOLLIN, vm_on_signal, vm);

    pthread_mutex_lock(&m->lock);
    r = vm_add_devices(vm);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return r;
    r = vm_load_guest(vm);
    if (r < 0)
        return r;
    return vm_start_accel(vm);
}

int vm_run(const struct vm_config *cfg)
{
    struct vm *vm = xzalloc(sizeof(*vm));
    vm->cfg = cfg;
    vm->sigfd = -1;
    machine_init(&vm->m);
    int ready_fd = -1;
    if (cfg->daemonize && vm_daemonize(&ready_fd) < 0) {
        log_error("-daemonize: cannot fork: %s", strerror(errno));
        return 1;
    }
    if (cfg->pidfile && vm_write_pidfile(cfg->pidfile) < 0) {
        vm_daemon_ready(ready_fd, 1);
        return 1;
    }
    int exit_code = 0;
    if (vm_setup(vm) < 0) {
        vm_daemon_ready(ready_fd, 1);
        exit_code = 1;
        goto out;
    }
    vm_daemon_ready(ready_fd, 0);

    for (;;) {
        if (vm_start_vcpus(vm) < 0) {
            vm_join_vcpus(vm); /* the ones that did start */
            exit_code = 1;
            break;
        }
        evloop_run(vm->m.ev);
        vm_join_vcpus(vm);
        enum machine_request req = vm->request;
        if (req == MACHINE_REQ_RESET && !cfg->no_reboot) {
            if (vm_reset(vm) < 0) {
                exit_code = 1;
                break;
            }
            continue;
        }
        if (req == MACHINE_REQ_POWEROFF && cfg->no_shutdown) {
            log_info("the guest powered off; -no-shutdown keeps vmkit running until it is "
                     "stopped (Ctrl-a x, or a signal)");
            vm->request = MACHINE_REQ_NONE;
            while (vm->request != MACHINE_REQ_QUIT && vm->request != MACHINE_REQ_ERROR)
                evloop_run(vm->m.ev);
            req = vm->request;
        }
        exit_code = req == MACHINE_REQ_ERROR ? 1 : 0;
        break;
    }
out:
    vm_stop_accel(vm);
    for (unsigned i = 0; i < VM_CONFIG_MAX_SERIALS; i++)
        if (vm->serial_chr[i])
            chardev_close(vm->serial_chr[i]);
    if (vm->aio)
        blk_aio_free(vm->aio);
    chardev_restore_terminal();
    if (cfg->pidfile)
        unlink(cfg->pidfile);
    return exit_code;
}
