/* CPUID for KVM vCPUs: the host's supported leaves, with the hypervisor bit, the KVM leaves and
 * topology leaves that match -smp, so the guest's view agrees with the MADT. */
#include "accel/kvm_internal.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT (1u << 28)

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

/* kvm64/qemu64: a conservative feature set any x86-64 host has, so images move between hosts. */
static void cpuid_apply_baseline(struct kvm_cpuid2 *c)
{
    struct kvm_cpuid_entry2 *e = cpuid_find(c, 1, 0);
    if (e) {
        /* SSE3, CX16, x2APIC, POPCNT and the hypervisor bit. */
        e->ecx &= (1u << 0) | (1u << 13) | (1u << 21) | (1u << 23) | CPUID_1_ECX_HYPERVISOR;
        /* FPU..SSE2 as in every x86-64 CPU. */
        e->edx &= 0x0783FBFFu | CPUID_1_EDX_HTT;
    }
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == 7)
            c->entries[i].ebx = c->entries[i].ecx = c->entries[i].edx = 0;
}

/* One subleaf of the extended topology leaves (0xB, 0x1F): what each level's APIC-ID shift
 * and logical-processor count are. 0xB knows SMT and core levels only, so its core level spans
 * the whole package. */
static void cpuid_topology_entry(struct kvm_cpuid_entry2 *e, const struct cpu_topology *t,
                                 uint32_t apic_id, bool with_dies)
{
    unsigned tb = topology_thread_bits(t), cb = topology_core_bits(t), db = topology_die_bits(t);
    unsigned shift[3] = {tb, tb + cb, tb + cb + db};
    unsigned count[3] = {t->threads, t->threads * t->cores, t->threads * t->cores * t->dies};
    unsigned type[3] = {1, 2, 5}; /* SMT, core, die */
    unsigned levels = with_dies ? 3 : 2;
    if (!with_dies) {
        shift[1] = tb + cb + db;
        count[1] = count[2];
    }
    if (e->index < levels) {
        e->eax = shift[e->index];
        e->ebx = count[e->index];
        e->ecx = e->index | (type[e->index] << 8);
    } else {
        e->eax = e->ebx = 0;
        e->ecx = e->index;
    }
    e->edx = apic_id;
}

int kvm_cpuid_setup(struct vcpu *v)
{
    struct accel *a = v->accel;
    struct kvm_cpuid2 *sup = a->supported_cpuid;
    /* Leaf 0xB is rebuilt with three subleaves (SMT, core, end), whatever the host has. */
    struct kvm_cpuid2 *c = xzalloc(sizeof(*c) + (sup->nent + 3) * sizeof(sup->entries[0]));
    for (uint32_t i = 0; i < sup->nent; i++)
        if (sup->entries[i].function != 0xB)
            c->entries[c->nent++] = sup->entries[i];
    for (uint32_t idx = 0; idx < 3; idx++) {
        struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];
        *e = (struct kvm_cpuid_entry2){.function = 0xB, .index = idx,
                                       .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
        cpuid_topology_entry(e, &a->topo, v->apic_id, false);
    }
    /* The guest must be told leaf 0xB exists. */
    struct kvm_cpuid_entry2 *leaf0 = cpuid_find(c, 0, 0);
    if (leaf0 && leaf0->eax < 0xB)
        leaf0->eax = 0xB;

    const struct cpu_topology *t = &a->topo;
    unsigned threads_per_pkg = t->threads * t->cores * t->dies;
    unsigned tb = topology_thread_bits(t), cb = topology_core_bits(t), db = topology_die_bits(t);
    const char *model = a->cfg.cpu_model ? a->cfg.cpu_model : "host";
    if (strcmp(model, "host") && strcmp(model, "max"))
        cpuid_apply_baseline(c);

    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ecx |= CPUID_1_ECX_HYPERVISOR;
            e->ebx = (e->ebx & 0x0000FFFFu) | (v->apic_id << 24) |
                     (MIN(threads_per_pkg, 255u) << 16);
            if (threads_per_pkg > 1)
                e->edx |= CPUID_1_EDX_HTT;
            break;
        case 4: /* Intel deterministic cache parameters: cores per package, sharing */
            if (e->eax & 0x1F) {
                unsigned level = (e->eax >> 5) & 7;
                unsigned sharing = level >= 3 ? threads_per_pkg : t->threads;
                e->eax = (e->eax & 0x3FFFu) | ((t->cores * t->dies - 1) << 26) |
                         ((sharing - 1) << 14);
            }
            break;
        case 0x1F: /* Intel V2 topology: SMT, core, die levels */
            cpuid_topology_entry(e, t, v->apic_id, true);
            break;
        case 0x80000008: /* AMD: threads per package and the APIC ID bits they use */
            e->ecx = (e->ecx & ~0xF0FFu) | (threads_per_pkg - 1) |
                     ((tb + cb + db) << 12);
            break;
        case 0x8000001E: /* AMD: extended APIC ID, threads per core */
            e->eax = v->apic_id;
            e->ebx = (e->ebx & ~0xFF00u & ~0xFFu) | ((t->threads - 1) << 8) |
                     (v->apic_id >> tb);
            e->ecx = 0;
            break;
        default:
            break;
        }
    }
    int r = ioctl(v->fd, KVM_SET_CPUID2, c);
    int err = r < 0 ? -errno : 0;
    free(c);
    if (err)
        log_error("kvm: cannot set CPUID of vCPU %u: %s", v->index, strerror(-err));
    return err;
}
