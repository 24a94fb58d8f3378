/* Shared helpers and subcommand entry points of `vmkit img` (internal to src/cli/img*.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "block/block.h"

#define IMG_PROG "vmkit img"

/* qemu-img's error style: "vmkit img: <message>" on stderr. */
void img_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void img_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Opens an image for a subcommand; prints "Could not open 'x': ..." on failure. */
struct img_open_args {
    const char *format;
    bool read_only;
    bool no_backing;
    const char *cache; /* qemu cache= name, NULL = default */
    bool quiet;
};
int img_open(const char *filename, const struct img_open_args *a, struct blk **out);
int img_parse_cache(const char *s, enum blk_cache_mode *out);

/* Sizes: qemu-img's parser (bytes by default, k/M/G/T/P/E suffixes) and printer. */
int img_parse_size(const char *s, uint64_t *out);
void img_size_to_str(uint64_t v, char *buf, size_t len); /* "1 GiB", "196 KiB" */

/* Resolve a backing file name relative to the directory of the image that names it. */
char *img_backing_path(const char *image, const char *backing);

/* Progress in qemu-img's style ("    (12.34/100%)\r"). */
void img_progress(bool enabled, double percent);
void img_progress_end(bool enabled);

/* Usage on --help; returns 0. */
int img_usage_sub(const char *sub);
/* The getopt cases every subcommand ends its switch with, in qemu-img's words: -h (usage),
 * -U and --object (accepted, ignored), --image-opts (refused), a missing argument, an unknown
 * option. Returns -1 to go on, or the exit status: 0 after usage, err after an error. */
int img_common_option(int c, const char *sub, char **argv, int err);

int img_is_all_zero(const void *buf, size_t len);

int img_cmd_create(int argc, char **argv);
int img_cmd_info(int argc, char **argv);
int img_cmd_check(int argc, char **argv);
int img_cmd_convert(int argc, char **argv);
int img_cmd_compare(int argc, char **argv);
int img_cmd_commit(int argc, char **argv);
int img_cmd_rebase(int argc, char **argv);
int img_cmd_resize(int argc, char **argv);
int img_cmd_snapshot(int argc, char **argv);
int img_cmd_map(int argc, char **argv);
int img_cmd_measure(int argc, char **argv);
int img_cmd_amend(int argc, char **argv);
int img_cmd_bench(int argc, char **argv);

/* Snapshot table as qemu-img prints it (snapshot -l and info). */
void img_print_snapshots(const struct blk_snapshot *s, unsigned n);

/* Allocation status of [off, off+len) seen from top, walking the backing chain down to (not
 * including) base, like QEMU's bdrv_block_status_above. *depth is the index of the layer that
 * decides (or the last layer looked at); status has BLK_STATUS_ALLOCATED when some layer above
 * base holds the range. */
int img_chain_status(struct blk *top, struct blk *base, uint64_t off, uint64_t len, uint64_t *pnum,
                     unsigned *status, int *depth, uint64_t *map, struct blk **file);
