#!/bin/bash
# The stock Linux the linux suite and bench/emu/linux_boot.sh boot: Debian's kernel package and
# busybox-static, fetched with apt-get download into CACHE_DIR once, and an initramfs with
# busybox, /init (init.sh) and the virtio modules. Writes OUT_DIR/vmlinuz, initrd and version.
# usage: prepare.sh CACHE_DIR OUT_DIR   (exit 77 with SKIP: when the mirror cannot be reached)
set -u
cache=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

# --- The kernel and busybox, from the package mirror (once per cache dir) ---
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
pkg=$(kpkg)
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >/dev/null 2>&1
    pkg=$(kpkg)
fi
[ -n "$pkg" ] || skip "apt cannot name Debian's kernel package (linux-image-amd64): no package lists"
dir=$cache/$pkg
if [ ! -f "$dir/ok" ]; then
    rm -rf "$dir" && mkdir -p "$dir/dl" || fail "cannot create $dir"
    (cd "$dir/dl" && apt-get download "$pkg" busybox-static >/dev/null 2>&1) ||
        skip "apt-get download $pkg busybox-static failed: no package mirror reachable"
    # Only what the initramfs takes: the kernel, busybox and the virtio modules (not 400 MB).
    mkdir -p "$dir/x"
    for deb in "$dir"/dl/*.deb; do
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir/x" --wildcards --no-wildcards-match-slash \
            './boot/vmlinuz-*' './bin/busybox' './lib/modules/*/kernel/drivers/virtio/*' \
            './lib/modules/*/kernel/drivers/block/virtio_blk.ko' \
            './lib/modules/*/kernel/drivers/net/*failover.ko' './lib/modules/*/kernel/net/core/failover.ko' \
            './lib/modules/*/kernel/drivers/net/virtio_net.ko' \
            './lib/modules/*/kernel/drivers/char/virtio_console.ko' \
            './lib/modules/*/kernel/drivers/char/hw_random/virtio-rng.ko' 2>/dev/null
        [ -n "$(ls "$dir/x")" ] || fail "cannot unpack $deb"
    done
    rm -rf "$dir/dl"
    touch "$dir/ok"
fi
kernel=$(ls "$dir"/x/boot/vmlinuz-* 2>/dev/null | head -1)
[ -f "$kernel" ] || fail "no kernel in $pkg"
version=${kernel##*/vmlinuz-}

# --- The initramfs: busybox, /init, the virtio modules ---
root=$out/root
mkdir -p "$root/bin"
cp "$dir/x/bin/busybox" "$root/bin/" || fail "no busybox in busybox-static"
cp "$here/init.sh" "$root/init" && cp "$here/udhcpc.sh" "$root/bin/udhcpc.sh"
chmod +x "$root/init" "$root/bin/udhcpc.sh"
# The virtio drivers and what they need, where modprobe looks (the guest runs depmod).
mods=$dir/x/lib/modules/$version
for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk \
         failover net_failover virtio_net virtio_console virtio-rng; do
    f=$(cd "$mods" && find kernel -name "$m.ko" | head -1)
    [ -n "$f" ] || fail "module $m.ko is not in $pkg"
    mkdir -p "$root/lib/modules/$version/$(dirname "$f")"
    cp "$mods/$f" "$root/lib/modules/$version/$f"
done
python3 "$here/mkinitramfs.py" "$root" "$out/initrd" || fail "cannot build the initramfs"

cp "$kernel" "$out/vmlinuz" && echo "$version" >"$out/version" && rm -rf "$root"
