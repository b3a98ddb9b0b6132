#!/usr/bin/env bash
# Makes sure QEMU (qemu-system-x86, qemu-utils for qemu-img), busybox-static and cpio are
# installed, then builds (or finds cached) the tiny test guest. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "$@"; }
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v gzip >/dev/null || need+=(gzip)
updated=
if ((${#need[@]})); then
    apt-get update -qq
    updated=1
    install "${need[@]}"
fi
# A machine image may carry a newer qemu-utils (from backports) that apt removes to
# install Debian's qemu-system-x86, leaving no qemu-img: put Debian's back.
if ! command -v qemu-img >/dev/null; then
    [ -n "$updated" ] || apt-get update -qq
    install qemu-utils
fi
for tool in qemu-system-x86_64 qemu-img; do
    command -v "$tool" >/dev/null || { echo "ensure-vm: $tool is missing after installing QEMU" >&2; exit 1; }
done
scripts/make-guest.sh
