/* Test-guest virtio-net driver (polled, on rt/virtio.h) and a tiny Ethernet/ARP/IPv4/UDP/ICMP/TCP/DHCP kit. */
#include "virtio_net.h"
#include "virtio.h"

#define VNET_MAX_NICS 4
#define VNET_TXQ_SIZE 16
#define VNET_CTRLQ_SIZE 8

struct vnet {
    struct vio_dev d;
    uint8_t mac[6];
    unsigned rxq, txq, ctrlq;
    bool has_ctrl;
    uint8_t head_buf[VIO_QSIZE_MAX]; /* rx descriptor head -> buffer index */
    uint8_t rxbuf[VNET_RX_BUFS][VNET_BUF_SIZE] __attribute__((aligned(64)));
    struct virtio_net_hdr txhdr;
    uint8_t ctrlbuf[512];
    uint8_t ctrlack;
};

static struct vnet nics[VNET_MAX_NICS];
static unsigned nnics;

/* Take one used entry of queue q, polling up to ms. Uses only memory and rdtsc (no port I/O), so
 * it works in ring 3 too (bench/net runs its hot loop there). */
static int wait_used(struct vio_dev *d, unsigned q, uint32_t *id, uint32_t *len, unsigned ms)
{
    struct vio_queue *vq = &d->q[q];
    volatile uint16_t *used_idx = (volatile uint16_t *)(vq->used + 2);
    uint64_t end = net_now_ms() + ms;
    for (;;) {
        if (*used_idx != vq->last_used) {
            __asm__ volatile("" ::: "memory");
            volatile uint32_t *e = (volatile uint32_t *)(vq->used + 4 + 8 * (vq->last_used % vq->size));
            *id = e[0];
            *len = e[1];
            vq->last_used++;
            return 0;
        }
        if (net_now_ms() >= end)
            return -1;
        cpu_relax();
    }
}

static void rx_post(struct vnet *n, unsigned i)
{
    struct vio_buf b = {n->rxbuf[i], VNET_BUF_SIZE, true};
    int head = vio_submit(&n->d, n->rxq, &b, 1);
    if (head >= 0 && head < VIO_QSIZE_MAX)
        n->head_buf[head] = (uint8_t)i;
}

struct vnet *vnet_open(unsigned index, uint64_t want)
{
    if (nnics >= VNET_MAX_NICS)
        return NULL;
    struct vnet *n = &nics[nnics];
    memset(n, 0, sizeof(*n));
    net_clock_init(); /* every wait is bounded by the calibrated TSC */
    if (vio_find(&n->d, VIRTIO_ID_NET, index) < 0)
        return NULL;
    want |= 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS;
    if (vio_negotiate(&n->d, want) < 0) {
        rt_printf("virtio-net %u: feature negotiation failed\n", index);
        return NULL;
    }
    n->rxq = 0;
    n->txq = 1;
    n->has_ctrl = (n->d.features >> VIRTIO_NET_F_CTRL_VQ) & 1;
    unsigned pairs = ((n->d.features >> VIRTIO_NET_F_MQ) & 1) ? vio_cfg_read16(&n->d, 8) : 1;
    n->ctrlq = 2 * pairs;
    if (vio_queue_setup(&n->d, n->rxq, VNET_RX_BUFS) < 0 || vio_queue_setup(&n->d, n->txq, VNET_TXQ_SIZE) < 0 ||
        (n->has_ctrl && (n->ctrlq >= VIO_MAX_QUEUES || vio_queue_setup(&n->d, n->ctrlq, VNET_CTRLQ_SIZE) < 0))) {
        rt_printf("virtio-net %u: queue setup failed\n", index);
        return NULL;
    }
    for (unsigned i = 0; i < 6; i++)
        n->mac[i] = vio_cfg_read8(&n->d, i);
    vio_driver_ok(&n->d);
    for (unsigned i = 0; i < VNET_RX_BUFS; i++)
        rx_post(n, i);
    nnics++;
    return n;
}

