/* rtnetlink messages: a builder that writes into a caller's buffer, a parser, and a socket. */
#pragma once
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NL_MAX_NEST 8

/* A message under construction. Builders never overflow buf: on lack of room they set
 * overflow and later calls do nothing; nl_msg_end() then fails with -EMSGSIZE. */
struct nl_msg {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow;
    size_t nest[NL_MAX_NEST]; /* offsets of open nested attributes */
    unsigned depth;
};

/* Starts a message: nlmsghdr(type, flags | NLM_F_REQUEST, seq) followed by hdrlen bytes of
 * the family header (e.g. struct ifinfomsg) copied from hdr. */
void nl_msg_init(struct nl_msg *m, void *buf, size_t cap, uint16_t type, uint16_t flags,
                 uint32_t seq, const void *hdr, size_t hdrlen);
void nl_put(struct nl_msg *m, uint16_t type, const void *data, size_t len);
void nl_put_u8(struct nl_msg *m, uint16_t type, uint8_t v);
void nl_put_u32(struct nl_msg *m, uint16_t type, uint32_t v);
void nl_put_str(struct nl_msg *m, uint16_t type, const char *s); /* with its NUL */
void nl_nest_start(struct nl_msg *m, uint16_t type);
void nl_nest_end(struct nl_msg *m);
/* Finishes nlmsg_len; returns the total length or -EMSGSIZE. */
int nl_msg_end(struct nl_msg *m);

/* Walks attributes in [data, data+len): fills tb[type] (type < max) with pointers to the
 * attribute headers; later duplicates win. Malformed lengths stop the walk (-EINVAL). */
int nl_parse_attrs(const void *data, size_t len, const struct nlattr **tb, unsigned max);
static inline const void *nl_attr_data(const struct nlattr *a) { return (const uint8_t *)a + NLA_HDRLEN; }
static inline size_t nl_attr_len(const struct nlattr *a) { return a->nla_len - NLA_HDRLEN; }
uint32_t nl_attr_u32(const struct nlattr *a); /* 0 when too short */
uint8_t nl_attr_u8(const struct nlattr *a);
/* Copies a string attribute into out (NUL-terminated, truncated); "" when malformed. */
void nl_attr_str(const struct nlattr *a, char *out, size_t outlen);

struct nl_sock {
    int fd;
    uint32_t seq;
};

int nl_open(struct nl_sock *s);
void nl_close(struct nl_sock *s);
/* Sends a request (NLM_F_ACK is added) and waits for its ACK: 0 or the kernel's -errno. For
 * dumps (NLM_F_DUMP), calls cb for every reply message until NLMSG_DONE; cb returns 0 to
 * continue or -errno to fail. */
int nl_talk(struct nl_sock *s, struct nl_msg *m,
            int (*cb)(const struct nlmsghdr *h, void *opaque), void *opaque);
