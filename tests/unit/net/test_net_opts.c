/* -netdev/-net/-nic parsing into vm_config: types, keys, defaults, pairing, MACs, refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "config/vm_config.h"
#include <arpa/inet.h>
#include <string.h>

static int parse(struct vm_config *c, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, c);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    vm_config_init(c);
    return vm_config_parse_args(c, argc, argv);
}

#define PARSE_OK(c, ...) assert_int_equal(parse(c, __VA_ARGS__, NULL), VM_CONFIG_RUN)
#define PARSE_FAIL(...)                                                                            \
    do {                                                                                           \
        struct vm_config c_;                                                                       \
        assert_int_equal(parse(&c_, __VA_ARGS__, NULL), VM_CONFIG_ERROR);                          \
        vm_config_free(&c_);                                                                       \
    } while (0)

static const char *ip(struct in_addr a)
{
    static char buf[4][INET_ADDRSTRLEN];
    static int i;
    i = (i + 1) % 4;
    return inet_ntop(AF_INET, &a, buf[i], sizeof(buf[i]));
}

static void test_netdev_user_defaults(void **state)
{
    struct vm_config c;
    PARSE_OK(&c, "-netdev", "user,id=n0", "-device", "pci-testdev");
    assert_int_equal(c.nnetdevs, 1);
    assert_int_equal(c.nnics, 0);
    struct vm_config_netdev *nd = vm_config_find_netdev(&c, "n0");
    assert_non_null(nd);
    assert_string_equal(nd->type, "user");
    assert_int_equal(nd->backend.type, NET_BACKEND_USER);
    assert_string_equal(ip(nd->backend.net), "10.0.2.0");
    assert_string_equal(ip(nd->backend.netmask), "255.255.255.0");
    assert_string_equal(ip(nd->backend.host), "10.0.2.2");
    assert_string_equal(ip(nd->backend.dns), "10.0.2.3");
    assert_string_equal(ip(nd->backend.dhcpstart), "10.0.2.15");
    assert_false(nd->backend.restrict_net);
    vm_config_free(&c);
}

static void test_netdev_user_keys(void **state)
{
    struct vm_config c;
    PARSE_OK(&c, "-netdev",
             "user,id=u1,net=192.168.76.0/24,hostfwd=tcp::2222-:22,hostfwd=udp:127.0.0.1:5353-"
             ":53,restrict=on,hostname=vm1,domainname=example.org");
    struct net_backend_opts *b = &c.netdevs[0].backend;
    assert_string_equal(ip(b->net), "192.168.76.0");
    assert_string_equal(ip(b->host), "192.168.76.2");
    assert_string_equal(ip(b->dns), "192.168.76.3");
    assert_string_equal(ip(b->dhcpstart), "192.168.76.15");
    assert_true(b->restrict_net);
    assert_string_equal(b->hostname, "vm1");
    assert_string_equal(b->domainname, "example.org");
    assert_int_equal(b->nhostfwd, 2);
    assert_false(b->hostfwd[0].udp);
    assert_int_equal(b->hostfwd[0].host_port, 2222);
    assert_int_equal(b->hostfwd[0].guest_port, 22);
    assert_int_equal(b->hostfwd[0].host_addr.s_addr, 0);
    assert_true(b->hostfwd[1].udp);
    assert_string_equal(ip(b->hostfwd[1].host_addr), "127.0.0.1");
    assert_int_equal(b->hostfwd[1].host_port, 5353);
    vm_config_free(&c);

    PARSE_OK(&c, "-netdev", "user,id=u1,net=10.1.0.0/16,host=10.1.0.1,dns=10.1.0.53,"
                            "dhcpstart=10.1.0.100");
    b = &c.netdevs[0].backend;
    assert_string_equal(ip(b->netmask), "255.255.0.0");
    assert_string_equal(ip(b->host), "10.1.0.1");
    assert_string_equal(ip(b->dns), "10.1.0.53");
    assert_string_equal(ip(b->dhcpstart), "10.1.0.100");
    vm_config_free(&c);

    PARSE_FAIL("-netdev", "user,id=u1,hostfwd=tcp:2222:22");
    PARSE_FAIL("-netdev", "user,id=u1,hostfwd=tcp::2222-:0");
    PARSE_FAIL("-netdev", "user,id=u1,net=10.0.2.0/24,dhcpstart=10.0.3.15");
    PARSE_FAIL("-netdev", "user,id=u1,net=300.0.0.0/8");
    PARSE_FAIL("-netdev", "user,id=u1,restrict=maybe");
    PARSE_FAIL("-netdev", "user,id=u1,smb=/tmp");
    PARSE_FAIL("-netdev", "user,id=u1,bogus=1");
}

static void test_netdev_tap(void **state)
{
    struct vm_config c;
    PARSE_OK(&c, "-netdev", "tap,id=t0,ifname=vmtap0,script=no,downscript=/bin/true,"
                            "vnet_hdr=off,queues=4");
    struct net_backend_opts *b = &c.netdevs[0].backend;
    assert_int_equal(b->type, NET_BACKEND_TAP);
    assert_string_equal(b->ifname, "vmtap0");
    assert_string_equal(b->script, "");
    assert_string_equal(b->downscript, "/bin/true");
    assert_int_equal(b->vnet_hdr, 0);
    assert_int_equal(b->queues, 4);
    assert_int_equal(b->fd, -1);
    vm_config_free(&c);

    PARSE_OK(&c, "-netdev", "tap,id=t0");
    b = &c.netdevs[0].backend;
    assert_null(b->ifname);
    assert_null(b->script); /* default: /etc/vmkit-ifup when it exists */
    assert_int_equal(b->vnet_hdr, -1);
    assert_int_equal(b->queues, 1);
    vm_config_free(&c);

    PARSE_OK(&c, "-netdev", "tap,id=t0,fd=3,vnet_hdr=on");
    assert_int_equal(c.netdevs[0].backend.fd, 3);
    assert_int_equal(c.netdevs[0].backend.vnet_hdr, 1);
    vm_config_free(&c);

    PARSE_FAIL("-netdev", "tap,id=t0,fd=3,ifname=tap0");
    PARSE_FAIL("-netdev", "tap,id=t0,queues=0");
    PARSE_FAIL("-netdev", "tap,id=t0,queues=99");
    PARSE_FAIL("-netdev", "tap,id=t0,ifname=waytoolonginterfacename");
    PARSE_FAIL("-netdev", "tap,id=t0,vhost=on");
    PARSE_FAIL("-netdev", "tap,id=t0,helper=/usr/lib/qemu/qemu-bridge-helper");
    PARSE_FAIL("-netdev", "tap,id=t0,vnet_hdr=sometimes");
}

