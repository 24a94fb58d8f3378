/* -netdev tap/bridge against the kernel (run inside a namespace by net_test.py): scripts,
 * vnet headers both ways, offloads, frames to and from the host stack, multiqueue, cleanup. */
#include "base/evloop.h"
#include "net/net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct evloop *ev;
static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

struct client {
    uint8_t frames[64][2048];
    size_t len[64];
    unsigned n;
};

static ssize_t c_receive(void *opaque, unsigned q, const struct iovec *iov, int iovcnt)
{
    struct client *c = opaque;
    if (c->n >= 64 || iovcnt != 1 || iov[0].iov_len > 2048)
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

static void read_small(const char *path, char *out, size_t len)
{
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(out, (int)len, f))
        out[0] = 0;
    out[strcspn(out, "\n")] = 0;
    fclose(f);
}

static void write_script(const char *path, const char *body)
{
    FILE *f = fopen(path, "w");
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(path, 0755);
}

/* Waits up to 3 s for a frame in c (from index from) with the given ethertype at off+12. */
static int wait_frame(struct client *c, unsigned from, size_t off, uint16_t ethertype)
{
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&lock);
        for (unsigned k = from; k < c->n; k++) {
            if (c->len[k] >= off + 14 &&
                (c->frames[k][off + 12] << 8 | c->frames[k][off + 13]) == ethertype) {
                pthread_mutex_unlock(&lock);
                return (int)k;
            }
        }
        pthread_mutex_unlock(&lock);
        usleep(10000);
    }
    return -1;
}

static void poke(const char *ip)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    sendto(s, "x", 1, 0, (struct sockaddr *)&a, sizeof(a));
    close(s);
}

