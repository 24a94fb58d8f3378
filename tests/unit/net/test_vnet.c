/* Virtual network definitions: libvirt XML in and out, and the generated nft/dnsmasq text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "net/vnet.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *xml, struct vnet_def *d, char *err)
{
    return vnet_parse_xml(xml, strlen(xml), d, err, 256);
}

static const char *ip(struct in_addr a)
{
    static char buf[4][INET_ADDRSTRLEN];
    static int i;
    i = (i + 1) % 4;
    return inet_ntop(AF_INET, &a, buf[i], sizeof(buf[i]));
}

static void test_parse_nat(void **state)
{
    /* libvirt's own default.xml, unknown elements and all. */
    const char *xml = "<network>\n"
                      "  <name>default</name>\n"
                      "  <uuid>1d4ad4a8-52ed-4a2b-9b26-3f5b7b3e8a0c</uuid>\n"
                      "  <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>\n"
                      "  <bridge name='virbr0' stp='on' delay='0'/>\n"
                      "  <mac address='52:54:00:0a:cd:21'/>\n"
                      "  <ip address='192.168.122.1' netmask='255.255.255.0'>\n"
                      "    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>\n"
                      "  </ip>\n"
                      "</network>\n";
    struct vnet_def d;
    char err[256] = "";
    assert_int_equal(parse(xml, &d, err), 0);
    assert_string_equal(d.name, "default");
    assert_int_equal(d.forward, VNET_NAT);
    assert_string_equal(d.bridge, "virbr0");
    assert_true(d.stp);
    assert_true(d.has_ip);
    assert_string_equal(ip(d.addr), "192.168.122.1");
    assert_int_equal(d.prefix, 24);
    assert_true(d.has_dhcp);
    assert_string_equal(ip(d.dhcp_start), "192.168.122.2");
    assert_string_equal(ip(d.dhcp_end), "192.168.122.254");

    struct vnet_def def;
    vnet_default_def(&def);
    assert_memory_equal(&def, &d, sizeof(d));
}

static void test_parse_modes(void **state)
{
    struct vnet_def d;
    char err[256];
    assert_int_equal(parse("<network><name>iso</name><ip address='10.5.0.1' prefix='16'/>"
                           "</network>", &d, err), 0);
    assert_int_equal(d.forward, VNET_ISOLATED);
    assert_int_equal(d.prefix, 16);
    assert_false(d.has_dhcp);
    assert_string_equal(d.bridge, "vbr-iso"); /* generated */
    assert_int_equal(parse("<network><name>r</name><forward mode='route' dev='eth1'/><bridge name='br9' "
                           "stp='off'/><ip address='10.6.0.1' prefix='24'/></network>", &d, err),
                     0);
    assert_int_equal(d.forward, VNET_ROUTED);
    assert_string_equal(d.forward_dev, "eth1");
    assert_false(d.stp);
    assert_int_equal(parse("<network><name>o</name><forward mode='open'/><ip address='10.7.0.1'/>"
                           "</network>", &d, err), 0);
    assert_int_equal(d.forward, VNET_OPEN);
    assert_int_equal(parse("<network><name>host</name><forward mode='bridge'/><bridge "
                           "name='br0'/></network>", &d, err), 0);
    assert_int_equal(d.forward, VNET_BRIDGE);
    assert_string_equal(d.bridge, "br0");
    /* <forward/> without mode is NAT, as in libvirt */
    assert_int_equal(parse("<network><name>n</name><forward/><ip address='10.8.0.1'/></network>",
                           &d, err), 0);
    assert_int_equal(d.forward, VNET_NAT);
}

