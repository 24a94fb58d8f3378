/* Port I/O and MMIO dispatch: registered ranges flattened into disjoint segments for lookup. */
#include "machine/bus.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *b, const char *name)
{
    memset(b, 0, sizeof(*b));
    b->name = name;
}

void bus_destroy(struct bus *b)
{
    free(b->ranges);
    free(b->segs);
    memset(b, 0, sizeof(*b));
}

static bool range_contains(const struct bus_range *r, uint64_t base, uint64_t end)
{
    return r->base <= base && end <= r->base + r->len;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Registration is rare (boot, BAR moves) and ranges are few, so a simple quadratic rebuild keeps
 * the per-access path a plain binary search. */
static void bus_rebuild(struct bus *b)
{
    uint64_t *edges = xmalloc(sizeof(uint64_t) * 2 * (b->count + 1));
    unsigned n = 0;
    for (unsigned i = 0; i < b->count; i++) {
        edges[n++] = b->ranges[i].base;
        edges[n++] = b->ranges[i].base + b->ranges[i].len;
    }
    qsort(edges, n, sizeof(*edges), cmp_u64);
    free(b->segs);
    b->segs = xmalloc(sizeof(*b->segs) * (n ? n : 1));
    b->nsegs = 0;
    for (unsigned e = 0; e + 1 < n; e++) {
        uint64_t lo = edges[e], hi = edges[e + 1];
        if (lo == hi)
            continue;
        int best = -1;
        for (unsigned i = 0; i < b->count; i++)
            if (range_contains(&b->ranges[i], lo, hi) &&
                (best < 0 || b->ranges[i].len < b->ranges[best].len))
                best = (int)i;
        if (best < 0)
            continue;
        struct bus_segment *last = b->nsegs ? &b->segs[b->nsegs - 1] : NULL;
        if (last && last->end == lo && last->range == (unsigned)best)
            last->end = hi;
        else
            b->segs[b->nsegs++] = (struct bus_segment){lo, hi, (unsigned)best};
    }
    free(edges);
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
                 void *opaque, const char *name)
{
    if (len == 0 || base + len < base)
        return -EINVAL;
    uint64_t end = base + len;
    for (unsigned i = 0; i < b->count; i++) {
        const struct bus_range *r = &b->ranges[i];
        uint64_t rend = r->base + r->len;
        bool disjoint = end <= r->base || rend <= base;
        bool inside = r->base <= base && end <= rend && r->len != len;
        bool outside = base <= r->base && rend <= end && r->len != len;
        if (!disjoint && !inside && !outside) {
            log_error("%s bus: %s at 0x%llx+0x%llx overlaps %s", b->name, name,
                      (unsigned long long)base, (unsigned long long)len, r->name);
            return -EEXIST;
        }
    }
    if (b->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->ranges = xrealloc(b->ranges, sizeof(*b->ranges) * b->cap);
    }
    b->ranges[b->count++] = (struct bus_range){base, len, ops, opaque, name};
    bus_rebuild(b);
    return 0;
}

int bus_unregister(struct bus *b, uint64_t base, void *opaque)
{
    for (unsigned i = 0; i < b->count; i++) {
        if (b->ranges[i].base == base && b->ranges[i].opaque == opaque) {
            memmove(&b->ranges[i], &b->ranges[i + 1], sizeof(*b->ranges) * (b->count - i - 1));
            b->count--;
            bus_rebuild(b);
            return 0;
        }
    }
    return -ENOENT;
}

static const struct bus_segment *bus_segment_at(const struct bus *b, uint64_t addr)
{
    unsigned lo = 0, hi = b->nsegs;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct bus_segment *s = &b->segs[mid];
        if (addr < s->base)
            hi = mid;
        else if (addr >= s->end)
            lo = mid + 1;
        else
            return s;
    }
    return NULL;
}

/* The innermost range holding addr that also covers the whole access. */
static const struct bus_range *bus_route(const struct bus *b, uint64_t addr, unsigned size)
{
    const struct bus_segment *s = bus_segment_at(b, addr);
    if (!s)
        return NULL;
    const struct bus_range *r = &b->ranges[s->range];
    if (range_contains(r, addr, addr + size))
        return r;
    /* Rare: an access wider than a nested range; look for an enclosing one that fits. */
    const struct bus_range *best = NULL;
    for (unsigned i = 0; i < b->count; i++)
        if (range_contains(&b->ranges[i], addr, addr + size) &&
            (!best || b->ranges[i].len < best->len))
            best = &b->ranges[i];
    return best;
}

const struct bus_range *bus_find(const struct bus *b, uint64_t addr)
{
    const struct bus_segment *s = bus_segment_at(b, addr);
    return s ? &b->ranges[s->range] : NULL;
}

bool bus_read(struct bus *b, uint64_t addr, unsigned size, uint64_t *value)
{
    const struct bus_range *r = bus_route(b, addr, size);
    if (!r || !r->ops->read) {
        *value = size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
        return r != NULL;
    }
    *value = r->ops->read(r->opaque, addr - r->base, size);
    if (size < 8)
        *value &= (1ULL << (size * 8)) - 1;
    return true;
}

bool bus_write(struct bus *b, uint64_t addr, unsigned size, uint64_t value)
{
    const struct bus_range *r = bus_route(b, addr, size);
    if (!r)
        return false;
    if (r->ops->write)
        r->ops->write(r->opaque, addr - r->base, value, size);
    return true;
}
