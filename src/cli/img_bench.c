/* `vmkit img bench`: qemu-img's simple I/O benchmark over the asynchronous block API. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "base/util.h"
#include "cli/img_common.h"

struct bench_state {
    struct blk *b;
    uint64_t image_size, offset, step;
    size_t bufsize;
    unsigned long count, submitted, completed;
    int in_flight, error;
    bool write;
    uint8_t *bufs;
    bool *busy;
};

struct bench_slot {
    struct bench_state *s;
    int idx;
};

static void bench_done(void *opaque, int ret)
{
    struct bench_slot *slot = opaque;
    struct bench_state *s = slot->s;
    s->busy[slot->idx] = false;
    s->in_flight--;
    s->completed++;
    if (ret < 0 && !s->error)
        s->error = ret;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return -EINVAL;
    *out = v;
    return 0;
}

int img_cmd_bench(int argc, char **argv)
{
    const char *fmt = NULL, *cache = NULL, *aio = NULL;
    unsigned long count = 75000, depth = 64, flush_interval = 0, pattern = 0;
    uint64_t offset = 0, bufsize = 4096, step = 0;
    bool write = false, quiet = false, drain_on_flush = true, native = false;
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'},         {"flush-interval", required_argument, 0, 'F'},
        {"image-opts", no_argument, 0, 'I'},   {"pattern", required_argument, 0, 'P'},
        {"no-drain", no_argument, 0, 'D'},     {"force-share", no_argument, 0, 'U'},
        {"object", required_argument, 0, 'j'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (parse_uint(optarg, INT32_MAX, &count) < 0 || !count) {
                img_error("Invalid request count specified");
                return 1;
            }
            break;
        case 'd':
            if (parse_uint(optarg, 4096, &depth) < 0 || !depth) {
                img_error("Invalid queue depth specified");
                return 1;
            }
            break;
        case 'f': fmt = optarg; break;
        case 'n': native = true; break;
        case 'i': aio = optarg; break;
        case 'o':
            if (img_parse_size(optarg, &offset) < 0) {
                img_error("Invalid offset specified");
                return 1;
            }
            break;
        case 'q': quiet = true; break;
        case 's':
            if (img_parse_size(optarg, &bufsize) < 0 || !bufsize || bufsize > INT32_MAX) {
                img_error("Invalid buffer size specified");
                return 1;
            }
            break;
        case 'S':
            if (img_parse_size(optarg, &step) < 0 || step > INT32_MAX) {
                img_error("Invalid step size specified");
                return 1;
            }
            break;
        case 't': cache = optarg; break;
        case 'w': write = true; break;
        case 'F':
            if (parse_uint(optarg, INT32_MAX, &flush_interval) < 0) {
                img_error("Invalid flush interval specified");
                return 1;
            }
            break;
        case 'P':
            if (parse_uint(optarg, 0xff, &pattern) < 0) {
                img_error("Invalid pattern byte specified");
                return 1;
            }
            break;
        case 'D': drain_on_flush = false; break;
        default: {
            int r = img_common_option(c, "bench", argv, 1);
            if (r >= 0)
                return r;
            break;
        }
        }
    }
    if (optind != argc - 1) {
        img_error("Expecting one image file name");
        return 1;
    }
    if (flush_interval && !write) {
        img_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (!flush_interval && !drain_on_flush) {
        img_error("--no-drain requires --flush-interval");
        return 1;
    }
    if (!step)
        step = bufsize;
    enum blk_aio_kind kind = BLK_AIO_DEFAULT;
    if (native)
        kind = BLK_AIO_IO_URING;
    if (aio) {
        if (!strcmp(aio, "io_uring") || !strcmp(aio, "native"))
            kind = BLK_AIO_IO_URING;
        else if (!strcmp(aio, "threads"))
            kind = BLK_AIO_THREADS;
        else {
            img_error("Invalid aio option: %s", aio);
            return 1;
        }
    }
    const char *filename = argv[optind];
    struct blk_open_opts o = {.format = fmt, .read_only = !write, .no_repair = true};
    if (img_parse_cache(cache, &o.cache) < 0)
        return 1;
    if (fmt && !blk_driver_find(fmt)) {
        img_error("Unknown file format '%s'", fmt);
        return 1;
    }
    struct blk_aio *engine = NULL;
    int ret;
    if (kind != BLK_AIO_DEFAULT) {
        if ((ret = blk_aio_new(kind, &engine)) < 0) {
            img_error("Could not create the %s I/O engine: %s", aio ? aio : "native", strerror(-ret));
            return 1;
        }
    }
    struct blk *b;
    if (access(filename, F_OK) != 0) {
        img_error("Could not open '%s': Could not open '%s': %s", filename, filename, strerror(errno));
        if (engine)
            blk_aio_free(engine);
        return 1;
    }
    const char *probed = NULL;
    bool guessed = false;
    if (!o.format && blk_probe_format(filename, &probed, &guessed) == 0 && probed)
        o.format = probed;
    if ((ret = blk_open(filename, &o, engine, &b)) < 0) {
        img_error("Could not open '%s': %s", filename, strerror(-ret));
        if (engine)
            blk_aio_free(engine);
        return 1;
    }
    struct blk_aio *wait_on = engine ? engine : blk_aio_default();
    struct bench_state s = {.b = b, .image_size = blk_size(b), .offset = offset, .step = step,
                            .bufsize = bufsize, .count = count, .write = write};
    int rc = 1;
    if (offset > s.image_size || bufsize > s.image_size - offset) {
        img_error("Offset + buffer size (%llu) exceeds the image size (%llu)",
                  (unsigned long long)(offset + bufsize), (unsigned long long)s.image_size);
        goto out;
    }
    if ((uint64_t)depth * bufsize > 4 * GiB) {
        img_error("Queue depth times buffer size is too large");
        goto out;
    }
    s.bufs = aligned_alloc(4096, ALIGN_UP(depth * bufsize, 4096));
    if (!s.bufs) {
        img_error("Could not allocate %llu bytes of buffers", (unsigned long long)(depth * bufsize));
        goto out;
    }
    memset(s.bufs, (int)pattern, depth * bufsize);
    s.busy = xzalloc(depth * sizeof(bool));
    struct bench_slot *slots = xmalloc(depth * sizeof(*slots));
    for (unsigned long i = 0; i < depth; i++)
        slots[i] = (struct bench_slot){.s = &s, .idx = (int)i};
    (void)quiet; /* qemu-img bench prints its two lines even with -q */
    printf("Sending %lu %s requests, %zu bytes each, %lu in parallel (starting at offset %llu, step size %llu)\n",
           count, write ? "write" : "read", (size_t)bufsize, depth, (unsigned long long)offset,
           (unsigned long long)step);
    if (flush_interval)
        printf("Sending flush every %lu requests\n", flush_interval);
    fflush(stdout);
    double t0 = now_sec();
    unsigned long since_flush = 0;
    while (s.completed < count && !s.error) {
        while (s.in_flight < (int)depth && s.submitted < count && !s.error) {
            if (flush_interval && since_flush >= flush_interval) {
                if (drain_on_flush && s.in_flight)
                    break;
                if ((ret = blk_flush_sync(b)) < 0) {
                    s.error = ret;
                    break;
                }
                since_flush = 0;
            }
            int idx = 0;
            while (s.busy[idx])
                idx++;
            struct iovec iov = {.iov_base = s.bufs + (size_t)idx * bufsize, .iov_len = bufsize};
            s.busy[idx] = true;
            s.in_flight++;
            s.submitted++;
            since_flush++;
            ret = write ? blk_pwritev(b, s.offset, &iov, 1, bench_done, &slots[idx])
                        : blk_preadv(b, s.offset, &iov, 1, bench_done, &slots[idx]);
            if (ret < 0) {
                s.busy[idx] = false;
                s.in_flight--;
                s.error = ret;
                break;
            }
            s.offset += s.step;
            if (s.image_size <= s.bufsize)
                s.offset = 0;
            else
                s.offset %= s.image_size - s.bufsize;
        }
        if (s.in_flight)
            blk_aio_wait(wait_on);
        else if (s.submitted >= count || s.error)
            break;
    }
    while (s.in_flight)
        blk_aio_wait(wait_on);
    if (!s.error && write && flush_interval && (ret = blk_flush_sync(b)) < 0)
        s.error = ret;
    double t1 = now_sec();
    free(slots);
    if (s.error) {
        img_error("Failed request: %s", strerror(-s.error));
        goto out;
    }
    printf("Run completed in %3.3f seconds.\n", t1 - t0);
    rc = 0;
out:
    free(s.bufs);
    free(s.busy);
    blk_close(b);
    if (engine)
        blk_aio_free(engine);
    return rc;
}
