/* APIC ID layout from the -smp topology. */
#include "machine/topology.h"

static unsigned bits_for(unsigned count)
{
    unsigned bits = 0;
    while ((1u << bits) < count)
        bits++;
    return bits;
}

unsigned topology_thread_bits(const struct cpu_topology *t)
{
    return bits_for(t->threads);
}

unsigned topology_core_bits(const struct cpu_topology *t)
{
    return bits_for(t->cores);
}

unsigned topology_die_bits(const struct cpu_topology *t)
{
    return bits_for(t->dies);
}

uint32_t topology_apic_id(const struct cpu_topology *t, unsigned index)
{
    unsigned thread = index % t->threads;
    unsigned core = (index / t->threads) % t->cores;
    unsigned die = (index / (t->threads * t->cores)) % t->dies;
    unsigned socket = index / (t->threads * t->cores * t->dies);
    unsigned tb = topology_thread_bits(t), cb = topology_core_bits(t), db = topology_die_bits(t);
    return thread | (core << tb) | (die << (tb + cb)) | (socket << (tb + cb + db));
}
