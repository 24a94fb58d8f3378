/* qcow2 metadata cache: bounded LRU of L2 tables and refcount blocks, written back in order. */
#include "block/qcow2.h"
#include "base/log.h"
#include "base/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void qcow2_cache_init(struct qcow2_cache *c, unsigned n, size_t esize, bool is_l2)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->esize = esize;
    c->is_l2 = is_l2;
    c->off = xzalloc(sizeof(uint64_t) * n);
    c->data = xzalloc(sizeof(uint8_t *) * n);
    c->dirty = xzalloc(sizeof(bool) * n);
    c->lru = xzalloc(sizeof(uint64_t) * n);
    for (unsigned i = 0; i < n; i++) {
        void *p = NULL;
        /* Aligned, so cache=none writes them without bouncing. */
        if (posix_memalign(&p, 4096, esize))
            die("out of memory for the qcow2 metadata cache");
        c->data[i] = p;
    }
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    for (unsigned i = 0; c->data && i < c->n; i++)
        free(c->data[i]);
    free(c->off);
    free(c->data);
    free(c->dirty);
    free(c->lru);
    memset(c, 0, sizeof(*c));
}

int qcow2_sync(struct qcow2 *s)
{
    return blk_file_flush(&s->f);
}

static int write_slot(struct qcow2 *s, struct qcow2_cache *c, unsigned i)
{
    if (!c->dirty[i])
        return 0;
    if (c->is_l2) {
        /* An L2 entry must never reach the disk before the refcount of what it points to. */
        int r = qcow2_cache_flush(s, &s->rbc);
        if (r < 0)
            return r;
    }
    int r = blk_file_pwrite(&s->f, c->off[i], c->data[i], c->esize);
    if (r < 0) {
        log_error("%s: cannot write qcow2 metadata at 0x%llx: %s", s->b->filename,
                  (unsigned long long)c->off[i], strerror(-r));
        return r;
    }
    c->dirty[i] = false;
    return 0;
}

int qcow2_cache_flush(struct qcow2 *s, struct qcow2_cache *c)
{
    bool any = false;
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->dirty[i])
            continue;
        int r = write_slot(s, c, i);
        if (r < 0)
            return r;
        any = true;
    }
    /* Refcount blocks are stable before anything that depends on them is written. */
    if (any && !c->is_l2)
        return qcow2_sync(s);
    return 0;
}

int qcow2_flush_all(struct qcow2 *s)
{
    int r = qcow2_cache_flush(s, &s->rbc);
    if (r == 0)
        r = qcow2_cache_flush(s, &s->l2c);
    if (r == 0)
        r = qcow2_sync(s);
    return r;
}

uint8_t *qcow2_cache_peek(struct qcow2_cache *c, uint64_t off)
{
    for (unsigned i = 0; off && i < c->n; i++)
        if (c->off[i] == off) {
            c->lru[i] = ++c->tick;
            return c->data[i];
        }
    return NULL;
}

int qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t off, bool read,
                    uint8_t **data, unsigned *slot)
{
    if (off == 0 || off % s->cluster_size) {
        log_once(LOG_ERROR, "%s: corrupt qcow2 image: metadata table at unaligned offset 0x%llx",
                 s->b->filename, (unsigned long long)off);
        return -EIO;
    }
    unsigned victim = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->off[i] == off) {
            c->lru[i] = ++c->tick;
            *data = c->data[i];
            if (slot)
                *slot = i;
            return 0;
        }
        /* Prefer an empty slot, else the least recently used one. */
        if (c->off[victim] != 0 && (c->off[i] == 0 || c->lru[i] < c->lru[victim]))
            victim = i;
    }
    int r = write_slot(s, c, victim);
    if (r < 0)
        return r;
    c->off[victim] = 0;
    if (read) {
        r = blk_file_pread(&s->f, off, c->data[victim], c->esize);
        if (r < 0) {
            log_error("%s: cannot read qcow2 metadata at 0x%llx: %s", s->b->filename,
                      (unsigned long long)off, strerror(-r));
            return r;
        }
    } else {
        memset(c->data[victim], 0, c->esize);
    }
    c->off[victim] = off;
    c->lru[victim] = ++c->tick;
    *data = c->data[victim];
    if (slot)
        *slot = victim;
    return 0;
}

void qcow2_cache_dirty(struct qcow2_cache *c, unsigned slot)
{
    c->dirty[slot] = true;
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->off[i] == off) {
            c->off[i] = 0;
            c->dirty[i] = false;
        }
}

void qcow2_cache_drop_all(struct qcow2_cache *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        c->off[i] = 0;
        c->dirty[i] = false;
    }
}
