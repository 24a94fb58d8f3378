#!/usr/bin/env python3
"""VM networking scenarios (suite 'vmnet', docs/virtio-net.md): boots test guests under vmkit
with virtio-net on TAP/bridge, user-mode, socket and NAT backends, inside a private network
namespace this process creates (so parallel runs never share a bridge, TAP or port), and
checks what the guests and host-side peers report.

usage: vmnet.py SCENARIO VMKIT GUEST_DIR
"""
import ctypes
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
VM_TIMEOUT = 90


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def sh(*cmd, check=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        fail(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r


def enter_private_netns():
    """A network namespace of our own: gone when this process and its children exit."""
    if os.geteuid() != 0:
        skip("needs root (network namespaces, TAP devices, bridges)")
    if not os.path.exists("/dev/net/tun"):
        skip("/dev/net/tun does not exist")
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError:
        skip("/dev/kvm not available")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        skip(f"cannot create a network namespace: {os.strerror(ctypes.get_errno())}")
    # /sys shows the namespace of whoever mounted it: mount ours (privately) as `ip netns exec` does.
    sh("mount", "--make-rprivate", "/")
    sh("mount", "-t", "sysfs", "sysfs", "/sys")
    sh("ip", "link", "set", "lo", "up")


def uniq(prefix):
    return f"{prefix}{os.getpid() % 10000}{random.randint(0, 99)}"[:15]


class VM:
    def __init__(self, vmkit, name, guest, args, append=""):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"vmnet-{name}-", suffix=".log", delete=False)
        self.cmd = [vmkit, "run", "-nographic", "-m", "64M", "-kernel", guest]
        if append:
            self.cmd += ["-append", append]
        self.cmd += args
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.start = time.time()

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read().replace("\r", "")

    def wait_line(self, pattern, timeout=VM_TIMEOUT):
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(pattern, self.output())
            if m:
                return m
            if self.proc.poll() is not None:
                return re.search(pattern, self.output())
            time.sleep(0.1)
        return None

    def finish(self, guest_name, expect_pass=True, timeout=VM_TIMEOUT):
        try:
            rc = self.proc.wait(timeout=max(1, timeout - (time.time() - self.start)))
        except subprocess.TimeoutExpired:
            self.kill()
            self.dump()
            fail(f"{self.name}: timed out after {timeout}s")
        out = self.output()
        if expect_pass and (rc != 0 or f"VMKIT-TEST: PASS {guest_name}" not in out):
            self.dump()
            fail(f"{self.name}: exit {rc}, no PASS line")
        print(f"ok: {self.name} ({time.time() - self.start:.1f}s)")
        return out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def dump(self):
        print(f"----- {self.name}: {' '.join(self.cmd)}")
        print(self.output())
        print("-----")

    def cleanup(self):
        self.kill()
        os.unlink(self.log.name)


VMS = []


def vm(*a, **kw):
    v = VM(*a, **kw)
    VMS.append(v)
    return v


def make_bridge():
    br = uniq("vbr")
    sh("ip", "link", "add", br, "type", "bridge")
    sh("ip", "link", "set", br, "up")
    return br


def ifup_script(br, tmp):
    """A QEMU-style tap script: $1 is the interface."""
    path = os.path.join(tmp, "ifup")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nip link set \"$1\" master {br} up\n")
    os.chmod(path, 0o755)
    return path


# ---- scenarios ----

