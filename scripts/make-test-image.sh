#!/usr/bin/env bash
# Builds the local image `baton-test/busybox:latest` from Debian's busybox-static: no
# registry is needed. Idempotent: does nothing when the image exists.
set -euo pipefail
image=${1:-baton-test/busybox:latest}
docker image inspect "$image" >/dev/null 2>&1 && exit 0

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,var/www,root,proc,sys,dev}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$root/etc/passwd"
chmod 1777 "$root/tmp"
tar -C "$root" -cf - . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$image" >/dev/null
echo "built $image"
