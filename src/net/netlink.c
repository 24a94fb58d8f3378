/* rtnetlink message building and parsing, and a blocking request/ACK socket. */
#include "net/netlink.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void *nl_reserve(struct nl_msg *m, size_t len)
{
    size_t alen = NLMSG_ALIGN(len);
    if (m->overflow || alen > m->cap - m->len) {
        m->overflow = true;
        return NULL;
    }
    void *p = m->buf + m->len;
    memset(p, 0, alen);
    m->len += alen;
    return p;
}

void nl_msg_init(struct nl_msg *m, void *buf, size_t cap, uint16_t type, uint16_t flags,
                 uint32_t seq, const void *hdr, size_t hdrlen)
{
    memset(m, 0, sizeof(*m));
    m->buf = buf;
    m->cap = cap;
    struct nlmsghdr *h = nl_reserve(m, NLMSG_HDRLEN);
    if (!h)
        return;
    h->nlmsg_type = type;
    h->nlmsg_flags = flags | NLM_F_REQUEST;
    h->nlmsg_seq = seq;
    void *fam = nl_reserve(m, hdrlen);
    if (fam && hdrlen)
        memcpy(fam, hdr, hdrlen);
}

void nl_put(struct nl_msg *m, uint16_t type, const void *data, size_t len)
{
    if (len > 0xffff - NLA_HDRLEN) {
        m->overflow = true;
        return;
    }
    struct nlattr *a = nl_reserve(m, NLA_HDRLEN + len);
    if (!a)
        return;
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    if (len)
        memcpy((uint8_t *)a + NLA_HDRLEN, data, len);
}

void nl_put_u8(struct nl_msg *m, uint16_t type, uint8_t v) { nl_put(m, type, &v, 1); }
void nl_put_u32(struct nl_msg *m, uint16_t type, uint32_t v) { nl_put(m, type, &v, 4); }
void nl_put_str(struct nl_msg *m, uint16_t type, const char *s) { nl_put(m, type, s, strlen(s) + 1); }

void nl_nest_start(struct nl_msg *m, uint16_t type)
{
    if (m->depth >= NL_MAX_NEST) {
        m->overflow = true;
        return;
    }
    size_t off = m->len;
    struct nlattr *a = nl_reserve(m, NLA_HDRLEN);
    if (!a)
        return;
    a->nla_type = type | NLA_F_NESTED;
    m->nest[m->depth++] = off;
}

void nl_nest_end(struct nl_msg *m)
{
    if (m->overflow || !m->depth)
        return;
    size_t off = m->nest[--m->depth];
    struct nlattr *a = (struct nlattr *)(m->buf + off);
    a->nla_len = (uint16_t)(m->len - off);
}

int nl_msg_end(struct nl_msg *m)
{
    if (m->overflow || m->depth || m->len < NLMSG_HDRLEN)
        return -EMSGSIZE;
    ((struct nlmsghdr *)m->buf)->nlmsg_len = (uint32_t)m->len;
    return (int)m->len;
}

int nl_parse_attrs(const void *data, size_t len, const struct nlattr **tb, unsigned max)
{
    memset(tb, 0, max * sizeof(*tb));
    const uint8_t *p = data;
    while (len >= NLA_HDRLEN) {
        const struct nlattr *a = (const struct nlattr *)p;
        if (a->nla_len < NLA_HDRLEN || a->nla_len > len)
            return -EINVAL;
        unsigned type = a->nla_type & NLA_TYPE_MASK;
        if (type < max)
            tb[type] = a;
        size_t step = NLA_ALIGN(a->nla_len);
        if (step >= len)
            break;
        p += step;
        len -= step;
    }
    return 0;
}

uint32_t nl_attr_u32(const struct nlattr *a)
{
    uint32_t v = 0;
    if (a && nl_attr_len(a) >= 4)
        memcpy(&v, nl_attr_data(a), 4);
    return v;
}

uint8_t nl_attr_u8(const struct nlattr *a)
{
    return a && nl_attr_len(a) >= 1 ? *(const uint8_t *)nl_attr_data(a) : 0;
}

void nl_attr_str(const struct nlattr *a, char *out, size_t outlen)
{
    out[0] = 0;
    if (!a || !outlen)
        return;
    size_t n = strnlen(nl_attr_data(a), nl_attr_len(a));
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, nl_attr_data(a), n);
    out[n] = 0;
}

int nl_open(struct nl_sock *s)
{
    s->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s->fd < 0)
        return -errno;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        close(s->fd);
        return e;
    }
    int one = 1;
    setsockopt(s->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    s->seq = (uint32_t)getpid() << 8;
    return 0;
}

void nl_close(struct nl_sock *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

int nl_talk(struct nl_sock *s, struct nl_msg *m,
            int (*cb)(const struct nlmsghdr *h, void *opaque), void *opaque)
{
    int len = nl_msg_end(m);
    if (len < 0)
        return len;
    struct nlmsghdr *req = (struct nlmsghdr *)m->buf;
    bool dump = (req->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    req->nlmsg_seq = ++s->seq;
    if (!dump)
        req->nlmsg_flags |= NLM_F_ACK;
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    if (sendto(s->fd, m->buf, (size_t)len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
        return -errno;
    size_t cap = 65536;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    for (;;) {
        ssize_t n = recv(s->fd, buf, cap, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        bool done = false;
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != req->nlmsg_seq)
                continue;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
                    ret = -EIO;
                else
                    ret = e->error; /* 0 is the ACK */
                done = true;
                break;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                done = true;
                break;
            }
            if (cb && ret == 0)
                ret = cb(h, opaque);
        }
        if (done)
            break;
        if (!dump && ret)
            break;
    }
    free(buf);
    return ret;
}
