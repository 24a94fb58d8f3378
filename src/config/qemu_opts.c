/* QEMU-style "key=value,..." option string parser shared by every option that takes one. */
#include "config/qemu_opts.h"
#include "base/size.h"
#include "base/util.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void opts_add(struct qemu_opts *o, char *key, char *value)
{
    o->v = xrealloc(o->v, (o->n + 1) * sizeof(*o->v));
    o->v[o->n++] = (struct qemu_opt){.key = key, .value = value, .used = false};
}

/* Copies a value up to the next single ',' (",," is an escaped comma); *pp moves past it. */
static char *read_value(const char **pp)
{
    const char *p = *pp;
    size_t cap = strlen(p) + 1, len = 0;
    char *out = xmalloc(cap);
    while (*p) {
        if (*p == ',') {
            if (p[1] != ',')
                break;
            p++; /* ",," -> "," */
        }
        out[len++] = *p++;
    }
    out[len] = '\0';
    if (*p == ',')
        p++;
    *pp = p;
    return out;
}

int qemu_opts_parse(struct qemu_opts *o, const char *str, const char *implied_key, char *err,
                    size_t errlen)
{
    o->v = NULL;
    o->n = 0;
    if (err && errlen)
        err[0] = '\0';
    if (!str)
        return 0;
    const char *p = str;
    bool first = true;
    while (*p) {
        size_t klen = strcspn(p, "=,");
        bool has_eq = p[klen] == '=';
        if (first && implied_key && !has_eq) {
            opts_add(o, xstrdup(implied_key), read_value(&p));
            first = false;
            continue;
        }
        first = false;
        if (klen == 0) {
            if (err)
                snprintf(err, errlen, "empty option name in '%s'", str);
            qemu_opts_free(o);
            return -EINVAL;
        }
        char *key = xmalloc(klen + 1);
        memcpy(key, p, klen);
        key[klen] = '\0';
        p += klen;
        if (has_eq) {
            p++;
            opts_add(o, key, read_value(&p));
        } else {
            if (*p == ',')
                p++;
            /* QEMU's flag shorthand: "nowait" is wait=off, "server" is server=on. */
            if (klen > 2 && strncmp(key, "no", 2) == 0) {
                memmove(key, key + 2, klen - 1);
                opts_add(o, key, xstrdup("off"));
            } else {
                opts_add(o, key, xstrdup("on"));
            }
        }
    }
    return 0;
}

void qemu_opts_free(struct qemu_opts *o)
{
    for (unsigned i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].value);
    }
    free(o->v);
    o->v = NULL;
    o->n = 0;
}

const char *qemu_opts_get(struct qemu_opts *o, const char *key)
{
    const char *val = NULL;
    for (unsigned i = 0; i < o->n; i++) {
        if (strcmp(o->v[i].key, key) == 0) {
            o->v[i].used = true;
            val = o->v[i].value;
        }
    }
    return val;
}

bool qemu_opts_has(const struct qemu_opts *o, const char *key)
{
    for (unsigned i = 0; i < o->n; i++)
        if (strcmp(o->v[i].key, key) == 0)
            return true;
    return false;
}

int qemu_opts_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true"}, *const no[] = {"off", "no", "false"};
    for (unsigned i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int qemu_opts_get_bool(struct qemu_opts *o, const char *key, bool def, bool *out)
{
    const char *s = qemu_opts_get(o, key);
    if (!s) {
        *out = def;
        return 0;
    }
    return qemu_opts_parse_bool(s, out);
}

int qemu_opts_get_uint(struct qemu_opts *o, const char *key, unsigned *out)
{
    const char *s = qemu_opts_get(o, key);
    if (!s)
        return -ENOENT;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v > UINT_MAX)
        return -ERANGE;
    *out = (unsigned)v;
    return 0;
}

int qemu_opts_get_size(struct qemu_opts *o, const char *key, uint64_t default_unit, uint64_t *out)
{
    const char *s = qemu_opts_get(o, key);
    if (!s)
        return -ENOENT;
    return size_parse(s, default_unit, out);
}

const char *qemu_opts_first_unused(const struct qemu_opts *o)
{
    for (unsigned i = 0; i < o->n; i++)
        if (!o->v[i].used)
            return o->v[i].key;
    return NULL;
}
