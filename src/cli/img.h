/* `vmkit img`: the qemu-img compatible disk image tool (entry point used by main.c). */
#pragma once

/* argv[0] is the subcommand ("create", "info", ...) or an option such as "--help";
 * argc counts the arguments after `vmkit img`. Returns the process exit code. */
int img_main(int argc, char **argv);
