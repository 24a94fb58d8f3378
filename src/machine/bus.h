/* Address-range dispatch for port I/O and MMIO: sorted ranges, binary search. */
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

struct bus {
    const char *name; /* "pio" or "mmio", for messages */
    struct bus_range *ranges; /* sorted by base, never overlapping */
    unsigned count, cap;
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);
/* 0, or -EEXIST if the range overlaps one already registered, -EINVAL for len 0/overflow. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
                 void *opaque, const char *name);
/* Remove the range starting at base that belongs to opaque. 0 or -ENOENT. */
int bus_unregister(struct bus *b, uint64_t base, void *opaque);
const struct bus_range *bus_find(const struct bus *b, uint64_t addr);
/* False when nothing claims the whole access; reads then return all ones, as open bus does. */
bool bus_read(struct bus *b, uint64_t addr, unsigned size, uint64_t *value);
bool bus_write(struct bus *b, uint64_t addr, unsigned size, uint64_t value);
