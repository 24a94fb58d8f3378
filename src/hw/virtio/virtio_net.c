/* virtio-net device (virtio 1.x section 5.1): rx/tx queues on a net/ backend, mergeable rx buffers,
 * offloads passed through to a vnet-header TAP, the control queue (rx mode, MAC filter, announce,
 * multiqueue). */
#include "hw/virtio/virtio_net.h"
#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "config/qemu_opts.h"
#include "config/vm_config.h"
#include "hw/virtio/virtio.h"
#include "machine/machine.h"
#include "net/net.h"
#include "vm/device_models.h"
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_CTRL_RX 18
#define VIRTIO_NET_F_CTRL_VLAN 19
#define VIRTIO_NET_F_CTRL_RX_EXTRA 20
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_F_MQ 22
#define VIRTIO_NET_F_CTRL_MAC_ADDR 23

#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN 0x80

#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET 0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET 1
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define VIRTIO_NET_CTRL_MQ 4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS 5
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET 0

/* virtio 1.x: the header always carries num_buffers. */
#define VNET_HDR_LEN 12
/* The largest frame the spec lets a device accept: 65535 bytes of IP plus Ethernet and VLAN. */
#define VNET_MAX_FRAME 65550
#define VNET_MIN_FRAME 14
#define VNET_QUEUE_SIZE 256
#define VNET_CTRL_QUEUE_SIZE 64
/* Frames sent per tx kick before yielding to the event loop, so one guest cannot starve it. */
#define VNET_TX_BURST 256
#define VNET_MAC_TABLE 64
/* Largest control command we read; a full MAC table is 8 + 64 * 6 bytes. */
#define VNET_CTRL_MAX 1024
/* rx elements a frame may span (mergeable buffers) and that we keep popped between frames. */
#define VNET_RX_STASH 64
#define VNET_MAX_PAIRS ((VIRTIO_MAX_QUEUES - 1) / 2)

struct virtio_net_hdr {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
} __attribute__((packed));

struct virtio_net_config {
    uint8_t mac[6];
    uint16_t status;
    uint16_t max_virtqueue_pairs;
    uint16_t mtu;
} __attribute__((packed));

struct vnet_rxq {
    struct virtq_elem *stash[VNET_RX_STASH]; /* popped rx buffers not used yet, in ring order */
    unsigned nstash;
    bool blocked; /* the backend holds a frame for us until net_backend_rx_ready */
};

struct vnet_dev {
    struct virtio_dev vdev;
    char name[48];
    struct net_backend *nb;
    uint32_t caps;     /* backend offload capabilities */
    bool vnet_hdr;     /* frames to/from the backend carry a 12-byte virtio-net header */
    unsigned max_pairs, cur_pairs, ctrl_q;
    uint8_t mac[6];
    uint8_t conf_mac[6]; /* mac= or the default; a reset undoes CTRL_MAC_ADDR_SET */
    bool link_up;
    uint16_t status;

    bool promisc, allmulti, alluni, nomulti, nouni, nobcast;
    uint8_t mac_table[VNET_MAC_TABLE][6];
    unsigned uni_entries, multi_entries;
    bool uni_overflow, multi_overflow;

    struct vnet_rxq rxq[VNET_MAX_PAIRS];
    bool tx_blocked[VNET_MAX_PAIRS];
    bool tx_scheduled[VNET_MAX_PAIRS];
    uint64_t tx_dropped, rx_dropped; /* for "info network" once the monitor asks */
};

struct vnet_tx_resume {
    struct vnet_dev *n;
    unsigned pair;
};

static unsigned vnet_count;

static bool vnet_has(const struct vnet_dev *n, unsigned bit)
{
    return virtio_has_feature(&n->vdev, bit);
}

static void vnet_update_config(struct vnet_dev *n)
{
    struct virtio_net_config *c = (struct virtio_net_config *)n->vdev.config;
    memcpy(c->mac, n->mac, 6);
    c->status = htole16(n->status);
    c->max_virtqueue_pairs = htole16((uint16_t)n->max_pairs);
    c->mtu = 0;
}

/* ---- receive ---- */

static bool vnet_mac_in_table(const struct vnet_dev *n, const uint8_t *mac, unsigned first,
                              unsigned count)
{
    for (unsigned i = first; i < first + count; i++)
        if (!memcmp(n->mac_table[i], mac, 6))
            return true;
    return false;
}

/* The receive filter the guest programmed through CTRL_RX and CTRL_MAC. */
static bool vnet_rx_accept(const struct vnet_dev *n, const uint8_t *dst)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (n->promisc)
        return true;
    if (!memcmp(dst, bcast, 6))
        return !n->nobcast;
    if (dst[0] & 1) {
        if (n->nomulti)
            return false;
        if (n->allmulti || n->multi_overflow)
            return true;
        return vnet_mac_in_table(n, dst, n->uni_entries, n->multi_entries);
    }
    if (n->nouni)
        return false;
    if (n->alluni || n->uni_overflow || !memcmp(dst, n->mac, 6))
        return true;
    return vnet_mac_in_table(n, dst, 0, n->uni_entries);
}

