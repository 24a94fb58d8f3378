/* `vmkit img info` and `vmkit img check`: describe an image and verify its metadata. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include "base/util.h"
#include "cli/img_common.h"

enum ofmt { OFMT_HUMAN, OFMT_JSON };

static int parse_ofmt(const char *s, enum ofmt *o)
{
    if (!strcmp(s, "human"))
        *o = OFMT_HUMAN;
    else if (!strcmp(s, "json"))
        *o = OFMT_JSON;
    else {
        img_error("--output must be used with human or json as argument.");
        return -EINVAL;
    }
    return 0;
}

static void print_json(struct json_object *o)
{
    /* qemu-img prints 4-space indented JSON; json-c's pretty mode uses 2, so re-indent. */
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
    for (const char *line = s; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        size_t sp = 0;
        while (sp < len && line[sp] == ' ')
            sp++;
        printf("%*s%.*s\n", (int)(sp * 2), "", (int)(len - sp), line + sp);
        if (!nl)
            break;
        line = nl + 1;
    }
}

/* Everything `info` reports about one image, gathered before printing. */
struct img_desc {
    const char *filename;
    struct blk_info info;
    char *full_backing;
    struct blk_snapshot *snaps;
    unsigned nsnaps;
};

static struct json_object *desc_json(const struct img_desc *d)
{
    const struct blk_info *i = &d->info;
    struct json_object *o = json_object_new_object();
    if (d->nsnaps) {
        struct json_object *arr = json_object_new_array();
        for (unsigned k = 0; k < d->nsnaps; k++) {
            const struct blk_snapshot *s = &d->snaps[k];
            struct json_object *so = json_object_new_object();
            if (s->icount != UINT32_MAX) /* qemu-img leaves it out when unknown */
                json_object_object_add(so, "icount", json_object_new_int64((int64_t)s->icount));
            json_object_object_add(so, "vm-clock-nsec", json_object_new_int64((int64_t)(s->vm_clock_nsec % 1000000000ULL)));
            json_object_object_add(so, "name", json_object_new_string(s->name ? s->name : ""));
            json_object_object_add(so, "date-sec", json_object_new_int64((int64_t)s->date_sec));
            json_object_object_add(so, "date-nsec", json_object_new_int64((int64_t)s->date_nsec));
            json_object_object_add(so, "vm-clock-sec", json_object_new_int64((int64_t)(s->vm_clock_nsec / 1000000000ULL)));
            json_object_object_add(so, "id", json_object_new_string(s->id));
            json_object_object_add(so, "vm-state-size", json_object_new_int64((int64_t)s->vm_state_size));
            json_object_array_add(arr, so);
        }
        json_object_object_add(o, "snapshots", arr);
    }
    if (i->backing_file && i->backing_format)
        json_object_object_add(o, "backing-filename-format", json_object_new_string(i->backing_format));
    json_object_object_add(o, "virtual-size", json_object_new_int64((int64_t)i->virtual_size));
    json_object_object_add(o, "filename", json_object_new_string(d->filename));
    if (i->cluster_size)
        json_object_object_add(o, "cluster-size", json_object_new_int64((int64_t)i->cluster_size));
    json_object_object_add(o, "format", json_object_new_string(i->format ? i->format : "raw"));
    json_object_object_add(o, "actual-size", json_object_new_int64((int64_t)i->actual_size));
    if (i->encrypted)
        json_object_object_add(o, "encrypted", json_object_new_boolean(1));
    if (i->format && !strcmp(i->format, "qcow2")) {
        struct json_object *fs = json_object_new_object(), *data = json_object_new_object();
        json_object_object_add(fs, "type", json_object_new_string("qcow2"));
        json_object_object_add(data, "compat", json_object_new_string(i->qcow2_version >= 3 ? "1.1" : "0.10"));
        if (i->data_file)
            json_object_object_add(data, "data-file", json_object_new_string(i->data_file));
        if (i->qcow2_version >= 3) {
            json_object_object_add(data, "compression-type",
                                   json_object_new_string(i->compression_type ? i->compression_type : "zlib"));
            json_object_object_add(data, "lazy-refcounts", json_object_new_boolean(i->lazy_refcounts));
        }
        json_object_object_add(data, "refcount-bits", json_object_new_int64(i->refcount_bits ? i->refcount_bits : 16));
        if (i->qcow2_version >= 3) {
            json_object_object_add(data, "corrupt", json_object_new_boolean(i->corrupt));
            json_object_object_add(data, "extended-l2", json_object_new_boolean(i->extended_l2));
        } else {
            json_object_object_add(data, "compression-type",
                                   json_object_new_string(i->compression_type ? i->compression_type : "zlib"));
        }
        json_object_object_add(fs, "data", data);
        json_object_object_add(o, "format-specific", fs);
    }
    if (i->backing_file) {
        json_object_object_add(o, "full-backing-filename", json_object_new_string(d->full_backing));
        json_object_object_add(o, "backing-filename", json_object_new_string(i->backing_file));
    }
    json_object_object_add(o, "dirty-flag", json_object_new_boolean(i->dirty));
    return o;
}

