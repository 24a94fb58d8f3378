#!/usr/bin/env bash
# Install the Debian packages vmkit needs (scripts/deps.txt), only those missing.
# usage: install-deps.sh [build|test|fuzz]   (default test: what make check needs, build included)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
want=${1:-test}
case $want in
build) groups="build" ;;
test) groups="build test" ;;
fuzz) groups="build test fuzz" ;;
*) echo "usage: $0 [build|test|fuzz]" >&2; exit 2 ;;
esac
pkgs=()
while read -r pkg group _; do
    case $pkg in ''|'#'*) continue ;; esac
    for g in $groups; do [ "$group" = "$g" ] && pkgs+=("$pkg"); done
done < "$here/deps.txt"
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null; then
    sudo="sudo"
else
    echo "error: these packages are missing and I am not root: ${missing[*]}" >&2
    echo "run as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
