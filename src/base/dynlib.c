/* dlopen/dlsym behind one call: libslirp and libxml2 cost ~3 MiB of RSS at start-up (glib, ICU,
 * libstdc++ come with them) that `vmkit run` without user networking or XML never needs. */
#include "base/dynlib.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

int dynlib_load(const char *soname, const char *package, const char *const *names, void **syms,
                unsigned n, char *why, size_t why_len)
{
    /* dlopen counts references and returns the same handle: loading twice is harmless. */
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why, why_len, "cannot load %s (%s): install the %s package", soname, dlerror(),
                 package);
        return -ENOENT;
    }
    for (unsigned i = 0; i < n; i++) {
        syms[i] = dlsym(h, names[i]);
        if (!syms[i]) {
            snprintf(why, why_len, "%s has no %s: install a newer %s", soname, names[i], package);
            return -ENOENT;
        }
    }
    return 0;
}
