/* rtnetlink message building and parsing: exact headers and attributes, overflow, malformed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <net/if.h>
#include "net/netif.h"
#include "net/netlink.h"
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <string.h>

static const struct nlattr *attr_at(const uint8_t *buf, size_t off)
{
    return (const struct nlattr *)(buf + off);
}

static void test_newlink_bridge(void **state)
{
    uint8_t buf[256];
    int len = netif_build_newlink_bridge(buf, sizeof(buf), "br0");
    /* nlmsghdr 16 + ifinfomsg 16 + IFNAME(4+4) + LINKINFO(4 + KIND(4+7 -> 12)) = 56 */
    assert_int_equal(len, 56);
    const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
    assert_int_equal(h->nlmsg_len, 56);
    assert_int_equal(h->nlmsg_type, RTM_NEWLINK);
    assert_int_equal(h->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    assert_int_equal(ifi->ifi_family, AF_UNSPEC);
    assert_int_equal(ifi->ifi_index, 0);
    const struct nlattr *a = attr_at(buf, 32);
    assert_int_equal(a->nla_type, IFLA_IFNAME);
    assert_int_equal(a->nla_len, 8);
    assert_memory_equal(nl_attr_data(a), "br0", 4);
    a = attr_at(buf, 40);
    assert_int_equal(a->nla_type, IFLA_LINKINFO | NLA_F_NESTED);
    assert_int_equal(a->nla_len, 16);
    a = attr_at(buf, 44);
    assert_int_equal(a->nla_type, IFLA_INFO_KIND);
    assert_int_equal(a->nla_len, 11);
    assert_memory_equal(nl_attr_data(a), "bridge", 7);
    /* Padding is zeroed so no stack garbage goes to the kernel. */
    assert_int_equal(buf[55], 0);
}

static void test_setlink(void **state)
{
    uint8_t buf[128];
    int len = netif_build_setlink_master(buf, sizeof(buf), 7, 3);
    assert_int_equal(len, 40);
    const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
    assert_int_equal(h->nlmsg_type, RTM_NEWLINK);
    assert_int_equal(h->nlmsg_flags, NLM_F_REQUEST);
    assert_int_equal(((const struct ifinfomsg *)NLMSG_DATA(h))->ifi_index, 7);
    const struct nlattr *a = attr_at(buf, 32);
    assert_int_equal(a->nla_type, IFLA_MASTER);
    assert_int_equal(nl_attr_u32(a), 3);
    /* nomaster is IFLA_MASTER 0 */
    netif_build_setlink_master(buf, sizeof(buf), 7, 0);
    assert_int_equal(nl_attr_u32(attr_at(buf, 32)), 0);

    len = netif_build_setlink_up(buf, sizeof(buf), 9, true);
    assert_int_equal(len, 32);
    const struct ifinfomsg *ifi = NLMSG_DATA((struct nlmsghdr *)buf);
    assert_int_equal(ifi->ifi_index, 9);
    assert_int_equal(ifi->ifi_flags, IFF_UP);
    assert_int_equal(ifi->ifi_change, IFF_UP);
    netif_build_setlink_up(buf, sizeof(buf), 9, false);
    assert_int_equal(ifi->ifi_flags, 0);
    assert_int_equal(ifi->ifi_change, IFF_UP);

    len = netif_build_dellink(buf, sizeof(buf), 4);
    assert_int_equal(len, 32);
    assert_int_equal(((struct nlmsghdr *)buf)->nlmsg_type, RTM_DELLINK);
}

