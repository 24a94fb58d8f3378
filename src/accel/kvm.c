/* The KVM accelerator: a VM with the in-kernel irqchip and PIT, one fd per vCPU. */
#include "accel/kvm_internal.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include "machine/machine.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* vcpu_kick interrupts KVM_RUN with this signal; its handler does nothing. */
#define KVM_KICK_SIGNAL SIGUSR1

#define MSR_IA32_TSC 0x10
#define MSR_IA32_MISC_ENABLE 0x1A0
#define MSR_MTRR_DEF_TYPE 0x2FF
#define MSR_IA32_CR_PAT 0x277
#define MISC_ENABLE_FAST_STRING 1

static int kvm_open(char *why, size_t why_len)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int e = errno;
    if (e == ENOENT)
        snprintf(why, why_len,
                 "/dev/kvm does not exist: load the KVM module (modprobe kvm_intel or "
                 "modprobe kvm_amd) and enable virtualization in the firmware, or use -accel emu");
    else if (e == EACCES || e == EPERM)
        snprintf(why, why_len,
                 "no permission to open /dev/kvm: add your user to the 'kvm' group "
                 "(sudo usermod -aG kvm $USER, then log in again), or run as root");
    else
        snprintf(why, why_len, "cannot open /dev/kvm: %s", strerror(e));
    return -e;
}

static int kvm_probe(char *why, size_t why_len)
{
    int fd = kvm_open(why, why_len);
    if (fd < 0)
        return fd;
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    if (version != KVM_API_VERSION) {
        snprintf(why, why_len, "/dev/kvm speaks KVM API %d; vmkit needs %d", version,
                 KVM_API_VERSION);
        return -ENOTSUP;
    }
    return 0;
}

