/* Accelerator lookup by the names users type (-accel kvm|emu|tcg|auto). */
#include "accel/accel.h"
#include "base/log.h"
#include <stdio.h>
#include <string.h>

/* Whether the host CPU has VT-x or SVM. /dev/kvm alone is not enough: a PVM host has /dev/kvm
 * without them, and runs guest kernel code slower than the software CPU does. */
static bool accel_host_has_hw_virt(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return false;
    char line[16384]; /* the flags line is about 1-2 KiB */
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5))
            continue;
        char *save;
        for (char *tok = strtok_r(line, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
            if (!strcmp(tok, "vmx") || !strcmp(tok, "svm"))
                found = true;
        break; /* every CPU lists the same flags */
    }
    fclose(f);
    return found;
}

const struct accel_ops *accel_pick_auto(void)
{
    char why[256];
    if (!accel_host_has_hw_virt()) {
        log_info("-accel auto: the host CPU has no VT-x/SVM; using emu (the software CPU)");
        return &accel_emu_ops;
    }
    if (accel_kvm_ops.probe(why, sizeof(why)) < 0) {
        log_info("-accel auto: kvm is not usable (%s); using emu (the software CPU)", why);
        return &accel_emu_ops;
    }
    log_info("-accel auto: using kvm");
    return &accel_kvm_ops;
}

const struct accel_ops *accel_find(const char *name)
{
    if (!strcmp(name, "kvm"))
        return &accel_kvm_ops;
    if (!strcmp(name, "emu") || !strcmp(name, "tcg"))
        return &accel_emu_ops;
    if (!strcmp(name, "auto") || !*name)
        return accel_pick_auto();
    return NULL;
}