static void vnet_stash_drop(struct vnet_rxq *rq)
{
    for (unsigned i = 0; i < rq->nstash; i++)
        virtq_elem_free(rq->stash[i]);
    rq->nstash = 0;
}

/* Make sure the stash holds at least want elements (or as many as the guest has posted).
 * Returns false when the guest broke the protocol (device now NEEDS_RESET). */
static bool vnet_stash_fill(struct vnet_dev *n, unsigned pair, unsigned want)
{
    struct vnet_rxq *rq = &n->rxq[pair];
    struct virtq *vq = virtio_queue(&n->vdev, 2 * pair);
    while (rq->nstash < want && rq->nstash < VNET_RX_STASH) {
        struct virtq_elem *e = virtq_pop(vq);
        if (!e)
            return !n->vdev.broken;
        if (e->in_len < VNET_HDR_LEN || e->nout) {
            virtio_error(&n->vdev, "rx buffer of %zu writable bytes (%u readable parts): the "
                         "header needs %u writable bytes", e->in_len, e->nout, VNET_HDR_LEN);
            virtq_elem_free(e);
            return false;
        }
        rq->stash[rq->nstash++] = e;
    }
    return true;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t t = 0;
    for (int i = 0; i < iovcnt; i++)
        t += iov[i].iov_len;
    return t;
}

/* Copy src bytes [off, off+len) into dst at dst_off. */
static void iov_copy(const struct iovec *dst, unsigned ndst, size_t dst_off, const struct iovec *src,
                     int nsrc, size_t off, size_t len)
{
    for (int i = 0; i < nsrc && len; i++) {
        if (off >= src[i].iov_len) {
            off -= src[i].iov_len;
            continue;
        }
        size_t chunk = MIN(src[i].iov_len - off, len);
        iov_from_buf(dst, ndst, dst_off, (const uint8_t *)src[i].iov_base + off, chunk);
        dst_off += chunk;
        len -= chunk;
        off = 0;
    }
}

static ssize_t vnet_receive(void *opaque, unsigned q, const struct iovec *iov, int iovcnt)
{
    struct vnet_dev *n = opaque;
    size_t total = iov_total(iov, iovcnt);
    size_t bhdr = n->vnet_hdr ? VNET_HDR_LEN : 0;
    if (total < bhdr + VNET_MIN_FRAME || total - bhdr > VNET_MAX_FRAME) {
        n->rx_dropped++;
        return -EINVAL;
    }
    if (!virtio_dev_ready(&n->vdev) || !n->link_up)
        return (ssize_t)total; /* nobody to give it to: drop, keep the backend flowing */
    unsigned pair = n->cur_pairs ? q % n->cur_pairs : 0;
    struct virtq *vq = virtio_queue(&n->vdev, 2 * pair);
    if (!virtq_ready(vq))
        return (ssize_t)total;

    uint8_t dst[6];
    size_t frame_len = total - bhdr;
    struct iovec hiov = {dst, 6};
    iov_copy(&hiov, 1, 0, iov, iovcnt, bhdr, 6);
    if (!vnet_rx_accept(n, dst))
        return (ssize_t)total;

    struct virtio_net_hdr hdr = {0};
    if (bhdr) {
        struct iovec h = {&hdr, sizeof(hdr)};
        iov_copy(&h, 1, 0, iov, iovcnt, 0, sizeof(hdr));
        /* The host may only hand us what the guest accepted (TUNSETOFFLOAD). Spec 5.1.6.4.1:
         * without GUEST_CSUM the flags must be zero; a GSO frame the guest cannot take is
         * dropped rather than passed on. */
        if (!vnet_has(n, VIRTIO_NET_F_GUEST_CSUM))
            hdr.flags = 0;
        uint8_t gso = hdr.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
        bool gso_ok = gso == VIRTIO_NET_HDR_GSO_NONE ||
                      (gso == VIRTIO_NET_HDR_GSO_TCPV4 && vnet_has(n, VIRTIO_NET_F_GUEST_TSO4)) ||
                      (gso == VIRTIO_NET_HDR_GSO_TCPV6 && vnet_has(n, VIRTIO_NET_F_GUEST_TSO6)) ||
                      (gso == VIRTIO_NET_HDR_GSO_UDP && vnet_has(n, VIRTIO_NET_F_GUEST_UFO));
        if (!gso_ok) {
            n->rx_dropped++;
            return (ssize_t)total;
        }
        hdr.num_buffers = 0;
    }

    struct vnet_rxq *rq = &n->rxq[pair];
    bool mrg = vnet_has(n, VIRTIO_NET_F_MRG_RXBUF);
    size_t need = VNET_HDR_LEN + frame_len;
    /* Pop until the stash covers the frame (or holds one element without mergeable buffers). */
    unsigned nbufs = 0;
    size_t room = 0;
    bool rechecked = false;
    for (;;) {
        while (nbufs < rq->nstash && room < need && (mrg || nbufs == 0))
            room += rq->stash[nbufs++]->in_len;
        if (room >= need || (!mrg && nbufs == 1))
            break;
        if (rq->nstash == VNET_RX_STASH) {
            log_once(LOG_WARN, "%s: the guest's rx buffers are too small for a %zu-byte frame; "
                     "dropping it", n->name, frame_len);
            n->rx_dropped++;
            return (ssize_t)total;
        }
        unsigned before = rq->nstash;
        if (!vnet_stash_fill(n, pair, rq->nstash + 1))
            return (ssize_t)total;
        if (rq->nstash == before) {
            /* Out of buffers: hold the frame, ask the guest to kick when it posts more. */
            virtq_set_notification(vq, true);
            if (!rechecked && !virtq_empty(vq)) {
                rechecked = true;
                continue;
            }
            rq->blocked = true;
            return 0;
        }
    }
    if (room < need) {
        /* Without mergeable buffers one buffer must hold it all: drop, keep the buffer. */
        log_once(LOG_WARN, "%s: rx buffer of %zu bytes cannot hold a %zu-byte frame; dropping "
                 "it (the guest driver should post bigger buffers)", n->name, room, frame_len);
        n->rx_dropped++;
        return (ssize_t)total;
    }

    hdr.num_buffers = htole16((uint16_t)nbufs);
    size_t off = 0; /* bytes of (guest header + frame) written */
    for (unsigned i = 0; i < nbufs; i++) {
        struct virtq_elem *e = rq->stash[i];
        size_t len = MIN(e->in_len, need - off);
        size_t done = 0;
        if (off < VNET_HDR_LEN) {
            size_t h = MIN(len, VNET_HDR_LEN - off);
            iov_from_buf(e->in, e->nin, 0, (uint8_t *)&hdr + off, h);
            done = h;
        }
        if (len > done)
            iov_copy(e->in, e->nin, done, iov, iovcnt, bhdr + off + done - VNET_HDR_LEN, len - done);
        off += len;
        virtq_push(vq, e, (uint32_t)len);
    }
    memmove(rq->stash, rq->stash + nbufs, (rq->nstash - nbufs) * sizeof(rq->stash[0]));
    rq->nstash -= nbufs;
    virtq_notify(vq);
    return (ssize_t)total;
}

