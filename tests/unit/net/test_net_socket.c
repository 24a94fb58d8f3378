/* -netdev socket: two backends in one process exchange frames; QEMU's length framing on the
 * wire; flow control (no room -> held -> rx_ready); a hostile peer's bad length. */
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
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct evloop *ev;
static pthread_t loop_thread;

struct client {
    uint8_t frames[16][2048];
    size_t len[16];
    unsigned n;
    bool full; /* pretend the guest has no rx buffers */
    unsigned refused;
    bool link;
    unsigned link_changes;
};

static ssize_t c_receive(void *opaque, unsigned q, const struct iovec *iov, int iovcnt)
{
    struct client *c = opaque;
    if (c->full) {
        c->refused++;
        return 0;
    }
    if (c->n >= 16)
        return -ENOBUFS;
    size_t off = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (off + iov[i].iov_len > sizeof(c->frames[0]))
            return -EMSGSIZE;
        memcpy(c->frames[c->n] + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    c->len[c->n++] = off;
    return (ssize_t)off;
}

static void c_link(void *opaque, bool up)
{
    struct client *c = opaque;
    c->link = up;
    c->link_changes++;
}

static const struct net_client_ops ops = {.receive = c_receive, .link_changed = c_link};

static void *loop_main(void *arg)
{
    evloop_run(ev);
    return NULL;
}

/* Waits (up to 3 s) until cond holds, checking it under the machine lock. */
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

static uint16_t free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    bind(s, (struct sockaddr *)&a, sizeof(a));
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static struct net_backend *make(const char *id, enum net_socket_mode mode, uint16_t port,
                                const char *host)
{
    struct net_backend_opts o;
    net_backend_opts_init(&o, NET_BACKEND_SOCKET, id);
    o.socket_mode = mode;
    o.socket_addr.sin_port = htons(port);
    inet_pton(AF_INET, host, &o.socket_addr.sin_addr);
    struct net_backend *nb = NULL;
    pthread_mutex_lock(&lock);
    int r = net_backend_new(&o, ev, &nb);
    pthread_mutex_unlock(&lock);
    assert_int_equal(r, 0);
    return nb;
}

static ssize_t send_frame(struct net_backend *nb, const void *p, size_t len)
{
    struct iovec iov[2] = {{(void *)p, len / 2}, {(uint8_t *)p + len / 2, len - len / 2}};
    pthread_mutex_lock(&lock);
    ssize_t r = net_backend_send(nb, 0, iov, 2);
    pthread_mutex_unlock(&lock);
    return r;
}

static void test_pair(void **state)
{
    uint16_t port = free_port();
    struct net_backend *a = make("a", NET_SOCKET_LISTEN, port, "127.0.0.1");
    struct client ca = {0}, cb = {0};
    pthread_mutex_lock(&lock);
    assert_int_equal(net_backend_attach(a, &ops, &ca), 0);
    assert_int_equal(net_backend_attach(a, &ops, &cb), -EBUSY); /* one NIC per backend */
    assert_true(net_backend_link_up(a)); /* as QEMU: up even before a peer connects */
    assert_ptr_equal(net_backend_lookup("a"), a);
    assert_int_equal(net_backend_offload_caps(a), 0);
    assert_int_equal(net_backend_set_vnet_hdr_len(a, 12), -ENOTSUP);
    assert_non_null(strstr(net_backend_info(a), "listen=127.0.0.1:"));
    pthread_mutex_unlock(&lock);
    struct net_backend *b = make("b", NET_SOCKET_CONNECT, port, "127.0.0.1");
    pthread_mutex_lock(&lock);
    net_backend_attach(b, &ops, &cb);
    pthread_mutex_unlock(&lock);
    uint8_t f1[60], f2[1514];
    for (size_t i = 0; i < sizeof(f1); i++)
        f1[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(f2); i++)
        f2[i] = (uint8_t)(i * 7);
    assert_int_equal(send_frame(b, f1, sizeof(f1)), sizeof(f1));
    WAIT_FOR(ca.n == 1); /* a has accepted b */
    assert_int_equal(send_frame(a, f2, sizeof(f2)), sizeof(f2));
    WAIT_FOR(cb.n == 1);
    assert_int_equal(ca.len[0], sizeof(f1));
    assert_memory_equal(ca.frames[0], f1, sizeof(f1));
    assert_int_equal(cb.len[0], sizeof(f2));
    assert_memory_equal(cb.frames[0], f2, sizeof(f2));

    /* Flow control: the device has no room; the frame is held, not lost, and order is kept. */
    pthread_mutex_lock(&lock);
    ca.full = true;
    pthread_mutex_unlock(&lock);
    f1[0] = 0xa1;
    send_frame(b, f1, sizeof(f1));
    f1[0] = 0xa2;
    send_frame(b, f1, sizeof(f1));
    WAIT_FOR(ca.refused >= 1);
    usleep(50000);
    pthread_mutex_lock(&lock);
    assert_int_equal(ca.n, 1);
    assert_int_equal(ca.refused, 1); /* it stopped reading instead of retrying */
    ca.full = false;
    net_backend_rx_ready(a, 0);
    assert_int_equal(ca.n, 1); /* delivery happens on the loop, never inside rx_ready */
    pthread_mutex_unlock(&lock);
    WAIT_FOR(ca.n == 3);
    assert_int_equal(ca.frames[1][0], 0xa1);
    assert_int_equal(ca.frames[2][0], 0xa2);

    /* The peer goes away: frames to nobody are dropped, not queued or failed. */
    pthread_mutex_lock(&lock);
    net_backend_free(b);
    pthread_mutex_unlock(&lock);
    usleep(50000);
    assert_int_equal(send_frame(a, f2, sizeof(f2)), sizeof(f2));
    pthread_mutex_lock(&lock);
    assert_int_equal(ca.link_changes, 0);
    net_backend_free(a);
    assert_null(net_backend_lookup("a"));
    pthread_mutex_unlock(&lock);
}

static int raw_connect(uint16_t port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {3, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return s;
}

static void test_wire_format(void **state)
{
    uint16_t port = free_port();
    struct net_backend *c = make("c", NET_SOCKET_LISTEN, port, "127.0.0.1");
    struct client cc = {0};
    pthread_mutex_lock(&lock);
    net_backend_attach(c, &ops, &cc);
    pthread_mutex_unlock(&lock);
    int s = raw_connect(port);

    /* Two frames, the second split across writes and mid-header. */
    static const uint8_t stream1[] = {0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e', 0, 0};
    static const uint8_t stream2[] = {0, 3, 'x', 'y', 'z'};
    assert_int_equal(write(s, stream1, sizeof(stream1)), sizeof(stream1));
    usleep(20000);
    assert_int_equal(write(s, stream2, sizeof(stream2)), sizeof(stream2));
    WAIT_FOR(cc.n == 2);
    assert_int_equal(cc.len[0], 5);
    assert_memory_equal(cc.frames[0], "abcde", 5);
    assert_int_equal(cc.len[1], 3);
    assert_memory_equal(cc.frames[1], "xyz", 3);

    /* Outgoing: 4-byte big-endian length, then the frame. */
    uint8_t frame[300];
    memset(frame, 0x5a, sizeof(frame));
    assert_int_equal(send_frame(c, frame, sizeof(frame)), sizeof(frame));
    uint8_t got[304];
    size_t have = 0;
    while (have < sizeof(got)) {
        ssize_t r = read(s, got + have, sizeof(got) - have);
        assert_true(r > 0);
        have += (size_t)r;
    }
    static const uint8_t hdr[4] = {0, 0, 0x01, 0x2c};
    assert_memory_equal(got, hdr, 4);
    assert_memory_equal(got + 4, frame, sizeof(frame));

    /* A hostile peer's absurd length: the connection is dropped, nothing is delivered. */
    static const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    assert_int_equal(write(s, bad, sizeof(bad)), sizeof(bad));
    char b;
    assert_int_equal(read(s, &b, 1), 0); /* EOF */
    close(s);
    pthread_mutex_lock(&lock);
    assert_int_equal(cc.n, 2);
    pthread_mutex_unlock(&lock);

    /* And it listens again for a new peer. */
    s = raw_connect(port);
    static const uint8_t again[] = {0, 0, 0, 2, 'o', 'k'};
    assert_int_equal(write(s, again, sizeof(again)), sizeof(again));
    WAIT_FOR(cc.n == 3);
    assert_memory_equal(cc.frames[2], "ok", 2);
    close(s);
    pthread_mutex_lock(&lock);
    net_backend_free(c);
    pthread_mutex_unlock(&lock);
}

static void test_connect_refused(void **state)
{
    struct net_backend_opts o;
    net_backend_opts_init(&o, NET_BACKEND_SOCKET, "d");
    o.socket_mode = NET_SOCKET_CONNECT;
    o.socket_addr.sin_port = htons(free_port());
    o.socket_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct net_backend *nb = (void *)1;
    pthread_mutex_lock(&lock);
    assert_int_equal(net_backend_new(&o, ev, &nb), -ECONNREFUSED);
    assert_null(nb);
    assert_null(net_backend_lookup("d"));
    pthread_mutex_unlock(&lock);
}

static void test_mcast(void **state)
{
    uint16_t port = free_port();
    struct net_backend_opts o;
    net_backend_opts_init(&o, NET_BACKEND_SOCKET, "m1");
    o.socket_mode = NET_SOCKET_MCAST;
    o.socket_addr.sin_port = htons(port);
    inet_pton(AF_INET, "230.0.0.77", &o.socket_addr.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &o.socket_localaddr);
    struct net_backend *m1, *m2;
    pthread_mutex_lock(&lock);
    int r = net_backend_new(&o, ev, &m1);
    pthread_mutex_unlock(&lock);
    if (r < 0)
        skip(); /* no multicast on loopback here */
    o.id = "m2";
    pthread_mutex_lock(&lock);
    assert_int_equal(net_backend_new(&o, ev, &m2), 0);
    struct client c1 = {0}, c2 = {0};
    net_backend_attach(m1, &ops, &c1);
    net_backend_attach(m2, &ops, &c2);
    pthread_mutex_unlock(&lock);
    uint8_t f[64];
    memset(f, 0x33, sizeof(f));
    assert_int_equal(send_frame(m1, f, sizeof(f)), sizeof(f));
    WAIT_FOR(c2.n >= 1);
    assert_int_equal(c2.len[0], sizeof(f));
    assert_memory_equal(c2.frames[0], f, sizeof(f));
    pthread_mutex_lock(&lock);
    net_backend_free(m1);
    net_backend_free(m2);
    pthread_mutex_unlock(&lock);
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
        cmocka_unit_test(test_pair),
        cmocka_unit_test(test_wire_format),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_mcast),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
