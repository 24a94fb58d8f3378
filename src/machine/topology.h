/* CPU topology from -smp: how vCPU indices map to APIC IDs (shared by CPUID, MADT and the boot). */
#pragma once
#include <stdint.h>

struct cpu_topology {
    unsigned sockets, dies, cores, threads; /* cores per die, threads per core */
};

/* Bits of the APIC ID each level takes, as CPUID leaf 0xB/0x1F reports them. */
unsigned topology_thread_bits(const struct cpu_topology *t);
unsigned topology_core_bits(const struct cpu_topology *t);
unsigned topology_die_bits(const struct cpu_topology *t);
/* APIC ID of vCPU index i: thread, core, die and socket numbers packed into their bit fields. */
uint32_t topology_apic_id(const struct cpu_topology *t, unsigned index);
