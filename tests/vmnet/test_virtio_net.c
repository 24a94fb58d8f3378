/* Unit tests for the virtio-net device model on a fake backend: offers vs backend capabilities,
 * mergeable rx buffers, flow control, the control queue (rx filter, MAC, announce, MQ pairs),
 * multi-queue mapping and tx header checks. No /dev/kvm, no root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/util.h"
#include "config/vm_config.h"
#include "hw/virtio/virtio_net.h"
#include "hw/virtio/virtq.h"
#include "machine/machine.h"
#include "net/net.h"
#include "vm/device_models.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAM_SIZE (2 * MiB)
#define QSIZE 8
#define BUF 0x100000
#define F(b) VIRTIO_F_BIT(b)
#define NET_F_CSUM 0
#define NET_F_GUEST_CSUM 1
#define NET_F_MAC 5
#define NET_F_GUEST_TSO4 7
#define NET_F_HOST_TSO4 11
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS 16
#define NET_F_CTRL_VQ 17
#define NET_F_CTRL_RX 18
#define NET_F_GUEST_ANNOUNCE 21
#define NET_F_MQ 22
#define NET_F_CTRL_MAC_ADDR 23

/* ---- the fake world: transport, backend, config ---- */

static struct machine m;
static uint8_t *ram;
static struct virtio_dev *vd;
static unsigned config_irqs;

struct net_backend {
    uint32_t caps;
    unsigned queues;
    bool link;
    const struct net_client_ops *ops;
    void *opaque;
    unsigned sent, last_q;
    uint8_t last[4096];
    size_t last_len;
    unsigned rx_ready_calls, rx_ready_q;
    uint32_t offloads;
};
static struct net_backend fake_nb;

static void fake_notify(void *transport, uint16_t vector, uint8_t isr)
{
    if (isr & 2)
        config_irqs++;
}
static const struct virtio_transport_ops fake_tops = {.notify = fake_notify};

int virtio_pci_create(struct machine *mm, struct pci_host *h, struct virtio_dev *d, const char *name, int slot)
{
    vd = d;
    d->name = name;
    d->m = mm;
    d->tops = &fake_tops;
    d->transport = NULL;
    return 0;
}

struct net_backend *net_backend_lookup(const char *id) { return strcmp(id, "n0") ? NULL : &fake_nb; }
uint32_t net_backend_offload_caps(const struct net_backend *nb) { return nb->caps; }
int net_backend_set_vnet_hdr_len(struct net_backend *nb, unsigned len)
{
    return (nb->caps & NET_OFFLOAD_VNET_HDR) ? 0 : -ENOTSUP;
}
unsigned net_backend_queues(const struct net_backend *nb) { return nb->queues; }
bool net_backend_link_up(const struct net_backend *nb) { return nb->link; }
int net_backend_attach(struct net_backend *nb, const struct net_client_ops *ops, void *opaque)
{
    nb->ops = ops;
    nb->opaque = opaque;
    return 0;
}
int net_backend_set_offload(struct net_backend *nb, uint32_t offloads)
{
    nb->offloads = offloads;
    return 0;
}
ssize_t net_backend_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++) {
        assert_true(n + iov[i].iov_len <= sizeof(nb->last));
        memcpy(nb->last + n, iov[i].iov_base, iov[i].iov_len);
        n += iov[i].iov_len;
    }
    nb->last_len = n;
    nb->last_q = q;
    nb->sent++;
    return (ssize_t)n;
}
void net_backend_rx_ready(struct net_backend *nb, unsigned q)
{
    nb->rx_ready_calls++;
    nb->rx_ready_q = q;
}
int net_parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return 0;
}
void vm_config_net_alloc_mac(struct vm_config *c, uint8_t mac[6])
{
    static const uint8_t d[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    memcpy(mac, d, 6);
}
void vm_config_net_use_mac(struct vm_config *c, const uint8_t mac[6]) {}
void net_backend_detach(struct net_backend *nb) { nb->ops = NULL; }

/* ---- driver side ---- */

static uint16_t avail_idx[VIRTIO_MAX_QUEUES];
static uint16_t next_desc[VIRTIO_MAX_QUEUES];
static uint64_t qbase(unsigned q) { return 0x1000 + (uint64_t)q * 0x1000; }

static void destroy(void)
{
    if (vd)
        vd->ops->release(vd);
    vd = NULL;
}

static void create(const char *opts, uint32_t caps, unsigned queues)
{
    destroy();
    memset(&fake_nb, 0, sizeof(fake_nb));
    fake_nb.caps = caps;
    fake_nb.queues = queues;
    fake_nb.link = true;
    struct vm_config cfg = {0};
    struct vm_device_ctx ctx = {.m = &m, .cfg = &cfg};
    assert_int_equal(virtio_net_pci_create(&ctx, opts), 0);
    assert_non_null(vd);
    memset(avail_idx, 0, sizeof(avail_idx));
    memset(next_desc, 0, sizeof(next_desc));
    config_irqs = 0;
}

static void start(uint64_t features, unsigned nqueues)
{
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_set_guest_features(vd, 0, (uint32_t)features);
    virtio_set_guest_features(vd, 1, (uint32_t)(features >> 32));
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    assert_true(vd->status & VIRTIO_STATUS_FEATURES_OK);
    for (unsigned q = 0; q < nqueues; q++) {
        struct virtq *vq = &vd->vqs[q];
        memset(ram + qbase(q), 0, 0x1000);
        vq->size = QSIZE;
        vq->desc_gpa = qbase(q);
        vq->avail_gpa = qbase(q) + 0x400;
        vq->used_gpa = qbase(q) + 0x800;
        vq->msix_vector = (uint16_t)q;
        assert_int_equal(virtq_enable(vq), 0);
    }
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                              VIRTIO_STATUS_DRIVER_OK);
    assert_true(virtio_dev_ready(vd));
}

