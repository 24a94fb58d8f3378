/* `vmkit img convert` and `vmkit img compare`: copy images between formats, compare contents. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/img_common.h"

#define IMG_CHUNK (2 * MiB)

static void append_opts(char **acc, const char *more)
{
    char *n = *acc ? xasprintf("%s,%s", *acc, more) : xstrdup(more);
    free(*acc);
    *acc = n;
}

/* Everything one convert run needs while copying. */
struct conv {
    struct blk *dst;
    bool compress, existing, has_backing;
    uint64_t sparse; /* -S in bytes; 0 = write zeroes out fully */
    uint64_t cluster;
    uint8_t *buf;
    uint8_t *zbuf; /* zeroes, for targets that cannot write zeroes efficiently */
};

static int conv_zero(struct conv *c, uint64_t off, uint64_t len)
{
    /* A fresh target without backing already reads zeroes there. */
    if (!c->existing && !c->has_backing)
        return 0;
    int ret = blk_write_zeroes_sync(c->dst, off, len, 0);
    if (ret == -ENOTSUP) {
        if (!c->zbuf)
            c->zbuf = xzalloc(IMG_CHUNK);
        ret = 0;
        for (uint64_t p = 0; p < len && ret == 0; p += IMG_CHUNK)
            ret = blk_pwrite(c->dst, off + p, c->zbuf, MIN(len - p, IMG_CHUNK));
    }
    if (ret < 0)
        img_error("error while writing at byte %llu: %s", (unsigned long long)off, strerror(-ret));
    return ret;
}

static int conv_write_data(struct conv *c, uint64_t off, const uint8_t *buf, uint64_t len, bool must_mask)
{
    if (c->compress) {
        /* Runs of whole non-zero clusters go down in one call, which the driver compresses in
         * parallel; zero clusters and the image's last, partial cluster end a run. */
        uint64_t run = 0, run_len = 0;
        for (uint64_t p = 0;; p += c->cluster) {
            uint64_t n = p < len ? MIN(c->cluster, len - p) : 0;
            bool zero = n && img_is_all_zero(buf + p, n);
            if (n == c->cluster && !zero) {
                if (!run_len)
                    run = p;
                run_len += n;
                continue;
            }
            int ret = 0;
            if (run_len)
                ret = blk_pwrite_compressed(c->dst, off + run, buf + run, run_len);
            if (ret < 0) {
                img_error("error while writing at byte %llu: %s", (unsigned long long)(off + run),
                          strerror(-ret));
                return ret;
            }
            run_len = 0;
            if (n == 0)
                return 0;
            if (zero && must_mask)
                ret = conv_zero(c, off + p, n); /* masks the backing file */
            else if (!zero)
                ret = blk_pwrite(c->dst, off + p, buf + p, n); /* drivers compress whole clusters */
            if (ret < 0) {
                if (!zero)
                    img_error("error while writing at byte %llu: %s",
                              (unsigned long long)(off + p), strerror(-ret));
                return ret;
            }
            if (n < c->cluster)
                return 0;
        }
    }
    uint64_t p = 0;
    while (p < len) {
        uint64_t n;
        bool zero = false;
        if (c->sparse) {
            /* Runs of at least -S zero bytes (aligned to -S in the target) stay unallocated. */
            uint64_t end = MIN(len, off + p - (off + p) % c->sparse + c->sparse - off);
            n = end - p;
            zero = img_is_all_zero(buf + p, n);
            while (p + n < len) {
                uint64_t m = MIN(c->sparse, len - p - n);
                if (img_is_all_zero(buf + p + n, m) != zero)
                    break;
                n += m;
            }
        } else {
            n = len - p;
        }
        int ret = 0;
        if (zero) {
            if (must_mask && (ret = conv_zero(c, off + p, n)) < 0)
                return ret;
        } else {
            ret = blk_pwrite(c->dst, off + p, buf + p, n);
        }
        if (ret < 0) {
            img_error("error while writing at byte %llu: %s", (unsigned long long)(off + p), strerror(-ret));
            return ret;
        }
        p += n;
    }
    return 0;
}

