/* -smp arithmetic: QEMU's (>= 6.2, pc) rules for filling in the CPU topology, plus vmkit's limits. */
#include "config/vm_config.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>

/* Products saturate so absurd inputs fail the checks below instead of wrapping into valid ones. */
static unsigned mul_sat(unsigned a, unsigned b)
{
    unsigned r;
    return __builtin_mul_overflow(a, b, &r) ? UINT_MAX : r;
}

static unsigned bits_for(unsigned count)
{
    return count > 1 ? 32 - (unsigned)__builtin_clz(count - 1) : 0;
}

int vm_config_smp_compute(struct vm_config_smp *s, char *err, unsigned errlen)
{
    unsigned cpus = s->cpus, maxcpus = s->maxcpus, sockets = s->sockets, cores = s->cores,
             threads = s->threads;
    unsigned dies = s->dies ? s->dies : 1;

    if (cpus == 0 && maxcpus == 0) {
        sockets = sockets ? sockets : 1;
        cores = cores ? cores : 1;
        threads = threads ? threads : 1;
    } else {
        maxcpus = maxcpus ? maxcpus : cpus;
        /* Machine types since QEMU 6.2 fill cores before sockets. */
        if (cores == 0) {
            sockets = sockets ? sockets : 1;
            threads = threads ? threads : 1;
            cores = maxcpus / mul_sat(mul_sat(sockets, dies), threads);
        } else if (sockets == 0) {
            threads = threads ? threads : 1;
            sockets = maxcpus / mul_sat(mul_sat(dies, cores), threads);
        }
        if (threads == 0) /* sockets and cores were both given */
            threads = maxcpus / mul_sat(mul_sat(sockets, dies), cores);
    }
    unsigned product = mul_sat(mul_sat(mul_sat(sockets, dies), cores), threads);
    maxcpus = maxcpus ? maxcpus : product;
    cpus = cpus ? cpus : maxcpus;

    s->cpus = cpus;
    s->maxcpus = maxcpus;
    s->sockets = sockets;
    s->dies = dies;
    s->cores = cores;
    s->threads = threads;

    if (product != maxcpus) {
        snprintf(err, errlen,
                 "Invalid CPU topology: product of the hierarchy must match maxcpus: "
                 "sockets (%u) * dies (%u) * cores (%u) * threads (%u) != maxcpus (%u)",
                 sockets, dies, cores, threads, maxcpus);
        return -EINVAL;
    }
    if (maxcpus < cpus) {
        snprintf(err, errlen,
                 "Invalid CPU topology: maxcpus must be equal to or greater than smp: "
                 "sockets (%u) * dies (%u) * cores (%u) * threads (%u) == maxcpus (%u) < "
                 "smp_cpus (%u)",
                 sockets, dies, cores, threads, maxcpus, cpus);
        return -EINVAL;
    }
    if (maxcpus > VM_CONFIG_MAX_CPUS) {
        snprintf(err, errlen,
                 "Invalid SMP CPUs %u. The max CPUs supported by machine 'pc' is %u "
                 "(vmkit's pc has no x2APIC interrupt remapping)",
                 maxcpus, VM_CONFIG_MAX_CPUS);
        return -EINVAL;
    }
    /* APIC IDs pack thread, core, die and socket into power-of-two fields (as topology.c and
     * CPUID leaf 0xB report them), so odd counts leave gaps and the last ID can pass 254,
     * the highest an xAPIC without remapping can address (255 is broadcast). */
    unsigned tb = bits_for(threads), cb = bits_for(cores), db = bits_for(dies);
    unsigned last = maxcpus - 1;
    unsigned long long apic = (unsigned long long)(last % threads) |
                              (unsigned long long)((last / threads) % cores) << tb |
                              (unsigned long long)((last / threads / cores) % dies) << (tb + cb) |
                              (unsigned long long)(last / threads / cores / dies) << (tb + cb + db);
    if (apic > 254) {
        snprintf(err, errlen,
                 "Invalid CPU topology: vCPU %u would get APIC ID %llu, above the 254 that "
                 "vmkit's pc machine can address; use power-of-two cores and threads or fewer "
                 "sockets",
                 last, apic);
        return -EINVAL;
    }
    return 0;
}