static void test_stp(void **state)
{
    uint8_t buf[128];
    int len = netif_build_bridge_stp(buf, sizeof(buf), 5, true);
    assert_true(len > 0);
    const struct nlattr *tb[IFLA_MAX + 1];
    assert_int_equal(nl_parse_attrs(buf + 32, (size_t)len - 32, tb, IFLA_MAX + 1), 0);
    assert_non_null(tb[IFLA_LINKINFO]);
    const struct nlattr *li[IFLA_INFO_MAX + 1];
    assert_int_equal(nl_parse_attrs(nl_attr_data(tb[IFLA_LINKINFO]),
                                    nl_attr_len(tb[IFLA_LINKINFO]), li, IFLA_INFO_MAX + 1),
                     0);
    char kind[16];
    nl_attr_str(li[IFLA_INFO_KIND], kind, sizeof(kind));
    assert_string_equal(kind, "bridge");
    const struct nlattr *br[IFLA_BR_MAX + 1];
    assert_int_equal(nl_parse_attrs(nl_attr_data(li[IFLA_INFO_DATA]),
                                    nl_attr_len(li[IFLA_INFO_DATA]), br, IFLA_BR_MAX + 1),
                     0);
    assert_int_equal(nl_attr_u32(br[IFLA_BR_STP_STATE]), 1);
    netif_build_bridge_stp(buf, sizeof(buf), 5, false);
    nl_parse_attrs(buf + 32, (size_t)len - 32, tb, IFLA_MAX + 1);
    nl_parse_attrs(nl_attr_data(tb[IFLA_LINKINFO]), nl_attr_len(tb[IFLA_LINKINFO]), li,
                   IFLA_INFO_MAX + 1);
    nl_parse_attrs(nl_attr_data(li[IFLA_INFO_DATA]), nl_attr_len(li[IFLA_INFO_DATA]), br,
                   IFLA_BR_MAX + 1);
    assert_int_equal(nl_attr_u32(br[IFLA_BR_STP_STATE]), 0);
}

static void test_forward_delay(void **state)
{
    uint8_t buf[128];
    int len = netif_build_bridge_forward_delay(buf, sizeof(buf), 5, 200);
    assert_true(len > 0);
    const struct nlattr *tb[IFLA_MAX + 1], *li[IFLA_INFO_MAX + 1], *br[IFLA_BR_MAX + 1];
    assert_int_equal(((const struct ifinfomsg *)NLMSG_DATA((struct nlmsghdr *)buf))->ifi_index, 5);
    assert_int_equal(nl_parse_attrs(buf + 32, (size_t)len - 32, tb, IFLA_MAX + 1), 0);
    assert_int_equal(nl_parse_attrs(nl_attr_data(tb[IFLA_LINKINFO]),
                                    nl_attr_len(tb[IFLA_LINKINFO]), li, IFLA_INFO_MAX + 1),
                     0);
    assert_int_equal(nl_parse_attrs(nl_attr_data(li[IFLA_INFO_DATA]),
                                    nl_attr_len(li[IFLA_INFO_DATA]), br, IFLA_BR_MAX + 1),
                     0);
    assert_int_equal(nl_attr_u32(br[IFLA_BR_FORWARD_DELAY]), 200);
    assert_null(br[IFLA_BR_STP_STATE]); /* only what was asked for */
}