static void test_parse_errors(void **state)
{
    struct vnet_def d;
    char err[256];
#define BAD(xml, msg)                                                                              \
    do {                                                                                           \
        err[0] = 0;                                                                                \
        assert_int_equal(parse(xml, &d, err), -EINVAL);                                            \
        if (!strstr(err, msg))                                                                     \
            fail_msg("message '%s' lacks '%s'", err, msg);                                         \
    } while (0)
    BAD("<network><name>x</name>", "well-formed");
    BAD("<domain><name>x</name></domain>", "<network>");
    BAD("<network><ip address='10.0.0.1'/></network>", "<name> is missing");
    BAD("<network><name>../etc</name></network>", "<name>");
    BAD("<network><name>x</name><forward mode='passthrough'/></network>", "passthrough");
    BAD("<network><name>x</name><forward mode='nat'/></network>", "needs an <ip");
    BAD("<network><name>x</name><forward mode='bridge'/></network>", "needs <bridge");
    BAD("<network><name>x</name><bridge name='thisnameiswaytoolong'/></network>", "interface name");
    BAD("<network><name>x</name><ip address='10.0.0.1' netmask='255.0.255.0'/></network>",
        "netmask");
    BAD("<network><name>x</name><ip address='10.0.0.0' prefix='24'/></network>",
        "network or broadcast");
    BAD("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><range "
        "start='10.0.1.2' end='10.0.1.9'/></dhcp></ip></network>",
        "inside");
    BAD("<network><name>x</name><ip address='10.0.0.5' prefix='24'><dhcp><range "
        "start='10.0.0.2' end='10.0.0.9'/></dhcp></ip></network>",
        "host's address");
    BAD("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><range "
        "start='10.0.0.9' end='10.0.0.2'/></dhcp></ip></network>",
        "after end");
    BAD("<network><name>x</name><bridge name='b' stp='maybe'/></network>", "stp");
    BAD("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><host mac='zz' "
        "ip='10.0.0.5'/></dhcp></ip></network>", "not a MAC");
    BAD("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><host "
        "mac='52:54:00:00:00:01' ip='10.0.1.5'/></dhcp></ip></network>", "inside");
    BAD("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><host "
        "mac='52:54:00:00:00:01' ip='10.0.0.5' name='a b'/></dhcp></ip></network>", "host name");
    BAD("<network><name>x</name><bridge name='b' delay='99'/></network>", "delay");
    /* External entities are not fetched (XML_PARSE_NONET, no entity substitution). */
    assert_int_equal(parse("<!DOCTYPE n [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
                           "<network><name>&e;</name></network>", &d, err), -EINVAL);
}

static void test_nft_nat(void **state)
{
    struct vnet_def d;
    vnet_default_def(&d);
    char buf[4096];
    assert_true(vnet_nft_script(&d, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "table ip vmkit-default {"));
    assert_non_null(strstr(buf, "type nat hook postrouting priority srcnat;"));
    assert_non_null(
        strstr(buf, "ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade"));
    assert_non_null(strstr(buf, "oifname \"virbr0\" ip daddr 192.168.122.0/24 ct state "
                                "established,related accept"));
    assert_int_equal(vnet_nft_script(&d, buf, 40), -ENOSPC);

    strcpy(d.forward_dev, "eth9");
    vnet_nft_script(&d, buf, sizeof(buf));
    assert_non_null(strstr(buf, "oifname \"eth9\" ip saddr 192.168.122.0/24 ip daddr != "
                                "192.168.122.0/24 masquerade"));
    assert_non_null(strstr(buf, "iifname \"virbr0\" oifname \"eth9\" ip saddr"));
    d.forward_dev[0] = 0;

    d.forward = VNET_ROUTED;
    vnet_nft_script(&d, buf, sizeof(buf));
    assert_null(strstr(buf, "masquerade"));
    assert_non_null(strstr(buf, "oifname \"virbr0\" ip daddr 192.168.122.0/24 accept"));
    d.forward = VNET_ISOLATED;
    vnet_nft_script(&d, buf, sizeof(buf));
    assert_null(strstr(buf, "accept\n"));
    assert_non_null(strstr(buf, "iifname \"virbr0\" reject"));
    d.forward = VNET_OPEN;
    assert_int_equal(vnet_nft_script(&d, buf, sizeof(buf)), 0);
}

