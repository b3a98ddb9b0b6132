#!/usr/bin/env bash
# Builds the local image `baton-bench/backend:latest` for the proxy benchmarks: the
# keep-alive HTTP backend of crates/baton-proxy/examples/backend.rs, built static (no
# libc in the image), alone in the image. Run it as `/backend 80 0.0.0.0`. Rebuilt when
# the example changed since the image was made; no registry is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
image=baton-bench/backend:latest
src=crates/baton-proxy/examples/backend.rs
stamp=$(sha256sum "$src" Cargo.lock | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{ index .Config.Labels "baton.source" }}' "$image" 2>/dev/null || true)
[ "$have" = "$stamp" ] && exit 0

triple=$(rustc -vV | awk '/^host:/ {print $2}')
# Its own target directory: the static flags would otherwise rebuild the workspace's.
RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_TARGET_DIR="$PWD/target/static" \
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_DEBUG=false \
  cargo build --release --locked -q -p baton-proxy --example backend --target "$triple"
bin=target/static/$triple/release/examples/backend
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp "$bin" "$root/backend"
tar -C "$root" -cf - backend |
  docker import -c "LABEL baton.source=$stamp" -c 'CMD ["/backend", "80", "0.0.0.0"]' - "$image" >/dev/null
echo "built $image"