/* Post a chain of n buffers (addr, len, write) on queue q; returns the head. */
static uint16_t post(unsigned q, unsigned n, const uint64_t *addr, const uint32_t *len, bool write)
{
    uint16_t head = next_desc[q];
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSIZE);
        struct virtq_desc d = {addr[i], len[i],
                               (uint16_t)((write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                               (uint16_t)((idx + 1) % QSIZE)};
        memcpy(ram + qbase(q) + 16 * idx, &d, 16);
    }
    next_desc[q] = (uint16_t)((head + n) % QSIZE);
    uint16_t *ring = (uint16_t *)(ram + qbase(q) + 0x400 + 4);
    ring[avail_idx[q] % QSIZE] = head;
    avail_idx[q]++;
    *(uint16_t *)(ram + qbase(q) + 0x400 + 2) = avail_idx[q];
    return head;
}

static uint16_t used_idx(unsigned q) { return *(uint16_t *)(ram + qbase(q) + 0x800 + 2); }
static uint32_t used_len(unsigned q, unsigned i)
{
    return *(uint32_t *)(ram + qbase(q) + 0x800 + 4 + 8 * (i % QSIZE) + 4);
}

static void post_rx(unsigned q, uint64_t addr, uint32_t len) { post(q, 1, &addr, &len, true); }

static ssize_t deliver(unsigned q, const uint8_t *frame, size_t len)
{
    struct iovec iov = {(void *)frame, len};
    return fake_nb.ops->receive(fake_nb.opaque, q, &iov, 1);
}

static uint8_t ctrl(unsigned q, uint8_t cls, uint8_t cmd, const void *data, uint32_t len)
{
    uint8_t *c = ram + BUF + 0x40000;
    c[0] = cls;
    c[1] = cmd;
    if (len)
        memcpy(c + 2, data, len);
    ram[BUF + 0x41000] = 0xee;
    uint64_t a[2] = {BUF + 0x40000, BUF + 0x41000};
    uint32_t l[2] = {len + 2, 1};
    /* Readable command, then the writable ack: two posts would be two chains, so build one. */
    uint16_t head = next_desc[q];
    struct virtq_desc d0 = {a[0], l[0], VIRTQ_DESC_F_NEXT, (uint16_t)((head + 1) % QSIZE)};
    struct virtq_desc d1 = {a[1], l[1], VIRTQ_DESC_F_WRITE, 0};
    memcpy(ram + qbase(q) + 16 * head, &d0, 16);
    memcpy(ram + qbase(q) + 16 * ((head + 1) % QSIZE), &d1, 16);
    next_desc[q] = (uint16_t)((head + 2) % QSIZE);
    uint16_t *ring = (uint16_t *)(ram + qbase(q) + 0x400 + 4);
    ring[avail_idx[q] % QSIZE] = head;
    avail_idx[q]++;
    *(uint16_t *)(ram + qbase(q) + 0x400 + 2) = avail_idx[q];
    virtio_queue_kick(vd, q);
    return ram[BUF + 0x41000];
}

