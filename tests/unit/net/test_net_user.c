/* -netdev user (libslirp): ARP and DHCP answered with QEMU's defaults, delivered on the event
 * loop (not inside send); hostfwd listens on the host; a taken port fails cleanly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "base/evloop.h"
#include "net/net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct evloop *ev;
static pthread_t loop_thread;

struct client {
    uint8_t frames[32][1600];
    size_t len[32];
    unsigned n;
};

static ssize_t c_receive(void *opaque, unsigned q, const struct iovec *iov, int iovcnt)
{
    struct client *c = opaque;
    if (c->n >= 32 || iovcnt != 1 || iov[0].iov_len > sizeof(c->frames[0]))
        return -ENOBUFS;
    memcpy(c->frames[c->n], iov[0].iov_base, iov[0].iov_len);
    c->len[c->n++] = iov[0].iov_len;
    return (ssize_t)iov[0].iov_len;
}

static const struct net_client_ops ops = {.receive = c_receive};

static void *loop_main(void *arg)
{
    evloop_run(ev);
    return NULL;
}

#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        bool ok_ = false;                                                                          \
        for (int i_ = 0; i_ < 300 && !ok_; i_++) {                                                 \
            pthread_mutex_lock(&lock);                                                             \
            ok_ = (cond);                                                                          \
            pthread_mutex_unlock(&lock);                                                           \
            if (!ok_)                                                                              \
                usleep(10000);                                                                     \
        }                                                                                          \
        if (!ok_)                                                                                  \
            fail_msg("timed out waiting for %s", #cond);                                           \
    } while (0)

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

static uint16_t ip_csum(const uint8_t *p, size_t len)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static size_t build_dhcp_discover(uint8_t *f)
{
    memset(f, 0, 342);
    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    f[12] = 0x08;
    uint8_t *ip = f + 14;
    size_t bootp_len = 240 + 4;
    size_t udp_len = 8 + bootp_len;
    size_t ip_len = 20 + udp_len;
    ip[0] = 0x45;
    ip[2] = (uint8_t)(ip_len >> 8);
    ip[3] = (uint8_t)ip_len;
    ip[8] = 64;
    ip[9] = 17;
    memset(ip + 16, 0xff, 4);
    uint16_t cs = ip_csum(ip, 20);
    ip[10] = (uint8_t)(cs >> 8);
    ip[11] = (uint8_t)cs;
    uint8_t *udp = ip + 20;
    udp[1] = 68;
    udp[3] = 67;
    udp[4] = (uint8_t)(udp_len >> 8);
    udp[5] = (uint8_t)udp_len;
    uint8_t *b = udp + 8;
    b[0] = 1; /* BOOTREQUEST */
    b[1] = 1;
    b[2] = 6;
    b[4] = 0xde, b[5] = 0xad, b[6] = 0xbe, b[7] = 0xef; /* xid */
    memcpy(b + 28, guest_mac, 6);
    b[236] = 99, b[237] = 130, b[238] = 83, b[239] = 99;
    b[240] = 53, b[241] = 1, b[242] = 1; /* DHCPDISCOVER */
    b[243] = 255;
    return 14 + ip_len;
}

/* The value of DHCP option code in the BOOTP payload b (len bytes), or NULL. */
static const uint8_t *dhcp_opt(const uint8_t *b, size_t len, uint8_t code, uint8_t *olen)
{
    for (size_t i = 240; i + 2 <= len;) {
        if (b[i] == 255)
            break;
        if (b[i] == 0) {
            i++;
            continue;
        }
        if (i + 2 + b[i + 1] > len)
            break;
        if (b[i] == code) {
            *olen = b[i + 1];
            return b + i + 2;
        }
        i += 2 + b[i + 1];
    }
    return NULL;
}

static struct net_backend *make(struct net_backend_opts *o)
{
    struct net_backend *nb = NULL;
    pthread_mutex_lock(&lock);
    int r = net_backend_new(o, ev, &nb);
    pthread_mutex_unlock(&lock);
    assert_int_equal(r, 0);
    return nb;
}