/* ---- transmit ---- */

/* Is the guest's header one the backend may be given? Only negotiated offloads, and offsets
 * inside the frame. */
static bool vnet_tx_hdr_ok(const struct vnet_dev *n, const struct virtio_net_hdr *h, size_t frame_len)
{
    if (h->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
        return false;
    if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        if (!vnet_has(n, VIRTIO_NET_F_CSUM))
            return false;
        if ((size_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2 > frame_len)
            return false;
    }
    uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
    if (gso == VIRTIO_NET_HDR_GSO_NONE)
        return !(h->gso_type & VIRTIO_NET_HDR_GSO_ECN);
    if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !vnet_has(n, VIRTIO_NET_F_HOST_ECN))
        return false;
    if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || !h->gso_size ||
        le16toh(h->hdr_len) > frame_len)
        return false;
    switch (gso) {
    case VIRTIO_NET_HDR_GSO_TCPV4: return vnet_has(n, VIRTIO_NET_F_HOST_TSO4);
    case VIRTIO_NET_HDR_GSO_TCPV6: return vnet_has(n, VIRTIO_NET_F_HOST_TSO6);
    case VIRTIO_NET_HDR_GSO_UDP: return vnet_has(n, VIRTIO_NET_F_HOST_UFO);
    default: return false;
    }
}

