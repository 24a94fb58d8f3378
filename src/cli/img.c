/* `vmkit img` entry point: subcommand dispatch, --help and --version, like qemu-img. */
#include "cli/img.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "base/log.h"
#include "cli/img_common.h"

#ifndef VMKIT_VERSION
#define VMKIT_VERSION "0.1.0"
#endif

struct img_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *synopsis;
};

static const struct img_cmd cmds[] = {
    {"amend", img_cmd_amend, "amend [-f fmt] [-t cache] [-p] [-q] -o options filename"},
    {"bench", img_cmd_bench,
     "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] "
     "[--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
     "[-t cache] [-w] [-U] filename"},
    {"check", img_cmd_check,
     "check [-q] [--output=ofmt] [-f fmt] [-r [leaks | all]] [-T src_cache] [-U] filename"},
    {"commit", img_cmd_commit, "commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename"},
    {"compare", img_cmd_compare,
     "compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2"},
    {"convert", img_cmd_convert,
     "convert [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] "
     "[-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] "
     "[-r rate_limit] [-m num_coroutines] [-W] [-U] filename [filename2 [...]] output_filename"},
    {"create", img_cmd_create,
     "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]"},
    {"info", img_cmd_info,
     "info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename"},
    {"map", img_cmd_map, "map [-f fmt] [--output=ofmt] [--start-offset=offset] [--max-length=len] [-U] filename"},
    {"measure", img_cmd_measure,
     "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] [-l snapshot_param] filename]"},
    {"snapshot", img_cmd_snapshot, "snapshot [-q] [-l | -a snapshot | -c snapshot | -d snapshot] [-U] filename"},
    {"rebase", img_cmd_rebase,
     "rebase [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] [-U] -b backing_file [-F backing_fmt] filename"},
    {"resize", img_cmd_resize, "resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size"},
};

static void img_help(void)
{
    printf("vmkit img version " VMKIT_VERSION ", a qemu-img compatible disk image utility\n"
           "usage: vmkit img [standard options] command [command options]\n"
           "\n"
           "    '-h', '--help'       display this help and exit\n"
           "    '-V', '--version'    output version information and exit\n"
           "\n"
           "Command syntax:\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        printf("  %s\n", cmds[i].synopsis);
    printf("\n"
           "Command parameters:\n"
           "  'filename' is a disk image filename\n"
           "  'fmt' is the disk image format (raw, qcow2); it is guessed when omitted\n"
           "  'cache' is the cache mode: none, writeback (default), writethrough, directsync, unsafe\n"
           "  'size' is the disk image size in bytes; the optional suffixes k or K (kilobyte,\n"
           "    1024), M (megabyte), G (gigabyte), T (terabyte), P (petabyte) and E (exabyte)\n"
           "    are supported. 'b' is ignored.\n"
           "  'output_filename' is the destination disk image filename\n"
           "  'output_fmt' is the destination format\n"
           "  'options' is a comma separated list of format specific options in a\n"
           "    name=value format. Use -o help for an overview of the options supported\n"
           "  'snapshot_param' is 'snapshot.name=NAME' or 'snapshot.id=ID' or just NAME\n"
           "  '-c' writes compressed clusters (qcow2 only)\n"
           "  '-p' shows the progress of the command\n"
           "  '-q' suppresses informational messages\n"
           "  '-S' is the minimum run of zeroes convert leaves unallocated (default 4k)\n"
           "\n"
           "Supported formats: raw qcow2\n"
           "\n"
           "See docs/img.md for the differences from qemu-img.\n");
}

int img_usage_sub(const char *sub)
{
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(cmds[i].name, sub)) {
            printf("Usage: vmkit img %s\n\nSee 'vmkit img --help' for the meaning of the "
                   "parameters.\n",
                   cmds[i].synopsis);
            return 0;
        }
    img_help();
    return 0;
}

int img_common_option(int c, const char *sub, char **argv, int err)
{
    switch (c) {
    case 'U': case 'j': return -1;
    case 'h': return img_usage_sub(sub);
    case 'I': img_error("--image-opts is not supported"); return err;
    case ':': img_error("option '%s' requires an argument", argv[optind - 1]); return err;
    default: img_error("invalid option -- '%c'", optopt); return err;
    }
}

int img_main(int argc, char **argv)
{
    log_set_prefix(IMG_PROG);
    if (argc < 1) {
        img_error("Not enough arguments");
        fprintf(stderr, "Try '" IMG_PROG " --help' for more information\n");
        return 1;
    }
    const char *sub = argv[0];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        img_help();
        return 0;
    }
    if (!strcmp(sub, "-V") || !strcmp(sub, "--version")) {
        printf("vmkit img version " VMKIT_VERSION "\n"
               "Compatible with the command line of qemu-img 7.2\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(cmds[i].name, sub)) {
            for (int j = 1; j < argc; j++)
                if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h"))
                    return img_usage_sub(sub);
            return cmds[i].fn(argc, argv);
        }
    img_error("Command not found: %s", sub);
    fprintf(stderr, "Try '" IMG_PROG " --help' for more information\n");
    return 1;
}