static uint16_t csum(const uint8_t *p, size_t len)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void test_tap(const char *dir)
{
    char up[256], down[256], upm[256], downm[256], body[512];
    snprintf(up, sizeof(up), "%s/up.sh", dir);
    snprintf(down, sizeof(down), "%s/down.sh", dir);
    snprintf(upm, sizeof(upm), "%s/up.marker", dir);
    snprintf(downm, sizeof(downm), "%s/down.marker", dir);
    snprintf(body, sizeof(body),
             "echo \"$1\" > %s\nip addr add 10.77.0.1/24 dev \"$1\" && ip link set \"$1\" up",
             upm);
    write_script(up, body);
    snprintf(body, sizeof(body), "echo \"$1\" > %s", downm);
    write_script(down, body);

    struct net_backend_opts o;
    net_backend_opts_init(&o, NET_BACKEND_TAP, "t0");
    o.ifname = "vmt0";
    o.script = up;
    o.downscript = down;
    struct net_backend *nb = NULL;
    pthread_mutex_lock(&lock);
    int r = net_backend_new(&o, ev, &nb);
    pthread_mutex_unlock(&lock);
    CHECK(r == 0, "net_backend_new tap: %d", r);
    if (r)
        return;
    char m[64];
    read_small(upm, m, sizeof(m));
    CHECK(!strcmp(m, "vmt0"), "up script got '%s'", m);
    CHECK(!strcmp(net_backend_ifname(nb), "vmt0"), "ifname %s", net_backend_ifname(nb));
    uint32_t caps = net_backend_offload_caps(nb);
    CHECK(caps & NET_OFFLOAD_VNET_HDR, "caps %#x", caps);
    CHECK(caps & NET_OFFLOAD_CSUM, "caps %#x", caps);
    CHECK(caps & NET_OFFLOAD_TSO4, "caps %#x", caps);
    CHECK(strstr(net_backend_info(nb), "vnet_hdr=on"), "info %s", net_backend_info(nb));

    struct client c = {0};
    pthread_mutex_lock(&lock);
    net_backend_attach(nb, &ops, &c);
    CHECK(net_backend_set_vnet_hdr_len(nb, 12) == 0, "hdr 12");
    CHECK(net_backend_set_offload(nb, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4) == 0, "offload");
    CHECK(net_backend_set_offload(nb, NET_OFFLOAD_TSO4) != 0, "TSO without CSUM accepted");
    pthread_mutex_unlock(&lock);

    /* Host -> guest with a 12-byte header: the kernel ARPs for 10.77.0.2 through the TAP. */
    poke("10.77.0.2");
    int k = wait_frame(&c, 0, 12, 0x0806);
    CHECK(k >= 0, "no ARP frame with a 12-byte vnet header (%u frames)", c.n);
    if (k >= 0) {
        static const uint8_t zero[12];
        CHECK(!memcmp(c.frames[k], zero, 2), "vnet header flags/gso not zero for ARP");
        CHECK(!memcmp(c.frames[k] + 12, "\xff\xff\xff\xff\xff\xff", 6), "ARP not broadcast");
    }

    /* Guest -> host: a UDP datagram from 10.77.0.2 reaches a socket on 10.77.0.1. */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000)};
    inet_pton(AF_INET, "10.77.0.1", &sa.sin_addr);
    CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind: %s", strerror(errno));
    struct timeval tv = {3, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char mac_str[32];
    read_small("/sys/class/net/vmt0/address", mac_str, sizeof(mac_str));
    uint8_t frame[12 + 14 + 20 + 8 + 16] = {0};
    uint8_t *e = frame + 12;
    unsigned mv[6];
    sscanf(mac_str, "%x:%x:%x:%x:%x:%x", &mv[0], &mv[1], &mv[2], &mv[3], &mv[4], &mv[5]);
    for (int i = 0; i < 6; i++)
        e[i] = (uint8_t)mv[i];
    static const uint8_t gmac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    memcpy(e + 6, gmac, 6);
    e[12] = 0x08;
    uint8_t *ip = e + 14;
    ip[0] = 0x45;
    ip[3] = 20 + 8 + 16;
    ip[8] = 64;
    ip[9] = 17;
    inet_pton(AF_INET, "10.77.0.2", ip + 12);
    inet_pton(AF_INET, "10.77.0.1", ip + 16);
    uint16_t cs = csum(ip, 20);
    ip[10] = (uint8_t)(cs >> 8);
    ip[11] = (uint8_t)cs;
    uint8_t *udp = ip + 20;
    udp[0] = 0x30, udp[1] = 0x39;
    udp[2] = 40000 >> 8, udp[3] = 40000 & 0xff;
    udp[5] = 8 + 16;
    memcpy(udp + 8, "hello-from-guest", 16);
    struct iovec iov = {frame, sizeof(frame)};
    pthread_mutex_lock(&lock);
    ssize_t sent = net_backend_send(nb, 0, &iov, 1);
    pthread_mutex_unlock(&lock);
    CHECK(sent == (ssize_t)sizeof(frame), "send %zd", sent);
    char got[64] = "";
    ssize_t n = recv(s, got, sizeof(got), 0);
    CHECK(n == 16 && !memcmp(got, "hello-from-guest", 16), "host socket got %zd bytes", n);
    close(s);

    /* Without a header the device sees bare Ethernet; the backend strips the kernel's. */
    pthread_mutex_lock(&lock);
    CHECK(net_backend_set_offload(nb, 0) == 0, "offload off");
    CHECK(net_backend_set_vnet_hdr_len(nb, 0) == 0, "hdr 0");
    unsigned from = c.n;
    pthread_mutex_unlock(&lock);
    poke("10.77.0.3");
    k = wait_frame(&c, from, 0, 0x0806);
    CHECK(k >= 0, "no bare ARP frame after vnet_hdr_len 0");
    if (k >= 0)
        CHECK(!memcmp(c.frames[k], "\xff\xff\xff\xff\xff\xff", 6), "bare ARP not at offset 0");

    pthread_mutex_lock(&lock);
    net_backend_free(nb);
    pthread_mutex_unlock(&lock);
    read_small(downm, m, sizeof(m));
    CHECK(!strcmp(m, "vmt0"), "down script got '%s'", m);
    CHECK(access("/sys/class/net/vmt0", F_OK) != 0, "vmt0 still exists after free");
}

