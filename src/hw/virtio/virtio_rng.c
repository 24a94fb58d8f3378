/* virtio-rng-pci: the guest's entropy source, filled from the host's getrandom(). */
#include "hw/virtio/virtio.h"
#include "base/log.h"
#include "base/util.h"
#include "config/qemu_opts.h"
#include "vm/device_models.h"
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <sys/random.h>

struct virtio_rng {
    struct virtio_dev vdev;
};

/* Fill one buffer; 0 or -1 when the host's pool failed (never expected on Linux >= 3.17). */
static int fill(void *p, size_t len)
{
    uint8_t *b = p;
    for (unsigned tries = 0; len && tries < 64; tries++) {
        ssize_t n = getrandom(b, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += n;
        len -= (size_t)n;
    }
    return len ? -1 : 0;
}

static void rng_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct virtq *vq = virtio_queue(vd, q);
    struct virtq_elem *e;
    /* Bounded by the ring: each pop consumes one avail entry and the ring holds at most size. */
    for (unsigned n = 0; n < VIRTQ_MAX_SIZE && (e = virtq_pop(vq)); n++) {
        size_t done = 0;
        for (unsigned i = 0; i < e->nin; i++) {
            if (fill(e->in[i].iov_base, e->in[i].iov_len) < 0) {
                log_once(LOG_WARN, "%s: getrandom failed: %s", vd->name, strerror(errno));
                break;
            }
            done += e->in[i].iov_len;
        }
        virtq_push(vq, e, (uint32_t)MIN(done, UINT32_MAX));
    }
    virtq_notify(vq);
}

static void rng_release(struct virtio_dev *vd)
{
    struct virtio_rng *r = vd->opaque;
    virtio_dev_destroy(vd);
    free(r);
}

static const struct virtio_dev_ops rng_ops = {
    .queue_notify = rng_queue_notify,
    .release = rng_release,
};

int virtio_rng_pci_create(struct vm_device_ctx *ctx, const char *opts)
{
    struct qemu_opts o = {0};
    char err[128];
    if (qemu_opts_parse(&o, opts, NULL, err, sizeof(err)) < 0) {
        log_error("-device virtio-rng-pci,%s: %s", opts, err);
        return -EINVAL;
    }
    struct virtio_rng *r = xzalloc(sizeof(*r));
    virtio_dev_init(&r->vdev, VIRTIO_ID_RNG, &rng_ops, r, 0);
    /* QEMU's rng=, max-bytes= and period= are accepted: the source is always getrandom(). */
    static const char *const known[] = {"rng", "max-bytes", "period", "id", "bus", "addr"};
    int ret = 0;
    for (unsigned i = 0; i < o.n && ret == 0; i++) {
        bool ok = false;
        for (unsigned k = 0; k < ARRAY_SIZE(known); k++)
            ok |= !strcmp(o.v[i].key, known[k]);
        int c = virtio_parse_common_opt(&r->vdev, "virtio-rng-pci", o.v[i].key, o.v[i].value);
        if (c < 0) {
            ret = c;
        } else if (!ok && !c) {
            log_error("-device virtio-rng-pci: unknown property '%s'", o.v[i].key);
            ret = -EINVAL;
        }
    }
    qemu_opts_free(&o);
    if (ret == 0) {
        virtio_add_queue(&r->vdev, 64);
        ret = virtio_pci_create(ctx->m, ctx->pci, &r->vdev, "virtio-rng-pci", -1);
    }
    if (ret < 0) {
        virtio_dev_destroy(&r->vdev);
        free(r);
    }
    return ret;
}
