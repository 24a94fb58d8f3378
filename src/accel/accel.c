/* Accelerator lookup by the names users type (-accel kvm|emu|tcg). */
#include "accel/accel.h"
#include <string.h>

const struct accel_ops *accel_find(const char *name)
{
    if (!strcmp(name, "kvm"))
        return &accel_kvm_ops;
    if (!strcmp(name, "emu") || !strcmp(name, "tcg"))
        return &accel_emu_ops;
    return NULL;
}