static void test_bridge_mq(void)
{
    struct net_backend_opts o;
    net_backend_opts_init(&o, NET_BACKEND_BRIDGE, "b0");
    o.br = "tbr0";
    o.queues = 2;
    struct net_backend *nb = NULL;
    pthread_mutex_lock(&lock);
    int r = net_backend_new(&o, ev, &nb);
    pthread_mutex_unlock(&lock);
    CHECK(r == 0, "bridge backend: %d", r);
    if (r)
        return;
    char path[128], link[256] = "";
    const char *ifn = net_backend_ifname(nb);
    snprintf(path, sizeof(path), "/sys/class/net/%s/master", ifn);
    ssize_t l = readlink(path, link, sizeof(link) - 1);
    if (l > 0)
        link[l] = 0;
    CHECK(l > 0 && !strcmp(basename(link), "tbr0"), "%s master is '%s'", ifn, link);
    CHECK(net_backend_queues(nb) == 2, "queues %u", net_backend_queues(nb));
    char flags[32];
    snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", ifn);
    read_small(path, flags, sizeof(flags));
    CHECK(strtoul(flags, NULL, 16) & 0x100, "tun_flags %s lacks IFF_MULTI_QUEUE", flags);
    char saved[16];
    snprintf(saved, sizeof(saved), "%s", ifn);
    pthread_mutex_lock(&lock);
    net_backend_free(nb);
    pthread_mutex_unlock(&lock);
    snprintf(path, sizeof(path), "/sys/class/net/%s", saved);
    CHECK(access(path, F_OK) != 0, "%s still exists after free", saved);

    o.id = "b1";
    o.br = "nosuchbr";
    o.queues = 1;
    pthread_mutex_lock(&lock);
    r = net_backend_new(&o, ev, &nb);
    pthread_mutex_unlock(&lock);
    CHECK(r == -ENODEV, "missing bridge gave %d", r);
    CHECK(!net_backend_lookup("b1"), "failed backend registered");
}

/* A VMM that exit()s with the backend alive still runs the downscript; the TAP goes away. */
static void test_atexit(const char *dir)
{
    char down[256], marker[256], body[512];
    snprintf(down, sizeof(down), "%s/down2.sh", dir);
    snprintf(marker, sizeof(marker), "%s/down2.marker", dir);
    snprintf(body, sizeof(body), "echo \"$1\" > %s", marker);
    write_script(down, body);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct evloop *ev2 = evloop_new();
        struct net_backend_opts o;
        net_backend_opts_init(&o, NET_BACKEND_TAP, "t2");
        o.ifname = "vmt2";
        o.script = "";
        o.downscript = down;
        struct net_backend *nb;
        if (net_backend_new(&o, ev2, &nb) < 0)
            _exit(3);
        evloop_free(ev2); /* the loop is gone before exit, as in a VMM's teardown */
        exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
    char m[64];
    read_small(marker, m, sizeof(m));
    CHECK(!strcmp(m, "vmt2"), "downscript at exit got '%s'", m);
    CHECK(access("/sys/class/net/vmt2", F_OK) != 0, "vmt2 still exists after exit");
}

int main(void)
{
    if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK) != 0) {
        printf("SKIP: needs root and /dev/net/tun\n");
        return 77;
    }
    char dir[] = "/tmp/vmkit-tapbe-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    ev = evloop_new();
    evloop_set_lock(ev, &lock);
    pthread_t t;
    pthread_create(&t, NULL, loop_main, NULL);
    test_tap(dir);
    test_bridge_mq();
    test_atexit(dir);
    evloop_stop(ev);
    pthread_join(t, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("warning: could not remove %s\n", dir);
    printf(failures ? "%d check(s) failed\n" : "all checks passed\n", failures);
    return failures ? 1 : 0;
}