static struct kvm_cpuid2 *kvm_get_supported_cpuid(int sys_fd)
{
    for (unsigned n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = xzalloc(sizeof(*c) + n * sizeof(c->entries[0]));
        c->nent = n;
        if (ioctl(sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        free(c);
        if (errno != E2BIG)
            return NULL;
    }
    return NULL;
}

static void kvm_kick_handler(int sig)
{
    (void)sig;
}

static void kvm_vm_destroy(struct accel *a)
{
    if (!a)
        return;
    if (a->vm_fd >= 0)
        close(a->vm_fd);
    if (a->sys_fd >= 0)
        close(a->sys_fd);
    free(a->supported_cpuid);
    free(a->routes);
    free(a->irqfds);
    pthread_mutex_destroy(&a->routes_lock);
    free(a);
}

static int kvm_vm_create(struct machine *m, const struct accel_config *cfg, struct accel **out)
{
    char why[256];
    struct accel *a = xzalloc(sizeof(*a));
    a->vm_fd = -1;
    pthread_mutex_init(&a->routes_lock, NULL);
    a->machine = m;
    a->cfg = *cfg;
    a->topo = (struct cpu_topology){cfg->sockets, cfg->dies, cfg->cores, cfg->threads};
    a->sys_fd = kvm_open(why, sizeof(why));
    if (a->sys_fd < 0) {
        log_error("%s", why);
        int e = a->sys_fd;
        free(a);
        return e;
    }
    const char *step = "KVM_CREATE_VM";
    a->vm_fd = ioctl(a->sys_fd, KVM_CREATE_VM, 0);
    if (a->vm_fd < 0)
        goto fail;
    fcntl(a->vm_fd, F_SETFD, FD_CLOEXEC);
    a->vcpu_mmap_size = ioctl(a->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    step = "KVM_GET_VCPU_MMAP_SIZE";
    if (a->vcpu_mmap_size < (int)sizeof(struct kvm_run))
        goto fail;
    /* Real-mode support pages (needed on Intel without unrestricted guest), out of RAM's way. */
    step = "KVM_SET_TSS_ADDR";
    if (ioctl(a->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS) < 0)
        goto fail;
    uint64_t idmap = LAYOUT_KVM_IDENTITY_MAP;
    step = "KVM_SET_IDENTITY_MAP_ADDR";
    if (ioctl(a->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
        goto fail;
    step = "KVM_GET_SUPPORTED_CPUID";
    a->supported_cpuid = kvm_get_supported_cpuid(a->sys_fd);
    if (!a->supported_cpuid)
        goto fail;

    struct sigaction sa = {.sa_handler = kvm_kick_handler}; /* no SA_RESTART: KVM_RUN must stop */
    sigemptyset(&sa.sa_mask);
    sigaction(KVM_KICK_SIGNAL, &sa, NULL);
    *out = a;
    return 0;
fail:;
    int e = -errno;
    log_error("kvm: %s failed: %s", step, strerror(errno));
    kvm_vm_destroy(a);
    return e ? e : -EINVAL;
}

static void kvm_routes_init(struct accel *a);
static int kvm_routes_commit(struct accel *a);

/* The irqchip must exist before the first vCPU; it is created then, after RAM is registered,
 * because a memslot added once the irqchip exists costs a multi-millisecond SRCU sync. */
static int kvm_create_irqchip(struct accel *a)
{
    if (a->irqchip_created)
        return 0;
    if (ioctl(a->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        log_error("kvm: KVM_CREATE_IRQCHIP failed: %s", strerror(errno));
        return -errno;
    }
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(a->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        log_error("kvm: KVM_CREATE_PIT2 failed: %s", strerror(errno));
        return -errno;
    }
    kvm_routes_init(a);
    int err = kvm_routes_commit(a);
    if (err < 0) {
        log_error("kvm: KVM_SET_GSI_ROUTING failed: %s", strerror(-err));
        return err;
    }
    a->irqchip_created = true;
    return 0;
}

static int kvm_map_memory(struct accel *a, unsigned slot, uint64_t gpa, uint64_t size, void *host)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host};
    if (ioctl(a->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        int e = -errno;
        log_error("kvm: cannot map %llu MiB of guest RAM at 0x%llx: %s",
                  (unsigned long long)(size / MiB), (unsigned long long)gpa, strerror(errno));
        return e;
    }
    return 0;
}

static int kvm_set_msrs(struct vcpu *v)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[4];
    } msrs = {.hdr.nmsrs = 4,
              .e = {{.index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING},
                    {.index = MSR_IA32_TSC, .data = 0},
                    /* MTRRs enabled, default write-back: no firmware will program them. */
                    {.index = MSR_MTRR_DEF_TYPE, .data = (1u << 11) | 6},
                    {.index = MSR_IA32_CR_PAT, .data = 0x0007040600070406ULL}}};
    int n = ioctl(v->fd, KVM_SET_MSRS, &msrs);
    if (n < 4)
        log_debug("kvm: vCPU %u accepted %d of 4 MSR defaults", v->index, n);
    return 0;
}

static int kvm_setup_lapic(struct vcpu *v)
{
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
        return -errno;
    /* As firmware leaves it: LINT0 delivers the 8259's ExtINT, LINT1 NMI. */
    uint32_t lint0 = 0x700, lint1 = 0x400;
    memcpy(&lapic.regs[0x350], &lint0, 4);
    memcpy(&lapic.regs[0x360], &lint1, 4);
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
        return -errno;
    return 0;
}

static void kvm_vcpu_destroy(struct vcpu *v)
{
    if (!v)
        return;
    if (v->run)
        munmap(v->run, (size_t)v->accel->vcpu_mmap_size);
    if (v->fd >= 0)
        close(v->fd);
    free(v);
}

static int kvm_vcpu_create(struct accel *a, unsigned index, struct vcpu **out)
{
    int err = kvm_create_irqchip(a);
    if (err < 0)
        return err;
    struct vcpu *v = xzalloc(sizeof(*v));
    v->accel = a;
    v->index = index;
    v->apic_id = topology_apic_id(&a->topo, index);
    v->fd = ioctl(a->vm_fd, KVM_CREATE_VCPU, (unsigned long)v->apic_id);
    if (v->fd < 0) {
        int e = -errno;
        log_error("kvm: cannot create vCPU %u: %s", index, strerror(errno));
        free(v);
        return e;
    }
    fcntl(v->fd, F_SETFD, FD_CLOEXEC);
    v->run = mmap(NULL, (size_t)a->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        int e = -errno;
        kvm_vcpu_destroy(v);
        return e;
    }
    int r = kvm_cpuid_setup(v);
    if (r == 0)
        r = kvm_set_msrs(v);
    if (r == 0)
        r = kvm_setup_lapic(v);
    struct kvm_fpu fpu = {.fcw = 0x37F, .mxcsr = 0x1F80};
    if (r == 0 && ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
        r = -errno;
    if (r < 0) {
        log_error("kvm: cannot set up vCPU %u: %s", index, strerror(-r));
        kvm_vcpu_destroy(v);
        return r;
    }
    *out = v;
    return 0;
}

static int kvm_vcpu_run(struct vcpu *v, struct vcpu_exit *exit)
{
    if (!v->thread_known) {
        v->thread = pthread_self();
        __atomic_store_n(&v->thread_known, true, __ATOMIC_RELEASE);
    }
    struct kvm_run *run = v->run;
    if (ioctl(v->fd, KVM_RUN, 0) < 0) {
        int e = errno;
        run->immediate_exit = 0;
        if (e == EINTR || e == EAGAIN) {
            exit->reason = VCPU_EXIT_INTR;
            return 0;
        }
        return -e;
    }
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        exit->reason = VCPU_EXIT_IO;
        exit->io.port = run->io.port;
        exit->io.size = run->io.size;
        exit->io.is_write = run->io.direction == KVM_EXIT_IO_OUT;
        exit->io.count = run->io.count;
        exit->io.data = (uint8_t *)run + run->io.data_offset;
        if (run->io.data_offset + (uint64_t)run->io.count * run->io.size >
            (uint64_t)v->accel->vcpu_mmap_size) {
            exit->reason = VCPU_EXIT_INTERNAL_ERROR;
            exit->internal.code = 0;
        }
        return 0;
    case KVM_EXIT_MMIO:
        exit->reason = VCPU_EXIT_MMIO;
        exit->mmio.addr = run->mmio.phys_addr;
        exit->mmio.data = run->mmio.data;
        exit->mmio.len = (uint8_t)MIN(run->mmio.len, 8u);
        exit->mmio.is_write = run->mmio.is_write;
        return 0;
    case KVM_EXIT_HLT:
        exit->reason = VCPU_EXIT_HLT;
        return 0;
    case KVM_EXIT_SHUTDOWN:
        exit->reason = VCPU_EXIT_SHUTDOWN;
        return 0;
    case KVM_EXIT_SYSTEM_EVENT:
        exit->reason = run->system_event.type == KVM_SYSTEM_EVENT_RESET ? VCPU_EXIT_SYSTEM_RESET
                                                                         : VCPU_EXIT_SYSTEM_OFF;
        return 0;
    case KVM_EXIT_INTR:
        exit->reason = VCPU_EXIT_INTR;
        return 0;
    case KVM_EXIT_INTERNAL_ERROR:
        exit->reason = VCPU_EXIT_INTERNAL_ERROR;
        exit->internal.code = run->internal.suberror;
        return 0;
    case KVM_EXIT_FAIL_ENTRY:
        exit->reason = VCPU_EXIT_INTERNAL_ERROR;
        exit->internal.code = (uint32_t)run->fail_entry.hardware_entry_failure_reason;
        return 0;
    default:
        exit->reason = VCPU_EXIT_INTERNAL_ERROR;
        exit->internal.code = run->exit_reason;
        return 0;
    }
}

static void kvm_vcpu_kick(struct vcpu *v)
{
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&v->thread_known, __ATOMIC_ACQUIRE))
        pthread_kill(v->thread, KVM_KICK_SIGNAL);
}

static int kvm_get_regs(struct vcpu *v, struct vcpu_regs *r)
{
    struct kvm_regs k;
    if (ioctl(v->fd, KVM_GET_REGS, &k) < 0)
        return -errno;
    *r = (struct vcpu_regs){k.rax, k.rbx, k.rcx, k.rdx, k.rsi, k.rdi, k.rsp, k.rbp,
                            k.r8,  k.r9,  k.r10, k.r11, k.r12, k.r13, k.r14, k.r15,
                            k.rip, k.rflags};
    return 0;
}

static int kvm_set_regs(struct vcpu *v, const struct vcpu_regs *r)
{
    struct kvm_regs k = {r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rsp, r->rbp,
                         r->r8,  r->r9,  r->r10, r->r11, r->r12, r->r13, r->r14, r->r15,
                         r->rip, r->rflags};
    return ioctl(v->fd, KVM_SET_REGS, &k) < 0 ? -errno : 0;
}

static void seg_from_kvm(struct vcpu_segment *s, const struct kvm_segment *k)
{
    *s = (struct vcpu_segment){k->base, k->limit, k->selector, k->type, k->present, k->dpl,
                               k->db, k->s, k->l, k->g, k->avl, k->unusable};
}

static void seg_to_kvm(struct kvm_segment *k, const struct vcpu_segment *s)
{
    *k = (struct kvm_segment){.base = s->base, .limit = s->limit, .selector = s->selector,
                              .type = s->type, .present = s->present, .dpl = s->dpl,
                              .db = s->db, .s = s->s, .l = s->l, .g = s->g, .avl = s->avl,
                              .unusable = s->unusable};
}

static int kvm_get_sregs(struct vcpu *v, struct vcpu_sregs *s)
{
    struct kvm_sregs k;
    if (ioctl(v->fd, KVM_GET_SREGS, &k) < 0)
        return -errno;
    seg_from_kvm(&s->cs, &k.cs);
    seg_from_kvm(&s->ds, &k.ds);
    seg_from_kvm(&s->es, &k.es);
    seg_from_kvm(&s->fs, &k.fs);
    seg_from_kvm(&s->gs, &k.gs);
    seg_from_kvm(&s->ss, &k.ss);
    seg_from_kvm(&s->tr, &k.tr);
    seg_from_kvm(&s->ldt, &k.ldt);
    s->gdt = (struct vcpu_dtable){k.gdt.base, k.gdt.limit};
    s->idt = (struct vcpu_dtable){k.idt.base, k.idt.limit};
    s->cr0 = k.cr0;
    s->cr2 = k.cr2;
    s->cr3 = k.cr3;
    s->cr4 = k.cr4;
    s->cr8 = k.cr8;
    s->efer = k.efer;
    s->apic_base = k.apic_base;
    return 0;
}

static int kvm_set_sregs(struct vcpu *v, const struct vcpu_sregs *s)
{
    struct kvm_sregs k;
    /* Start from KVM's view so fields we don't model (interrupt bitmap) stay consistent. */
    if (ioctl(v->fd, KVM_GET_SREGS, &k) < 0)
        return -errno;
    seg_to_kvm(&k.cs, &s->cs);
    seg_to_kvm(&k.ds, &s->ds);
    seg_to_kvm(&k.es, &s->es);
    seg_to_kvm(&k.fs, &s->fs);
    seg_to_kvm(&k.gs, &s->gs);
    seg_to_kvm(&k.ss, &s->ss);
    seg_to_kvm(&k.tr, &s->tr);
    seg_to_kvm(&k.ldt, &s->ldt);
    k.gdt.base = s->gdt.base;
    k.gdt.limit = s->gdt.limit;
    k.idt.base = s->idt.base;
    k.idt.limit = s->idt.limit;
    k.cr0 = s->cr0;
    k.cr2 = s->cr2;
    k.cr3 = s->cr3;
    k.cr4 = s->cr4;
    k.cr8 = s->cr8;
    k.efer = s->efer;
    k.apic_base = s->apic_base;
    return ioctl(v->fd, KVM_SET_SREGS, &k) < 0 ? -errno : 0;
}

static void dump_seg(FILE *f, const char *name, const struct vcpu_segment *s)
{
    fprintf(f, "%-3s =%04x %016llx %08x type=%x p=%u dpl=%u db=%u s=%u l=%u g=%u\n", name,
            s->selector, (unsigned long long)s->base, s->limit, s->type, s->present, s->dpl,
            s->db, s->s, s->l, s->g);
}

static void kvm_vcpu_dump(struct vcpu *v, FILE *f)
{
    struct vcpu_regs r;
    struct vcpu_sregs s;
    fprintf(f, "vCPU %u (APIC ID %u), exit reason %u", v->index, v->apic_id,
            v->run->exit_reason);
    if (v->run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
        fprintf(f, ", internal error suberror %u, data:", v->run->internal.suberror);
        for (unsigned i = 0; i < v->run->internal.ndata && i < 16; i++)
            fprintf(f, " %llx", (unsigned long long)v->run->internal.data[i]);
    }
    fputc('\n', f);
    if (kvm_get_regs(v, &r) == 0) {
        fprintf(f, "RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n",
                (unsigned long long)r.rax, (unsigned long long)r.rbx, (unsigned long long)r.rcx,
                (unsigned long long)r.rdx);
        fprintf(f, "RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n",
                (unsigned long long)r.rsi, (unsigned long long)r.rdi, (unsigned long long)r.rbp,
                (unsigned long long)r.rsp);
        fprintf(f, "R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n",
                (unsigned long long)r.r8, (unsigned long long)r.r9, (unsigned long long)r.r10,
                (unsigned long long)r.r11);
        fprintf(f, "R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n",
                (unsigned long long)r.r12, (unsigned long long)r.r13, (unsigned long long)r.r14,
                (unsigned long long)r.r15);
        fprintf(f, "RIP=%016llx RFL=%08llx\n", (unsigned long long)r.rip,
                (unsigned long long)r.rflags);
    }
    if (kvm_get_sregs(v, &s) == 0) {
        dump_seg(f, "CS", &s.cs);
        dump_seg(f, "DS", &s.ds);
        dump_seg(f, "SS", &s.ss);
        dump_seg(f, "TR", &s.tr);
        fprintf(f, "GDT=%016llx %04x IDT=%016llx %04x\n", (unsigned long long)s.gdt.base,
                s.gdt.limit, (unsigned long long)s.idt.base, s.idt.limit);
        fprintf(f, "CR0=%08llx CR2=%016llx CR3=%016llx CR4=%08llx EFER=%08llx\n",
                (unsigned long long)s.cr0, (unsigned long long)s.cr2,
                (unsigned long long)s.cr3, (unsigned long long)s.cr4,
                (unsigned long long)s.efer);
    }
}

static void kvm_set_irq(struct accel *a, unsigned gsi, bool level)
{
    struct kvm_irq_level irq = {.irq = gsi, .level = level};
    if (ioctl(a->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        log_once(LOG_WARN, "kvm: KVM_IRQ_LINE %u failed: %s", gsi, strerror(errno));
}

static void kvm_send_msi(struct accel *a, uint64_t addr, uint32_t data)
{
    struct kvm_msi msi = {.address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
                          .data = data};
    if (ioctl(a->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
        log_once(LOG_WARN, "kvm: KVM_SIGNAL_MSI failed: %s", strerror(errno));
}

/* Interrupt routes for the in-kernel irqchip, as QEMU sets them: ISA GSIs reach the 8259s and
 * the IOAPIC, except that the PIT's GSI 0 goes to IOAPIC pin 2 (the MADT's IRQ0 -> GSI 2
 * override) and pin 2 takes nothing else. irqfds add MSI routes after these. */
static void kvm_routes_init(struct accel *a)
{
    a->routes = xzalloc(sizeof(*a->routes) * (16 + IOAPIC_NUM_PINS));
    for (unsigned gsi = 0; gsi < 16; gsi++)
        if (gsi != 2)
            a->routes[a->nroutes++] = (struct kvm_irq_routing_entry){
                .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = {gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8}};
    for (unsigned gsi = 0; gsi < IOAPIC_NUM_PINS; gsi++)
        if (gsi != 2)
            a->routes[a->nroutes++] = (struct kvm_irq_routing_entry){
                .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = {KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi}};
}

static int kvm_routes_commit(struct accel *a)
{
    struct kvm_irq_routing *r =
        xzalloc(sizeof(*r) + sizeof(r->entries[0]) * a->nroutes);
    r->nr = a->nroutes;
    memcpy(r->entries, a->routes, sizeof(r->entries[0]) * a->nroutes);
    int err = ioctl(a->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
    free(r);
    return err;
}

static uint32_t kvm_free_gsi(struct accel *a)
{
    for (uint32_t gsi = IOAPIC_NUM_PINS;; gsi++) {
        bool used = false;
        for (unsigned i = 0; i < a->nroutes && !used; i++)
            used = a->routes[i].gsi == gsi;
        if (!used)
            return gsi;
    }
}

static int kvm_irqfd(struct accel *a, int fd, uint64_t msi_addr, uint32_t msi_data, bool assign)
{
    pthread_mutex_lock(&a->routes_lock);
    int err = 0;
    if (assign) {
        uint32_t gsi = kvm_free_gsi(a);
        a->routes = xrealloc(a->routes, sizeof(*a->routes) * (a->nroutes + 1));
        a->routes[a->nroutes++] = (struct kvm_irq_routing_entry){
            .gsi = gsi, .type = KVM_IRQ_ROUTING_MSI,
            .u.msi = {.address_lo = (uint32_t)msi_addr, .address_hi = (uint32_t)(msi_addr >> 32),
                      .data = msi_data}};
        err = kvm_routes_commit(a);
        struct kvm_irqfd req = {.fd = (uint32_t)fd, .gsi = gsi};
        if (!err && ioctl(a->vm_fd, KVM_IRQFD, &req) < 0)
            err = -errno;
        if (err) {
            a->nroutes--;
        } else {
            a->irqfds = xrealloc(a->irqfds, sizeof(*a->irqfds) * (a->nirqfds + 1));
            a->irqfds[a->nirqfds++] = (struct kvm_irqfd_slot){fd, gsi};
        }
    } else {
        err = -ENOENT;
        for (unsigned i = 0; i < a->nirqfds; i++) {
            if (a->irqfds[i].fd != fd)
                continue;
            uint32_t gsi = a->irqfds[i].gsi;
            struct kvm_irqfd req = {.fd = (uint32_t)fd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN};
            err = ioctl(a->vm_fd, KVM_IRQFD, &req) < 0 ? -errno : 0;
            a->irqfds[i] = a->irqfds[--a->nirqfds];
            for (unsigned j = 0; j < a->nroutes; j++)
                if (a->routes[j].gsi == gsi)
                    a->routes[j] = a->routes[--a->nroutes];
            kvm_routes_commit(a);
            break;
        }
    }
    pthread_mutex_unlock(&a->routes_lock);
    return err;
}

static int kvm_ioeventfd(struct accel *a, uint64_t addr, unsigned len, bool pio, int fd,
                         bool assign)
{
    struct kvm_ioeventfd io = {.addr = addr, .len = len, .fd = fd,
                               .flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
                                        (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN)};
    return ioctl(a->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

const struct accel_ops accel_kvm_ops = {
    .name = "kvm",
    .probe = kvm_probe,
    .vm_create = kvm_vm_create,
    .vm_destroy = kvm_vm_destroy,
    .map_memory = kvm_map_memory,
    .vcpu_create = kvm_vcpu_create,
    .vcpu_destroy = kvm_vcpu_destroy,
    .vcpu_run = kvm_vcpu_run,
    .vcpu_kick = kvm_vcpu_kick,
    .vcpu_get_regs = kvm_get_regs,
    .vcpu_set_regs = kvm_set_regs,
    .vcpu_get_sregs = kvm_get_sregs,
    .vcpu_set_sregs = kvm_set_sregs,
    .vcpu_dump = kvm_vcpu_dump,
    .set_irq = kvm_set_irq,
    .send_msi = kvm_send_msi,
    .ioeventfd = kvm_ioeventfd,
    .irqfd = kvm_irqfd,
};
