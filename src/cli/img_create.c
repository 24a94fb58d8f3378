/* `vmkit img create` and `vmkit img amend`: make new images and change qcow2 options. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/img_common.h"

/* Collect several -o arguments into one comma-separated list, as qemu-img does. */
static void append_opts(char **acc, const char *more)
{
    if (!*acc) {
        *acc = xstrdup(more);
        return;
    }
    char *n = xasprintf("%s,%s", *acc, more);
    free(*acc);
    *acc = n;
}

static bool opts_has(const char *optstr, const char *key)
{
    if (!optstr)
        return false;
    size_t kl = strlen(key);
    for (const char *p = optstr; p && *p;) {
        if (!strncmp(p, key, kl) && (p[kl] == '=' || p[kl] == ',' || !p[kl]))
            return true;
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return false;
}

static void print_formatting(const char *filename, const char *fmt, const struct blk_create_opts *o,
                             const char *optstr)
{
    printf("Formatting '%s', fmt=%s", filename, fmt);
    if (!strcmp(fmt, "qcow2")) {
        printf(" cluster_size=%llu extended_l2=%s", (unsigned long long)(o->cluster_size ? o->cluster_size : 65536),
               o->extended_l2 ? "on" : "off");
        if (o->preallocation && opts_has(optstr, "preallocation"))
            printf(" preallocation=%s", o->preallocation);
        printf(" compression_type=%s size=%llu", o->compression_type ? o->compression_type : "zlib",
               (unsigned long long)o->size);
        if (o->backing_file)
            printf(" backing_file=%s", o->backing_file);
        if (o->backing_format)
            printf(" backing_fmt=%s", o->backing_format);
        if (o->compat && opts_has(optstr, "compat"))
            printf(" compat=%s", o->compat);
        printf(" lazy_refcounts=%s refcount_bits=%u", o->lazy_refcounts ? "on" : "off",
               o->refcount_bits ? o->refcount_bits : 16);
    } else {
        printf(" size=%llu", (unsigned long long)o->size);
        if (o->backing_file)
            printf(" backing_file=%s", o->backing_file);
        if (o->backing_format)
            printf(" backing_fmt=%s", o->backing_format);
        if (o->preallocation && opts_has(optstr, "preallocation"))
            printf(" preallocation=%s", o->preallocation);
    }
    printf("\n");
    fflush(stdout);
}

static void print_size_error(void)
{
    img_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
    img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
}

int img_cmd_create(int argc, char **argv)
{
    const char *fmt = "raw", *base = NULL, *base_fmt = NULL;
    char *optstr = NULL;
    bool quiet = false, unsafe = false;
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {"object", required_argument, 0, 'O'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'b': base = optarg; break;
        case 'F': base_fmt = optarg; break;
        case 'o': append_opts(&optstr, optarg); break;
        case 'q': quiet = true; break;
        case 'u': unsafe = true; break;
        case 'O': break;
        default: {
            int r = img_common_option(c, "create", argv, 1);
            if (r >= 0) {
                free(optstr);
                return r;
            }
            break;
        }
        }
    }
    if (optind >= argc) {
        img_error("Expecting image file name");
        free(optstr);
        return 1;
    }
    const char *filename = argv[optind++];
    struct blk_create_opts o = {0};
    o.format = fmt;
    if (!blk_driver_find(fmt)) {
        img_error("Unknown file format '%s'", fmt);
        free(optstr);
        return 1;
    }
    if (optstr && (!strcmp(optstr, "help") || !strcmp(optstr, "?"))) {
        printf("Supported options:\n");
        if (!strcmp(fmt, "qcow2"))
            printf("  backing_file=<str>     - File name of a base image\n"
                   "  backing_fmt=<str>      - Image format of the base image\n"
                   "  cluster_size=<size>    - qcow2 cluster size\n"
                   "  compat=<str>           - Compatibility level (v2 [0.10], v3 [1.1])\n"
                   "  compression_type=<str> - Compression method used for image cluster compression (zlib, zstd)\n"
                   "  extended_l2=<bool (on/off)> - Extended L2 tables\n"
                   "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n"
                   "  preallocation=<str>    - Preallocation mode (allowed values: off, metadata, falloc, full)\n"
                   "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
                   "  size=<size>            - Virtual disk size\n");
        else
            printf("  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)\n"
                   "  size=<size>            - Virtual disk size\n");
        free(optstr);
        return 0;
    }
    if (optstr && blk_create_opts_parse(&o, optstr) < 0) {
        img_error("Invalid options for file format '%s'", fmt);
        free(optstr);
        return 1;
    }
    o.format = fmt;
    if (base)
        o.backing_file = base;
    if (base_fmt)
        o.backing_format = base_fmt;
    bool have_size = optstr && opts_has(optstr, "size");
    if (optind < argc) {
        have_size = true;
        if (img_parse_size(argv[optind], &o.size) < 0) {
            print_size_error();
            free(optstr);
            return 1;
        }
        optind++;
    }
    if (optind < argc) {
        img_error("Unexpected argument: %s", argv[optind]);
        free(optstr);
        return 1;
    }
    int ret = 0;
    if (o.backing_file && !strcmp(fmt, "raw")) {
        img_error("%s: Backing file not supported for file format 'raw'", filename);
        free(optstr);
        return 1;
    }
    if (o.backing_file && !o.backing_format) {
        img_error("%s: Backing file specified without backing format", filename);
        free(optstr);
        return 1;
    }
    /* qemu-img takes the size from the backing file when none is given (and the file opens). */
    if (o.backing_file && !have_size) {
        if (unsafe) {
            img_error("%s: Image creation needs a size parameter", filename);
            free(optstr);
            return 1;
        }
        char *path = img_backing_path(filename, o.backing_file);
        struct blk *b;
        struct img_open_args a = {.format = o.backing_format, .read_only = true, .no_backing = false};
        ret = img_open(path, &a, &b);
        free(path);
        if (ret < 0) {
            free(optstr);
            return 1;
        }
        o.size = blk_size(b);
        blk_close(b);
    } else if (o.backing_file && !unsafe) {
        char *path = img_backing_path(filename, o.backing_file);
        struct blk *b;
        struct img_open_args a = {.format = o.backing_format, .read_only = true};
        ret = img_open(path, &a, &b);
        free(path);
        if (ret < 0) {
            free(optstr);
            return 1;
        }
        blk_close(b);
    } else if (!have_size) {
        img_error("%s: Image creation needs a size parameter", filename);
        free(optstr);
        return 1;
    }
    if (!quiet)
        print_formatting(filename, fmt, &o, optstr);
    /* qcow2 sizes are whole sectors; qemu-img rounds up (after printing the size asked for). */
    if (!strcmp(fmt, "qcow2"))
        o.size = ALIGN_UP(o.size, 512);
    ret = blk_create(filename, &o);
    free(optstr);
    if (ret < 0) {
        img_error("%s: %s", filename, strerror(-ret));
        return 1;
    }
    return 0;
}

