#!/usr/bin/env bash
# Makes sure QEMU (qemu-system-x86, qemu-utils for qemu-img), busybox-static and cpio are
# installed, then builds (or finds cached) the tiny test guest. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# Both QEMU packages from the same release, always together: a machine image may carry a
# newer qemu-utils (from backports) that apt removes when it installs Debian's
# qemu-system-x86 alone, leaving no qemu-img.
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null; then
    need+=(qemu-system-x86 qemu-utils)
fi
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v gzip >/dev/null || need+=(gzip)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
for tool in qemu-system-x86_64 qemu-img; do
    command -v "$tool" >/dev/null || { echo "ensure-vm: $tool is still missing after installing ${need[*]}" >&2; exit 1; }
done
scripts/make-guest.sh