const uint8_t *vnet_mac(const struct vnet *n) { return n->mac; }
uint64_t vnet_features(const struct vnet *n) { return n->d.features; }
uint16_t vnet_status(const struct vnet *n) { return vio_cfg_read16((struct vio_dev *)&n->d, 6); }
uint8_t vnet_device_status(struct vnet *n) { return vio_status(&n->d); }

int vnet_send_hdr(struct vnet *n, const struct virtio_net_hdr *hdr, const void *frame, unsigned len)
{
    if (hdr)
        n->txhdr = *hdr;
    else
        memset(&n->txhdr, 0, sizeof(n->txhdr));
    /* All guest memory is identity-mapped: the device reads the caller's frame in place (no copy:
     * guest kernel code is slow where KVM emulates it). Header and frame go in separate
     * descriptors, so the device must not assume one buffer. */
    struct vio_buf b[2] = {{&n->txhdr, sizeof(n->txhdr), false}, {(void *)frame, len, false}};
    if (vio_submit(&n->d, n->txq, b, 2) < 0)
        return -1;
    uint32_t id, l;
    return wait_used(&n->d, n->txq, &id, &l, 1000);
}

int vnet_send(struct vnet *n, const void *frame, unsigned len)
{
    return vnet_send_hdr(n, NULL, frame, len);
}

int vnet_send_raw_chain(struct vnet *n, const uint64_t *addrs, const uint32_t *lens, unsigned count)
{
    struct vio_buf b[8];
    if (count > 8)
        return -1;
    for (unsigned i = 0; i < count; i++)
        b[i] = (struct vio_buf){(void *)addrs[i], lens[i], false};
    if (vio_submit(&n->d, n->txq, b, count) < 0)
        return -1;
    uint32_t id, l;
    return wait_used(&n->d, n->txq, &id, &l, 300);
}

int vnet_recv(struct vnet *n, void *buf, unsigned cap, struct virtio_net_hdr *hdr, unsigned timeout_ms)
{
    uint32_t id, len;
    if (wait_used(&n->d, n->rxq, &id, &len, timeout_ms) < 0)
        return -1;
    if (id >= VIO_QSIZE_MAX)
        return -1;
    unsigned bi = n->head_buf[id];
    const struct virtio_net_hdr *h = (const void *)n->rxbuf[bi];
    if (len > VNET_BUF_SIZE)
        len = VNET_BUF_SIZE;
    unsigned nbufs = h->num_buffers ? h->num_buffers : 1;
    if (hdr)
        *hdr = *h;
    unsigned got = 0;
    if (len > sizeof(*h)) {
        got = len - (unsigned)sizeof(*h);
        memcpy(buf, n->rxbuf[bi] + sizeof(*h), got < cap ? got : cap);
    }
    rx_post(n, bi);
    /* Mergeable buffers: the rest of the frame follows in the next used entries. */
    for (unsigned k = 1; k < nbufs && k < VNET_RX_BUFS; k++) {
        if (wait_used(&n->d, n->rxq, &id, &len, 100) < 0 || id >= VIO_QSIZE_MAX)
            return -1;
        bi = n->head_buf[id];
        if (len > VNET_BUF_SIZE)
            len = VNET_BUF_SIZE;
        if (got < cap)
            memcpy((uint8_t *)buf + got, n->rxbuf[bi], cap - got < len ? cap - got : len);
        got += len;
        rx_post(n, bi);
    }
    return (int)got;
}

int vnet_ctrl(struct vnet *n, uint8_t cls, uint8_t cmd, const void *data, unsigned len)
{
    if (!n->has_ctrl || len + 2 > sizeof(n->ctrlbuf))
        return -1;
    n->ctrlbuf[0] = cls;
    n->ctrlbuf[1] = cmd;
    memcpy(n->ctrlbuf + 2, data, len);
    n->ctrlack = 0xee;
    struct vio_buf b[2] = {{n->ctrlbuf, len + 2, false}, {&n->ctrlack, 1, true}};
    if (vio_submit(&n->d, n->ctrlq, b, 2) < 0)
        return -1;
    uint32_t id, l;
    if (wait_used(&n->d, n->ctrlq, &id, &l, 1000) < 0)
        return -1;
    return n->ctrlack;
}
/* ---------------- time ---------------- */

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static uint64_t tsc_per_ms;

