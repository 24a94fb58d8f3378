/* `vmkit run`: parse QEMU-style options and run the VM. */
#include "cli/run.h"
#include "config/vm_config.h"
#include "vm/vm.h"

int run_main(int argc, char **argv)
{
    struct vm_config cfg;
    vm_config_init(&cfg);
    enum vm_config_parse_result r = vm_config_parse_args(&cfg, argc, argv);
    int code;
    if (r == VM_CONFIG_EXIT_OK)
        code = 0;
    else if (r == VM_CONFIG_ERROR)
        code = 1;
    else
        code = vm_run(&cfg);
    vm_config_free(&cfg);
    return code;
}
