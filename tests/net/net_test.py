#!/usr/bin/env python3
"""`vmkit net` and the TAP/bridge backends against the real kernel, each scenario inside network
namespaces this script creates and removes (so nothing on the host changes).

usage: net_test.py SCENARIO VMKIT [TAP_BACKEND_TEST]
Needs root and `ip netns`; otherwise prints SKIP and exits 77.
"""
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

NETNS = []


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def fail(msg):
    print(f"FAIL: {msg}")
    cleanup()
    sys.exit(1)


def cleanup():
    for ns in NETNS:
        # dnsmasq started by a test lives in the namespace: stop what is left there.
        r = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), 15)
            except OSError:
                pass
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    NETNS.clear()


def new_ns(tag):
    name = f"vmkit-nt-{os.getpid()}-{tag}"
    r = subprocess.run(["ip", "netns", "add", name], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        skip(f"cannot create a network namespace: {r.stdout.strip()}")
    NETNS.append(name)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    return name


def run(ns, *cmd, env=None, check=True):
    full = ["ip", "netns", "exec", ns] + list(cmd) if ns else list(cmd)
    r = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env, timeout=60)
    if check and r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stdout.strip()}")
    return r


def expect_fail(ns, msg_part, *cmd, env=None):
    r = run(ns, *cmd, env=env, check=False)
    if r.returncode == 0:
        fail(f"{' '.join(cmd)} succeeded; expected an error with '{msg_part}'")
    if msg_part not in r.stdout:
        fail(f"{' '.join(cmd)}: error '{r.stdout.strip()}' lacks '{msg_part}'")
    return r


def links(ns):
    return run(ns, "ip", "-d", "link", "show").stdout


def check_in(needle, hay, what):
    if needle not in hay:
        fail(f"{what}: '{needle}' not in:\n{hay}")


def check_not_in(needle, hay, what):
    if needle in hay:
        fail(f"{what}: '{needle}' unexpectedly in:\n{hay}")


def exists(ns, ifname):
    return run(ns, "ip", "link", "show", ifname, check=False).returncode == 0


# ---- scenarios ----

def t_bridge(vmkit):
    ns = new_ns("br")
    run(ns, vmkit, "net", "bridge", "add", "vbr0")
    check_in("bridge", run(ns, "ip", "-d", "link", "show", "vbr0").stdout, "bridge kind")
    expect_fail(ns, "already exists", vmkit, "net", "bridge", "add", "vbr0")
    # Ports: TAPs made with iproute2 (no dummy module needed).
    run(ns, "ip", "tuntap", "add", "d0", "mode", "tap")
    run(ns, "ip", "tuntap", "add", "d1", "mode", "tap")
    run(ns, vmkit, "net", "bridge", "addif", "vbr0", "d0")
    run(ns, vmkit, "net", "bridge", "addif", "vbr0", "d1")
    bl = run(ns, "bridge", "link").stdout
    check_in("d0", bl, "bridge link")
    check_in("master vbr0", bl, "bridge link")
    check_in("stp_state 0", run(ns, "ip", "-d", "link", "show", "vbr0").stdout, "stp off")
    run(ns, vmkit, "net", "bridge", "stp", "vbr0", "on")
    check_in("stp_state 1", run(ns, "ip", "-d", "link", "show", "vbr0").stdout, "stp on")
    show = run(ns, vmkit, "net", "bridge", "show", "vbr0").stdout
    line = [l for l in show.splitlines() if l.startswith("vbr0")]
    if not line or " on " not in line[0] or "d0 (" not in line[0] or "d1 (" not in line[0]:
        fail(f"bridge show: wrong line for vbr0:\n{show}")
    run(ns, vmkit, "net", "bridge", "addr", "vbr0", "10.44.0.1/24")
    check_in("inet 10.44.0.1/24", run(ns, "ip", "addr", "show", "vbr0").stdout, "bridge addr")
    expect_fail(ns, "already has", vmkit, "net", "bridge", "addr", "vbr0", "10.44.0.1/24")
    expect_fail(ns, "not ADDRESS/PREFIX", vmkit, "net", "bridge", "addr", "vbr0", "10.44.0.1")
    run(ns, vmkit, "net", "bridge", "delif", "vbr0", "d0")
    check_not_in("d0", run(ns, "bridge", "link").stdout, "after delif")
    run(ns, vmkit, "net", "bridge", "stp", "vbr0", "off")
    check_in("stp_state 0", run(ns, "ip", "-d", "link", "show", "vbr0").stdout, "stp off again")
    expect_fail(ns, "is not a bridge", vmkit, "net", "bridge", "del", "d0")
    expect_fail(ns, "does not exist", vmkit, "net", "bridge", "addif", "nosuch", "d0")
    run(ns, vmkit, "net", "bridge", "del", "vbr0")
    if exists(ns, "vbr0"):
        fail("bridge del left vbr0")