static int conv_copy(struct conv *c, struct blk *src, uint64_t dst_base, uint64_t total, uint64_t *done,
                     bool progress)
{
    uint64_t size = blk_size(src);
    uint64_t unit = c->compress ? c->cluster : 1;
    for (uint64_t off = 0; off < size;) {
        uint64_t chunk_end = MIN(size, ALIGN_DOWN(dst_base + off, IMG_CHUNK) + IMG_CHUNK - dst_base);
        uint64_t n = chunk_end - off, pnum;
        unsigned st;
        int ret;
        if (c->has_backing && !c->existing) {
            /* With -B only what the source's top layer holds goes into the new overlay. */
            uint64_t m;
            struct blk *f;
            ret = blk_block_status(src, off, n, &pnum, &st, &m, &f);
            if (ret == 0 && (pnum == 0 || pnum > n))
                ret = -EIO;
        } else {
            ret = img_chain_status(src, NULL, off, n, &pnum, &st, NULL, NULL, NULL);
        }
        if (ret < 0) {
            img_error("error while reading block status at offset %llu: %s", (unsigned long long)off, strerror(-ret));
            return ret;
        }
        /* Compressed output goes cluster by cluster: only skip whole clusters. */
        if (unit > 1 && pnum < n && !IS_ALIGNED(dst_base + off + pnum, unit)) {
            uint64_t aligned = ALIGN_DOWN(dst_base + off + pnum, unit) - dst_base;
            if (aligned > off)
                pnum = aligned - off;
            else {
                pnum = MIN(n, ALIGN_UP(dst_base + off + 1, unit) - dst_base - off);
                st = BLK_STATUS_DATA | BLK_STATUS_ALLOCATED;
            }
        }
        bool allocated = st & BLK_STATUS_ALLOCATED;
        if (c->has_backing && !c->existing && !allocated) {
            /* leave it to the backing file */
        } else if ((st & BLK_STATUS_ZERO) && c->sparse) {
            if ((c->has_backing || c->existing) && (ret = conv_zero(c, dst_base + off, pnum)) < 0)
                return ret;
        } else {
            ret = blk_pread(src, off, c->buf, pnum);
            if (ret < 0) {
                img_error("error while reading at byte %llu: %s", (unsigned long long)off, strerror(-ret));
                return ret;
            }
            ret = conv_write_data(c, dst_base + off, c->buf, pnum, c->has_backing || c->existing);
            if (ret < 0)
                return ret;
        }
        off += pnum;
        *done += pnum;
        img_progress(progress, total ? *done * 100.0 / total : 100.0);
    }
    return 0;
}

