/* Test-guest virtio-net driver (polled, on rt/virtio.h) and a tiny Ethernet/ARP/IPv4/UDP/ICMP/TCP/DHCP kit. */
#pragma once
#include "rt.h"

/* ---- virtio-net (virtio 1.x, device ID 1) ---- */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_CTRL_RX 18
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_F_MQ 22

#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP 3
#define VIRTIO_NET_HDR_GSO_TCPV6 4

struct virtio_net_hdr {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
} __attribute__((packed));

#define VNET_RX_BUFS 16
#define VNET_BUF_SIZE 2048
#define VNET_MAX_FRAME (VNET_BUF_SIZE - sizeof(struct virtio_net_hdr))

struct vnet;
/* Finds the index-th virtio-net PCI function (0 = first), negotiates want & offered features
 * (always VERSION_1; MAC and STATUS when offered), sets up rx queue 0 (filled with buffers), tx
 * queue 0 and, with CTRL_VQ in want, the control queue. NULL when there is no such device or
 * setup fails (printed). */
struct vnet *vnet_open(unsigned index, uint64_t want);
const uint8_t *vnet_mac(const struct vnet *n);
uint64_t vnet_features(const struct vnet *n);
uint16_t vnet_status(const struct vnet *n);
/* Queues one frame with a zero header (or *hdr) and waits until the device consumed it.
 * 0, or -1 when the device did not take it within a second. */
int vnet_send_hdr(struct vnet *n, const struct virtio_net_hdr *hdr, const void *frame, unsigned len);
int vnet_send(struct vnet *n, const void *frame, unsigned len);
/* Polls for a frame for up to timeout_ms; copies up to cap bytes of it (without the header)
 * to buf and the header to *hdr (when not NULL). Frame length, or -1 on timeout. */
int vnet_recv(struct vnet *n, void *buf, unsigned cap, struct virtio_net_hdr *hdr, unsigned timeout_ms);
/* Control queue command (class, cmd, data); returns the device's ack (0 = OK) or -1. */
int vnet_ctrl(struct vnet *n, uint8_t cls, uint8_t cmd, const void *data, unsigned len);
/* The device's status register bits (VIRTIO_CONFIG_S_*), e.g. to see NEEDS_RESET. */
uint8_t vnet_device_status(struct vnet *n);
/* Raw access to the tx queue for hostile tests: a chain of (addr, len) guest buffers, device-readable. */
int vnet_send_raw_chain(struct vnet *n, const uint64_t *addrs, const uint32_t *lens, unsigned count);

/* ---- time ---- */
/* A TSC clock calibrated against the ACPI PM timer on first use (which must be in ring 0;
 * vnet_open does it). Afterwards the clock and every helper here use no port I/O, so they
 * also run in ring 3. */
void net_clock_init(void);
uint64_t net_now_ms(void);
uint64_t net_now_ns(void);

/* ---- protocols ---- */
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define IP_PROTO_ICMP 1
#define IP_PROTO_TCP 6
#define IP_PROTO_UDP 17
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

static inline uint16_t net_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t net_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void net_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void net_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
extern const uint8_t net_bcast[6];

/* Internet checksum of len bytes, folded with an initial partial sum. */
uint16_t net_csum(const void *data, unsigned len, uint32_t sum);
/* Pseudo-header sum for UDP/TCP over IPv4. */
uint32_t net_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, unsigned len);

/* An IPv4 endpoint on one NIC: our address and the resolved peer. */
struct net_if {
    struct vnet *nic;
    uint32_t ip, router, netmask;
    uint8_t mac[6];
};
void net_if_init(struct net_if *ifc, struct vnet *nic, uint32_t ip);

/* Builds an Ethernet + IPv4 + L4 frame in buf; returns its length. The L4 payload (including
 * its header when the caller built one) is copied after the IP header. */
unsigned net_build_ip(uint8_t *buf, const uint8_t *src_mac, const uint8_t *dst_mac, uint32_t src,
                      uint32_t dst, uint8_t proto, const void *l4, unsigned l4len);
/* UDP frame with a full checksum (csum_partial: leave only the pseudo-header sum in the
 * checksum field, for VIRTIO_NET_HDR_F_NEEDS_CSUM). */
unsigned net_build_udp(uint8_t *buf, const uint8_t *src_mac, const uint8_t *dst_mac, uint32_t src,
                       uint32_t dst, uint16_t sport, uint16_t dport, const void *data, unsigned len,
                       bool csum_partial);
/* TCP segment with flags (TCP_SYN etc.), no options, no data, full checksum. */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
unsigned net_build_tcp(uint8_t *buf, const uint8_t *src_mac, const uint8_t *dst_mac, uint32_t src,
                       uint32_t dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                       uint8_t flags);

/* A parsed IPv4 frame: pointers into the frame. */
struct net_pkt {
    const uint8_t *eth, *ip, *l4, *data;
    unsigned len, l4len, datalen;
    uint32_t src, dst;
    uint8_t proto;
    uint16_t sport, dport; /* UDP/TCP */
    uint8_t tcp_flags;
    uint32_t tcp_seq;
};
/* true when frame is a well-formed IPv4 packet (header checksum checked; UDP/TCP checksums are
 * checked unless the NIC said DATA_VALID/NEEDS_CSUM via hdr_flags). */
bool net_parse_ip(const uint8_t *frame, unsigned len, uint8_t hdr_flags, struct net_pkt *p);

/* Answers ARP requests for ifc->ip and ICMP echo requests; returns true when it consumed the frame. */
bool net_handle_service(struct net_if *ifc, const uint8_t *frame, unsigned len);
/* ARP for ip; 0 with mac filled, or -1 after timeout_ms. */
int net_arp_resolve(struct net_if *ifc, uint32_t ip, uint8_t mac[6], unsigned timeout_ms);
/* Receives the next IPv4 frame that is not ARP/ICMP-echo traffic for us (those are answered). */
int net_recv_ip(struct net_if *ifc, uint8_t *buf, unsigned cap, struct net_pkt *p, unsigned timeout_ms);
/* DHCP DISCOVER/OFFER/REQUEST/ACK; fills ifc->ip, router, netmask. 0 or -1. */
int net_dhcp(struct net_if *ifc, unsigned timeout_ms);
/* ICMP echo to ip (resolving through ARP, or the router when off-link); 0 when answered. */
int net_ping(struct net_if *ifc, uint32_t ip, unsigned timeout_ms);
