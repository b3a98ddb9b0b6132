#!/usr/bin/env bash
# Makes sure a Docker engine answers on this machine: installs docker.io (and the
# busybox-static package the test images are made from, and nginx and haproxy for the
# traffic providers' tests) when missing, starts dockerd in
# the background when it is not running, and waits for it.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
# The servers the nginx and haproxy traffic providers are tested with (not started here).
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/tmp/baton-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/baton-dockerd.log" >&2; exit 1; }