static void test_dnsmasq_conf(void **state)
{
    struct vnet_def d;
    vnet_default_def(&d);
    strcpy(d.domain, "vm.test");
    char buf[4096];
    assert_true(vnet_dnsmasq_conf(&d, "/run/x/networks", buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "interface=virbr0\n"));
    assert_non_null(strstr(buf, "bind-interfaces\n"));
    assert_non_null(strstr(buf, "listen-address=192.168.122.1\n"));
    assert_non_null(strstr(buf, "dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0\n"));
    assert_non_null(strstr(buf, "dhcp-leasefile=/run/x/networks/default.leases\n"));
    assert_non_null(strstr(buf, "pid-file=/run/x/networks/default.pid\n"));
    assert_non_null(strstr(buf, "dhcp-lease-max=253\n"));
    assert_non_null(strstr(buf, "domain=vm.test\n"));

    /* Fixed hosts, with and without a range. */
    char err[256];
    const char *x = "<network><name>h</name><ip address='10.1.1.1' prefix='24'><dhcp><host "
                    "mac='52:54:00:00:00:01' ip='10.1.1.5' name='a'/></dhcp></ip></network>";
    assert_int_equal(vnet_parse_xml(x, strlen(x), &d, err, sizeof(err)), 0);
    assert_false(d.has_dhcp);
    assert_true(vnet_dnsmasq_conf(&d, "/r", buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "dhcp-range=10.1.1.0,static,255.255.255.0\n"));
    assert_non_null(strstr(buf, "dhcp-host=52:54:00:00:00:01,10.1.1.5,a\n"));
    assert_non_null(strstr(buf, "dhcp-leasefile=/r/h.leases\n"));
}

static void test_write_roundtrip(void **state)
{
    char dir[] = "/tmp/vmkit-vnet-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/n.xml", dir);
    struct vnet_def d, e;
    char err[256];
    assert_int_equal(parse("<network><name>rt</name><forward mode='route'/><bridge name='br5' "
                           "stp='off' delay='5'/><domain name='lab'/><ip address='10.9.8.1' "
                           "netmask='255.255.255.0'><dhcp><range start='10.9.8.100' "
                           "end='10.9.8.200'/><host mac='52:54:00:00:00:09' ip='10.9.8.9' "
                           "name='nine'/><host mac='52:54:00:00:00:0a' ip='10.9.8.10'/></dhcp>"
                           "</ip></network>", &d, err), 0);
    assert_int_equal(d.nhosts, 2);
    assert_int_equal(d.delay, 5);
    assert_string_equal(d.hosts[0].name, "nine");
    assert_string_equal(ip(d.hosts[1].ip), "10.9.8.10");
    assert_int_equal(vnet_write_xml(&d, path), 0);
    FILE *f = fopen(path, "r");
    char text[2048];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    assert_int_equal(vnet_parse_xml(text, n, &e, err, sizeof(err)), 0);
    assert_memory_equal(&d, &e, sizeof(d));
    /* vnet_load finds it by name in $VMKIT_NET_DIR; the built-in default needs no file. */
    setenv("VMKIT_NET_DIR", dir, 1);
    snprintf(path, sizeof(path), "%s/rt.xml", dir);
    assert_int_equal(vnet_write_xml(&d, path), 0);
    assert_int_equal(vnet_load("rt", &e), 0);
    assert_string_equal(e.bridge, "br5");
    assert_int_equal(vnet_load("default", &e), 0);
    assert_string_equal(e.bridge, "virbr0");
    assert_int_equal(vnet_load("nosuch", &e), -ENOENT);
    assert_int_equal(vnet_load("../x", &e), -EINVAL);
    unlink(path);
    snprintf(path, sizeof(path), "%s/n.xml", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_nat),    cmocka_unit_test(test_parse_modes),
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_nft_nat),
        cmocka_unit_test(test_dnsmasq_conf), cmocka_unit_test(test_write_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
