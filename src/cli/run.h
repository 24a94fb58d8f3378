/* `vmkit run`: a VM from qemu-system-x86_64 style options. */
#pragma once

/* argv holds the options after "run". Returns the process exit code. */
int run_main(int argc, char **argv);