def t_tap(vmkit):
    ns = new_ns("tap")
    run(ns, vmkit, "net", "tap", "add", "vtap0", "--user", "nobody", "--group", "65534")
    d = run(ns, "ip", "-d", "link", "show", "vtap0").stdout
    check_in("tun type tap", d, "tap add")
    check_in("persist on", d, "tap add")
    check_in("user nobody", d, "tap owner")
    check_in("group", d, "tap group")
    owner = run(ns, "cat", "/sys/class/net/vtap0/owner").stdout.strip()
    if owner != "65534":
        fail(f"tap owner is {owner}, expected 65534")
    expect_fail(ns, "already exists", vmkit, "net", "tap", "add", "vtap0")
    expect_fail(ns, "no such user", vmkit, "net", "tap", "add", "vtap1", "--user", "nosuchuser9")
    run(ns, vmkit, "net", "tap", "add", "vtap2")
    check_in("persist on", run(ns, "ip", "-d", "link", "show", "vtap2").stdout, "plain tap")
    run(ns, "ip", "link", "add", "d0", "type", "bridge")
    expect_fail(ns, "is not a TAP", vmkit, "net", "tap", "del", "d0")
    run(ns, vmkit, "net", "tap", "del", "vtap0")
    run(ns, vmkit, "net", "tap", "del", "vtap2")
    if exists(ns, "vtap0") or exists(ns, "vtap2"):
        fail("tap del left the TAP")
    expect_fail(ns, "does not exist", vmkit, "net", "tap", "del", "vtap0")


def t_ifupdown(vmkit):
    ns = new_ns("ifup")
    tmp = tempfile.mkdtemp(prefix="vmkit-nt-")
    env = dict(os.environ, VMKIT_NET_DIR=os.path.join(tmp, "nets"),
               VMKIT_RUN_DIR=os.path.join(tmp, "run"))
    run(ns, vmkit, "net", "bridge", "add", "br7")
    run(ns, vmkit, "net", "tap", "add", "t7")
    env_br = dict(env, VMKIT_BRIDGE="br7")
    run(ns, vmkit, "net", "ifup", "t7", env=env_br)
    d = run(ns, "ip", "link", "show", "t7").stdout
    check_in("master br7", d, "ifup attaches")
    check_in(",UP", d, "ifup brings up")
    run(ns, vmkit, "net", "ifdown", "t7", env=env_br)
    d = run(ns, "ip", "link", "show", "t7").stdout
    check_not_in("master", d, "ifdown detaches")
    check_not_in(",UP", d, "ifdown takes down")
    # Without VMKIT_BRIDGE: the default network's bridge, which is not there.
    expect_fail(ns, "virbr0 does not exist", vmkit, "net", "ifup", "t7", env=env)
    expect_fail(ns, "does not exist", vmkit, "net", "ifup", "nosuch", env=env_br)
    shutil.rmtree(tmp)


NAT_XML = """<network>
  <name>nt</name>
  <forward mode='nat'/>
  <bridge name='vnt0' stp='on'/>
  <ip address='10.123.0.1' netmask='255.255.255.0'>
    <dhcp><range start='10.123.0.50' end='10.123.0.60'/>
      <host mac='52:54:00:ab:cd:02' ip='10.123.0.77' name='fixed'/></dhcp>
  </ip>
</network>
"""


def net_env(tmp):
    env = dict(os.environ, VMKIT_NET_DIR=os.path.join(tmp, "nets"),
               VMKIT_RUN_DIR=os.path.join(tmp, "run"))
    return env


def define(ns, vmkit, env, tmp, xml, fname="n.xml"):
    p = os.path.join(tmp, fname)
    with open(p, "w") as f:
        f.write(xml)
    run(ns, vmkit, "net", "define", p, env=env)


def state_pid(tmp, name):
    with open(os.path.join(tmp, "run", "networks", name + ".state")) as f:
        for line in f:
            if line.startswith("dnsmasq_pid="):
                return int(line.split("=")[1])
    return 0