static void test_newaddr(void **state)
{
    uint8_t buf[128];
    struct in_addr a;
    inet_pton(AF_INET, "192.168.100.1", &a);
    int len = netif_build_newaddr(buf, sizeof(buf), 6, a, 24);
    /* 16 + ifaddrmsg 8 + 3 * (4 + 4) */
    assert_int_equal(len, 48);
    const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
    assert_int_equal(h->nlmsg_type, RTM_NEWADDR);
    assert_int_equal(h->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
    const struct ifaddrmsg *ifa = NLMSG_DATA(h);
    assert_int_equal(ifa->ifa_family, AF_INET);
    assert_int_equal(ifa->ifa_prefixlen, 24);
    assert_int_equal(ifa->ifa_index, 6);
    const struct nlattr *tb[IFA_MAX + 1];
    assert_int_equal(nl_parse_attrs(buf + 24, 24, tb, IFA_MAX + 1), 0);
    assert_memory_equal(nl_attr_data(tb[IFA_LOCAL]), &a, 4);
    assert_memory_equal(nl_attr_data(tb[IFA_ADDRESS]), &a, 4);
    struct in_addr bc;
    inet_pton(AF_INET, "192.168.100.255", &bc);
    assert_memory_equal(nl_attr_data(tb[IFA_BROADCAST]), &bc, 4);
}

static void test_overflow(void **state)
{
    uint8_t buf[40];
    memset(buf, 0xaa, sizeof(buf));
    /* 56 bytes do not fit in 40: refused, and nothing written past the end. */
    assert_int_equal(netif_build_newlink_bridge(buf, 36, "br0"), -EMSGSIZE);
    for (int i = 36; i < 40; i++)
        assert_int_equal(buf[i], 0xaa);
    struct nl_msg m;
    uint8_t b2[64];
    nl_msg_init(&m, b2, sizeof(b2), RTM_NEWLINK, 0, 0, NULL, 0);
    nl_nest_start(&m, 1);
    assert_int_equal(nl_msg_end(&m), -EMSGSIZE); /* unclosed nest */
}

static void test_parse_link(void **state)
{
    /* A bridge port as the kernel dumps it: name, master, linkinfo with slave data. */
    uint8_t buf[256];
    struct nl_msg m;
    struct ifinfomsg ifi = {.ifi_index = 12, .ifi_flags = IFF_UP};
    nl_msg_init(&m, buf, sizeof(buf), RTM_NEWLINK, 0, 0, &ifi, sizeof(ifi));
    nl_put_str(&m, IFLA_IFNAME, "tap7");
    nl_put_u32(&m, IFLA_MASTER, 3);
    nl_nest_start(&m, IFLA_LINKINFO);
    nl_put_str(&m, IFLA_INFO_KIND, "tun");
    nl_put_str(&m, IFLA_INFO_SLAVE_KIND, "bridge");
    nl_nest_start(&m, IFLA_INFO_SLAVE_DATA);
    nl_put_u8(&m, IFLA_BRPORT_STATE, BR_STATE_FORWARDING);
    nl_nest_end(&m);
    nl_nest_end(&m);
    assert_true(nl_msg_end(&m) > 0);
    struct netif_link l;
    assert_int_equal(netif_parse_link((struct nlmsghdr *)buf, &l), 0);
    assert_int_equal(l.index, 12);
    assert_string_equal(l.name, "tap7");
    assert_string_equal(l.kind, "tun");
    assert_string_equal(l.slave_kind, "bridge");
    assert_int_equal(l.master, 3);
    assert_true(l.up);
    assert_int_equal(l.port_state, BR_STATE_FORWARDING);
    assert_string_equal(netif_port_state_name(l.port_state), "forwarding");

    /* A lying attribute length is refused, not followed out of the buffer. */
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    struct nlattr *first = (struct nlattr *)(buf + 32);
    first->nla_len = 200;
    assert_int_equal(netif_parse_link(h, &l), -EINVAL);
    h->nlmsg_len = 20; /* shorter than ifinfomsg */
    assert_int_equal(netif_parse_link(h, &l), -EINVAL);
}

static void test_attr_str(void **state)
{
    uint8_t buf[64];
    struct nl_msg m;
    nl_msg_init(&m, buf, sizeof(buf), 0, 0, 0, NULL, 0);
    nl_put(&m, 1, "abcdefgh", 8); /* no NUL */
    char out[5];
    nl_attr_str((const struct nlattr *)(buf + 16), out, sizeof(out));
    assert_string_equal(out, "abcd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newlink_bridge), cmocka_unit_test(test_setlink),
        cmocka_unit_test(test_stp),            cmocka_unit_test(test_newaddr),
        cmocka_unit_test(test_forward_delay),
        cmocka_unit_test(test_overflow),       cmocka_unit_test(test_parse_link),
        cmocka_unit_test(test_attr_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
