/* QEMU's "key=value,key2=value2" option strings (-m, -smp, -name, -serial, later -drive/-netdev/-device). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qemu_opt {
    char *key;
    char *value; /* never NULL; "" for "key=" */
    bool used;   /* set by the getters, so callers can reject keys nobody asked for */
};

struct qemu_opts {
    struct qemu_opt *v;
    unsigned n;
};

/* Parses str into o (which must be zeroed or freed first). Rules, as QEMU's:
 * - elements are separated by ','; ",," inside a value is one literal ','
 * - when implied_key is not NULL and the first element has no '=', it is the value of
 *   implied_key ("2G" with implied "size" means size=2G)
 * - any other element without '=' is a flag: "server" means server=on, and a name that
 *   starts with "no" means the rest is off ("nowait" means wait=off)
 * - a key given twice keeps both; the getters return the last one (last wins)
 * - an empty string gives no options; a trailing ',' is ignored
 * Returns 0, or -EINVAL with a message (not naming the option: the caller does) in err. */
int qemu_opts_parse(struct qemu_opts *o, const char *str, const char *implied_key, char *err,
                    size_t errlen);
void qemu_opts_free(struct qemu_opts *o);

/* The last value of key, or NULL; marks every element with that key used. */
const char *qemu_opts_get(struct qemu_opts *o, const char *key);
bool qemu_opts_has(const struct qemu_opts *o, const char *key);
/* QEMU's booleans: on/off, yes/no, true/false (case-insensitive). 0 (with *out = def when key
 * is absent), or -EINVAL when the value is something else. */
int qemu_opts_get_bool(struct qemu_opts *o, const char *key, bool def, bool *out);
/* A decimal unsigned number that fits in unsigned; 0, -ENOENT when absent (out untouched),
 * -EINVAL when malformed, -ERANGE when too big. */
int qemu_opts_get_uint(struct qemu_opts *o, const char *key, unsigned *out);
/* A size with QEMU's suffixes; a bare number is in default_unit. 0, -ENOENT, -EINVAL, -ERANGE. */
int qemu_opts_get_size(struct qemu_opts *o, const char *key, uint64_t default_unit, uint64_t *out);
/* The first key no getter asked for, or NULL: lets callers say "option 'foo' is not known". */
const char *qemu_opts_first_unused(const struct qemu_opts *o);

/* Parses a boolean word as QEMU does: 0 or -EINVAL. */
int qemu_opts_parse_bool(const char *s, bool *out);