static void test_netdev_bridge_socket(void **state)
{
    struct vm_config c;
    PARSE_OK(&c, "-netdev", "bridge,id=b0,br=virbr0", "-netdev", "bridge,id=b1");
    assert_string_equal(c.netdevs[0].backend.br, "virbr0");
    assert_string_equal(c.netdevs[1].backend.br, "br0");
    assert_int_equal(c.netdevs[1].backend.type, NET_BACKEND_BRIDGE);
    vm_config_free(&c);

    PARSE_OK(&c, "-netdev", "socket,id=s0,listen=:1234", "-netdev",
             "socket,id=s1,connect=127.0.0.1:1234", "-netdev", "socket,id=s2,mcast=230.0.0.1:1234");
    assert_int_equal(c.netdevs[0].backend.socket_mode, NET_SOCKET_LISTEN);
    assert_int_equal(ntohs(c.netdevs[0].backend.socket_addr.sin_port), 1234);
    assert_int_equal(c.netdevs[0].backend.socket_addr.sin_addr.s_addr, 0);
    assert_int_equal(c.netdevs[1].backend.socket_mode, NET_SOCKET_CONNECT);
    assert_string_equal(ip(c.netdevs[1].backend.socket_addr.sin_addr), "127.0.0.1");
    assert_int_equal(c.netdevs[2].backend.socket_mode, NET_SOCKET_MCAST);
    vm_config_free(&c);

    PARSE_FAIL("-netdev", "socket,id=s0");
    PARSE_FAIL("-netdev", "socket,id=s0,listen=:1,connect=127.0.0.1:1");
    PARSE_FAIL("-netdev", "socket,id=s0,connect=:1234");
    PARSE_FAIL("-netdev", "socket,id=s0,mcast=10.0.0.1:1234");
    PARSE_FAIL("-netdev", "socket,id=s0,listen=nohost");
}

static void test_netdev_errors(void **state)
{
    struct vm_config c;
    assert_int_equal(parse(&c, "-netdev", "help", NULL), VM_CONFIG_EXIT_OK);
    vm_config_free(&c);
    assert_int_equal(parse(&c, "-nic", "user,model=help", NULL), VM_CONFIG_EXIT_OK);
    vm_config_free(&c);
    assert_int_equal(parse(&c, "-net", "nic,model=?", NULL), VM_CONFIG_EXIT_OK);
    vm_config_free(&c);
    PARSE_FAIL("-netdev", "user");                       /* no id */
    PARSE_FAIL("-netdev", "id=n0");                      /* no type */
    PARSE_FAIL("-netdev", "vde,id=n0");                  /* refused type */
    PARSE_FAIL("-netdev", "frobnicate,id=n0");           /* unknown type */
    PARSE_FAIL("-netdev", "user,id=0bad");               /* id must start with a letter */
    PARSE_FAIL("-netdev", "user,id=n0", "-netdev", "user,id=n0"); /* duplicate */
}