/* Calibrate the TSC against the PM timer once (ring 0); afterwards the clock is rdtsc alone. */
void net_clock_init(void)
{
    if (tsc_per_ms)
        return;
    if (acpi_init() >= 0 && acpi.pm_tmr) {
        uint64_t t0 = rdtsc();
        rt_delay_ms(20);
        tsc_per_ms = (rdtsc() - t0) / 20;
    }
    if (!tsc_per_ms)
        tsc_per_ms = 1000000; /* no PM timer: assume 1 GHz so waits still end */
}

uint64_t net_now_ms(void)
{
    if (!tsc_per_ms)
        net_clock_init();
    return rdtsc() / tsc_per_ms;
}

uint64_t net_now_ns(void)
{
    if (!tsc_per_ms)
        net_clock_init();
    return rdtsc() * 1000000 / tsc_per_ms;
}

/* ---------------- protocols ---------------- */

const uint8_t net_bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

uint16_t net_csum(const void *data, unsigned len, uint32_t sum)
{
    const uint8_t *p = data;
    uint64_t s = sum;
    for (; len > 1; len -= 2, p += 2)
        s += (uint32_t)(p[0] << 8 | p[1]);
    if (len)
        s += (uint32_t)p[0] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

uint32_t net_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, unsigned len)
{
    return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

static uint32_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return s;
}

void net_if_init(struct net_if *ifc, struct vnet *nic, uint32_t ip)
{
    memset(ifc, 0, sizeof(*ifc));
    ifc->nic = nic;
    ifc->ip = ip;
    ifc->netmask = IP4(255, 255, 255, 0);
    memcpy(ifc->mac, vnet_mac(nic), 6);
}

static uint16_t ip_id;

unsigned net_build_ip(uint8_t *buf, const uint8_t *src_mac, const uint8_t *dst_mac, uint32_t src,
                      uint32_t dst, uint8_t proto, const void *l4, unsigned l4len)
{
    memcpy(buf, dst_mac, 6);
    memcpy(buf + 6, src_mac, 6);
    net_put16(buf + 12, ETH_P_IP);
    uint8_t *ip = buf + ETH_HLEN;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    net_put16(ip + 2, (uint16_t)(20 + l4len));
    net_put16(ip + 4, ++ip_id);
    ip[8] = 64;
    ip[9] = proto;
    net_put32(ip + 12, src);
    net_put32(ip + 16, dst);
    net_put16(ip + 10, net_csum(ip, 20, 0));
    if (l4 && l4 != ip + 20)
        memmove(ip + 20, l4, l4len);
    return ETH_HLEN + 20 + l4len;
}

unsigned net_build_udp(uint8_t *buf, const uint8_t *src_mac, const uint8_t *dst_mac, uint32_t src,
                       uint32_t dst, uint16_t sport, uint16_t dport, const void *data, unsigned len,
                       bool csum_partial)
{
    uint8_t *u = buf + ETH_HLEN + 20;
    memmove(u + 8, data, len);
    net_put16(u, sport);
    net_put16(u + 2, dport);
    net_put16(u + 4, (uint16_t)(8 + len));
    net_put16(u + 6, 0);
    uint32_t ps = net_pseudo_sum(src, dst, IP_PROTO_UDP, 8 + len);
    if (csum_partial) {
        net_put16(u + 6, (uint16_t)fold(ps));
    } else {
        uint16_t c = net_csum(u, 8 + len, ps);
        net_put16(u + 6, c ? c : 0xffff);
    }
    return net_build_ip(buf, src_mac, dst_mac, src, dst, IP_PROTO_UDP, u, 8 + len);
}

unsigned net_build_tcp(uint8_t *buf, const uint8_t *src_mac, const uint8_t *dst_mac, uint32_t src,
                       uint32_t dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                       uint8_t flags)
{
    uint8_t *t = buf + ETH_HLEN + 20;
    memset(t, 0, 20);
    net_put16(t, sport);
    net_put16(t + 2, dport);
    net_put32(t + 4, seq);
    net_put32(t + 8, ack);
    t[12] = 5 << 4;
    t[13] = flags;
    net_put16(t + 14, 8192);
    net_put16(t + 16, net_csum(t, 20, net_pseudo_sum(src, dst, IP_PROTO_TCP, 20)));
    return net_build_ip(buf, src_mac, dst_mac, src, dst, IP_PROTO_TCP, t, 20);
}

