/* Address-range dispatch for port I/O and MMIO: sorted ranges, binary search.
 * Ranges may nest (a small range inside a larger one, as the reset-control port 0xCF9 sits
 * inside PCI's 0xCF8-0xCFB): an access goes to the innermost range holding its first byte when
 * that range covers the whole access, else to the next range out that does. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct bus_ops {
    /* offset is relative to the registered base; size is 1, 2, 4 or 8. */
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    void (*write)(void *opaque, uint64_t offset, uint64_t value, unsigned size);
};

struct bus_range {
    uint64_t base, len;
    const struct bus_ops *ops;
    void *opaque;
    const char *name;
};

/* A piece of the address space with one innermost owner; derived from the ranges. */
struct bus_segment {
    uint64_t base, end;   /* [base, end) */
    unsigned range;       /* index of the innermost range owning it */
};

struct bus {
    const char *name;          /* "pio" or "mmio", for messages */
    struct bus_range *ranges;  /* as registered; nested or disjoint, never partly overlapping */
    unsigned count, cap;
    struct bus_segment *segs;  /* sorted, disjoint; rebuilt on (un)register, searched per access */
    unsigned nsegs;
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);
/* 0, or -EEXIST if the range partly overlaps or duplicates one already registered,
 * -EINVAL for len 0/overflow. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
                 void *opaque, const char *name);
/* Remove the range starting at base that belongs to opaque. 0 or -ENOENT. */
int bus_unregister(struct bus *b, uint64_t base, void *opaque);
const struct bus_range *bus_find(const struct bus *b, uint64_t addr);
/* False when nothing claims the whole access; reads then return all ones, as open bus does. */
bool bus_read(struct bus *b, uint64_t addr, unsigned size, uint64_t *value);
bool bus_write(struct bus *b, uint64_t addr, unsigned size, uint64_t value);