static const uint8_t own_mac[6] = {0x52, 0x54, 0, 0xab, 0xcd, 0xef};
static uint8_t frame[4096];

static size_t make_frame(const uint8_t *dst, size_t len)
{
    memcpy(frame, dst, 6);
    memcpy(frame + 6, "\x02\x00\x00\x00\x00\x01", 6);
    frame[12] = 0x88;
    frame[13] = 0xb5;
    for (size_t i = 14; i < len; i++)
        frame[i] = (uint8_t)(i * 7);
    return len;
}

static int setup(void **state)
{
    machine_init(&m);
    ram = xzalloc(RAM_SIZE);
    guest_mem_init_buffer(&m.mem, ram, RAM_SIZE);
    return 0;
}

static int teardown(void **state)
{
    destroy();
    machine_destroy(&m);
    free(ram);
    return 0;
}

/* ---- tests ---- */

static void test_offers_follow_backend(void **state)
{
    create("netdev=n0,mac=52:54:00:ab:cd:ef", 0, 1);
    uint64_t f = vd->host_features;
    assert_true(f & F(NET_F_MAC));
    assert_true(f & F(NET_F_STATUS));
    assert_true(f & F(NET_F_MRG_RXBUF));
    assert_true(f & F(NET_F_CTRL_VQ));
    assert_false(f & (F(NET_F_CSUM) | F(NET_F_GUEST_CSUM) | F(NET_F_HOST_TSO4) | F(NET_F_GUEST_TSO4)));
    assert_false(f & F(NET_F_MQ));
    assert_memory_equal(vd->config, own_mac, 6);
    assert_int_equal(vd->config[6] & 1, 1); /* link up */

    create("netdev=n0", NET_OFFLOAD_VNET_HDR | NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 1);
    f = vd->host_features;
    assert_true(f & F(NET_F_CSUM));
    assert_true(f & F(NET_F_HOST_TSO4));
    assert_true(f & F(NET_F_GUEST_CSUM));
    assert_true(f & F(NET_F_GUEST_TSO4));
    /* guest_csum=off withholds GUEST_CSUM and what depends on it. */
    create("netdev=n0,guest_csum=off", NET_OFFLOAD_VNET_HDR | NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 1);
    assert_false(vd->host_features & (F(NET_F_GUEST_CSUM) | F(NET_F_GUEST_TSO4)));
    assert_true(vd->host_features & F(NET_F_CSUM));
    /* The guest's accepted offloads become the backend's. */
    create("netdev=n0", NET_OFFLOAD_VNET_HDR | NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 1);
    start(F(VIRTIO_F_VERSION_1) | F(NET_F_GUEST_CSUM) | F(NET_F_GUEST_TSO4), 2);
    assert_int_equal(fake_nb.offloads, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4);
    /* Without VERSION_1 the device refuses FEATURES_OK. */
    create("netdev=n0", 0, 1);
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_set_guest_features(vd, 0, (uint32_t)F(NET_F_MAC));
    virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    assert_false(vd->status & VIRTIO_STATUS_FEATURES_OK);
}

static void test_mergeable_rx(void **state)
{
    create("netdev=n0", 0, 1);
    start(F(VIRTIO_F_VERSION_1) | F(NET_F_MRG_RXBUF), 2);
    for (unsigned i = 0; i < 3; i++)
        post_rx(0, BUF + i * 0x1000, 1024);
    size_t len = make_frame(own_mac, 2500);
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 3);
    assert_int_equal(used_len(0, 0), 1024);
    assert_int_equal(used_len(0, 1), 1024);
    assert_int_equal(used_len(0, 2), 2500 + 12 - 2048);
    uint8_t *h = ram + BUF;
    assert_int_equal(h[10] | h[11] << 8, 3); /* num_buffers */
    uint8_t got[2500];
    memcpy(got, ram + BUF + 12, 1012);
    memcpy(got + 1012, ram + BUF + 0x1000, 1024);
    memcpy(got + 2036, ram + BUF + 0x2000, 464);
    assert_memory_equal(got, frame, 2500);
}