def dhcp_exchange(ns_client, ifname, mac):
    """DISCOVER/OFFER/REQUEST/ACK over a raw socket in ns_client; returns the leased address."""
    code = r'''
import socket, struct, sys, time
ifname, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def frame(opts):
    bootp = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, 0x1234abcd, 0, 0x8000, 0, 0, 0, 0) + mac + b"\0" * 10 + b"\0" * 192 + b"\x63\x82\x53\x63" + opts + b"\xff"
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0\0\0\0", b"\xff\xff\xff\xff")
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp
def opt(b, code):
    i = 240
    while i < len(b) and b[i] != 255:
        if b[i] == 0: i += 1; continue
        if b[i] == code: return b[i + 2:i + 2 + b[i + 1]]
        i += 2 + b[i + 1]
    return None
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((ifname, 0)); s.settimeout(1)
def wait(kind):
    end = time.time() + 10
    while time.time() < end:
        try: p = s.recv(2000)
        except socket.timeout: continue
        if len(p) < 14 + 20 + 8 + 240 or p[23] != 17: continue
        ihl = (p[14] & 15) * 4
        b = p[14 + ihl + 8:]
        if struct.unpack("!H", p[14 + ihl:14 + ihl + 2])[0] != 67 or b[0] != 2: continue
        if opt(b, 53) == bytes([kind]): return b
    return None
offer = None
for attempt in range(5):
    s.send(frame(b"\x35\x01\x01"))
    offer = wait(2)
    if offer: break
if not offer: print("no DHCPOFFER"); sys.exit(1)
yi = offer[16:20]
server = opt(offer, 54)
s.send(frame(b"\x35\x01\x03" + b"\x32\x04" + yi + b"\x36\x04" + server))
ack = wait(5)
if not ack: print("no DHCPACK"); sys.exit(1)
print(socket.inet_ntoa(ack[16:20]))
'''
    r = run(ns_client, sys.executable, "-c", code, ifname, mac, check=False)
    if r.returncode != 0:
        fail(f"DHCP exchange failed: {r.stdout.strip()}")
    return r.stdout.strip().splitlines()[-1]