static void desc_human(const struct img_desc *d)
{
    const struct blk_info *i = &d->info;
    char sz[32];
    printf("image: %s\nfile format: %s\n", d->filename, i->format ? i->format : "raw");
    img_size_to_str(i->virtual_size, sz, sizeof(sz));
    printf("virtual size: %s (%llu bytes)\n", sz, (unsigned long long)i->virtual_size);
    img_size_to_str(i->actual_size, sz, sizeof(sz));
    printf("disk size: %s\n", sz);
    if (i->encrypted)
        printf("encrypted: yes\n");
    if (i->cluster_size)
        printf("cluster_size: %llu\n", (unsigned long long)i->cluster_size);
    if (i->dirty)
        printf("cleanly shut down: no\n");
    if (i->backing_file) {
        printf("backing file: %s", i->backing_file);
        if (strcmp(d->full_backing, i->backing_file))
            printf(" (actual path: %s)", d->full_backing);
        printf("\n");
        if (i->backing_format)
            printf("backing file format: %s\n", i->backing_format);
    }
    if (d->nsnaps) {
        printf("Snapshot list:\n");
        img_print_snapshots(d->snaps, d->nsnaps);
    }
    if (i->format && !strcmp(i->format, "qcow2")) {
        printf("Format specific information:\n");
        printf("    compat: %s\n", i->qcow2_version >= 3 ? "1.1" : "0.10");
        printf("    compression type: %s\n", i->compression_type ? i->compression_type : "zlib");
        if (i->qcow2_version >= 3)
            printf("    lazy refcounts: %s\n", i->lazy_refcounts ? "true" : "false");
        printf("    refcount bits: %u\n", i->refcount_bits ? i->refcount_bits : 16);
        if (i->data_file)
            printf("    data file: %s\n", i->data_file);
        if (i->qcow2_version >= 3) {
            printf("    corrupt: %s\n", i->corrupt ? "true" : "false");
            printf("    extended l2: %s\n", i->extended_l2 ? "true" : "false");
        }
    }
}

static int desc_collect(const char *filename, const char *fmt, struct img_desc *d)
{
    struct blk *b;
    struct img_open_args a = {.format = fmt, .read_only = true, .no_backing = true};
    memset(d, 0, sizeof(*d));
    if (img_open(filename, &a, &b) < 0)
        return -1;
    int ret = blk_get_info(b, &d->info);
    if (ret < 0) {
        img_error("Could not read information about '%s': %s", filename, strerror(-ret));
        blk_close(b);
        return -1;
    }
    /* The info strings may point into the open image; keep private copies. */
    d->filename = filename;
    d->info.format = xstrdup(d->info.format ? d->info.format : "raw");
    d->info.filename = NULL;
    d->info.backing_file = d->info.backing_file ? xstrdup(d->info.backing_file) : NULL;
    d->info.backing_format = d->info.backing_format ? xstrdup(d->info.backing_format) : NULL;
    d->info.compression_type = d->info.compression_type ? xstrdup(d->info.compression_type) : NULL;
    d->info.data_file = d->info.data_file ? xstrdup(d->info.data_file) : NULL;
    d->full_backing = img_backing_path(filename, d->info.backing_file);
    if (blk_snapshot_list(b, &d->snaps, &d->nsnaps) < 0) {
        d->snaps = NULL;
        d->nsnaps = 0;
    }
    blk_close(b);
    return 0;
}