bool net_parse_ip(const uint8_t *f, unsigned len, uint8_t hdr_flags, struct net_pkt *p)
{
    memset(p, 0, sizeof(*p));
    if (len < ETH_HLEN + 20 || net_be16(f + 12) != ETH_P_IP)
        return false;
    const uint8_t *ip = f + ETH_HLEN;
    unsigned ihl = (ip[0] & 15) * 4u, tot = net_be16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || ETH_HLEN + tot > len)
        return false;
    if (net_csum(ip, ihl, 0) != 0)
        return false;
    p->eth = f;
    p->ip = ip;
    p->l4 = ip + ihl;
    p->l4len = tot - ihl;
    p->src = net_be32(ip + 12);
    p->dst = net_be32(ip + 16);
    p->proto = ip[9];
    p->len = ETH_HLEN + tot;
    bool check = !(hdr_flags & (VIRTIO_NET_HDR_F_DATA_VALID | VIRTIO_NET_HDR_F_NEEDS_CSUM));
    if (p->proto == IP_PROTO_UDP) {
        if (p->l4len < 8 || net_be16(p->l4 + 4) > p->l4len || net_be16(p->l4 + 4) < 8)
            return false;
        if (check && net_be16(p->l4 + 6) &&
            net_csum(p->l4, net_be16(p->l4 + 4), net_pseudo_sum(p->src, p->dst, IP_PROTO_UDP,
                                                                net_be16(p->l4 + 4))) != 0)
            return false;
        p->sport = net_be16(p->l4);
        p->dport = net_be16(p->l4 + 2);
        p->data = p->l4 + 8;
        p->datalen = net_be16(p->l4 + 4) - 8u;
    } else if (p->proto == IP_PROTO_TCP) {
        if (p->l4len < 20 || (p->l4[12] >> 4) * 4u < 20 || (p->l4[12] >> 4) * 4u > p->l4len)
            return false;
        if (check && net_csum(p->l4, p->l4len, net_pseudo_sum(p->src, p->dst, IP_PROTO_TCP, p->l4len)))
            return false;
        p->sport = net_be16(p->l4);
        p->dport = net_be16(p->l4 + 2);
        p->tcp_seq = net_be32(p->l4 + 4);
        p->tcp_flags = p->l4[13];
        p->data = p->l4 + (p->l4[12] >> 4) * 4u;
        p->datalen = p->l4len - (p->l4[12] >> 4) * 4u;
    } else {
        p->data = p->l4;
        p->datalen = p->l4len;
    }
    return true;
}

static uint8_t scratch[VNET_BUF_SIZE];

bool net_handle_service(struct net_if *ifc, const uint8_t *f, unsigned len)
{
    if (len >= ETH_HLEN + 28 && net_be16(f + 12) == ETH_P_ARP) {
        const uint8_t *a = f + ETH_HLEN;
        if (net_be16(a) == 1 && net_be16(a + 2) == ETH_P_IP && net_be16(a + 6) == 1 && ifc->ip &&
            net_be32(a + 24) == ifc->ip) {
            uint8_t r[ETH_HLEN + 28];
            memcpy(r, a + 8, 6);
            memcpy(r + 6, ifc->mac, 6);
            net_put16(r + 12, ETH_P_ARP);
            uint8_t *b = r + ETH_HLEN;
            memcpy(b, a, 6);
            net_put16(b + 6, 2);
            memcpy(b + 8, ifc->mac, 6);
            net_put32(b + 14, ifc->ip);
            memcpy(b + 18, a + 8, 10);
            vnet_send(ifc->nic, r, sizeof(r));
        }
        return true;
    }
    struct net_pkt p;
    if (net_parse_ip(f, len, 0, &p) && p.proto == IP_PROTO_ICMP && p.dst == ifc->ip &&
        p.l4len >= 8 && p.l4[0] == 8 && p.l4len <= sizeof(scratch) - ETH_HLEN - 20) {
        uint8_t *icmp = scratch + ETH_HLEN + 20;
        memcpy(icmp, p.l4, p.l4len);
        icmp[0] = 0;
        net_put16(icmp + 2, 0);
        net_put16(icmp + 2, net_csum(icmp, p.l4len, 0));
        unsigned n = net_build_ip(scratch, ifc->mac, f + 6, ifc->ip, p.src, IP_PROTO_ICMP, icmp, p.l4len);
        vnet_send(ifc->nic, scratch, n);
        return true;
    }
    return false;
}