int img_cmd_convert(int argc, char **argv)
{
    const char *fmt = NULL, *out_fmt = "raw", *cache = "unsafe", *src_cache = NULL;
    const char *out_base = NULL, *out_base_fmt = NULL, *snapshot = NULL;
    char *optstr = NULL;
    bool compress = false, progress = false, quiet = false, skip_create = false;
    uint64_t sparse = 4096;
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'},          {"object", required_argument, 0, 'j'},
        {"image-opts", no_argument, 0, 'I'},    {"force-share", no_argument, 0, 'U'},
        {"target-image-opts", no_argument, 0, 'X'}, {"salvage", no_argument, 0, 'Y'},
        {"target-is-zero", no_argument, 0, 'Z'}, {"bitmaps", no_argument, 0, 'G'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":hf:O:B:CF:co:l:S:pt:T:qnm:WUr:", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'B': out_base = optarg; break;
        case 'F': out_base_fmt = optarg; break;
        case 'c': compress = true; break;
        case 'o': append_opts(&optstr, optarg); break;
        case 'l':
            if (!strncmp(optarg, "snapshot.name=", 14))
                snapshot = optarg + 14;
            else if (!strncmp(optarg, "snapshot.id=", 12))
                snapshot = optarg + 12;
            else
                snapshot = optarg;
            break;
        case 'S':
            if (img_parse_size(optarg, &sparse) < 0 || (sparse && (sparse % 512 || sparse > 1ULL << 30))) {
                img_error("Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 1GiB.");
                free(optstr);
                return 1;
            }
            break;
        case 'p': progress = true; break;
        case 't': cache = optarg; break;
        case 'T': src_cache = optarg; break;
        case 'q': quiet = true; break;
        case 'n': skip_create = true; break;
        case 'm': case 'W': case 'U': case 'j': case 'r': case 'C': case 'Y': case 'Z': case 'G': break;
        case 'I': case 'X': img_error("--image-opts is not supported"); free(optstr); return 1;
        default: {
            int r = img_common_option(c, "convert", argv, 1);
            if (r >= 0) {
                free(optstr);
                return r;
            }
            break;
        }
        }
    }
    if (quiet)
        progress = false;
    int nsrc = argc - optind - 1;
    if (nsrc < 1) {
        img_error("Expecting image file name");
        free(optstr);
        return 1;
    }
    if (snapshot && nsrc > 1) {
        img_error("No support for concatenating multiple snapshot");
        free(optstr);
        return 1;
    }
    if (skip_create && (optstr || out_base)) {
        img_error("-n and -%s are mutually exclusive", optstr ? "o" : "B");
        free(optstr);
        return 1;
    }
    const char *out_name = argv[argc - 1];
    struct blk **src = xzalloc(sizeof(*src) * nsrc);
    struct blk *dst = NULL;
    uint64_t total = 0;
    int rc = 1, ret;
    struct conv cv = {0};
    for (int i = 0; i < nsrc; i++) {
        struct img_open_args a = {.format = fmt, .read_only = true, .cache = src_cache};
        if (img_open(argv[optind + i], &a, &src[i]) < 0)
            goto out;
        total += blk_size(src[i]);
    }
    if (snapshot) {
        ret = blk_snapshot_load_tmp(src[0], snapshot);
        if (ret < 0) {
            img_error("Failed to load snapshot: %s", strerror(-ret));
            goto out;
        }
        total = blk_size(src[0]);
    }
    if (!skip_create) {
        struct blk_create_opts o = {0};
        if (!blk_driver_find(out_fmt)) {
            img_error("Unknown file format '%s'", out_fmt);
            goto out;
        }
        if (optstr && blk_create_opts_parse(&o, optstr) < 0) {
            img_error("Invalid options for file format '%s'", out_fmt);
            goto out;
        }
        o.format = out_fmt;
        o.size = total;
        if (!strcmp(out_fmt, "qcow2"))
            o.size = ALIGN_UP(total, 512); /* whole sectors, as qemu-img creates it */
        if (out_base) {
            o.backing_file = out_base;
            o.backing_format = out_base_fmt;
        }
        if (compress && strcmp(out_fmt, "qcow2")) {
            img_error("Compression not supported for this file format");
            goto out;
        }
        if (o.backing_file && !o.backing_format) {
            /* qemu-img probes the backing format for convert -B; do the same. */
            char *path = img_backing_path(out_name, o.backing_file);
            bool guessed;
            const char *probed = NULL;
            if (blk_probe_format(path, &probed, &guessed) == 0)
                o.backing_format = probed;
            free(path);
        }
        ret = blk_create(out_name, &o);
        if (ret < 0) {
            img_error("%s: error while converting %s: %s", out_name, out_fmt, strerror(-ret));
            goto out;
        }
        cv.has_backing = o.backing_file != NULL;
    } else {
        cv.existing = true;
    }
    {
        struct img_open_args a = {.format = skip_create ? (strcmp(out_fmt, "raw") ? out_fmt : NULL) : out_fmt,
                                  .read_only = false, .cache = cache};
        if (skip_create && !strcmp(out_fmt, "raw"))
            a.format = "raw";
        if (img_open(out_name, &a, &dst) < 0)
            goto out;
    }
    if (skip_create && blk_size(dst) < total) {
        img_error("Target image is too small: %llu bytes, the source needs %llu bytes",
                  (unsigned long long)blk_size(dst), (unsigned long long)total);
        goto out;
    }
    struct blk_info di = {0};
    blk_get_info(dst, &di);
    cv.dst = dst;
    cv.compress = compress;
    cv.sparse = sparse;
    cv.cluster = di.cluster_size ? di.cluster_size : 65536;
    if (compress && (!di.format || strcmp(di.format, "qcow2"))) {
        img_error("Compression not supported for this file format");
        goto out;
    }
    if (compress && (cv.cluster > IMG_CHUNK || IMG_CHUNK % cv.cluster)) {
        img_error("Cluster size %llu is not supported with -c", (unsigned long long)cv.cluster);
        goto out;
    }
    cv.buf = xmalloc(IMG_CHUNK);
    img_progress(progress, 0);
    uint64_t done = 0, base = 0;
    for (int i = 0; i < nsrc; i++) {
        if (conv_copy(&cv, src[i], base, total, &done, progress) < 0)
            goto out;
        base += blk_size(src[i]);
    }
    ret = blk_flush_sync(dst);
    if (ret < 0) {
        img_error("error while flushing '%s': %s", out_name, strerror(-ret));
        goto out;
    }
    img_progress_end(progress);
    rc = 0;
out:
    free(cv.buf);
    free(cv.zbuf);
    if (dst)
        blk_close(dst);
    for (int i = 0; i < nsrc; i++)
        if (src[i])
            blk_close(src[i]);
    free(src);
    free(optstr);
    return rc;
}

/* First offset where the buffers differ, rounded down to 512 bytes as qemu-img reports it. */
static uint64_t first_diff(const uint8_t *a, const uint8_t *b, uint64_t len)
{
    uint64_t i = 0;
    while (i < len && a[i] == b[i])
        i++;
    return ALIGN_DOWN(i, 512);
}

static uint64_t first_nonzero(const uint8_t *a, uint64_t len)
{
    uint64_t i = 0;
    while (i < len && !a[i])
        i++;
    return ALIGN_DOWN(i, 512);
}