int img_cmd_amend(int argc, char **argv)
{
    const char *fmt = NULL, *cache = NULL;
    char *optstr = NULL;
    bool quiet = false, progress = false, force = false;
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {"force", no_argument, 0, 'X'},
                                             {"object", required_argument, 0, 'O'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': append_opts(&optstr, optarg); break;
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'X': force = true; break;
        case 'O': break;
        default: {
            int r = img_common_option(c, "amend", argv, 1);
            if (r >= 0) {
                free(optstr);
                return r;
            }
            break;
        }
        }
    }
    (void)force;
    if (progress && quiet)
        progress = false;
    if (!optstr) {
        img_error("Must specify options (-o)");
        return 1;
    }
    if (optind != argc - 1) {
        img_error("Expecting one image file name");
        free(optstr);
        return 1;
    }
    const char *filename = argv[optind];
    struct blk *b;
    struct img_open_args a = {.format = fmt, .read_only = false, .cache = cache};
    if (img_open(filename, &a, &b) < 0) {
        free(optstr);
        return 1;
    }
    struct blk_info info;
    int ret = blk_get_info(b, &info);
    if (ret == 0 && strcmp(info.format, "qcow2")) {
        img_error("Format driver '%s' does not support option amendment", info.format);
        blk_close(b);
        free(optstr);
        return 1;
    }
    struct blk_create_opts o = {0};
    ret = blk_create_opts_parse(&o, optstr);
    if (ret < 0) {
        img_error("Invalid options for file format '%s'", info.format);
        blk_close(b);
        free(optstr);
        return 1;
    }
    img_progress(progress, 0);
    ret = blk_amend(b, &o, optstr);
    img_progress_end(progress && ret == 0);
    if (ret == 0)
        ret = blk_flush_sync(b);
    blk_close(b);
    free(optstr);
    if (ret < 0) {
        img_error("Error while amending options: %s", strerror(-ret));
        return 1;
    }
    return 0;
}
