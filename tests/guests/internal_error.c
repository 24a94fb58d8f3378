/* Jumps into the PCI hole, where nothing is mapped: KVM cannot fetch instructions from MMIO and
 * reports an internal error (on hosts with and without hardware virtualization alike). vmkit
 * must print the vCPU's registers and exit non-zero; tests/cli checks that. */
#include "rt/rt.h"

const char guest_name[] = "internal_error";

void guest_main(void)
{
    rt_printf("jumping to unmapped MMIO at 0xdfff0000\n");
    void (*nowhere)(void) = (void (*)(void))0xdfff0000UL;
    nowhere();
    test_fail("came back from MMIO");
}
