/* The vmkit command: dispatch to its subcommands (run, img). */
#include "base/log.h"
#include "cli/img.h"
#include "cli/net_cmd.h"
#include "cli/run.h"
#include "config/vm_config.h"
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "vmkit %s: virtual machines on Linux\n"
            "\n"
            "usage: vmkit COMMAND [ARGS...]\n"
            "\n"
            "commands:\n"
            "  run [OPTIONS]    boot a virtual machine; takes qemu-system-x86_64 options\n"
            "                   (vmkit run -help lists them). With no -kernel, boots the\n"
            "                   built-in demo guest.\n"
            "  img COMMAND ...  disk image tool, a drop-in for qemu-img (vmkit img --help)\n"
            "  net COMMAND ...  host networking: bridges, TAPs, virtual networks (vmkit net --help)\n"
            "\n"
            "  --help           this text\n"
            "  --version        the version\n",
            VMKIT_VERSION);
}

int main(int argc, char **argv)
{
    log_set_prefix("vmkit");
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-help") || !strcmp(cmd, "-h") ||
        !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-version") || !strcmp(cmd, "version")) {
        printf("vmkit version %s\n", VMKIT_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return run_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "img")) {
        log_set_prefix("vmkit img");
        return img_main(argc - 2, argv + 2);
    }
    if (!strcmp(cmd, "net"))
        return net_main(argc - 2, argv + 2);
    log_error("'%s' is not a vmkit command; see vmkit --help", cmd);
    return 1;
}
