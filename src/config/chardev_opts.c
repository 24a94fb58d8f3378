/* -chardev parsing: turns QEMU's backend options into chardev_open() specs, keyed by id. */
#include "config/chardev_opts.h"
#include "base/log.h"
#include "base/util.h"
#include "config/qemu_opts.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chardev_entry {
    const struct vm_config *owner;
    char *id;
    char *spec;
    bool claimed;
};

/* vm_config has no field for these (config/vm_config.h is not this file's), so the list lives
 * here, tagged with the config it belongs to; a process parses one VM's command line. */
static struct chardev_entry *entries;
static unsigned nentries;

static struct chardev_entry *find(const struct vm_config *c, const char *id)
{
    for (unsigned i = 0; i < nentries; i++)
        if (entries[i].owner == c && !strcmp(entries[i].id, id))
            return &entries[i];
    return NULL;
}

/* "unix:" + path with ',' doubled, as chardev_open's parser wants. */
static char *unix_spec(const char *path, bool server, bool wait)
{
    size_t n = strlen(path);
    char *s = xmalloc(2 * n + 32);
    size_t k = (size_t)sprintf(s, "unix:");
    for (size_t i = 0; i < n; i++) {
        s[k++] = path[i];
        if (path[i] == ',')
            s[k++] = ',';
    }
    s[k] = 0;
    if (server)
        strcat(s, ",server");
    if (server && !wait)
        strcat(s, ",nowait");
    return s;
}

int vm_config_add_chardev(struct vm_config *c, const char *arg)
{
    struct qemu_opts o = {0};
    char err[256];
    if (qemu_opts_parse(&o, arg, "backend", err, sizeof(err)) < 0) {
        log_error("-chardev %s: %s", arg, err);
        return -EINVAL;
    }
    int ret = -EINVAL;
    char *spec = NULL;
    const char *backend = qemu_opts_get(&o, "backend");
    const char *id = qemu_opts_get(&o, "id");
    if (!backend || !*backend) {
        log_error("-chardev %s: the backend is missing; use -chardev stdio|pty|null|file|socket,id=ID",
                  arg);
        goto out;
    }
    if (!id || !*id) {
        log_error("-chardev %s: id= is missing; devices refer to the backend by it", arg);
        goto out;
    }
    if (find(c, id)) {
        log_error("-chardev %s: duplicate chardev id '%s'", arg, id);
        goto out;
    }
    /* Accepted and ignored, as they only change logging or multiplexing we do not have. */
    qemu_opts_get(&o, "logfile");
    qemu_opts_get(&o, "logappend");
    bool b;
    if (!strcmp(backend, "stdio")) {
        if (qemu_opts_get_bool(&o, "signal", true, &b) < 0) {
            log_error("-chardev %s: signal takes on or off", arg);
            goto out;
        }
        spec = xstrdup("stdio");
    } else if (!strcmp(backend, "pty")) {
        spec = xstrdup("pty");
    } else if (!strcmp(backend, "null")) {
        spec = xstrdup("null");
    } else if (!strcmp(backend, "file")) {
        const char *path = qemu_opts_get(&o, "path");
        if (!path || !*path) {
            log_error("-chardev %s: path= is missing; use -chardev file,id=ID,path=FILE", arg);
            goto out;
        }
        spec = xmalloc(strlen(path) + 6);
        sprintf(spec, "file:%s", path);
    } else if (!strcmp(backend, "socket")) {
        const char *path = qemu_opts_get(&o, "path");
        bool server, wait;
        if (qemu_opts_has(&o, "host") || qemu_opts_has(&o, "port")) {
            log_error("-chardev %s: TCP sockets are not supported yet; use path=SOCKET (unix)", arg);
            goto out;
        }
        if (!path || !*path) {
            log_error("-chardev %s: path= is missing; use -chardev socket,id=ID,path=SOCKET,server=on,wait=off",
                      arg);
            goto out;
        }
        if (qemu_opts_get_bool(&o, "server", false, &server) < 0 ||
            qemu_opts_get_bool(&o, "wait", true, &wait) < 0) {
            log_error("-chardev %s: server and wait take on or off", arg);
            goto out;
        }
        spec = unix_spec(path, server, wait);
    } else {
        log_error("-chardev %s: backend '%s' is not supported; use stdio, pty, null, file or socket",
                  arg, backend);
        goto out;
    }
    const char *unused = qemu_opts_first_unused(&o);
    if (unused) {
        log_error("-chardev %s: unknown parameter '%s' for backend %s", arg, unused, backend);
        free(spec);
        goto out;
    }
    entries = xrealloc(entries, sizeof(*entries) * (nentries + 1));
    entries[nentries++] = (struct chardev_entry){c, xstrdup(id), spec, false};
    ret = 0;
out:
    qemu_opts_free(&o);
    return ret;
}

const char *vm_config_chardev_spec(const struct vm_config *c, const char *id)
{
    struct chardev_entry *e = find(c, id);
    return e ? e->spec : NULL;
}

bool vm_config_chardev_claim(const struct vm_config *c, const char *id)
{
    struct chardev_entry *e = find(c, id);
    if (!e || e->claimed)
        return false;
    e->claimed = true;
    return true;
}

void vm_config_chardev_free(struct vm_config *c)
{
    unsigned k = 0;
    for (unsigned i = 0; i < nentries; i++) {
        if (entries[i].owner == c) {
            free(entries[i].id);
            free(entries[i].spec);
        } else {
            entries[k++] = entries[i];
        }
    }
    nentries = k;
    if (!nentries) {
        free(entries);
        entries = NULL;
    }
}
