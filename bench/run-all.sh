#!/usr/bin/env bash
# Run every benchmark against its peer and print the tables for docs/benchmarks.md.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
echo "## Start-up and memory overhead"
python3 "$here/startup.py" "$build/src/cli/vmkit" "$build/bench/firstbyte.elf" --markdown
for b in "$here"/img/run.sh "$here"/emu/run.sh; do
    [ -x "$b" ] && "$b" "$build"
done