int net_arp_resolve(struct net_if *ifc, uint32_t ip, uint8_t mac[6], unsigned timeout_ms)
{
    uint8_t buf[VNET_BUF_SIZE];
    uint64_t end = net_now_ms() + timeout_ms;
    while (net_now_ms() < end) {
        uint8_t r[ETH_HLEN + 28];
        memcpy(r, net_bcast, 6);
        memcpy(r + 6, ifc->mac, 6);
        net_put16(r + 12, ETH_P_ARP);
        uint8_t *b = r + ETH_HLEN;
        net_put16(b, 1);
        net_put16(b + 2, ETH_P_IP);
        b[4] = 6;
        b[5] = 4;
        net_put16(b + 6, 1);
        memcpy(b + 8, ifc->mac, 6);
        net_put32(b + 14, ifc->ip);
        memset(b + 18, 0, 6);
        net_put32(b + 24, ip);
        if (vnet_send(ifc->nic, r, sizeof(r)) < 0)
            return -1;
        uint64_t retry = net_now_ms() + 300;
        while (net_now_ms() < retry) {
            int n = vnet_recv(ifc->nic, buf, sizeof(buf), NULL, 50);
            if (n < 0)
                continue;
            const uint8_t *a = buf + ETH_HLEN;
            if (n >= ETH_HLEN + 28 && net_be16(buf + 12) == ETH_P_ARP && net_be16(a + 6) == 2 &&
                net_be32(a + 14) == ip) {
                memcpy(mac, a + 8, 6);
                return 0;
            }
            net_handle_service(ifc, buf, (unsigned)n);
        }
    }
    return -1;
}

int net_recv_ip(struct net_if *ifc, uint8_t *buf, unsigned cap, struct net_pkt *p, unsigned timeout_ms)
{
    uint64_t end = net_now_ms() + timeout_ms;
    struct virtio_net_hdr h;
    do {
        int n = vnet_recv(ifc->nic, buf, cap, &h, 20);
        if (n < 0 || (unsigned)n > cap)
            continue;
        if (net_handle_service(ifc, buf, (unsigned)n))
            continue;
        if (net_parse_ip(buf, (unsigned)n, h.flags, p))
            return n;
    } while (net_now_ms() < end);
    return -1;
}

int net_ping(struct net_if *ifc, uint32_t ip, unsigned timeout_ms)
{
    uint8_t mac[6];
    uint32_t hop = ((ip ^ ifc->ip) & ifc->netmask) ? ifc->router : ip;
    if (net_arp_resolve(ifc, hop, mac, timeout_ms) < 0)
        return -1;
    uint8_t icmp[16] = {8, 0, 0, 0, 0x12, 0x34, 0, 1, 'v', 'm', 'k', 'i', 't', 'p', 'n', 'g'};
    net_put16(icmp + 2, net_csum(icmp, sizeof(icmp), 0));
    uint8_t buf[VNET_BUF_SIZE];
    unsigned n = net_build_ip(buf, ifc->mac, mac, ifc->ip, ip, IP_PROTO_ICMP, icmp, sizeof(icmp));
    if (vnet_send(ifc->nic, buf, n) < 0)
        return -1;
    uint64_t end = net_now_ms() + timeout_ms;
    struct net_pkt p;
    while (net_now_ms() < end) {
        if (net_recv_ip(ifc, buf, sizeof(buf), &p, 100) < 0)
            continue;
        if (p.proto == IP_PROTO_ICMP && p.src == ip && p.l4len >= 8 && p.l4[0] == 0 &&
            net_be16(p.l4 + 4) == 0x1234)
            return 0;
    }
    return -1;
}