static void desc_free(struct img_desc *d)
{
    free((char *)d->info.format);
    free((char *)d->info.backing_file);
    free((char *)d->info.backing_format);
    free((char *)d->info.compression_type);
    free((char *)d->info.data_file);
    free(d->full_backing);
    if (d->snaps)
        blk_snapshot_list_free(d->snaps, d->nsnaps);
}

int img_cmd_info(int argc, char **argv)
{
    const char *fmt = NULL;
    enum ofmt of = OFMT_HUMAN;
    bool chain = false;
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'},           {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, 'O'},   {"backing-chain", no_argument, 0, 'B'},
        {"object", required_argument, 0, 'j'},   {"image-opts", no_argument, 0, 'I'},
        {"force-share", no_argument, 0, 'U'},    {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":f:hU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': if (parse_ofmt(optarg, &of) < 0) return 1; break;
        case 'B': chain = true; break;
        default: {
            int r = img_common_option(c, "info", argv, 1);
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
    char *name = xstrdup(argv[optind]);
    char *cur_fmt = fmt ? xstrdup(fmt) : NULL;
    struct json_object *arr = chain && of == OFMT_JSON ? json_object_new_array() : NULL;
    int rc = 0, depth = 0;
    char **seen = NULL;
    for (;;) {
        struct img_desc d;
        if (desc_collect(name, cur_fmt, &d) < 0) {
            rc = 1;
            break;
        }
        /* A chain that loops back would print forever: qemu-img refuses it too. */
        for (int k = 0; k < depth; k++)
            if (!strcmp(seen[k], name)) {
                img_error("Backing file '%s' creates an infinite loop.", name);
                desc_free(&d);
                rc = 1;
                goto out;
            }
        seen = xrealloc(seen, sizeof(*seen) * (depth + 1));
        seen[depth++] = xstrdup(name);
        if (of == OFMT_JSON) {
            struct json_object *o = desc_json(&d);
            if (arr)
                json_object_array_add(arr, o);
            else {
                print_json(o);
                json_object_put(o);
            }
        } else {
            if (depth > 1)
                printf("\n");
            desc_human(&d);
        }
        bool more = chain && d.info.backing_file;
        if (more) {
            free(name);
            free(cur_fmt);
            name = xstrdup(d.full_backing);
            cur_fmt = d.info.backing_format ? xstrdup(d.info.backing_format) : NULL;
        }
        desc_free(&d);
        if (!more)
            break;
        if (depth > 1000) {
            img_error("Backing chain of '%s' is too long", argv[optind]);
            rc = 1;
            break;
        }
    }
out:
    if (arr) {
        if (!rc)
            print_json(arr);
        json_object_put(arr);
    }
    for (int k = 0; k < depth; k++)
        free(seen[k]);
    free(seen);
    free(name);
    free(cur_fmt);
    return rc;
}

static void check_human(const struct blk_check_result *r, bool quiet)
{
    if (quiet)
        return;
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%llu errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   (unsigned long long)r->corruptions);
        if (r->leaks)
            printf("\n%llu leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n",
                   (unsigned long long)r->leaks);
        if (r->check_errors)
            printf("\n%llu internal errors have occurred during the check.\n",
                   (unsigned long long)r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
               (unsigned long long)r->allocated_clusters, (unsigned long long)r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %llu\n", (unsigned long long)r->image_end_offset);
}

static void check_json(const struct blk_check_result *r, const char *filename, const char *format)
{
    /* Keys in the order qemu-img 7.2 prints them; optional ones only when non-zero. */
    struct json_object *o = json_object_new_object();
#define ADD_IF(key, v)                                                                             \
    do {                                                                                           \
        if (v)                                                                                     \
            json_object_object_add(o, key, json_object_new_int64((int64_t)(v)));                   \
    } while (0)
    ADD_IF("image-end-offset", r->image_end_offset);
    ADD_IF("compressed-clusters", r->compressed_clusters);
    ADD_IF("total-clusters", r->total_clusters);
    ADD_IF("corruptions", r->corruptions);
    json_object_object_add(o, "check-errors", json_object_new_int64((int64_t)r->check_errors));
    ADD_IF("leaks", r->leaks);
    ADD_IF("leaks-fixed", r->leaks_fixed);
    ADD_IF("corruptions-fixed", r->corruptions_fixed);
    ADD_IF("allocated-clusters", r->allocated_clusters);
    json_object_object_add(o, "filename", json_object_new_string(filename));
    json_object_object_add(o, "format", json_object_new_string(format));
    ADD_IF("fragmented-clusters", r->fragmented_clusters);
#undef ADD_IF
    print_json(o);
    json_object_put(o);
}

int img_cmd_check(int argc, char **argv)
{
    const char *fmt = NULL, *cache = NULL;
    enum ofmt of = OFMT_HUMAN;
    unsigned fix = 0;
    bool quiet = false;
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'},         {"format", required_argument, 0, 'f'},
        {"repair", required_argument, 0, 'r'}, {"output", required_argument, 0, 'O'},
        {"object", required_argument, 0, 'j'}, {"force-share", no_argument, 0, 'U'}, {0}};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                fix = BLK_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = BLK_FIX_LEAKS | BLK_FIX_ERRORS;
            else {
                img_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
                return 1;
            }
            break;
        case 'O': if (parse_ofmt(optarg, &of) < 0) return 1; break;
        case 'T': cache = optarg; break;
        case 'q': quiet = true; break;
        default: {
            int r = img_common_option(c, "check", argv, 1);
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
    struct img_open_args a = {.format = fmt, .read_only = fix == 0, .no_backing = true, .cache = cache};
    if (img_open(filename, &a, &b) < 0)
        return 1;
    struct blk_info info = {0};
    char *format = xstrdup(blk_get_info(b, &info) == 0 && info.format ? info.format : "raw");
    struct blk_check_result r = {0};
    int ret = blk_check(b, fix, &r);
    if (ret == -ENOTSUP) {
        img_error("This image format does not support checks");
        blk_close(b);
        free(format);
        return 63;
    }
    if (ret == 0 && (r.corruptions_fixed || r.leaks_fixed)) {
        /* As qemu-img: report the repairs, then re-check and report what is left. */
        uint64_t lf = r.leaks_fixed, cf = r.corruptions_fixed;
        if (of == OFMT_HUMAN && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %llu leaked clusters\n    %llu corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   (unsigned long long)lf, (unsigned long long)cf);
        memset(&r, 0, sizeof(r));
        ret = blk_check(b, 0, &r);
        r.leaks_fixed = lf;
        r.corruptions_fixed = cf;
    }
    if (ret < 0 && ret != -ENOTSUP) {
        img_error("Check failed: %s", strerror(-ret));
        blk_close(b);
        free(format);
        return 1;
    }
    if (of == OFMT_JSON)
        check_json(&r, filename, format);
    else
        check_human(&r, quiet);
    blk_close(b);
    free(format);
    if (r.check_errors) {
        img_error("Check failed");
        return 1;
    }
    if (r.corruptions)
        return 2;
    if (r.leaks)
        return 3;
    return 0;
}