static void test_nic(void **state)
{
    struct vm_config c;
    PARSE_OK(&c, "-nic", "user,model=virtio,hostfwd=tcp::2222-:22", "-nic",
             "tap,ifname=tap5,script=no,mac=52:54:00:aa:bb:cc", "-nic", "user");
    assert_int_equal(c.nnics, 3);
    assert_int_equal(c.nnetdevs, 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_string_equal(c.nics[i].model, "virtio-net-pci");
        assert_non_null(c.nics[i].netdev);
        assert_ptr_equal(vm_config_find_netdev(&c, c.nics[i].netdev), &c.netdevs[i]);
    }
    assert_int_equal(c.netdevs[0].backend.nhostfwd, 1);
    assert_string_equal(c.netdevs[1].backend.ifname, "tap5");
    static const uint8_t m0[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    static const uint8_t m1[6] = {0x52, 0x54, 0, 0xaa, 0xbb, 0xcc};
    static const uint8_t m2[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x57};
    assert_memory_equal(c.nics[0].mac, m0, 6);
    assert_memory_equal(c.nics[1].mac, m1, 6);
    assert_memory_equal(c.nics[2].mac, m2, 6);
    /* A -device NIC without mac= gets the next free default. */
    uint8_t m[6];
    vm_config_net_alloc_mac(&c, m);
    static const uint8_t m3[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x58};
    assert_memory_equal(m, m3, 6);
    vm_config_free(&c);

    /* An explicit MAC equal to the first default pushes the defaults along. */
    PARSE_OK(&c, "-nic", "user", "-nic", "user,mac=52:54:00:12:34:56");
    assert_memory_equal(c.nics[0].mac, m2, 6);
    assert_memory_equal(c.nics[1].mac, m0, 6);
    vm_config_free(&c);

    PARSE_OK(&c, "-nic", "none");
    assert_int_equal(c.nnics, 0);
    vm_config_free(&c);

    PARSE_FAIL("-nic", "user,model=e1000");
    PARSE_FAIL("-nic", "user,model=rtl8139");
    PARSE_FAIL("-nic", "user,mac=52:54:00:12:34");
    PARSE_FAIL("-nic", "user,mac=01:00:5e:00:00:01"); /* multicast */
    PARSE_FAIL("-nic", "tap,queues=0");
}

static void test_net_legacy(void **state)
{
    struct vm_config c;
    PARSE_OK(&c, "-net", "nic,model=virtio,macaddr=52:54:00:01:02:03", "-net",
             "user,hostfwd=tcp::10022-:22");
    assert_int_equal(c.nnics, 1);
    assert_int_equal(c.nnetdevs, 1);
    assert_string_equal(c.nics[0].netdev, c.netdevs[0].id);
    static const uint8_t m[6] = {0x52, 0x54, 0, 1, 2, 3};
    assert_memory_equal(c.nics[0].mac, m, 6);
    vm_config_free(&c);

    /* vlan= selects the hub: two pairs. */
    PARSE_OK(&c, "-net", "nic,vlan=1", "-net", "nic,vlan=0", "-net", "user,vlan=0", "-net",
             "socket,vlan=1,listen=:5555");
    assert_int_equal(c.nnics, 2);
    assert_string_equal(vm_config_find_netdev(&c, c.nics[0].netdev)->type, "socket");
    assert_string_equal(vm_config_find_netdev(&c, c.nics[1].netdev)->type, "user");
    vm_config_free(&c);

    /* -net nic,netdev=ID pairs with a -netdev directly. */
    PARSE_OK(&c, "-netdev", "user,id=n1", "-net", "nic,netdev=n1,model=virtio-net-pci");
    assert_string_equal(c.nics[0].netdev, "n1");
    vm_config_free(&c);

    /* No backend: allowed with a warning, NIC unconnected. */
    PARSE_OK(&c, "-net", "nic");
    assert_null(c.nics[0].netdev);
    vm_config_free(&c);

    PARSE_OK(&c, "-net", "none");
    assert_int_equal(c.nnics + c.nnetdevs, 0);
    vm_config_free(&c);

    PARSE_FAIL("-net", "nic,model=e1000", "-net", "user");
    PARSE_FAIL("-net", "nic", "-net", "nic", "-net", "user"); /* two NICs on one hub */
    PARSE_FAIL("-net", "nic", "-net", "user", "-net", "user");
    PARSE_FAIL("-net", "nic,netdev=missing");
    PARSE_FAIL("-netdev", "user,id=n1", "-net", "nic,netdev=n1", "-net", "nic,netdev=n1");
    PARSE_FAIL("-net", "nic,bogus=1", "-net", "user");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netdev_user_defaults), cmocka_unit_test(test_netdev_user_keys),
        cmocka_unit_test(test_netdev_tap),           cmocka_unit_test(test_netdev_bridge_socket),
        cmocka_unit_test(test_netdev_errors),        cmocka_unit_test(test_nic),
        cmocka_unit_test(test_net_legacy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
