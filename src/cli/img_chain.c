/* `vmkit img commit` and `vmkit img rebase`: move data along a backing chain. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/img_common.h"

#define CHAIN_CHUNK (1 * MiB)

static bool same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    if (realpath(a, ra) && realpath(b, rb))
        return !strcmp(ra, rb);
    return !strcmp(a, b);
}

int img_cmd_commit(int argc, char **argv)
{
    const char *fmt = NULL, *cache = NULL, *base_name = NULL;
    bool quiet = false, progress = false, drop = false;
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {"object", required_argument, 0, 'j'},
                                             {"image-opts", no_argument, 0, 'I'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'b': base_name = optarg; drop = true; break; /* -b implies -d, as in qemu-img */
        case 'd': drop = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'r': case 'j': break;
        default: {
            int r = img_common_option(c, "commit", argv, 1);
            if (r >= 0)
                return r;
            break;
        }
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 1) {
        img_error("Expecting one image file name");
        return 1;
    }
    const char *filename = argv[optind];
    struct blk *top, *base_rw = NULL;
    struct img_open_args a = {.format = fmt, .read_only = false, .cache = cache};
    if (img_open(filename, &a, &top) < 0)
        return 1;
    int rc = 1, ret;
    uint8_t *buf = NULL;
    struct blk *base = blk_backing(top);
    struct blk_info bi;
    if (!base) {
        img_error("Image does not have a backing file");
        goto out;
    }
    if (base_name) {
        /* Find the named image among the backing files. */
        for (; base; base = blk_backing(base))
            if (blk_get_info(base, &bi) == 0 && bi.filename && same_file(bi.filename, base_name))
                break;
        if (!base) {
            img_error("Did not find '%s' in the backing chain of '%s'", base_name, filename);
            goto out;
        }
    }
    if ((ret = blk_get_info(base, &bi)) < 0 || !bi.filename) {
        img_error("Could not read information about the backing file of '%s'", filename);
        goto out;
    }
    /* The chain opens backing files read-only; write the base through its own handle. */
    char *base_path = xstrdup(bi.filename);
    struct blk_open_opts bo = {.format = bi.format, .no_backing = true, .no_repair = true};
    if (img_parse_cache(cache, &bo.cache) < 0) {
        free(base_path);
        goto out;
    }
    ret = blk_open(base_path, &bo, NULL, &base_rw);
    if (ret < 0) {
        img_error("Could not open '%s' for writing: %s", base_path, strerror(-ret));
        free(base_path);
        base_rw = NULL;
        goto out;
    }
    free(base_path);
    uint64_t size = blk_size(top);
    if (blk_size(base_rw) < size && (ret = blk_truncate(base_rw, size, false, NULL)) < 0) {
        img_error("Could not grow the base image to %llu bytes: %s", (unsigned long long)size, strerror(-ret));
        goto out;
    }
    buf = xmalloc(CHAIN_CHUNK);
    img_progress(progress, 0);
    for (uint64_t off = 0; off < size;) {
        uint64_t pnum;
        unsigned st;
        ret = img_chain_status(top, base, off, MIN(size - off, CHAIN_CHUNK), &pnum, &st, NULL, NULL, NULL);
        if (ret < 0) {
            img_error("Block status failed at offset %llu: %s", (unsigned long long)off, strerror(-ret));
            goto out;
        }
        if (st & BLK_STATUS_ALLOCATED) {
            if ((ret = blk_pread(top, off, buf, pnum)) < 0) {
                img_error("error while reading at byte %llu: %s", (unsigned long long)off, strerror(-ret));
                goto out;
            }
            if ((ret = blk_pwrite(base_rw, off, buf, pnum)) < 0) {
                img_error("error while writing at byte %llu: %s", (unsigned long long)off, strerror(-ret));
                goto out;
            }
        }
        off += pnum;
        img_progress(progress, off * 100.0 / size);
    }
    if ((ret = blk_flush_sync(base_rw)) < 0) {
        img_error("Could not flush the base image: %s", strerror(-ret));
        goto out;
    }
    if (!drop) {
        ret = blk_make_empty(top);
        if (ret < 0 && ret != -ENOTSUP) {
            img_error("Could not empty %s: %s", filename, strerror(-ret));
            goto out;
        }
    }
    img_progress_end(progress);
    if (!quiet)
        printf("Image committed.\n");
    rc = 0;
out:
    free(buf);
    if (base_rw)
        blk_close(base_rw);
    blk_close(top);
    return rc;
}