def t_nat(vmkit):
    if not shutil.which("dnsmasq"):
        skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    if not shutil.which("nft"):
        skip("nft is not installed (apt-get install nftables)")
    ns = new_ns("nat")
    tmp = tempfile.mkdtemp(prefix="vmkit-nt-")
    env = net_env(tmp)
    define(ns, vmkit, env, tmp, NAT_XML)
    check_in("nt ", run(ns, vmkit, "net", "list", env=env).stdout, "list after define")
    run(ns, vmkit, "net", "start", "nt", env=env)
    d = run(ns, "ip", "-d", "link", "show", "vnt0").stdout
    check_in("stp_state 1", d, "nat bridge STP")
    check_in("inet 10.123.0.1/24", run(ns, "ip", "addr", "show", "vnt0").stdout, "nat address")
    if run(ns, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() != "1":
        fail("ip_forward is not on")
    nft = run(ns, "nft", "list", "table", "ip", "vmkit-nt").stdout
    check_in("masquerade", nft, "nft rules")
    check_in("10.123.0.0/24", nft, "nft rules")
    pid = state_pid(tmp, "nt")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            check_in(b"dnsmasq", f.read(), "dnsmasq pid")
    except OSError:
        fail(f"dnsmasq (pid {pid}) is not running")
    check_in("active", run(ns, vmkit, "net", "list", env=env).stdout, "list active")
    # Start twice: refused, nothing changes.
    expect_fail(ns, "already active", vmkit, "net", "start", "nt", env=env)
    if state_pid(tmp, "nt") != pid or not os.path.exists(f"/proc/{pid}"):
        fail("second start changed the running network")
    expect_fail(ns, "is active", vmkit, "net", "undefine", "nt", env=env)

    # A guest stand-in: a veth whose peer is a bridge port, in a second namespace.
    cl = new_ns("natcl")
    run(ns, "ip", "link", "add", "vp0", "type", "veth", "peer", "name", "vc0")
    run(ns, "ip", "link", "set", "vc0", "netns", cl)
    run(ns, vmkit, "net", "bridge", "addif", "vnt0", "vp0")
    run(ns, "ip", "link", "set", "vp0", "up")
    run(cl, "ip", "link", "set", "vc0", "up")
    # STP: the port passes listening/learning before forwarding.
    for _ in range(80):
        if "forwarding" in run(ns, vmkit, "net", "bridge", "show", "vnt0").stdout:
            break
        time.sleep(0.5)
    else:
        fail("bridge port never reached forwarding")
    addr = dhcp_exchange(cl, "vc0", "52:54:00:ab:cd:01")
    if not addr.startswith("10.123.0.") or not 50 <= int(addr.split(".")[3]) <= 60:
        fail(f"leased {addr}, outside 10.123.0.50-60")
    leases = os.path.join(tmp, "run", "networks", "nt.leases")
    with open(leases) as f:
        lf = f.read()
    check_in("52:54:00:ab:cd:01", lf, "lease file")
    check_in(addr, lf, "lease file")
    # <dhcp><host>: a fixed address outside the range.
    fixed = dhcp_exchange(cl, "vc0", "52:54:00:ab:cd:02")
    if fixed != "10.123.0.77":
        fail(f"the <host> entry leased {fixed}, expected 10.123.0.77")
    leases_out = run(ns, vmkit, "net", "leases", "nt", env=env).stdout
    check_in("52:54:00:ab:cd:01", leases_out, "vmkit net leases")
    check_in("10.123.0.77", leases_out, "vmkit net leases")

    run(ns, vmkit, "net", "stop", "nt", env=env)
    if exists(ns, "vnt0"):
        fail("stop left the bridge")
    if run(ns, "nft", "list", "table", "ip", "vmkit-nt", check=False).returncode == 0:
        fail("stop left the nft table")
    time.sleep(0.2)
    if os.path.exists(f"/proc/{pid}") and b"dnsmasq" in open(f"/proc/{pid}/cmdline", "rb").read():
        fail("stop left dnsmasq running")
    check_in("inactive", run(ns, vmkit, "net", "list", env=env).stdout, "list after stop")
    expect_fail(ns, "not active", vmkit, "net", "stop", "nt", env=env)
    run(ns, vmkit, "net", "undefine", "nt", env=env)
    check_not_in("nt ", run(ns, vmkit, "net", "list", env=env).stdout, "list after undefine")
    shutil.rmtree(tmp)


def assert_unchanged(ns, tmp, bridge, name, before):
    after = run(ns, "ip", "-br", "link").stdout
    if after != before:
        fail(f"a failed start changed the interfaces:\nbefore:\n{before}\nafter:\n{after}")
    if os.path.exists(os.path.join(tmp, "run", "networks", name + ".state")):
        fail("a failed start left a state file")
    if run(ns, "nft", "list", "table", "ip", "vmkit-" + name, check=False).returncode == 0:
        fail("a failed start left an nft table")


def t_errors(vmkit):
    if not shutil.which("nft"):
        skip("nft is not installed (apt-get install nftables)")
    ns = new_ns("err")
    tmp = tempfile.mkdtemp(prefix="vmkit-nt-")
    env = net_env(tmp)
    define(ns, vmkit, env, tmp, NAT_XML)
    # Address clash with an existing interface.
    run(ns, "ip", "tuntap", "add", "d0", "mode", "tap")
    run(ns, "ip", "addr", "add", "10.123.0.200/16", "dev", "d0")
    before = run(ns, "ip", "-br", "link").stdout
    expect_fail(ns, "clashes with address 10.123.0.200/16 on d0", vmkit, "net", "start", "nt",
                env=env)
    assert_unchanged(ns, tmp, "vnt0", "nt", before)
    run(ns, "ip", "addr", "flush", "dev", "d0")
    # Route clash.
    run(ns, "ip", "link", "set", "d0", "up")
    run(ns, "ip", "route", "add", "10.123.0.0/25", "dev", "d0")
    before = run(ns, "ip", "-br", "link").stdout
    expect_fail(ns, "clashes with route 10.123.0.0/25", vmkit, "net", "start", "nt", env=env)
    assert_unchanged(ns, tmp, "vnt0", "nt", before)
    run(ns, "ip", "route", "del", "10.123.0.0/25", "dev", "d0")
    # The bridge name is taken.
    run(ns, "ip", "link", "add", "vnt0", "type", "bridge")
    before = run(ns, "ip", "-br", "link").stdout
    expect_fail(ns, "'vnt0' already exists", vmkit, "net", "start", "nt", env=env)
    assert_unchanged(ns, tmp, "vnt0", "nt", before)
    run(ns, "ip", "link", "del", "vnt0")
    # dnsmasq missing: refused before anything is done.
    before = run(ns, "ip", "-br", "link").stdout
    expect_fail(ns, "dnsmasq is not installed", vmkit, "net", "start", "nt",
                env=dict(env, VMKIT_DNSMASQ="/nonexistent/dnsmasq"))
    assert_unchanged(ns, tmp, "vnt0", "nt", before)
    # dnsmasq fails after the bridge and rules exist: everything is rolled back.
    expect_fail(ns, "dnsmasq failed to start", vmkit, "net", "start", "nt",
                env=dict(env, VMKIT_DNSMASQ="/bin/false"))
    assert_unchanged(ns, tmp, "vnt0", "nt", before)
    # Unknown network, bad file.
    expect_fail(ns, "not defined", vmkit, "net", "start", "nosuch", env=env)
    bad = os.path.join(tmp, "bad.xml")
    with open(bad, "w") as f:
        f.write("<network><name>b</name><forward mode='nat'/></network>")
    expect_fail(ns, "needs an <ip", vmkit, "net", "define", bad, env=env)
    # mode=bridge on a missing bridge.
    define(ns, vmkit, env, tmp, "<network><name>hb</name><forward mode='bridge'/>"
           "<bridge name='hostbr'/></network>", "hb.xml")
    expect_fail(ns, "host bridge 'hostbr' does not exist", vmkit, "net", "start", "hb", env=env)
    run(ns, vmkit, "net", "bridge", "add", "hostbr")
    run(ns, vmkit, "net", "start", "hb", env=env)
    run(ns, vmkit, "net", "stop", "hb", env=env)
    if not exists(ns, "hostbr"):
        fail("stopping a mode='bridge' network deleted the host's bridge")
    shutil.rmtree(tmp)


def t_modes(vmkit):
    if not shutil.which("dnsmasq") or not shutil.which("nft"):
        skip("dnsmasq or nft is not installed")
    ns = new_ns("iso")
    tmp = tempfile.mkdtemp(prefix="vmkit-nt-")
    env = net_env(tmp)
    define(ns, vmkit, env, tmp, "<network><name>iso</name><bridge name='viso0'/>"
           "<ip address='10.124.0.1' prefix='24'/></network>")
    run(ns, vmkit, "net", "start", "iso", env=env)
    nft = run(ns, "nft", "list", "table", "ip", "vmkit-iso").stdout
    check_not_in("masquerade", nft, "isolated has no NAT")
    check_in('iifname "viso0" reject', nft, "isolated rejects forwarding")
    run(ns, vmkit, "net", "stop", "iso", env=env)
    define(ns, vmkit, env, tmp, "<network><name>rt</name><forward mode='route'/>"
           "<bridge name='vrt0'/><ip address='10.127.0.1' prefix='24'/></network>")
    run(ns, vmkit, "net", "start", "rt", env=env)
    nft = run(ns, "nft", "list", "table", "ip", "vmkit-rt").stdout
    check_not_in("masquerade", nft, "routed has no NAT")
    check_in('oifname "vrt0" ip daddr 10.127.0.0/24 accept', nft, "routed accepts to the subnet")
    if run(ns, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() != "1":
        fail("routed: ip_forward is not on")
    run(ns, vmkit, "net", "stop", "rt", env=env)
    define(ns, vmkit, env, tmp, "<network><name>op</name><forward mode='open'/>"
           "<bridge name='vop0'/><ip address='10.125.0.1' prefix='24'/></network>")
    run(ns, vmkit, "net", "start", "op", env=env)
    if run(ns, "nft", "list", "table", "ip", "vmkit-op", check=False).returncode == 0:
        fail("open mode must not add firewall rules")
    check_in("inet 10.125.0.1/24", run(ns, "ip", "addr", "show", "vop0").stdout, "open address")
    run(ns, vmkit, "net", "stop", "op", env=env)
    shutil.rmtree(tmp)


def t_tap_backend(vmkit, helper):
    ns = new_ns("tapbe")
    run(ns, vmkit, "net", "bridge", "add", "tbr0")
    r = run(ns, helper, check=False)
    print(r.stdout)
    if r.returncode == 77:
        skip(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "helper skipped")
    if r.returncode != 0:
        fail(f"tap backend test failed (exit {r.returncode})")


SCENARIOS = {"bridge": t_bridge, "tap": t_tap, "ifupdown": t_ifupdown, "nat": t_nat,
             "errors": t_errors, "modes": t_modes}


def main():
    scen, vmkit = sys.argv[1], os.path.abspath(sys.argv[2])
    if os.geteuid() != 0:
        skip("needs root (network namespaces, bridges, TAPs)")
    if not shutil.which("ip"):
        skip("iproute2 (ip) is not installed")
    try:
        if scen == "tap_backend":
            t_tap_backend(vmkit, os.path.abspath(sys.argv[3]))
        else:
            SCENARIOS[scen](vmkit)
    finally:
        cleanup()
    print(f"PASS: {scen}")


if __name__ == "__main__":
    main()