/* Send one tx element; -EAGAIN when the backend is full (the element is then not consumed). */
static int vnet_tx_one(struct vnet_dev *n, unsigned pair, struct virtq_elem *e)
{
    if (e->out_len < VNET_HDR_LEN + VNET_MIN_FRAME || e->out_len > VNET_HDR_LEN + VNET_MAX_FRAME) {
        log_once(LOG_WARN, "%s: dropping a tx frame of %zu bytes (valid: %u..%u with the header)",
                 n->name, e->out_len, VNET_HDR_LEN + VNET_MIN_FRAME, VNET_HDR_LEN + VNET_MAX_FRAME);
        n->tx_dropped++;
        return 0;
    }
    struct virtio_net_hdr h;
    iov_to_buf(e->out, e->nout, 0, &h, sizeof(h));
    if (!vnet_tx_hdr_ok(n, &h, e->out_len - VNET_HDR_LEN)) {
        log_once(LOG_WARN, "%s: dropping a tx frame whose virtio-net header asks for offloads "
                 "that were not negotiated or points outside the frame (flags %#x, gso %#x)",
                 n->name, h.flags, h.gso_type);
        n->tx_dropped++;
        return 0;
    }
    if (!n->nb || !n->link_up)
        return 0;
    /* The backend gets the guest's buffers directly, minus the header when it takes bare frames. */
    struct iovec stack[16];
    struct iovec *iov = e->nout + 1 <= ARRAY_SIZE(stack) ? stack : xmalloc((e->nout + 1) * sizeof(*iov));
    int cnt = 0;
    size_t skip = n->vnet_hdr ? 0 : VNET_HDR_LEN;
    if (n->vnet_hdr) {
        /* A copy of the header with num_buffers cleared: the guest may change its copy under us. */
        h.num_buffers = 0;
        iov[cnt++] = (struct iovec){&h, sizeof(h)};
        skip = VNET_HDR_LEN;
    }
    for (unsigned i = 0; i < e->nout; i++) {
        size_t l = e->out[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        iov[cnt++] = (struct iovec){(uint8_t *)e->out[i].iov_base + skip, l - skip};
        skip = 0;
    }
    ssize_t r = net_backend_send(n->nb, pair, iov, cnt);
    if (iov != stack)
        free(iov);
    if (r == -EAGAIN)
        return -EAGAIN;
    if (r < 0)
        n->tx_dropped++;
    return 0;
}

static void vnet_tx_resume_cb(void *opaque);

static void vnet_tx(struct vnet_dev *n, unsigned pair)
{
    struct virtq *vq = virtio_queue(&n->vdev, 2 * pair + 1);
    if (n->tx_blocked[pair] || !virtq_ready(vq))
        return;
    unsigned sent = 0;
    struct virtq_elem *e;
    while ((e = virtq_pop(vq))) {
        if (vnet_tx_one(n, pair, e) == -EAGAIN) {
            virtq_unpop(vq, e);
            n->tx_blocked[pair] = true;
            break;
        }
        virtq_push(vq, e, 0);
        if (++sent >= VNET_TX_BURST) {
            if (!n->tx_scheduled[pair] && n->vdev.m && n->vdev.m->ev) {
                struct vnet_tx_resume *r = xmalloc(sizeof(*r));
                *r = (struct vnet_tx_resume){n, pair};
                n->tx_scheduled[pair] = true;
                evloop_call(n->vdev.m->ev, vnet_tx_resume_cb, r);
            }
            break;
        }
    }
    virtq_notify(vq);
}

static void vnet_tx_resume_cb(void *opaque)
{
    struct vnet_tx_resume *r = opaque;
    struct vnet_dev *n = r->n;
    unsigned pair = r->pair;
    free(r);
    n->tx_scheduled[pair] = false;
    vnet_tx(n, pair);
}

static void vnet_tx_ready(void *opaque, unsigned q)
{
    struct vnet_dev *n = opaque;
    for (unsigned p = 0; p < n->max_pairs; p++) {
        if (q < n->max_pairs && p != q)
            continue;
        n->tx_blocked[p] = false;
        vnet_tx(n, p);
    }
}

static void vnet_link_changed(void *opaque, bool up)
{
    struct vnet_dev *n = opaque;
    n->link_up = up;
    uint16_t old = n->status;
    n->status = (uint16_t)((n->status & ~VIRTIO_NET_S_LINK_UP) | (up ? VIRTIO_NET_S_LINK_UP : 0));
    /* A guest that can announce itself does so when the link comes back (as after migration). */
    if (up && vnet_has(n, VIRTIO_NET_F_GUEST_ANNOUNCE) && vnet_has(n, VIRTIO_NET_F_CTRL_VQ))
        n->status |= VIRTIO_NET_S_ANNOUNCE;
    if (n->status != old) {
        vnet_update_config(n);
        virtio_notify_config(&n->vdev);
    }
}

/* ---- control queue ---- */

static uint8_t vnet_ctrl_rx(struct vnet_dev *n, uint8_t cmd, const uint8_t *data, size_t len)
{
    if (len != 1 || !vnet_has(n, VIRTIO_NET_F_CTRL_RX))
        return VIRTIO_NET_ERR;
    bool on = data[0] != 0;
    bool *flags[] = {&n->promisc, &n->allmulti, &n->alluni, &n->nomulti, &n->nouni, &n->nobcast};
    if (cmd >= ARRAY_SIZE(flags) || (cmd >= 2 && !vnet_has(n, VIRTIO_NET_F_CTRL_RX_EXTRA)))
        return VIRTIO_NET_ERR;
    *flags[cmd] = on;
    return VIRTIO_NET_OK;
}

static uint8_t vnet_ctrl_mac(struct vnet_dev *n, uint8_t cmd, const uint8_t *data, size_t len)
{
    if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
        if (len != 6 || !vnet_has(n, VIRTIO_NET_F_CTRL_MAC_ADDR))
            return VIRTIO_NET_ERR;
        memcpy(n->mac, data, 6);
        vnet_update_config(n);
        return VIRTIO_NET_OK;
    }
    if (cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET || !vnet_has(n, VIRTIO_NET_F_CTRL_RX))
        return VIRTIO_NET_ERR;
    /* Two tables back to back: le32 entries, then entries * 6 bytes; unicast first. */
    uint32_t cnt[2];
    size_t pos[2];
    size_t off = 0;
    for (int t = 0; t < 2; t++) {
        if (len - off < 4)
            return VIRTIO_NET_ERR;
        memcpy(&cnt[t], data + off, 4);
        cnt[t] = le32toh(cnt[t]);
        off += 4;
        if (cnt[t] > (len - off) / 6)
            return VIRTIO_NET_ERR;
        pos[t] = off;
        off += (size_t)cnt[t] * 6;
    }
    if (off != len)
        return VIRTIO_NET_ERR;
    n->uni_entries = n->multi_entries = 0;
    n->uni_overflow = cnt[0] > VNET_MAC_TABLE;
    if (!n->uni_overflow) {
        memcpy(n->mac_table, data + pos[0], cnt[0] * 6);
        n->uni_entries = cnt[0];
    }
    n->multi_overflow = cnt[1] > VNET_MAC_TABLE - n->uni_entries;
    if (!n->multi_overflow) {
        memcpy(n->mac_table[n->uni_entries], data + pos[1], cnt[1] * 6);
        n->multi_entries = cnt[1];
    }
    return VIRTIO_NET_OK;
}