/* DHCP (RFC 2131): just enough for libslirp's and dnsmasq's servers. */
static unsigned dhcp_build(struct net_if *ifc, uint8_t *buf, uint8_t type, uint32_t xid,
                           uint32_t req_ip, uint32_t server)
{
    uint8_t *d = buf + ETH_HLEN + 20 + 8;
    memset(d, 0, 300);
    d[0] = 1;
    d[1] = 1;
    d[2] = 6;
    net_put32(d + 4, xid);
    net_put16(d + 10, 0x8000); /* broadcast replies: we have no address yet */
    memcpy(d + 28, ifc->mac, 6);
    net_put32(d + 236, 0x63825363);
    uint8_t *o = d + 240;
    *o++ = 53, *o++ = 1, *o++ = type;
    if (req_ip) {
        *o++ = 50, *o++ = 4;
        net_put32(o, req_ip);
        o += 4;
    }
    if (server) {
        *o++ = 54, *o++ = 4;
        net_put32(o, server);
        o += 4;
    }
    *o++ = 55, *o++ = 2, *o++ = 1, *o++ = 3;
    *o++ = 255;
    return net_build_udp(buf, ifc->mac, net_bcast, 0, 0xffffffffu, 68, 67, d, 300, false);
}

/* Type of a DHCP reply for xid (0 when it is not one), with yiaddr and options parsed. */
static int dhcp_parse(const struct net_pkt *p, uint32_t xid, uint32_t *yiaddr, uint32_t *server,
                      uint32_t *router, uint32_t *mask)
{
    if (p->proto != IP_PROTO_UDP || p->sport != 67 || p->dport != 68 || p->datalen < 240)
        return 0;
    const uint8_t *d = p->data;
    if (d[0] != 2 || net_be32(d + 4) != xid || net_be32(d + 236) != 0x63825363)
        return 0;
    *yiaddr = net_be32(d + 16);
    int type = 0;
    for (unsigned i = 240; i < p->datalen && d[i] != 255;) {
        if (d[i] == 0) {
            i++;
            continue;
        }
        if (i + 2 > p->datalen || i + 2 + d[i + 1] > p->datalen)
            break;
        uint8_t opt = d[i], ol = d[i + 1];
        const uint8_t *v = d + i + 2;
        if (opt == 53 && ol >= 1)
            type = v[0];
        else if (opt == 54 && ol >= 4)
            *server = net_be32(v);
        else if (opt == 3 && ol >= 4)
            *router = net_be32(v);
        else if (opt == 1 && ol >= 4)
            *mask = net_be32(v);
        i += 2u + ol;
    }
    return type;
}

int net_dhcp(struct net_if *ifc, unsigned timeout_ms)
{
    uint8_t buf[VNET_BUF_SIZE];
    uint32_t xid = 0x564d4b00u ^ net_be32(ifc->mac + 2);
    uint32_t offered = 0, server = 0, router = 0, mask = 0;
    uint64_t end = net_now_ms() + timeout_ms;
    uint8_t want = 2; /* OFFER, then ACK */
    uint64_t resend = 0;
    struct net_pkt p;
    while (net_now_ms() < end) {
        if (net_now_ms() >= resend) {
            unsigned n = want == 2 ? dhcp_build(ifc, buf, 1, xid, 0, 0)
                                   : dhcp_build(ifc, buf, 3, xid, offered, server);
            if (vnet_send(ifc->nic, buf, n) < 0)
                return -1;
            resend = net_now_ms() + 1000;
        }
        if (net_recv_ip(ifc, buf, sizeof(buf), &p, 50) < 0)
            continue;
        uint32_t yi = 0;
        int t = dhcp_parse(&p, xid, &yi, &server, &router, &mask);
        if (want == 2 && t == 2) {
            offered = yi;
            want = 5;
            resend = 0;
        } else if (want == 5 && t == 5) {
            ifc->ip = yi;
            ifc->router = router;
            ifc->netmask = mask ? mask : IP4(255, 255, 255, 0);
            return 0;
        } else if (want == 5 && t == 6) {
            want = 2;
            resend = 0;
        }
    }
    return -1;
}