static void test_flow_control(void **state)
{
    create("netdev=n0", 0, 1);
    start(F(VIRTIO_F_VERSION_1) | F(NET_F_MRG_RXBUF), 2);
    size_t len = make_frame(own_mac, 100);
    /* No buffers: the backend must hold the frame. */
    assert_int_equal(deliver(0, frame, len), 0);
    assert_int_equal(fake_nb.rx_ready_calls, 0);
    post_rx(0, BUF, 2048);
    virtio_queue_kick(vd, 0);
    assert_int_equal(fake_nb.rx_ready_calls, 1);
    assert_int_equal(fake_nb.rx_ready_q, 0);
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 1);
    assert_int_equal(used_len(0, 0), 112);
}

static void test_no_mrg_small_buffer(void **state)
{
    create("netdev=n0", 0, 1);
    start(F(VIRTIO_F_VERSION_1), 2);
    post_rx(0, BUF, 200);
    size_t len = make_frame(own_mac, 1000);
    /* Too big for the one buffer: dropped, buffer kept for the next frame. */
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 0);
    len = make_frame(own_mac, 150);
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 1);
    assert_int_equal(ram[BUF + 10], 1); /* num_buffers is 1 without MRG_RXBUF */
    assert_memory_equal(ram + BUF + 12, frame, 150);
    /* Oversized frames from the host are refused. */
    static uint8_t huge[70000];
    memcpy(huge, own_mac, 6);
    assert_true(deliver(0, huge, sizeof(huge)) < 0);
}

static void test_rx_filter(void **state)
{
    create("netdev=n0,mac=52:54:00:ab:cd:ef", 0, 1);
    start(F(VIRTIO_F_VERSION_1) | F(NET_F_MRG_RXBUF) | F(NET_F_CTRL_VQ) | F(NET_F_CTRL_RX), 3);
    for (unsigned i = 0; i < 4; i++)
        post_rx(0, BUF + i * 0x1000, 2048);
    static const uint8_t other[6] = {0x02, 0, 0, 0, 0, 0x99};
    size_t len = make_frame(other, 64);
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 1); /* promiscuous after reset, as QEMU */
    uint8_t off = 0;
    assert_int_equal(ctrl(2, 0, 0, &off, 1), 0); /* without MQ the control queue is queue 2 */
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 1); /* filtered */
    len = make_frame(own_mac, 64);
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 2);
    /* The MAC table admits the other address. */
    uint8_t table[4 + 6 + 4] = {1, 0, 0, 0, 0x02, 0, 0, 0, 0, 0x99, 0, 0, 0, 0};
    assert_int_equal(ctrl(2, 1, 0, table, sizeof(table)), 0);
    len = make_frame(other, 64);
    assert_int_equal(deliver(0, frame, len), (ssize_t)len);
    assert_int_equal(used_idx(0), 3);
    /* A table whose count runs past the command is refused. */
    uint8_t bad[8] = {9, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(ctrl(2, 1, 0, bad, sizeof(bad)), 1);
}

static void test_mac_announce_reset(void **state)
{
    create("netdev=n0,mac=52:54:00:ab:cd:ef", 0, 1);
    uint64_t f = F(VIRTIO_F_VERSION_1) | F(NET_F_CTRL_VQ) | F(NET_F_CTRL_MAC_ADDR) | F(NET_F_GUEST_ANNOUNCE) |
                 F(NET_F_STATUS);
    start(f, 3);
    static const uint8_t newmac[6] = {0x52, 0x54, 0, 1, 2, 3};
    assert_int_equal(ctrl(2, 1, 1, newmac, 6), 0);
    assert_memory_equal(vd->config, newmac, 6);
    fake_nb.ops->link_changed(fake_nb.opaque, false);
    assert_int_equal(vd->config[6] & 1, 0);
    unsigned before = config_irqs;
    fake_nb.ops->link_changed(fake_nb.opaque, true);
    assert_int_equal(vd->config[6] & 3, 3); /* link up + announce */
    assert_true(config_irqs > before);
    assert_int_equal(ctrl(2, 3, 0, NULL, 0), 0);
    assert_int_equal(vd->config[6] & 3, 1);
    virtio_dev_reset(vd);
    assert_memory_equal(vd->config, own_mac, 6); /* mac= again after a reset */
}

