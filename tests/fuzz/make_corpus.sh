#!/bin/sh
# Regenerates the seed images of the qcow2 fuzz corpus with qemu-img/qemu-io (small on purpose).
set -e
out=${1:-$(dirname "$0")/corpus/qcow2}
mkdir -p "$out"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
io() { qemu-io -f qcow2 "$@" >/dev/null; }
qemu-img create -q -f qcow2 -o cluster_size=512 "$out/seed-empty-512" 64k
qemu-img create -q -f qcow2 -o cluster_size=512 "$t/a" 64k
io -c 'write -P 0xab 0 3k' -c 'write -z 8k 2k' -c 'write -P 1 40k 700' "$t/a"
cp "$t/a" "$out/seed-data-512"
qemu-img snapshot -c s1 "$t/a"; io -c 'write -P 2 0 1k' "$t/a"
cp "$t/a" "$out/seed-snapshot-512"
qemu-img create -q -f qcow2 -o cluster_size=512,compat=0.10 "$t/v2" 32k
io -c 'write -P 3 1k 2k' "$t/v2"; cp "$t/v2" "$out/seed-v2-512"
head -c 16384 /dev/urandom > "$t/r"; head -c 16384 /dev/zero >> "$t/r"
qemu-img convert -c -O qcow2 -o cluster_size=512 -f raw "$t/r" "$out/seed-zlib-512"
qemu-img convert -c -O qcow2 -o cluster_size=512,compression_type=zstd -f raw "$t/r" "$out/seed-zstd-512"
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=1 "$t/r1" 32k
io -c 'write -P 4 0 4k' "$t/r1"; cp "$t/r1" "$out/seed-refcount1-512"
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64,lazy_refcounts=on "$t/r64" 32k
io -c 'write -P 5 0 4k' "$t/r64"; cp "$t/r64" "$out/seed-refcount64-lazy-512"
qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on "$t/x" 256k
io -c 'write -P 6 1k 1k' -c 'write -z 32k 1k' "$t/x"; cp "$t/x" "$out/seed-extl2-16k"
qemu-img create -q -f qcow2 -u -o cluster_size=512 -b base.raw -F raw "$out/seed-backing-512" 16k
# Hostile variants of seed-data-512
poke() { cp "$out/seed-data-512" "$out/$1"; printf "$3" | dd of="$out/$1" bs=1 seek="$2" conv=notrunc status=none; }
poke hostile-l1-huge 36 '\377\377\377\377'
poke hostile-size-huge 24 '\177\377\377\377'
poke hostile-incompat 72 '\000\000\001\000'
poke hostile-rt-offset 48 '\000\000\000\001'
poke hostile-snapshots 60 '\177\377\377\377'
poke hostile-cluster-bits 20 '\000\000\000\037'
cp "$out/seed-data-512" "$out/hostile-truncated"; truncate -s 1000 "$out/hostile-truncated"
