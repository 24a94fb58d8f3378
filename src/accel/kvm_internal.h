/* State shared by the KVM backend's files (kvm.c: VM and vCPUs; kvm_cpuid.c: CPUID). */
#pragma once
#include "accel/accel.h"
#include "machine/topology.h"
#include <linux/kvm.h>
#include <pthread.h>

struct accel {
    int sys_fd; /* /dev/kvm */
    int vm_fd;
    int vcpu_mmap_size;
    struct machine *machine;
    struct accel_config cfg;
    struct cpu_topology topo;
    struct kvm_cpuid2 *supported_cpuid;
    bool irqchip_created;
    /* GSI routing: KVM's default irqchip routes plus one MSI route per irqfd. KVM replaces the
     * whole table on every change, so the full table is kept here. */
    struct kvm_irq_routing_entry *routes;
    unsigned nroutes;
    pthread_mutex_t routes_lock;
    struct kvm_irqfd_slot {
        int fd;
        uint32_t gsi;
    } *irqfds;
    unsigned nirqfds;
};

struct vcpu {
    struct accel *accel;
    unsigned index;
    uint32_t apic_id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_known;
};

/* Program the vCPU's CPUID from what KVM supports, shaped by -cpu and the -smp topology. */
int kvm_cpuid_setup(struct vcpu *v);
