/* Helpers shared by the `vmkit img` subcommands: errors, opening, sizes, progress. */
#include "cli/img_common.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "base/size.h"
#include "base/util.h"

void img_error(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, IMG_PROG ": %s\n", line);
}

void img_warn(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, IMG_PROG ": warning: %s\n", line);
}

int img_parse_cache(const char *s, enum blk_cache_mode *out)
{
    if (!s) {
        *out = BLK_CACHE_WRITEBACK;
        return 0;
    }
    /* Parsed here rather than only by the block layer so the message is uniform. */
    static const struct { const char *n; enum blk_cache_mode m; } modes[] = {
        {"writeback", BLK_CACHE_WRITEBACK}, {"writethrough", BLK_CACHE_WRITETHROUGH},
        {"none", BLK_CACHE_NONE},           {"off", BLK_CACHE_NONE},
        {"directsync", BLK_CACHE_DIRECTSYNC}, {"unsafe", BLK_CACHE_UNSAFE},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(s, modes[i].n)) {
            *out = modes[i].m;
            return 0;
        }
    img_error("Invalid cache option: %s", s);
    return -EINVAL;
}

int img_open(const char *filename, const struct img_open_args *a, struct blk **out)
{
    struct blk_open_opts o = {0};
    o.format = a->format;
    o.read_only = a->read_only;
    o.no_backing = a->no_backing;
    o.no_repair = true;
    if (a->format && !blk_driver_find(a->format)) {
        img_error("Unknown file format '%s'", a->format);
        return -EINVAL;
    }
    if (img_parse_cache(a->cache, &o.cache) < 0)
        return -EINVAL;
    /* Check existence ourselves so the common case gets qemu-img's exact wording. */
    if (access(filename, F_OK) != 0) {
        int e = errno;
        img_error("Could not open '%s': Could not open '%s': %s", filename, filename, strerror(e));
        return -e;
    }
    /* qemu-img does not warn about a probed raw image; probe here so the block layer
     * gets an explicit format and stays quiet. */
    const char *probed = NULL;
    bool guessed = false;
    if (!o.format && blk_probe_format(filename, &probed, &guessed) == 0 && probed)
        o.format = probed;
    int ret = blk_open(filename, &o, NULL, out);
    if (ret < 0) {
        img_error("Could not open '%s': %s", filename, strerror(-ret));
        *out = NULL;
        return ret;
    }
    return 0;
}

int img_parse_size(const char *s, uint64_t *out)
{
    /* qemu-img accepts only integers with an optional single-letter suffix here. */
    uint64_t v;
    if (!s || !*s)
        return -EINVAL;
    if (size_parse(s, 1, &v) < 0)
        return -EINVAL;
    if (v > INT64_MAX)
        return -ERANGE;
    *out = v;
    return 0;
}

void img_size_to_str(uint64_t val, char *buf, size_t len)
{
    /* Same rule as QEMU's size_to_str(): switch units at 1000 of the smaller one. */
    static const char *const suffixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int i;
    frexp((double)val / (1000.0 / 1024.0), &i);
    i = (i - 1) / 10;
    if (i < 0)
        i = 0;
    if (i > 6)
        i = 6;
    uint64_t div = 1ULL << (i * 10);
    snprintf(buf, len, "%0.3g %sB", (double)val / (double)div, suffixes[i]);
}

char *img_backing_path(const char *image, const char *backing)
{
    if (!backing)
        return NULL;
    if (backing[0] == '/' || strstr(backing, "://"))
        return xstrdup(backing);
    const char *slash = strrchr(image, '/');
    if (!slash)
        return xstrdup(backing);
    return xasprintf("%.*s/%s", (int)(slash - image), image, backing);
}

void img_progress(bool enabled, double percent)
{
    static double last = -100.0;
    if (!enabled)
        return;
    /* Like qemu-img, redraw only when the value moved by at least 1%. */
    if (percent != 0.0 && percent - last < 1.0)
        return;
    last = percent;
    printf("    (%3.2f/100%%)\r", percent);
    fflush(stdout);
}

void img_progress_end(bool enabled)
{
    if (!enabled)
        return;
    printf("    (100.00/100%%)\r\n");
    fflush(stdout);
}

int img_is_all_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t i = 0;
    for (; i < len && ((uintptr_t)(p + i) & 7); i++)
        if (p[i])
            return 0;
    for (; i + 8 <= len; i += 8)
        if (*(const uint64_t *)(p + i))
            return 0;
    for (; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

void img_print_snapshots(const struct blk_snapshot *s, unsigned n)
{
    printf("%-9s %-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (unsigned i = 0; i < n; i++) {
        char date[64] = "", clock[64], size[32], icount[32];
        time_t t = (time_t)s[i].date_sec;
        struct tm tm;
        if (localtime_r(&t, &tm))
            strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t secs = s[i].vm_clock_nsec / 1000000000ULL;
        snprintf(clock, sizeof(clock), "%02u:%02u:%02u.%03u", (unsigned)(secs / 3600),
                 (unsigned)((secs / 60) % 60), (unsigned)(secs % 60),
                 (unsigned)((s[i].vm_clock_nsec / 1000000) % 1000));
        img_size_to_str(s[i].vm_state_size, size, sizeof(size));
        if (s[i].icount == UINT32_MAX)
            snprintf(icount, sizeof(icount), "--");
        else
            snprintf(icount, sizeof(icount), "%u", s[i].icount);
        printf("%-9s %-17s%8s%20s%13s%11s\n", s[i].id, s[i].name ? s[i].name : "", size, date,
               clock, icount);
    }
}

int img_chain_status(struct blk *top, struct blk *base, uint64_t off, uint64_t len, uint64_t *pnum,
                     unsigned *status, int *depth, uint64_t *map, struct blk **file)
{
    struct blk *layer = top;
    uint64_t limit = len;
    int d = 0;
    if (!len) {
        *pnum = 0;
        *status = 0;
        return 0;
    }
    for (;;) {
        uint64_t n = 0, m = 0;
        unsigned st = 0;
        struct blk *f = NULL;
        int ret = blk_block_status(layer, off, limit, &n, &st, &m, &f);
        if (ret < 0)
            return ret;
        /* A driver answering 0 bytes would make every caller loop forever. */
        if (n == 0 || n > limit)
            return -EIO;
        if (st & BLK_STATUS_ALLOCATED) {
            *pnum = n;
            *status = st;
            if (depth)
                *depth = d;
            if (map)
                *map = m;
            if (file)
                *file = f;
            return 0;
        }
        limit = n;
        struct blk *next = blk_backing(layer);
        if (next && next != base) {
            uint64_t bsize = blk_size(next);
            if (off >= bsize)
                next = NULL; /* beyond a shorter backing file the image reads zeroes */
            else if (limit > bsize - off)
                limit = bsize - off;
        }
        if (!next || next == base) {
            *pnum = limit;
            /* Unallocated above base: reads come from base (unknown here) or are zeroes. */
            *status = next ? 0 : BLK_STATUS_ZERO;
            if (depth)
                *depth = d;
            if (map)
                *map = 0;
            if (file)
                *file = NULL;
            return 0;
        }
        layer = next;
        d++;
    }
}