def sc_bridge(vmkit, g, tmp):
    """Two VMs on one bridge: one on a TAP vmkit creates and hands to an ifup script, one on
    -netdev bridge with a two-queue TAP and mq=on. Frames both ways, receive filter on."""
    br = make_bridge()
    up = ifup_script(br, tmp)
    a = vm(vmkit, "bridge-a", g("net_peer"),
           ["-netdev", f"tap,id=n0,ifname={uniq('vta')},script={up},downscript=no",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:aa:00:01"],
           "filter mac=52:54:00:aa:00:01")
    b = vm(vmkit, "bridge-b", g("net_peer"),
           ["-netdev", f"bridge,id=n0,br={br},queues=2",
            "-device", "virtio-net-pci,netdev=n0,mq=on,mac=52:54:00:aa:00:02"],
           "filter mac=52:54:00:aa:00:02")
    a.finish("net_peer")
    b.finish("net_peer")


def sc_socket(vmkit, g, tmp):
    """Two VMs linked by -netdev socket,listen= and connect=, no bridge involved."""
    port = random.randint(20000, 30000)
    a = vm(vmkit, "socket-listen", g("net_peer"),
           ["-netdev", f"socket,id=n0,listen=127.0.0.1:{port}",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:bb:00:01"], "filter")
    time.sleep(0.5)
    b = vm(vmkit, "socket-connect", g("net_peer"),
           ["-netdev", f"socket,id=n0,connect=127.0.0.1:{port}",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:bb:00:02"], "filter")
    a.finish("net_peer")
    b.finish("net_peer")


def udp_echo_server(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    pid = os.fork()
    if pid == 0:
        s.settimeout(VM_TIMEOUT)
        try:
            while True:
                data, addr = s.recvfrom(2048)
                s.sendto(b"echo:" + data, addr)
        except Exception:
            pass
        os._exit(0)
    s.close()
    return pid


def sc_user(vmkit, g, tmp):
    """User-mode networking: DHCP lease 10.0.2.15, a UDP service on the host through 10.0.2.2,
    and host clients reaching the guest through hostfwd (UDP datagram, TCP handshake + data)."""
    echo_port = random.randint(30000, 35000)
    hu, ht = random.randint(35001, 40000), random.randint(40001, 45000)
    srv = udp_echo_server(echo_port)
    try:
        v = vm(vmkit, "user", g("net_user"),
               ["-netdev", f"user,id=n0,hostfwd=udp:127.0.0.1:{hu}-:7777,hostfwd=tcp:127.0.0.1:{ht}-:7778",
                "-device", "virtio-net-pci,netdev=n0"],
               f"host_port={echo_port} replies=1 tcp_port=7778")
        if not v.wait_line(r"VMNET-READY"):
            v.kill()
            v.dump()
            fail("the guest never got ready (DHCP or the host UDP service failed)")
        # UDP through hostfwd: the guest answers "pong:" + what we sent.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        got = None
        for _ in range(10):
            s.sendto(b"from-host", ("127.0.0.1", hu))
            try:
                got, _ = s.recvfrom(2048)
                break
            except socket.timeout:
                continue
        if got != b"pong:from-host":
            v.kill()
            v.dump()
            fail(f"hostfwd UDP: got {got!r}, expected b'pong:from-host'")
        print("ok: hostfwd UDP answered")
        # TCP through hostfwd: slirp connects to the guest, which answers the SYN and our data.
        t = socket.create_connection(("127.0.0.1", ht), timeout=10)
        t.sendall(b"hi")
        t.settimeout(10)
        data = b""
        try:
            while len(data) < 4:
                chunk = t.recv(16)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        t.close()
        if data != b"pong":
            v.kill()
            v.dump()
            fail(f"hostfwd TCP: got {data!r}, expected b'pong'")
        print("ok: hostfwd TCP answered")
        v.finish("net_user")
    finally:
        os.kill(srv, 9)
        os.waitpid(srv, 0)


def sc_hostile(vmkit, g, tmp):
    """Malformed frames and descriptors on NIC 0 (user, then a vnet-header TAP); NIC 1 (user)
    keeps working and the VMM keeps running."""
    # The second card comes from -nic here and from -net nic/-net user below (NICs of those
    # options are created after the -device list, so they are card 1).
    v = vm(vmkit, "hostile-user", g("net_hostile"),
           ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0", "-nic", "user,model=virtio"])
    v.finish("net_hostile")
    br = make_bridge()
    v = vm(vmkit, "hostile-tap", g("net_hostile"),
           ["-netdev", f"bridge,id=n0,br={br},vnet_hdr=on", "-device", "virtio-net-pci,netdev=n0",
            "-net", "nic,model=virtio", "-net", "user"], "nodhcp0")
    v.finish("net_hostile")


def sc_offload(vmkit, g, tmp):
    """The same frames with offloads off (guest checksums, guest segmentation) and on (partial
    checksums and one TSO frame left to the host), to a receiver with and without GUEST_CSUM:
    the receiver must see identical bytes."""
    hashes = {}
    for mode, rx_csum in (("full", False), ("partial", False), ("partial", True)):
        br = make_bridge()
        rx = vm(vmkit, f"offload-recv-{mode}-{'gcsum' if rx_csum else 'nogcsum'}", g("net_offload"),
                ["-netdev", f"bridge,id=n0,br={br}",
                 "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:02" + ("" if rx_csum else ",guest_csum=off")],
                "role=recv" + (" guest_csum" if rx_csum else ""))
        tx = vm(vmkit, f"offload-send-{mode}", g("net_offload"),
                ["-netdev", f"bridge,id=n0,br={br}", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:01"],
                f"role=send csum={mode}")
        out = rx.finish("net_offload")
        tx.finish("net_offload")
        m = re.search(r"VMNET-HASH=([0-9a-f]+) partial=(\d+)", out)
        if not m:
            fail("the receiver printed no hash")
        hashes[(mode, rx_csum)] = m.group(1)
        print(f"ok: {mode} -> receiver guest_csum={'on' if rx_csum else 'off'}: hash {m.group(1)}, "
              f"{m.group(2)} frames with partial checksums")
        sh("ip", "link", "del", br)
    if len(set(hashes.values())) != 1:
        fail(f"offloads changed the bytes: {hashes}")


def sc_flow(vmkit, g, tmp):
    """Receive flow control, over a bridge (TAP) and over a socket link: a receiver that posts no
    buffers for 1.5 s still gets every frame, in order."""
    br = make_bridge()
    rx = vm(vmkit, "flow-recv-tap", g("net_flow"),
            ["-netdev", f"bridge,id=n0,br={br}", "-device", "virtio-net-pci,netdev=n0"], "role=recv")
    tx = vm(vmkit, "flow-send-tap", g("net_flow"),
            ["-netdev", f"bridge,id=n0,br={br}", "-device", "virtio-net-pci,netdev=n0"], "role=send")
    rx.finish("net_flow")
    tx.finish("net_flow")
    port = random.randint(20000, 30000)
    rx = vm(vmkit, "flow-recv-socket", g("net_flow"),
            ["-netdev", f"socket,id=n0,listen=127.0.0.1:{port}", "-device", "virtio-net-pci,netdev=n0"],
            "role=recv")
    time.sleep(0.5)
    tx = vm(vmkit, "flow-send-socket", g("net_flow"),
            ["-netdev", f"socket,id=n0,connect=127.0.0.1:{port}", "-device", "virtio-net-pci,netdev=n0"],
            "role=send")
    rx.finish("net_flow")
    tx.finish("net_flow")


def sc_nat(vmkit, g, tmp):
    """A VM on a `vmkit net` NAT network gets a DHCP lease from it and reaches a UDP server in
    another namespace; the server must see the host's address (masquerade), not the guest's."""
    r = subprocess.run([vmkit, "net", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if "define" not in r.stdout or "start" not in r.stdout:
        skip("`vmkit net` virtual networks are not in this build")
    if not shutil.which("dnsmasq") or not shutil.which("nft"):
        skip("the NAT network needs dnsmasq and nft")
    env = dict(os.environ, VMKIT_NET_DIR=os.path.join(tmp, "networks"), VMKIT_RUN_DIR=os.path.join(tmp, "run"))
    os.makedirs(env["VMKIT_NET_DIR"])
    os.makedirs(env["VMKIT_RUN_DIR"])
    # The "internet": a veth to a second namespace holding the server.
    srv_ns = uniq("vmnetsrv")
    sh("ip", "netns", "add", srv_ns)
    started = False
    srv = None
    try:
        sh("ip", "link", "add", "vup0", "type", "veth", "peer", "name", "vsrv0")
        sh("ip", "link", "set", "vsrv0", "netns", srv_ns)
        sh("ip", "addr", "add", "172.31.9.1/24", "dev", "vup0")
        sh("ip", "link", "set", "vup0", "up")
        for cmd in (["ip", "addr", "add", "172.31.9.2/24", "dev", "vsrv0"], ["ip", "link", "set", "vsrv0", "up"],
                    ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", srv_ns, *cmd)
        seen = os.path.join(tmp, "seen")
        srv = subprocess.Popen(["ip", "netns", "exec", srv_ns, sys.executable, "-c", f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("172.31.9.2", 5555))
s.settimeout({VM_TIMEOUT})
while True:
    try:
        d, a = s.recvfrom(2048)
    except OSError:
        break
    open({seen!r}, "a").write(a[0] + "\\n")
    s.sendto(b"echo:" + d, a)
"""])
        net = uniq("vmkitnat")
        br = uniq("vnat")
        xml = os.path.join(tmp, "net.xml")
        with open(xml, "w") as f:
            f.write(f"""<network><name>{net}</name><forward mode='nat'/><bridge name='{br}'/>
<ip address='192.168.123.1' netmask='255.255.255.0'><dhcp><range start='192.168.123.50' end='192.168.123.50'/></dhcp></ip>
</network>""")
        for cmd in (["define", xml], ["start", net]):
            # Output to a file, not a pipe: dnsmasq inherits it and would keep a pipe open.
            with open(os.path.join(tmp, "net.log"), "w+") as log:
                try:
                    r = subprocess.run([vmkit, "net"] + cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       timeout=20)
                except subprocess.TimeoutExpired:
                    skip(f"`vmkit net {cmd[0]}` did not finish within 20 s (it hangs waiting for a "
                         "netlink answer): the virtual-network code is not ready")
                log.seek(0)
                if r.returncode != 0:
                    fail(f"vmkit net {' '.join(cmd)}: {log.read().strip()}")
        started = True
        v = vm(vmkit, "nat", g("net_user"), ["-netdev", f"bridge,id=n0,br={br}", "-device", "virtio-net-pci,netdev=n0"],
               "expect_ip=192.168.123.50 server=172.31.9.2 host_port=5555 replies=0")
        v.finish("net_user")
        srv.kill()
        srv.wait()
        sources = open(seen).read().split() if os.path.exists(seen) else []
        if not sources or any(a != "172.31.9.1" for a in sources):
            fail(f"the server saw sources {sources}, expected only 172.31.9.1 (masquerade)")
        print(f"ok: the server saw the guest as {sources[0]}")
    finally:
        if srv and srv.poll() is None:
            srv.kill()
            srv.wait()
        if started:
            subprocess.run([vmkit, "net", "stop", net], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sh("ip", "netns", "del", srv_ns, check=False)


SCENARIOS = {"bridge": sc_bridge, "socket": sc_socket, "user": sc_user, "hostile": sc_hostile,
             "offload": sc_offload, "flow": sc_flow, "nat": sc_nat}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in SCENARIOS:
        print(__doc__)
        print("scenarios:", ", ".join(SCENARIOS))
        sys.exit(2)
    name, vmkit, gdir = sys.argv[1:]

    def g(n):
        p = os.path.join(gdir, n + ".elf")
        if not os.path.exists(p):
            fail(f"guest {p} does not exist (build it first)")
        return p

    if not os.access(vmkit, os.X_OK):
        fail(f"{vmkit} is not executable")
    enter_private_netns()
    tmp = tempfile.mkdtemp(prefix="vmnet-")
    try:
        SCENARIOS[name](vmkit, g, tmp)
    finally:
        for v in VMS:
            v.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"PASS: {name}")


if __name__ == "__main__":
    main()
