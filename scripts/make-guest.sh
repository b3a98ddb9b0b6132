#!/usr/bin/env bash
# Builds the tiny test guest: a Debian kernel (from the distribution's current
# linux-image package) plus a busybox-static initramfs whose init prints a ready line on
# ttyS0, then a counter every ~200 ms, runs a shell on ttyS1, brings up its virtio NIC
# on QEMU's user network (10.0.2.15) with busybox httpd on port 80 (`/health` answers
# `ok`), runs the QEMU guest agent (Debian's qemu-ga, with the libraries it links) on
# the virtio-serial port `org.qemu.guest_agent.0` when the VM has one, and powers off
# on the ACPI power button. Cached in $BATON_GUEST_DIR (default
# <repo>/.guest): reruns are instant unless the guest's version below changed.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${BATON_GUEST_DIR:-$PWD/.guest}"
# Bump when the guest changes, so cached guests are rebuilt.
version=4
if [[ -s "$out/vmlinuz" && -s "$out/initramfs.gz" && "$(cat "$out/version" 2>/dev/null)" == "$version" \
      && "${1:-}" != "--force" ]]; then
    echo "guest ready in $out"
    exit 0
fi
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')"
[[ -n "$pkg" ]] || { echo "cannot find the current linux-image package" >&2; exit 1; }
(cd "$work" && apt-get download "$pkg" >/dev/null 2>&1 || apt-get download "$pkg")
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
cp "$work"/k/boot/vmlinuz-* "$out/vmlinuz.tmp"
(cd "$work" && apt-get download qemu-guest-agent >/dev/null 2>&1 || apt-get download qemu-guest-agent)
dpkg-deb -x "$work"/qemu-guest-agent_*.deb "$work/qga"

bb=/bin/busybox   # from busybox-static: the initramfs has no libc
root="$work/root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,lib/modules}
cp "$bb" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [[ "$applet" == busybox ]] && continue
    ln -sf busybox "$root/bin/$applet"
done
# The ACPI button, then the virtio NIC with what it needs, in load order.
modules="drivers/acpi/button.ko drivers/input/evdev.ko drivers/virtio/virtio.ko
    drivers/virtio/virtio_ring.ko drivers/virtio/virtio_pci_legacy_dev.ko
    drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci.ko
    net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko"
for m in $modules drivers/char/virtio_console.ko; do
    cp "$work"/k/lib/modules/*/kernel/"$m" "$root/lib/modules/"
done
# The guest agent and the shared libraries it links, at the paths it looks for them.
mkdir -p "$root/usr/sbin"
cp "$work/qga/usr/sbin/qemu-ga" "$root/usr/sbin/qemu-ga"
if ldd "$work/qga/usr/sbin/qemu-ga" | grep -q "not found"; then
    echo "qemu-ga needs libraries this machine lacks:" >&2
    ldd "$work/qga/usr/sbin/qemu-ga" | grep "not found" >&2
    exit 1
fi
for lib in $(ldd "$work/qga/usr/sbin/qemu-ga" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cat > "$root/etc/acpid.conf" <<'CONF'
PWRF powerbutton
CONF
mkdir -p "$root/etc/acpi" "$root/www"
echo ok > "$root/www/health"
cat > "$root/etc/acpi/powerbutton" <<'SH'
#!/bin/sh
echo "baton-guest: power button, powering off" > /dev/ttyS0
sync
poweroff -f
SH
chmod +x "$root/etc/acpi/powerbutton"
cat > "$root/init" <<'SH'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
insmod /lib/modules/button.ko 2>/dev/null
insmod /lib/modules/evdev.ko 2>/dev/null
mkdir -p /var/log /var/run
acpid -c /etc/acpi -a /etc/acpid.conf 2>/dev/null
# A shell on the second serial port, for `baton vm console` and tests: up before the
# ready line, so a command sent once the guest says ready is read.
(while true; do setsid sh -i </dev/ttyS1 >/dev/ttyS1 2>&1; done) &
echo "baton-guest: ready" > /dev/ttyS0
# The network (QEMU's user mode: 10.0.2.15, gateway 10.0.2.2) and an HTTP server on 80.
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_console; do
    insmod /lib/modules/$m.ko 2>/dev/null
done
# The guest agent, on its port when the VM has one (no udev: found by name in sysfs).
for p in /sys/class/virtio-ports/*; do
    if [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ]; then
        LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /usr/sbin/qemu-ga -m virtio-serial \
            -p "/dev/$(basename "$p")" -t /tmp -d -f /tmp/qemu-ga.pid
        echo "baton-guest: agent on /dev/$(basename "$p")" > /dev/ttyS0
    fi
done
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
    httpd -p 80 -h /www
    echo "baton-guest: http on 80" > /dev/ttyS0
fi
i=0
while true; do
    echo "baton-guest: tick $i mark=$(cat /tmp/mark 2>/dev/null)" > /dev/ttyS0
    i=$((i + 1))
    usleep 200000
done
SH
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initramfs.gz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
echo "$version" > "$out/version"
echo "guest built in $out ($pkg)"
