/* `vmkit img resize`, `snapshot`, `map` and `measure`. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/img_common.h"

int img_cmd_resize(int argc, char **argv)
{
    const char *fmt = NULL, *prealloc = NULL;
    bool quiet = false, shrink = false;
    if (argc < 3) {
        img_error("Expecting image file name and size");
        return 1;
    }
    /* The size goes last and may be negative: take it out before getopt sees "-1G". */
    const char *size_arg = argv[--argc];
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'},          {"object", required_argument, 0, 'j'},
        {"image-opts", no_argument, 0, 'I'},    {"preallocation", required_argument, 0, 'P'},
        {"shrink", no_argument, 0, 'S'},        {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":f:hqU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'P': prealloc = optarg; break;
        case 'S': shrink = true; break;
        default: {
            int r = img_common_option(c, "resize", argv, 1);
            if (r >= 0)
                return r;
            break;
        }
        }
    }
    if (optind != argc - 1) {
        img_error("Expecting image file name and size");
        return 1;
    }
    const char *filename = argv[optind];
    int rel = 0;
    const char *s = size_arg;
    if (*s == '+' || *s == '-') {
        rel = *s == '+' ? 1 : -1;
        s++;
    }
    uint64_t n;
    if (img_parse_size(s, &n) < 0) {
        img_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
        img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return 1;
    }
    struct blk *b;
    struct img_open_args a = {.format = fmt, .read_only = false};
    if (img_open(filename, &a, &b) < 0)
        return 1;
    uint64_t cur = blk_size(b), want;
    int rc = 1;
    if (rel > 0)
        want = cur + n;
    else if (rel < 0)
        want = n >= cur ? 0 : cur - n;
    else
        want = n;
    if (want == 0 || want > INT64_MAX || (rel > 0 && want < cur)) {
        img_error("New image size must be positive");
        goto out;
    }
    if (want < cur && !shrink) {
        img_error("Use the --shrink option to perform a shrink operation.");
        img_warn("Shrinking an image will delete all data beyond the shrunken image's end. Before "
                 "performing such an operation, make sure there is no important data there.");
        goto out;
    }
    int ret = blk_truncate(b, want, shrink, prealloc);
    if (ret == 0)
        ret = blk_flush_sync(b);
    if (ret < 0) {
        if (ret == -ENOTSUP && want < cur)
            img_error("Image format does not support shrinking '%s'", filename);
        else
            img_error("Failed to resize '%s': %s", filename, strerror(-ret));
        goto out;
    }
    if (!quiet)
        printf("Image resized.\n");
    rc = 0;
out:
    blk_close(b);
    return rc;
}

int img_cmd_snapshot(int argc, char **argv)
{
    enum { NONE, LIST, CREATE, APPLY, DELETE } action = NONE;
    const char *name = NULL, *fmt = NULL;
    bool quiet = false;
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {"object", required_argument, 0, 'j'},
                                             {"image-opts", no_argument, 0, 'I'}, {"force-share", no_argument, 0, 'U'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":la:c:d:f:hqU", longopts, NULL)) != -1) {
        int act = NONE;
        switch (c) {
        case 'l': act = LIST; break;
        case 'c': act = CREATE; name = optarg; break;
        case 'a': act = APPLY; name = optarg; break;
        case 'd': act = DELETE; name = optarg; break;
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        default: {
            int r = img_common_option(c, "snapshot", argv, 1);
            if (r >= 0)
                return r;
            break;
        }
        }
        if (act != NONE) {
            if (action != NONE) {
                img_error("Cannot mix '-l', '-a', '-c', '-d'");
                return 1;
            }
            action = act;
        }
    }
    (void)quiet;
    if (action == NONE)
        action = LIST;
    if (optind != argc - 1) {
        img_error("Expecting one image file name");
        return 1;
    }
    const char *filename = argv[optind];
    struct blk *b;
    struct img_open_args a = {.format = fmt, .read_only = action == LIST, .no_backing = true};
    if (img_open(filename, &a, &b) < 0)
        return 1;
    int ret = 0, rc = 0;
    switch (action) {
    case LIST: {
        struct blk_snapshot *list = NULL;
        unsigned n = 0;
        ret = blk_snapshot_list(b, &list, &n);
        if (ret == 0 && n) {
            printf("Snapshot list:\n");
            img_print_snapshots(list, n);
        }
        if (ret == 0)
            blk_snapshot_list_free(list, n);
        else if (ret != -ENOTSUP) {
            img_error("Could not list snapshots of '%s': %s", filename, strerror(-ret));
            rc = 1;
        }
        break;
    }
    case CREATE:
        if ((ret = blk_snapshot_create(b, name)) < 0) {
            img_error("Could not create snapshot '%s': %s", name, strerror(-ret));
            rc = 1;
        }
        break;
    case APPLY:
        if ((ret = blk_snapshot_apply(b, name)) < 0) {
            img_error("Could not apply snapshot '%s': %s", name, strerror(-ret));
            rc = 1;
        }
        break;
    case DELETE:
        if ((ret = blk_snapshot_delete(b, name)) < 0) {
            img_error("Could not delete snapshot '%s': %s", name,
                      ret == -ENOENT ? "snapshot not found" : strerror(-ret));
            rc = 1;
        }
        break;
    default:
        break;
    }
    if (rc == 0 && action != LIST && (ret = blk_flush_sync(b)) < 0) {
        img_error("Could not flush '%s': %s", filename, strerror(-ret));
        rc = 1;
    }
    blk_close(b);
    return rc;
}