static void test_multiqueue(void **state)
{
    create("netdev=n0,mq=on", 0, 2);
    assert_true(vd->host_features & F(NET_F_MQ));
    assert_int_equal(vd->config[8], 2); /* max_virtqueue_pairs */
    assert_int_equal(vd->nvqs, 5);
    start(F(VIRTIO_F_VERSION_1) | F(NET_F_MRG_RXBUF) | F(NET_F_CTRL_VQ) | F(NET_F_MQ), 5);
    uint16_t pairs = 3;
    assert_int_equal(ctrl(4, 4, 0, &pairs, 2), 1); /* more than max */
    pairs = 2;
    assert_int_equal(ctrl(4, 4, 0, &pairs, 2), 0);
    post_rx(2, BUF + 0x8000, 2048);
    size_t len = make_frame(own_mac, 80);
    assert_int_equal(deliver(1, frame, len), (ssize_t)len); /* backend queue 1 -> rx queue 2 */
    assert_int_equal(used_idx(2), 1);
    assert_int_equal(used_idx(0), 0);
    /* tx on queue 3 goes out on backend queue 1, without the header (no vnet_hdr backend). */
    memset(ram + BUF + 0x9000, 0, 12);
    make_frame(own_mac, 60);
    memcpy(ram + BUF + 0x9000 + 12, frame, 60);
    uint64_t a = BUF + 0x9000;
    uint32_t l = 72;
    post(3, 1, &a, &l, false);
    virtio_queue_kick(vd, 3);
    assert_int_equal(fake_nb.sent, 1);
    assert_int_equal(fake_nb.last_q, 1);
    assert_int_equal(fake_nb.last_len, 60);
    assert_memory_equal(fake_nb.last, frame, 60);
    assert_int_equal(used_idx(3), 1);
}

static void test_tx_checks(void **state)
{
    create("netdev=n0", NET_OFFLOAD_VNET_HDR | NET_OFFLOAD_CSUM, 1);
    start(F(VIRTIO_F_VERSION_1), 2); /* CSUM not negotiated */
    uint8_t *p = ram + BUF;
    memset(p, 0, 12);
    p[0] = 1; /* NEEDS_CSUM */
    make_frame(own_mac, 60);
    memcpy(p + 12, frame, 60);
    uint64_t a = BUF;
    uint32_t l = 72;
    post(1, 1, &a, &l, false);
    virtio_queue_kick(vd, 1);
    assert_int_equal(fake_nb.sent, 0);
    assert_int_equal(used_idx(1), 1); /* dropped, but returned */
    p[0] = 0;
    /* Header and frame split across descriptors: the header goes to the vnet-header backend. */
    uint64_t a2[2] = {BUF, BUF + 12};
    uint32_t l2[2] = {12, 60};
    post(1, 2, a2, l2, false);
    virtio_queue_kick(vd, 1);
    assert_int_equal(fake_nb.sent, 1);
    assert_int_equal(fake_nb.last_len, 72);
    assert_memory_equal(fake_nb.last + 12, frame, 60);
    /* Runt frame. */
    l = 12 + 10;
    post(1, 1, &a, &l, false);
    virtio_queue_kick(vd, 1);
    assert_int_equal(fake_nb.sent, 1);
    assert_int_equal(used_idx(1), 3);
    assert_false(vd->broken);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_offers_follow_backend), T(test_mergeable_rx), T(test_flow_control),
        T(test_no_mrg_small_buffer), T(test_rx_filter), T(test_mac_announce_reset),
        T(test_multiqueue), T(test_tx_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