int img_cmd_rebase(int argc, char **argv)
{
    const char *fmt = NULL, *cache = NULL, *src_cache = NULL, *new_base = NULL, *new_fmt = NULL;
    bool quiet = false, progress = false, unsafe = false;
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {"object", required_argument, 0, 'j'},
                                             {"image-opts", no_argument, 0, 'I'}, {"force-share", no_argument, 0, 'U'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'F': new_fmt = optarg; break;
        case 'b': new_base = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress = true; break;
        case 't': cache = optarg; break;
        case 'T': src_cache = optarg; break;
        case 'q': quiet = true; break;
        default: {
            int r = img_common_option(c, "rebase", argv, 1);
            if (r >= 0)
                return r;
            break;
        }
        }
    }
    (void)src_cache;
    if (quiet)
        progress = false;
    if (optind != argc - 1) {
        img_error("Expecting one image file name");
        return 1;
    }
    if (!new_base) {
        img_error("Must specify backing file (-b) or use unsafe mode (-u)");
        return 1;
    }
    const char *filename = argv[optind];
    if (!*new_base)
        new_base = NULL; /* -b "": no backing file at all */
    struct blk *top = NULL, *nb = NULL;
    int rc = 1, ret;
    uint8_t *b1 = NULL, *b2 = NULL;
    struct img_open_args a = {.format = fmt, .read_only = false, .no_backing = unsafe, .cache = cache};
    if (img_open(filename, &a, &top) < 0)
        return 1;
    char *new_path = img_backing_path(filename, new_base);
    const char *probed = NULL;
    if (new_base && !new_fmt && !unsafe) {
        bool guessed;
        if (blk_probe_format(new_path, &probed, &guessed) == 0)
            new_fmt = probed;
    }
    if (!unsafe) {
        if (new_base) {
            struct img_open_args na = {.format = new_fmt, .read_only = true, .cache = src_cache};
            if (img_open(new_path, &na, &nb) < 0) {
                img_error("Could not open new backing file '%s'", new_path);
                goto out;
            }
        }
        /* Keep the guest-visible contents: wherever the image defers to its backing file and
         * the old and new backing files differ, copy the old data into the image itself. */
        struct blk_info ti = {0};
        blk_get_info(top, &ti);
        uint64_t gran = ti.cluster_size ? ti.cluster_size : 65536;
        if (gran > CHAIN_CHUNK)
            gran = CHAIN_CHUNK;
        uint64_t size = blk_size(top), nsize = nb ? blk_size(nb) : 0;
        b1 = xmalloc(CHAIN_CHUNK);
        b2 = xmalloc(CHAIN_CHUNK);
        img_progress(progress, 0);
        for (uint64_t off = 0; off < size;) {
            uint64_t pnum, m;
            unsigned st;
            struct blk *f;
            uint64_t want = MIN(size - off, CHAIN_CHUNK - off % CHAIN_CHUNK);
            ret = blk_block_status(top, off, want, &pnum, &st, &m, &f);
            if (ret == 0 && (pnum == 0 || pnum > want))
                ret = -EIO;
            if (ret < 0) {
                img_error("error while reading image metadata: %s", strerror(-ret));
                goto out;
            }
            if (!(st & BLK_STATUS_ALLOCATED)) {
                if ((ret = blk_pread(top, off, b1, pnum)) < 0) {
                    img_error("error while reading from old backing file: %s", strerror(-ret));
                    goto out;
                }
                memset(b2, 0, pnum);
                if (nb && off < nsize && (ret = blk_pread(nb, off, b2, MIN(pnum, nsize - off))) < 0) {
                    img_error("error while reading from new backing file: %s", strerror(-ret));
                    goto out;
                }
                for (uint64_t p = 0; p < pnum;) {
                    uint64_t n = MIN(pnum - p, ALIGN_DOWN(off + p, gran) + gran - (off + p));
                    if (memcmp(b1 + p, b2 + p, n) && (ret = blk_pwrite(top, off + p, b1 + p, n)) < 0) {
                        img_error("error while writing to image: %s", strerror(-ret));
                        goto out;
                    }
                    p += n;
                }
            }
            off += pnum;
            img_progress(progress, off * 100.0 / size);
        }
    }
    ret = blk_change_backing(top, new_base, new_base ? new_fmt : NULL);
    if (ret == -ENOSPC) {
        img_error("Could not change the backing file to '%s': No space left in the image header", new_base);
        goto out;
    }
    if (ret < 0) {
        img_error("Could not change the backing file to '%s': %s", new_base ? new_base : "", strerror(-ret));
        goto out;
    }
    if ((ret = blk_flush_sync(top)) < 0) {
        img_error("Could not flush '%s': %s", filename, strerror(-ret));
        goto out;
    }
    img_progress_end(progress);
    rc = 0;
out:
    free(b1);
    free(b2);
    free(new_path);
    if (nb)
        blk_close(nb);
    blk_close(top);
    return rc;
}