static uint32_t vnet_guest_offloads(uint64_t f)
{
    uint32_t o = 0;
    if (f & VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_CSUM))
        o |= NET_OFFLOAD_CSUM;
    if (f & VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO4))
        o |= NET_OFFLOAD_TSO4;
    if (f & VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO6))
        o |= NET_OFFLOAD_TSO6;
    if (f & VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_ECN))
        o |= NET_OFFLOAD_TSO_ECN;
    if (f & VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_UFO))
        o |= NET_OFFLOAD_UFO;
    /* The kernel refuses TSO without checksum offload. */
    if (!(o & NET_OFFLOAD_CSUM))
        o = 0;
    return o;
}

static void vnet_apply_offloads(struct vnet_dev *n, uint64_t features)
{
    if (!n->nb || !n->vnet_hdr)
        return;
    int r = net_backend_set_offload(n->nb, vnet_guest_offloads(features) & n->caps);
    if (r < 0)
        log_once(LOG_WARN, "%s: cannot set the backend's offloads: %s", n->name, strerror(-r));
}

static uint8_t vnet_ctrl_cmd(struct vnet_dev *n, uint8_t cls, uint8_t cmd, const uint8_t *data,
                             size_t len)
{
    switch (cls) {
    case VIRTIO_NET_CTRL_RX:
        return vnet_ctrl_rx(n, cmd, data, len);
    case VIRTIO_NET_CTRL_MAC:
        return vnet_ctrl_mac(n, cmd, data, len);
    case VIRTIO_NET_CTRL_ANNOUNCE:
        if (cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK || !vnet_has(n, VIRTIO_NET_F_GUEST_ANNOUNCE))
            return VIRTIO_NET_ERR;
        n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
        vnet_update_config(n);
        return VIRTIO_NET_OK;
    case VIRTIO_NET_CTRL_MQ: {
        uint16_t pairs;
        if (cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || len != 2 || !vnet_has(n, VIRTIO_NET_F_MQ))
            return VIRTIO_NET_ERR;
        memcpy(&pairs, data, 2);
        pairs = le16toh(pairs);
        if (pairs < 1 || pairs > n->max_pairs)
            return VIRTIO_NET_ERR;
        n->cur_pairs = pairs;
        return VIRTIO_NET_OK;
    }
    case VIRTIO_NET_CTRL_GUEST_OFFLOADS: {
        uint64_t f;
        if (cmd != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET || len != 8 ||
            !vnet_has(n, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS))
            return VIRTIO_NET_ERR;
        memcpy(&f, data, 8);
        f = le64toh(f);
        if (f & ~n->vdev.guest_features)
            return VIRTIO_NET_ERR;
        vnet_apply_offloads(n, f);
        return VIRTIO_NET_OK;
    }
    default:
        return VIRTIO_NET_ERR;
    }
}

/* Spec 5.1.2: the control queue follows the last pair the guest can use: 2 * max pairs with MQ,
 * else 2 (so without MQ the guest's control queue is our second pair's rx queue slot). */
static unsigned vnet_ctrl_index(const struct vnet_dev *n)
{
    return vnet_has(n, VIRTIO_NET_F_MQ) ? n->ctrl_q : 2;
}

static void vnet_ctrl(struct vnet_dev *n)
{
    struct virtq *vq = virtio_queue(&n->vdev, vnet_ctrl_index(n));
    struct virtq_elem *e;
    static uint8_t buf[VNET_CTRL_MAX];
    while ((e = virtq_pop(vq))) {
        if (e->out_len < 2 || e->in_len < 1) {
            virtio_error(&n->vdev, "control command of %zu bytes with %zu bytes for the ack",
                         e->out_len, e->in_len);
            virtq_elem_free(e);
            return;
        }
        uint8_t ack = VIRTIO_NET_ERR;
        if (e->out_len <= VNET_CTRL_MAX) {
            iov_to_buf(e->out, e->nout, 0, buf, e->out_len);
            ack = vnet_ctrl_cmd(n, buf[0], buf[1], buf + 2, e->out_len - 2);
        }
        iov_from_buf(e->in, e->nin, 0, &ack, 1);
        virtq_push(vq, e, 1);
    }
    virtq_notify(vq);
}

/* ---- virtio callbacks ---- */