static void test_dhcp_arp(void **state)
{
    struct net_backend_opts o;
    net_backend_opts_init(&o, NET_BACKEND_USER, "u0");
    o.hostname = "vm1";
    struct net_backend *nb = make(&o);
    struct client c = {0};
    pthread_mutex_lock(&lock);
    net_backend_attach(nb, &ops, &c);
    assert_non_null(strstr(net_backend_info(nb), "net=10.0.2.0/24"));

    uint8_t f[400];
    size_t len = build_dhcp_discover(f);
    struct iovec iov = {f, len};
    assert_int_equal(net_backend_send(nb, 0, &iov, 1), (ssize_t)len);
    assert_int_equal(c.n, 0); /* the reply is never delivered inside send */
    pthread_mutex_unlock(&lock);
    WAIT_FOR(c.n >= 1);

    const uint8_t *r = c.frames[0];
    assert_true(c.len[0] > 14 + 20 + 8 + 240);
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_true(!memcmp(r, guest_mac, 6) || !memcmp(r, bcast, 6));
    assert_int_equal(r[12], 0x08);
    assert_int_equal(r[13], 0x00);
    const uint8_t *ip = r + 14;
    assert_int_equal(ip[9], 17);
    char src[16];
    inet_ntop(AF_INET, ip + 12, src, sizeof(src));
    assert_string_equal(src, "10.0.2.2");
    const uint8_t *b = ip + (ip[0] & 15) * 4 + 8;
    size_t blen = c.len[0] - (size_t)(b - r);
    assert_int_equal(b[0], 2); /* BOOTREPLY */
    assert_int_equal(b[4], 0xde);
    char yi[16];
    inet_ntop(AF_INET, b + 16, yi, sizeof(yi));
    assert_string_equal(yi, "10.0.2.15");
    uint8_t olen;
    const uint8_t *v = dhcp_opt(b, blen, 53, &olen);
    assert_non_null(v);
    assert_int_equal(v[0], 2); /* DHCPOFFER */
    v = dhcp_opt(b, blen, 3, &olen);
    assert_non_null(v);
    inet_ntop(AF_INET, v, yi, sizeof(yi));
    assert_string_equal(yi, "10.0.2.2"); /* router */
    v = dhcp_opt(b, blen, 6, &olen);
    assert_non_null(v);
    inet_ntop(AF_INET, v, yi, sizeof(yi));
    assert_string_equal(yi, "10.0.2.3"); /* DNS */
    v = dhcp_opt(b, blen, 12, &olen);
    assert_non_null(v);
    assert_int_equal(olen, 3);
    assert_memory_equal(v, "vm1", 3);

    /* ARP who-has 10.0.2.2: the gateway answers. */
    uint8_t arp[42] = {0};
    memset(arp, 0xff, 6);
    memcpy(arp + 6, guest_mac, 6);
    arp[12] = 0x08, arp[13] = 0x06;
    uint8_t *a = arp + 14;
    a[1] = 1, a[2] = 0x08, a[4] = 6, a[5] = 4, a[7] = 1;
    memcpy(a + 8, guest_mac, 6);
    inet_pton(AF_INET, "10.0.2.15", a + 14);
    inet_pton(AF_INET, "10.0.2.2", a + 24);
    iov = (struct iovec){arp, sizeof(arp)};
    unsigned before = c.n;
    pthread_mutex_lock(&lock);
    net_backend_send(nb, 0, &iov, 1);
    pthread_mutex_unlock(&lock);
    WAIT_FOR(c.n > before);
    r = c.frames[before];
    assert_int_equal(r[12], 0x08);
    assert_int_equal(r[13], 0x06);
    assert_int_equal(r[14 + 7], 2); /* reply */
    inet_ntop(AF_INET, r + 14 + 14, src, sizeof(src));
    assert_string_equal(src, "10.0.2.2");

    /* A runt frame is refused, not passed to slirp. */
    iov = (struct iovec){arp, 10};
    pthread_mutex_lock(&lock);
    assert_true(net_backend_send(nb, 0, &iov, 1) < 0);
    net_backend_free(nb);
    pthread_mutex_unlock(&lock);
}

static void test_hostfwd(void **state)
{
    /* A free port, then forward it. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    bind(s, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(s, (struct sockaddr *)&sa, &sl);
    close(s);
    struct net_backend_opts o;
    net_backend_opts_init(&o, NET_BACKEND_USER, "u1");
    assert_int_equal(net_parse_hostfwd("tcp:127.0.0.1:0-:22", &o.hostfwd[0]), 0);
    o.hostfwd[0].host_port = ntohs(sa.sin_port);
    o.nhostfwd = 1;
    struct net_backend *nb = make(&o);
    s = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(s);

    /* The same port again: refused, nothing left registered. */
    o.id = "u2";
    struct net_backend *nb2 = NULL;
    pthread_mutex_lock(&lock);
    assert_int_equal(net_backend_new(&o, ev, &nb2), -EADDRINUSE);
    assert_null(net_backend_lookup("u2"));
    net_backend_free(nb);
    pthread_mutex_unlock(&lock);
    /* Freed: the port is closed again. */
    s = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_not_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(s);
}

static int setup(void **state)
{
    ev = evloop_new();
    evloop_set_lock(ev, &lock);
    pthread_create(&loop_thread, NULL, loop_main, NULL);
    return 0;
}

static int teardown(void **state)
{
    evloop_stop(ev);
    pthread_join(loop_thread, NULL);
    evloop_free(ev);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dhcp_arp),
        cmocka_unit_test(test_hostfwd),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