/* Check that the part of the longer image past the shorter one reads as zeroes. */
static int compare_tail(struct blk *b, const char *name, uint64_t from, uint8_t *buf, uint64_t *mismatch)
{
    uint64_t size = blk_size(b);
    for (uint64_t off = from; off < size;) {
        uint64_t pnum;
        unsigned st;
        int ret = img_chain_status(b, NULL, off, MIN(size - off, IMG_CHUNK), &pnum, &st, NULL, NULL, NULL);
        if (ret < 0) {
            img_error("Error while reading offset %llu of %s: %s", (unsigned long long)off, name, strerror(-ret));
            return -1;
        }
        if (!(st & BLK_STATUS_ZERO)) {
            ret = blk_pread(b, off, buf, pnum);
            if (ret < 0) {
                img_error("Error while reading offset %llu of %s: %s", (unsigned long long)off, name, strerror(-ret));
                return -1;
            }
            if (!img_is_all_zero(buf, pnum)) {
                *mismatch = off + first_nonzero(buf, pnum);
                return 1;
            }
        }
        off += pnum;
    }
    return 0;
}

int img_cmd_compare(int argc, char **argv)
{
    const char *fmt1 = NULL, *fmt2 = NULL, *cache = NULL;
    bool strict = false, quiet = false, progress = false;
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {"object", required_argument, 0, 'j'},
                                             {"image-opts", no_argument, 0, 'I'}, {"force-share", no_argument, 0, 'U'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'T': cache = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        default: {
            int r = img_common_option(c, "compare", argv, 2);
            if (r >= 0)
                return r;
            break;
        }
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 2) {
        img_error("Expecting two image file names");
        return 2;
    }
    const char *n1 = argv[optind], *n2 = argv[optind + 1];
    struct blk *b1 = NULL, *b2 = NULL;
    uint8_t *buf1 = NULL, *buf2 = NULL;
    int rc = 2;
    struct img_open_args a1 = {.format = fmt1, .read_only = true, .cache = cache};
    struct img_open_args a2 = {.format = fmt2, .read_only = true, .cache = cache};
    if (img_open(n1, &a1, &b1) < 0 || img_open(n2, &a2, &b2) < 0)
        goto out;
    uint64_t s1 = blk_size(b1), s2 = blk_size(b2), common = MIN(s1, s2);
    if (strict && s1 != s2) {
        printf("Strict mode: Image size mismatch!\n");
        rc = 1;
        goto out;
    }
    buf1 = xmalloc(IMG_CHUNK);
    buf2 = xmalloc(IMG_CHUNK);
    img_progress(progress, 0);
    for (uint64_t off = 0; off < common;) {
        uint64_t p1, p2;
        unsigned st1, st2;
        uint64_t want = MIN(common - off, IMG_CHUNK);
        int ret = img_chain_status(b1, NULL, off, want, &p1, &st1, NULL, NULL, NULL);
        if (ret < 0) {
            img_error("Sector allocation test failed for %s", n1);
            goto out;
        }
        ret = img_chain_status(b2, NULL, off, want, &p2, &st2, NULL, NULL, NULL);
        if (ret < 0) {
            img_error("Sector allocation test failed for %s", n2);
            goto out;
        }
        uint64_t n = MIN(p1, p2);
        if (strict && ((st1 ^ st2) & (BLK_STATUS_ALLOCATED | BLK_STATUS_ZERO | BLK_STATUS_DATA))) {
            printf("Strict mode: Offset %llu block status mismatch!\n", (unsigned long long)off);
            rc = 1;
            goto out;
        }
        if (!((st1 & BLK_STATUS_ZERO) && (st2 & BLK_STATUS_ZERO))) {
            if ((ret = blk_pread(b1, off, buf1, n)) < 0) {
                img_error("Error while reading offset %llu of %s: %s", (unsigned long long)off, n1, strerror(-ret));
                goto out;
            }
            if ((ret = blk_pread(b2, off, buf2, n)) < 0) {
                img_error("Error while reading offset %llu of %s: %s", (unsigned long long)off, n2, strerror(-ret));
                goto out;
            }
            if (memcmp(buf1, buf2, n)) {
                img_progress_end(progress);
                printf("Content mismatch at offset %llu!\n", (unsigned long long)(off + first_diff(buf1, buf2, n)));
                rc = 1;
                goto out;
            }
        }
        off += n;
        img_progress(progress, off * 100.0 / MAX(s1, s2));
    }
    if (s1 != s2) {
        if (!quiet)
            printf("Warning: Image size mismatch!\n");
        uint64_t mis = 0;
        int r = compare_tail(s1 > s2 ? b1 : b2, s1 > s2 ? n1 : n2, common, buf1, &mis);
        if (r < 0)
            goto out;
        if (r > 0) {
            printf("Content mismatch at offset %llu!\n", (unsigned long long)mis);
            rc = 1;
            goto out;
        }
    }
    img_progress_end(progress);
    if (!quiet)
        printf("Images are identical.\n");
    rc = 0;
out:
    free(buf1);
    free(buf2);
    if (b1)
        blk_close(b1);
    if (b2)
        blk_close(b2);
    return rc;
}
