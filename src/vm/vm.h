/* One virtual machine process: build the machine from a vm_config, run it, return the exit code. */
#pragma once
#include "config/vm_config.h"

/* Runs until the guest powers off (exit 0), a reset with -no-reboot (0), a quit request from the
 * host (0), or an error (1). Errors are reported on stderr naming what was wrong. */
int vm_run(const struct vm_config *cfg);
