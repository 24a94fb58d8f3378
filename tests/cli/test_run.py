#!/usr/bin/env python3
"""Tests of `vmkit run` as a user meets it: errors, signals, daemonizing, serial backends and the
console escapes. usage: test_run.py VMKIT HELLO_GUEST CASE   (exit 77 = skipped)"""
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import termios
import time

VMKIT, GUEST, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
EXTRA = sys.argv[4:]  # guests some cases need besides hello
PASS_LINE = b"VMKIT-TEST: PASS hello"


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def kvm_usable():
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


def need_kvm():
    if not kvm_usable():
        skip("/dev/kvm not available")


def run(*args, timeout=30, **kw):
    return subprocess.run([VMKIT, "run", *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def expect_error(args, *needles):
    """The command fails with exit status 1 and a message naming what was wrong."""
    r = run(*args)
    err = r.stderr.decode()
    assert r.returncode == 1, f"{args}: exit {r.returncode}, stderr: {err}"
    for n in needles:
        assert n in err, f"{args}: expected {n!r} in stderr: {err}"
    assert "Traceback" not in err and "Segmentation" not in err


def wait_for(pred, timeout=20, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read_until(fd, needle, timeout=20):
    buf = b""
    end = time.time() + timeout
    while needle not in buf:
        left = end - time.time()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {needle!r}; got {buf[-500:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    assert needle in buf, f"{needle!r} not in {buf[-500:]!r}"
    return buf


def case_help_version():
    r = run("-version")
    assert r.returncode == 0 and b"vmkit version" in r.stdout, r
    r = run("-help")
    assert r.returncode == 0, r
    for opt in (b"-kernel", b"-smp", b"-m ", b"-serial", b"-no-reboot"):
        assert opt in r.stdout, f"{opt} missing from -help"
    r = run("--help")
    assert r.returncode == 0 and b"-kernel" in r.stdout
    r = subprocess.run([VMKIT, "--version"], capture_output=True)
    assert r.returncode == 0 and b"vmkit version" in r.stdout
    r = subprocess.run([VMKIT, "frobnicate"], capture_output=True)
    assert r.returncode == 1 and b"frobnicate" in r.stderr


def case_bad_options():
    expect_error(["-frobnicate"], "-frobnicate")
    expect_error(["-m", "12X"], "-m")
    expect_error(["-m"], "-m")
    expect_error(["-smp", "0"], "-smp")
    expect_error(["-smp", "4,sockets=3,cores=2,threads=1"], "-smp")
    expect_error(["-drive", "file=x.img"], "-drive")
    expect_error(["-machine", "q35"], "pc")
    expect_error(["-append", "x"], "-kernel")


def case_missing_kernel():
    need_kvm()
    expect_error(["-kernel", "/nonexistent/bzImage"], "-kernel /nonexistent/bzImage",
                 "No such file")


def case_not_a_kernel():
    need_kvm()
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(b"this is a text file, not a kernel\n" * 100)
        f.flush()
        expect_error(["-kernel", f.name], f.name, "bzImage")


def case_too_much_memory():
    need_kvm()
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    # Twice the host's RAM plus swap cannot be given; it is still within -m's own limits.
    want = (total_kib * 2) // (1024 * 1024) + 64
    expect_error(["-m", f"{want}G"], "-m", "host")


def case_no_dev_kvm():
    if os.geteuid() != 0:
        skip("needs root to hide /dev/kvm in a private mount namespace")
    # A private mount namespace with an empty /dev: vmkit must say how to get /dev/kvm.
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'mount -t tmpfs none /dev && exec "{VMKIT}" run -kernel "{GUEST}"'],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 1 and b"mount" in r.stderr:
        skip("cannot make a mount namespace here: " + r.stderr.decode().strip())
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "/dev/kvm does not exist" in err and "modprobe" in err, err


def case_kvm_permission():
    if os.geteuid() != 0:
        skip("needs root to run vmkit as another user")
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "sh", "-c", "exec 3<>/dev/kvm"], capture_output=True)
    if probe.returncode == 0:
        skip("user nobody may open /dev/kvm on this host")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        VMKIT, "run", "-kernel", GUEST], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    err = r.stderr.decode()
    if "Permission denied" in err and "/dev/kvm" not in err:
        skip("user nobody cannot execute the build tree's vmkit")
    assert r.returncode == 1, err
    assert "no permission to open /dev/kvm" in err and "kvm' group" in err, err


def start_held(*extra, **kw):
    """Boot the hello guest with -no-shutdown: it powers off, vmkit stays up."""
    return subprocess.Popen([VMKIT, "run", "-nographic", "-kernel", GUEST, "-no-shutdown",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, **kw)


def case_signal(sig):
    need_kvm()
    p = start_held()
    read_until(p.stdout.fileno(), PASS_LINE)
    time.sleep(0.2)
    assert p.poll() is None, "vmkit exited although -no-shutdown was given"
    p.send_signal(sig)
    p.wait(timeout=10)
    err = p.stderr.read().decode()
    assert p.returncode == 0, f"exit {p.returncode}: {err}"
    assert f"terminating on signal {int(sig)}" in err, err


def case_poweroff_exits_zero():
    need_kvm()
    r = run("-nographic", "-kernel", GUEST, "-smp", "2")
    assert r.returncode == 0, r
    assert PASS_LINE in r.stdout, r.stdout


def case_mem_path():
    """-mem-path DIR -mem-prealloc: RAM in a file there (hugetlbfs in real use)."""
    need_kvm()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        r = run("-m", "128M", "-nographic", "-kernel", GUEST, "-mem-path", d, "-mem-prealloc")
        assert r.returncode == 0 and PASS_LINE in r.stdout, r
        assert os.listdir(d) == [], "the RAM file was left behind"
    expect_error(["-m", "128M", "-kernel", GUEST, "-mem-path", "/nonexistent-dir"],
                 "/nonexistent-dir")


def case_accel_auto():
    """-accel with no value: kvm with VT-x/SVM and a usable /dev/kvm, else the software CPU."""
    with open("/proc/cpuinfo") as f:
        hw_virt = any(w in ("vmx", "svm") for line in f if line.startswith("flags")
                      for w in line.split())
    want = "kvm" if hw_virt and kvm_usable() else "emu"
    r = run("-m", "128M", "-nographic", "-kernel", GUEST, "-accel")
    err = r.stderr.decode()
    assert r.returncode == 0 and PASS_LINE in r.stdout, r
    assert f"using {want}" in err, f"expected auto to pick {want}: {err}"


def case_default_guest():
    need_kvm()
    r = run("-m", "256M")  # no -kernel: the built-in guest
    assert r.returncode == 0, r
    assert b"vmkit default guest" in r.stdout and PASS_LINE in r.stdout, r.stdout


def case_serial_file():
    need_kvm()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "serial.log")
        r = run("-nographic", "-kernel", GUEST, "-serial", f"file:{out}")
        assert r.returncode == 0, r
        assert PASS_LINE not in r.stdout
        assert PASS_LINE in open(out, "rb").read()


def case_serial_pty():
    need_kvm()
    p = start_held("-serial", "pty")
    line = b""
    end = time.time() + 20
    while b"\n" not in line and time.time() < end:
        r, _, _ = select.select([p.stderr], [], [], 1)
        if r:
            line += os.read(p.stderr.fileno(), 1)
    text = line.decode()
    assert "char device redirected to /dev/pts/" in text, text
    path = text.split("redirected to ")[1].split()[0]
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    try:
        read_until(fd, PASS_LINE)
    finally:
        os.close(fd)
        p.terminate()
        p.wait(timeout=10)
    assert p.returncode == 0


def case_daemonize():
    need_kvm()
    with tempfile.TemporaryDirectory() as d:
        pidfile, out = os.path.join(d, "vm.pid"), os.path.join(d, "serial.log")
        t0 = time.time()
        r = run("-kernel", GUEST, "-no-shutdown", "-daemonize", "-pidfile", pidfile,
                "-serial", f"file:{out}", timeout=20)
        assert r.returncode == 0, r
        assert time.time() - t0 < 15
        pid = int(open(pidfile).read())
        os.kill(pid, 0)  # alive
        wait_for(lambda: os.path.exists(out) and PASS_LINE in open(out, "rb").read(),
                 what="guest output in the serial file")
        os.kill(pid, signal.SIGTERM)

        def gone():
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                return True
        wait_for(gone, what="the daemon to exit")
        assert not os.path.exists(pidfile), "pidfile left behind"
    expect_error(["-daemonize", "-nographic"], "-daemonize")


def case_console_escapes():
    need_kvm()
    pid, master = pty.fork()
    if pid == 0:
        os.execv(VMKIT, [VMKIT, "run", "-nographic", "-kernel", GUEST, "-no-shutdown"])
    # The child's terminal is the pty slave; termios of the master side mirror it.
    read_until(master, PASS_LINE)
    attrs = termios.tcgetattr(master)
    assert not attrs[3] & termios.ECHO and not attrs[3] & termios.ICANON, "terminal not raw"
    os.write(master, b"\x01h")
    read_until(master, b"C-a x")
    os.write(master, b"\x01x")
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    attrs = termios.tcgetattr(master)
    assert attrs[3] & termios.ECHO and attrs[3] & termios.ICANON, "terminal not restored"
    os.close(master)


def case_internal_error():
    """A guest that makes KVM give up: vmkit prints the vCPU registers and exits non-zero."""
    need_kvm()
    r = run("-nographic", "-kernel", EXTRA[0])
    err = r.stderr.decode()
    assert r.returncode == 1, f"exit {r.returncode}: {err}"
    assert "internal error" in err, err
    for reg in ("RIP=", "RSP=", "CR0=", "CS "):
        assert reg in err, f"{reg} missing from the register dump: {err}"
    assert "Segmentation" not in err


def case_emu_signals():
    """-accel emu hands the event loop the baton between slices: a signal must still stop vmkit
    promptly when the vCPUs are gone (-no-shutdown after power-off) and when they idle in
    host time (-icount sleep=on)."""
    p = start_held("-accel", "emu", "-smp", "2")
    read_until(p.stdout.fileno(), PASS_LINE)
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    assert p.returncode == 0, p.stderr.read().decode()
    vclock = EXTRA[1]
    p = subprocess.Popen([VMKIT, "run", "-nographic", "-kernel", vclock, "-accel", "emu", "-smp",
                          "2", "-icount", "sleep=on", "-append", "sleep_ms=100000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(1)
    assert p.poll() is None, "the guest should still be sleeping"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    err = p.stderr.read().decode()
    assert p.returncode == 0 and "terminating on signal" in err, err


def case_emu_nic_quiet():
    """-nic takes the netdev's queues as they are: no warning about mq for a one-queue netdev."""
    r = run("-nographic", "-kernel", GUEST, "-accel", "emu", "-nic", "user,model=virtio-net-pci")
    assert r.returncode == 0 and PASS_LINE in r.stdout, r
    assert b"warning" not in r.stderr, r.stderr


CASES = {
    "emu-signals": case_emu_signals,
    "emu-nic-quiet": case_emu_nic_quiet,
    "help-version": case_help_version,
    "bad-options": case_bad_options,
    "missing-kernel": case_missing_kernel,
    "not-a-kernel": case_not_a_kernel,
    "too-much-memory": case_too_much_memory,
    "no-dev-kvm": case_no_dev_kvm,
    "kvm-permission": case_kvm_permission,
    "sigterm": lambda: case_signal(signal.SIGTERM),
    "sigint": lambda: case_signal(signal.SIGINT),
    "poweroff-exits-zero": case_poweroff_exits_zero,
    "default-guest": case_default_guest,
    "mem-path": case_mem_path,
    "accel-auto": case_accel_auto,
    "serial-file": case_serial_file,
    "serial-pty": case_serial_pty,
    "daemonize": case_daemonize,
    "console-escapes": case_console_escapes,
    "internal-error": case_internal_error,
}

if __name__ == "__main__":
    CASES[CASE]()
    print("ok:", CASE)