static void vnet_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct vnet_dev *n = vd->opaque;
    if (q == vnet_ctrl_index(n) && vnet_has(n, VIRTIO_NET_F_CTRL_VQ)) {
        vnet_ctrl(n);
        return;
    }
    unsigned pair = q / 2;
    if (pair >= (vnet_has(n, VIRTIO_NET_F_MQ) ? n->max_pairs : 1))
        return;
    if (q & 1) {
        vnet_tx(n, pair);
        return;
    }
    /* New rx buffers: let the backend deliver what it held back. */
    if (n->rxq[pair].blocked) {
        n->rxq[pair].blocked = false;
        virtq_set_notification(virtio_queue(vd, q), false);
        if (n->nb)
            net_backend_rx_ready(n->nb, pair);
    }
}

static int vnet_features_ok(struct virtio_dev *vd, uint64_t f)
{
    struct vnet_dev *n = vd->opaque;
    /* This transport is modern-only: the 12-byte header and little-endian fields assume 1.x. */
    if (!(f & VIRTIO_F_BIT(VIRTIO_F_VERSION_1)))
        return -EINVAL;
    /* Spec 5.1.3.1: the control queue features depend on CTRL_VQ, TSO/UFO on checksums. */
    uint64_t needs_ctrl = VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_RX) | VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) |
                          VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) | VIRTIO_F_BIT(VIRTIO_NET_F_MQ) |
                          VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) |
                          VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
    if ((f & needs_ctrl) && !(f & VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_VQ)))
        return -EINVAL;
    uint64_t host_gso = VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO6) |
                        VIRTIO_F_BIT(VIRTIO_NET_F_HOST_UFO);
    if ((f & host_gso) && !(f & VIRTIO_F_BIT(VIRTIO_NET_F_CSUM)))
        return -EINVAL;
    uint64_t guest_gso = VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO6) |
                         VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_UFO);
    if ((f & guest_gso) && !(f & VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_CSUM)))
        return -EINVAL;
    vnet_apply_offloads(n, f);
    return 0;
}

static void vnet_reset(struct virtio_dev *vd)
{
    struct vnet_dev *n = vd->opaque;
    n->promisc = true; /* as QEMU: until the driver programs a filter, take everything */
    n->allmulti = n->alluni = n->nomulti = n->nouni = n->nobcast = false;
    n->uni_entries = n->multi_entries = 0;
    n->uni_overflow = n->multi_overflow = false;
    n->cur_pairs = 1;
    memcpy(n->mac, n->conf_mac, 6);
    n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
    if (n->nb && n->vnet_hdr)
        net_backend_set_offload(n->nb, 0);
    vnet_update_config(n);
    for (unsigned p = 0; p < n->max_pairs; p++) {
        vnet_stash_drop(&n->rxq[p]);
        n->tx_blocked[p] = false;
        /* The backend may hold a frame for us: let it drop that one (we are not ready) and read on. */
        if (n->rxq[p].blocked) {
            n->rxq[p].blocked = false;
            if (n->nb)
                net_backend_rx_ready(n->nb, p);
        }
    }
}

static void vnet_status_changed(struct virtio_dev *vd, uint8_t old, uint8_t new)
{
    struct vnet_dev *n = vd->opaque;
    /* Kick tx in case the guest queued frames before DRIVER_OK (Linux does not, others may). */
    if (!(old & VIRTIO_STATUS_DRIVER_OK) && (new & VIRTIO_STATUS_DRIVER_OK))
        for (unsigned p = 0; p < n->max_pairs; p++)
            vnet_tx(n, p);
}

static void vnet_release(struct virtio_dev *vd)
{
    struct vnet_dev *n = vd->opaque;
    if (n->nb)
        net_backend_detach(n->nb);
    for (unsigned p = 0; p < n->max_pairs; p++)
        vnet_stash_drop(&n->rxq[p]);
    virtio_dev_destroy(vd);
    free(n);
}

static const struct virtio_dev_ops vnet_ops = {
    .queue_notify = vnet_queue_notify,
    .features_ok = vnet_features_ok,
    .status_changed = vnet_status_changed,
    .reset = vnet_reset,
    .release = vnet_release,
};

static const struct net_client_ops vnet_client_ops = {
    .receive = vnet_receive,
    .tx_ready = vnet_tx_ready,
    .link_changed = vnet_link_changed,
};

/* ---- creation ---- */

