#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the example stack: installs Docker (and the
# busybox the local images are made from), starts dockerd, builds the local image and
# baton, then brings up examples/demo and asks its published port for the page.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is needed: install Rust (https://rustup.rs) and run this again" >&2
  exit 1
fi
command -v cc >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq build-essential >/dev/null; }

scripts/ensure-docker.sh
scripts/make-test-image.sh
scripts/ensure-pipeline.sh
scripts/ensure-fleet.sh
scripts/ensure-vm.sh
scripts/ensure-registry.sh
scripts/ensure-edge.sh
cargo build --release --locked
install -m 0755 target/release/baton /usr/local/bin/baton

cd examples/demo
baton up -d
baton ps
for _ in $(seq 1 20); do
  if body=$(exec 3<>/dev/tcp/127.0.0.1/"${FRONT_PORT:-18080}" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3); then
    printf '%s\n' "$body" | tail -n 1
    break
  fi
  sleep 0.5
done
echo "the demo stack is up: try 'cd examples/demo && baton plan', then 'baton down -v'"