/* One run of `map` output. */
struct map_entry {
    uint64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
    struct blk *file;
};

static bool map_mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->depth != b->depth || a->present != b->present || a->zero != b->zero || a->data != b->data ||
        a->has_offset != b->has_offset || a->file != b->file)
        return false;
    return !a->has_offset || a->offset + a->length == b->offset;
}

static int map_print(const struct map_entry *e, bool json, bool first, bool *err)
{
    if (json) {
        if (!first)
            printf(",\n");
        printf("{ \"start\": %llu, \"length\": %llu, \"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
               (unsigned long long)e->start, (unsigned long long)e->length, e->depth, e->present ? "true" : "false",
               e->zero ? "true" : "false", e->data ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %llu", (unsigned long long)e->offset);
        printf("}");
        return 0;
    }
    if (e->data && !e->has_offset) {
        img_error("File contains external, encrypted or compressed clusters.");
        *err = true;
        return -EINVAL;
    }
    if (e->data && !e->zero) {
        struct blk_info fi = {0};
        if (e->file)
            blk_get_info(e->file, &fi);
        printf("%#-16llx%#-16llx%#-16llx%s\n", (unsigned long long)e->start, (unsigned long long)e->length,
               (unsigned long long)e->offset, fi.filename ? fi.filename : "");
    }
    return 0;
}

/* The host file behind a layer, opened once to ask it for holes (SEEK_DATA/SEEK_HOLE). */
struct host_file {
    struct blk *blk;
    int fd;
};

static uint64_t host_data_run(struct host_file *hf, struct blk *file, uint64_t off, uint64_t len, bool *zero)
{
    if (hf->blk != file) {
        if (hf->fd >= 0)
            close(hf->fd);
        struct blk_info fi = {0};
        hf->fd = blk_get_info(file, &fi) == 0 && fi.filename ? open(fi.filename, O_RDONLY | O_CLOEXEC) : -1;
        hf->blk = file;
    }
    if (hf->fd < 0 || off > INT64_MAX)
        return 0;
    off_t d = lseek(hf->fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
        if (errno != ENXIO)
            return 0;
        *zero = true; /* no data from here to the end of the file */
        return len;
    }
    if ((uint64_t)d > off) {
        *zero = true;
        return MIN(len, (uint64_t)d - off);
    }
    off_t h = lseek(hf->fd, (off_t)off, SEEK_HOLE);
    if (h < 0 || (uint64_t)h <= off)
        return 0;
    return MIN(len, (uint64_t)h - off);
}

int img_cmd_map(int argc, char **argv)
{
    const char *fmt = NULL;
    bool json = false;
    uint64_t start = 0, max_len = UINT64_MAX;
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'},             {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, 'O'},     {"object", required_argument, 0, 'j'},
        {"image-opts", no_argument, 0, 'I'},       {"force-share", no_argument, 0, 'U'},
        {"start-offset", required_argument, 0, 's'}, {"max-length", required_argument, 0, 'l'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":f:hU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O':
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human")) {
                img_error("--output must be used with human or json as argument.");
                return 1;
            }
            break;
        case 's':
            if (img_parse_size(optarg, &start) < 0) {
                img_error("Invalid start offset specified");
                return 1;
            }
            break;
        case 'l':
            if (img_parse_size(optarg, &max_len) < 0) {
                img_error("Invalid length specified");
                return 1;
            }
            break;
        default: {
            int r = img_common_option(c, "map", argv, 1);
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
    const char *filename = argv[optind];
    struct blk *b;
    struct img_open_args a = {.format = fmt, .read_only = true};
    if (img_open(filename, &a, &b) < 0)
        return 1;
    uint64_t size = blk_size(b);
    uint64_t end = max_len > size ? size : MIN(size, start + max_len);
    if (start > size)
        start = size;
    struct map_entry cur = {0};
    struct host_file hf = {.blk = NULL, .fd = -1};
    bool have = false, first = true, err = false;
    int rc = 0;
    if (json)
        printf("[");
    else
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    for (uint64_t off = start; off < end;) {
        uint64_t pnum, m = 0;
        unsigned st;
        int depth = 0;
        struct blk *f = NULL;
        int ret = img_chain_status(b, NULL, off, MIN(end - off, 1ULL << 30), &pnum, &st, &depth, &m, &f);
        if (ret < 0) {
            img_error("Could not read file metadata: %s", strerror(-ret));
            rc = 1;
            break;
        }
        struct map_entry e = {
            .start = off, .length = pnum, .depth = depth, .present = st & BLK_STATUS_ALLOCATED,
            .zero = st & BLK_STATUS_ZERO, .data = st & BLK_STATUS_DATA,
            .has_offset = st & BLK_STATUS_OFFSET_VALID, .offset = m, .file = f};
        if (!e.has_offset) {
            e.offset = 0;
            e.file = NULL;
        } else if (e.data && !e.zero && f) {
            /* Like qemu-img, look through to the host file: holes in it read as zeroes. */
            uint64_t run = host_data_run(&hf, f, m, pnum, &e.zero);
            if (run && run < pnum)
                pnum = e.length = run;
        }
        if (have && map_mergeable(&cur, &e)) {
            cur.length += e.length;
        } else {
            if (have) {
                if (map_print(&cur, json, first, &err) < 0) {
                    rc = 1;
                    break;
                }
                first = false;
            }
            cur = e;
            have = true;
        }
        off += pnum;
    }
    if (rc == 0 && have && map_print(&cur, json, first, &err) < 0)
        rc = 1;
    if (json)
        printf("]\n");
    if (hf.fd >= 0)
        close(hf.fd);
    blk_close(b);
    return rc;
}

/* QEMU's qcow2_refcount_metadata_size(): the fixed point of refcount blocks covering
 * every cluster including themselves. */
static uint64_t qcow2_refcount_size(uint64_t clusters, uint64_t cluster_size, unsigned refcount_bits)
{
    uint64_t per_table = cluster_size / 8, per_block = cluster_size * 8 / refcount_bits;
    uint64_t table = 0, blocks = 0, last, n = 0;
    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
        table = DIV_ROUND_UP(blocks, per_table);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cluster_size;
}

static uint64_t qcow2_prealloc_size(uint64_t total, uint64_t cs, unsigned refcount_bits, bool extended_l2)
{
    uint64_t aligned = ALIGN_UP(total, cs), meta = cs, l2e = extended_l2 ? 16 : 8;
    uint64_t nl2e = aligned / cs;
    nl2e = ALIGN_UP(nl2e, cs / l2e);
    meta += nl2e * l2e;
    uint64_t nl1e = nl2e * l2e / cs;
    nl1e = ALIGN_UP(nl1e, cs / 8);
    meta += nl1e * 8;
    meta += qcow2_refcount_size((meta + aligned) / cs, cs, refcount_bits);
    return meta + aligned;
}

int img_cmd_measure(int argc, char **argv)
{
    const char *fmt = NULL, *out_fmt = "raw", *snapshot = NULL;
    char *optstr = NULL;
    bool json = false, have_size = false;
    uint64_t size = 0;
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'},         {"image-opts", no_argument, 0, 'I'},
        {"object", required_argument, 0, 'j'}, {"output", required_argument, 0, 'P'},
        {"size", required_argument, 0, 's'},   {"force-share", no_argument, 0, 'U'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o': {
            char *n = optstr ? xasprintf("%s,%s", optstr, optarg) : xstrdup(optarg);
            free(optstr);
            optstr = n;
            break;
        }
        case 'l':
            snapshot = !strncmp(optarg, "snapshot.name=", 14) ? optarg + 14
                       : !strncmp(optarg, "snapshot.id=", 12) ? optarg + 12 : optarg;
            break;
        case 'P':
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human")) {
                img_error("--output must be used with human or json as argument.");
                free(optstr);
                return 1;
            }
            break;
        case 's':
            if (img_parse_size(optarg, &size) < 0) {
                img_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
                img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
                free(optstr);
                return 1;
            }
            have_size = true;
            break;
        default: {
            int r = img_common_option(c, "measure", argv, 1);
            if (r >= 0) {
                free(optstr);
                return r;
            }
            break;
        }
        }
    }
    const char *filename = optind < argc ? argv[optind] : NULL;
    int rc = 1;
    struct blk *b = NULL;
    if (optind < argc - 1) {
        img_error("At most one filename argument is allowed.");
        goto out;
    }
    if (filename && have_size) {
        img_error("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!filename && !have_size) {
        img_error("Either --size N or one filename must be specified.");
        goto out;
    }
    struct blk_create_opts o = {0};
    if (!blk_driver_find(out_fmt)) {
        img_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (optstr && blk_create_opts_parse(&o, optstr) < 0) {
        img_error("Invalid options for file format '%s'", out_fmt);
        goto out;
    }
    bool src_qcow2 = false;
    if (filename) {
        struct img_open_args a = {.format = fmt, .read_only = true};
        if (img_open(filename, &a, &b) < 0)
            goto out;
        if (snapshot) {
            int ret = blk_snapshot_load_tmp(b, snapshot);
            if (ret < 0) {
                img_error("Failed to load snapshot: %s", strerror(-ret));
                goto out;
            }
        }
        struct blk_info bi = {0};
        src_qcow2 = blk_get_info(b, &bi) == 0 && bi.format && !strcmp(bi.format, "qcow2");
        size = blk_size(b);
    }
    uint64_t required, full;
    bool bitmaps = false;
    if (!strcmp(out_fmt, "qcow2")) {
        uint64_t cs = o.cluster_size ? o.cluster_size : 65536;
        unsigned rb = o.refcount_bits ? o.refcount_bits : 16;
        if (cs < 512 || cs > 2 * MiB || (cs & (cs - 1)) || !rb || rb > 64 || (rb & (rb - 1))) {
            img_error("Invalid cluster size or refcount width for qcow2");
            goto out;
        }
        uint64_t vsize = ALIGN_UP(size, cs), data = 0;
        if (b && o.backing_file) {
            data = vsize; /* the new backing file may share nothing with the input */
        } else if (b) {
            for (uint64_t off = 0; off < size;) {
                uint64_t pnum;
                unsigned st;
                int ret = img_chain_status(b, NULL, off, MIN(size - off, 1ULL << 30), &pnum, &st, NULL, NULL, NULL);
                if (ret < 0) {
                    img_error("Unable to get block status: %s", strerror(-ret));
                    goto out;
                }
                if (st & BLK_STATUS_ZERO) {
                    /* zero regions need no data clusters */
                } else if ((st & (BLK_STATUS_DATA | BLK_STATUS_ALLOCATED)) == (BLK_STATUS_DATA | BLK_STATUS_ALLOCATED)) {
                    pnum = ALIGN_UP(off + pnum, cs) - off;
                    data += off % cs + pnum;
                }
                off += pnum;
            }
        }
        if (o.preallocation && (!strcmp(o.preallocation, "full") || !strcmp(o.preallocation, "falloc")))
            data = vsize;
        full = qcow2_prealloc_size(vsize, cs, rb, o.extended_l2);
        required = full - vsize + data;
        bool v3 = !o.compat || (strcmp(o.compat, "0.10") && strcmp(o.compat, "v2"));
        bitmaps = b && src_qcow2 && v3;
    } else {
        required = full = b ? size : ALIGN_UP(size, 512);
    }
    if (json) {
        struct json_object *j = json_object_new_object();
        if (bitmaps)
            json_object_object_add(j, "bitmaps", json_object_new_int64(0));
        json_object_object_add(j, "required", json_object_new_int64((int64_t)required));
        json_object_object_add(j, "fully-allocated", json_object_new_int64((int64_t)full));
        const char *s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED);
        /* re-indent to qemu's 4 spaces (flat object: every inner line has 2) */
        for (const char *p = s; *p; p++) {
            if (*p == '\n' && p[1] == ' ' && p[2] == ' ' && p[3] == '"') {
                printf("\n    ");
                p += 2;
            } else
                putchar(*p);
        }
        printf("\n");
        json_object_put(j);
    } else {
        printf("required size: %llu\nfully allocated size: %llu\n", (unsigned long long)required,
               (unsigned long long)full);
        if (bitmaps)
            printf("bitmaps size: 0\n");
    }
    rc = 0;
out:
    if (b)
        blk_close(b);
    free(optstr);
    return rc;
}