/* QEMU's -device virtio-net-pci feature properties. */
static const struct {
    const char *name;
    unsigned bit;
} vnet_props[] = {
    {"csum", VIRTIO_NET_F_CSUM},
    {"guest_csum", VIRTIO_NET_F_GUEST_CSUM},
    {"ctrl_guest_offloads", VIRTIO_NET_F_CTRL_GUEST_OFFLOADS},
    {"guest_tso4", VIRTIO_NET_F_GUEST_TSO4},
    {"guest_tso6", VIRTIO_NET_F_GUEST_TSO6},
    {"guest_ecn", VIRTIO_NET_F_GUEST_ECN},
    {"guest_ufo", VIRTIO_NET_F_GUEST_UFO},
    {"host_tso4", VIRTIO_NET_F_HOST_TSO4},
    {"host_tso6", VIRTIO_NET_F_HOST_TSO6},
    {"host_ecn", VIRTIO_NET_F_HOST_ECN},
    {"host_ufo", VIRTIO_NET_F_HOST_UFO},
    {"mrg_rxbuf", VIRTIO_NET_F_MRG_RXBUF},
    {"status", VIRTIO_NET_F_STATUS},
    {"ctrl_vq", VIRTIO_NET_F_CTRL_VQ},
    {"ctrl_rx", VIRTIO_NET_F_CTRL_RX},
    {"ctrl_rx_extra", VIRTIO_NET_F_CTRL_RX_EXTRA},
    {"guest_announce", VIRTIO_NET_F_GUEST_ANNOUNCE},
    {"ctrl_mac_addr", VIRTIO_NET_F_CTRL_MAC_ADDR},
};

struct vnet_params {
    const char *netdev;
    uint8_t mac[6];
    bool have_mac;
    bool mq;
    bool mq_implied; /* by -nic, which takes whatever queues the netdev has: no warnings */
    uint64_t off; /* feature bits the user turned off */
};

/* The features the backend can carry: offloads only with a vnet header, as QEMU. */
static uint64_t vnet_offered(const struct vnet_dev *n, const struct vnet_params *p)
{
    uint64_t f = VIRTIO_F_BIT(VIRTIO_NET_F_MAC) | VIRTIO_F_BIT(VIRTIO_NET_F_STATUS) |
                 VIRTIO_F_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_VQ) |
                 VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_RX) | VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) |
                 VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) |
                 VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR);
    if (n->max_pairs > 1)
        f |= VIRTIO_F_BIT(VIRTIO_NET_F_MQ);
    if (n->vnet_hdr) {
        /* A TAP with vnet headers takes any offloaded frame from us; what it may hand us is
         * what its offload capabilities say. */
        f |= VIRTIO_F_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO4) |
             VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO6) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_ECN) |
             VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
        if (n->caps & NET_OFFLOAD_UFO)
            f |= VIRTIO_F_BIT(VIRTIO_NET_F_HOST_UFO);
        if (n->caps & NET_OFFLOAD_CSUM) {
            f |= VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_CSUM);
            if (n->caps & NET_OFFLOAD_TSO4)
                f |= VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO4);
            if (n->caps & NET_OFFLOAD_TSO6)
                f |= VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO6);
            if (n->caps & NET_OFFLOAD_TSO_ECN)
                f |= VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_ECN);
            if (n->caps & NET_OFFLOAD_UFO)
                f |= VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_UFO);
        }
    }
    f &= ~p->off;
    /* Keep the dependencies of 5.1.3.1 when the user turned a base feature off. */
    if (!(f & VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_VQ)))
        f &= ~(VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_RX) | VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) |
               VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) | VIRTIO_F_BIT(VIRTIO_NET_F_MQ) |
               VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) |
               VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS));
    if (!(f & VIRTIO_F_BIT(VIRTIO_NET_F_CSUM)))
        f &= ~(VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO6) |
               VIRTIO_F_BIT(VIRTIO_NET_F_HOST_UFO) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_ECN));
    if (!(f & VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_CSUM)))
        f &= ~(VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_TSO6) |
               VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_UFO) | VIRTIO_F_BIT(VIRTIO_NET_F_GUEST_ECN));
    return f;
}

static int vnet_create(struct vm_device_ctx *ctx, const char *devname, const struct vnet_params *p)
{
    struct vnet_dev *n = xzalloc(sizeof(*n));
    snprintf(n->name, sizeof(n->name), "%s", devname);
    memcpy(n->mac, p->mac, 6);
    memcpy(n->conf_mac, p->mac, 6);
    n->max_pairs = 1;
    n->link_up = true;
    if (p->netdev) {
        n->nb = net_backend_lookup(p->netdev);
        if (!n->nb) {
            log_error("%s: netdev '%s' does not exist: add -netdev TYPE,id=%s", n->name,
                      p->netdev, p->netdev);
            free(n);
            return -ENOENT;
        }
        n->caps = net_backend_offload_caps(n->nb);
        if ((n->caps & NET_OFFLOAD_VNET_HDR) && net_backend_set_vnet_hdr_len(n->nb, VNET_HDR_LEN) == 0)
            n->vnet_hdr = true;
        unsigned q = net_backend_queues(n->nb);
        if (p->mq && q > 1)
            n->max_pairs = MIN(q, (unsigned)VNET_MAX_PAIRS);
        if (p->mq && q > VNET_MAX_PAIRS)
            log_warn("%s: netdev '%s' has %u queues; vmkit's virtio-net uses at most %u pairs",
                     n->name, p->netdev, q, VNET_MAX_PAIRS);
        if (p->mq && q <= 1 && !p->mq_implied)
            log_warn("%s: mq=on needs a netdev with queues=N (N > 1); using one queue pair", n->name);
        n->link_up = net_backend_link_up(n->nb);
    }
    n->status = n->link_up ? VIRTIO_NET_S_LINK_UP : 0;
    n->cur_pairs = 1;
    n->promisc = true;

    virtio_dev_init(&n->vdev, VIRTIO_ID_NET, &vnet_ops, n, sizeof(struct virtio_net_config));
    n->vdev.host_features |= vnet_offered(n, p);
    for (unsigned i = 0; i < n->max_pairs; i++) {
        virtio_add_queue(&n->vdev, VNET_QUEUE_SIZE);
        virtio_add_queue(&n->vdev, VNET_QUEUE_SIZE);
    }
    n->ctrl_q = 2 * n->max_pairs;
    if (n->vdev.host_features & VIRTIO_F_BIT(VIRTIO_NET_F_CTRL_VQ))
        virtio_add_queue(&n->vdev, VNET_CTRL_QUEUE_SIZE);
    vnet_update_config(n);

    int r = virtio_pci_create(ctx->m, ctx->pci, &n->vdev, "virtio-net-pci", -1);
    if (r < 0) {
        virtio_dev_destroy(&n->vdev);
        free(n);
        return r;
    }
    if (n->nb) {
        r = net_backend_attach(n->nb, &vnet_client_ops, n);
        if (r < 0) {
            log_error("%s: netdev '%s' is already used by another NIC: give each NIC its own "
                      "-netdev", n->name, p->netdev);
            return r; /* the device stays plugged, without a backend, until the VM exits */
        }
    }
    vnet_count++;
    return 0;
}

