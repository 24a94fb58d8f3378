/* Size parsing and formatting with QEMU's suffixes. */
#include "base/size.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int size_parse(const char *s, uint64_t default_unit, uint64_t *out)
{
    if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v))
        return -EINVAL;
    uint64_t unit = default_unit;
    if (*end) {
        static const char suffixes[] = "BKMGTPE";
        int i;
        for (i = 0; suffixes[i]; i++)
            if (toupper((unsigned char)*end) == suffixes[i])
                break;
        if (!suffixes[i])
            return -EINVAL;
        unit = 1ULL << (10 * i);
        end++;
        /* Accept "2GiB" and "2GB" spellings too, as people type them. */
        if (i > 0 && (*end == 'i' || *end == 'I'))
            end++;
        if (i > 0 && (*end == 'b' || *end == 'B'))
            end++;
        if (*end)
            return -EINVAL;
    }
    double bytes = v * (double)unit;
    if (bytes >= 18446744073709551616.0)
        return -ERANGE;
    if (bytes != (double)(uint64_t)bytes && unit == 1)
        return -EINVAL; /* fractional bytes */
    *out = (uint64_t)bytes;
    return 0;
}

void size_format(uint64_t bytes, char *buf, unsigned buflen)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    double v = (double)bytes;
    while (v >= 1024 && i < 6) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, buflen, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, buflen, "%.3g %s", v, units[i]);
}
