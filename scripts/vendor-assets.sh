#!/usr/bin/env bash
# Refreshes the dashboard's vendored JavaScript (and uPlot's stylesheet) from npm: fetches the pinned packages
# with `npm pack` (checked against their registry integrity), copies the built files
# and their licences into crates/baton-api/assets/vendor/. The build never runs this:
# the copied files are committed, so cargo alone builds baton, air-gapped.
set -euo pipefail
cd "$(dirname "$0")/.."

out=crates/baton-api/assets/vendor
# name@version  sha512 integrity (as `npm view NAME@VERSION dist.integrity` prints it)
packages=(
  "htmx.org@2.0.11 sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA=="
  "htmx-ext-sse@2.2.4 sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ=="
  "uplot@1.6.32 sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for entry in "${packages[@]}"; do
  spec=${entry%% *}
  want=${entry#* }
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tgz=$(ls "$work"/*.tgz)
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$want" ]; then
    echo "$spec: integrity $got, expected $want" >&2
    exit 1
  fi
  mkdir -p "$work/x"
  tar xzf "$tgz" -C "$work/x"
  name=${spec%@*}
  case "$name" in
    htmx.org)
      cp "$work/x/package/dist/htmx.min.js" "$out/htmx.min.js"
      cp "$work/x/package/LICENSE" "$out/htmx.LICENSE"
      ;;
    htmx-ext-sse)
      cp "$work/x/package/dist/sse.min.js" "$out/htmx-ext-sse.min.js"
      cp "$work/x/package/LICENSE" "$out/htmx-ext-sse.LICENSE"
      ;;
    uplot)
      # Only the pages with charts load these (the overview's first load stays small).
      cp "$work/x/package/dist/uPlot.iife.min.js" "$out/uplot.min.js"
      cp "$work/x/package/dist/uPlot.min.css" "$out/uplot.min.css"
      cp "$work/x/package/LICENSE" "$out/uplot.LICENSE"
      ;;
  esac
  echo "$spec" >>"$work/versions"
  rm -rf "$work/x" "$tgz"
done

{
  echo "Vendored by scripts/vendor-assets.sh from the npm registry; do not edit by hand."
  cat "$work/versions"
} >"$out/VERSIONS"
echo "vendored into $out:"
ls -l "$out"