int virtio_net_pci_create(struct vm_device_ctx *ctx, const char *opts)
{
    struct qemu_opts o = {0};
    char err[128];
    struct vnet_params p = {0};
    int r = -EINVAL;
    if (qemu_opts_parse(&o, opts, NULL, err, sizeof(err)) < 0) {
        log_error("-device virtio-net-pci: %s", err);
        return -EINVAL;
    }
    p.netdev = qemu_opts_get(&o, "netdev");
    const char *mac = qemu_opts_get(&o, "mac");
    const char *id = qemu_opts_get(&o, "id");
    char name[48];
    snprintf(name, sizeof(name), "virtio-net-pci%s%s", id ? " " : "", id ? id : "");
    if (mac) {
        if (net_parse_mac(mac, p.mac) < 0 || (p.mac[0] & 1)) {
            log_error("-device virtio-net-pci,mac=%s: not a unicast MAC address (use e.g. "
                      "52:54:00:12:34:56)", mac);
            goto out;
        }
        vm_config_net_use_mac((struct vm_config *)ctx->cfg, p.mac);
    } else {
        /* vm_config hands out unique defaults; its bookkeeping is the only thing written. */
        vm_config_net_alloc_mac((struct vm_config *)ctx->cfg, p.mac);
    }
    if (qemu_opts_get_bool(&o, "mq", false, &p.mq) < 0) {
        log_error("-device virtio-net-pci,mq=: expected on or off");
        goto out;
    }
    unsigned vectors;
    int vr = qemu_opts_get_uint(&o, "vectors", &vectors);
    if (vr == -EINVAL || vr == -ERANGE) {
        log_error("-device virtio-net-pci,vectors=: expected a number");
        goto out;
    }
    for (unsigned i = 0; i < ARRAY_SIZE(vnet_props); i++) {
        bool on;
        if (qemu_opts_get_bool(&o, vnet_props[i].name, true, &on) < 0) {
            log_error("-device virtio-net-pci,%s=: expected on or off", vnet_props[i].name);
            goto out;
        }
        if (!on)
            p.off |= VIRTIO_F_BIT(vnet_props[i].bit);
    }
    /* QEMU's umbrella switches. */
    bool gso = true;
    if (qemu_opts_get_bool(&o, "gso", true, &gso) < 0) {
        log_error("-device virtio-net-pci,gso=: expected on or off");
        goto out;
    }
    if (!gso)
        p.off |= VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_TSO6) |
                 VIRTIO_F_BIT(VIRTIO_NET_F_HOST_UFO) | VIRTIO_F_BIT(VIRTIO_NET_F_HOST_ECN);
    qemu_opts_get(&o, "bus");
    qemu_opts_get(&o, "addr");
    qemu_opts_get(&o, "romfile");
    const char *unused = qemu_opts_first_unused(&o);
    if (unused) {
        log_error("-device virtio-net-pci: option '%s' is not known (see docs/virtio-net.md)", unused);
        goto out;
    }
    r = vnet_create(ctx, name, &p);
out:
    qemu_opts_free(&o);
    return r;
}

int virtio_net_pci_create_nic(struct vm_device_ctx *ctx, const struct vm_config_nic *nic)
{
    struct vnet_params p = {.netdev = nic->netdev};
    memcpy(p.mac, nic->mac, 6);
    char name[48];
    snprintf(name, sizeof(name), "virtio-net-pci %s", nic->name ? nic->name : "");
    /* -nic with a multi-queue TAP gets all its queues, as QEMU's -nic does. */
    p.mq = p.mq_implied = true;
    return vnet_create(ctx, name, &p);
}
