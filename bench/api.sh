#!/usr/bin/env bash
# The HTTP API of `baton serve --listen` (issue 12): the p99 of GET services of a
# 50-replica project under load (wrk, 2 threads, 16 connections, 20 s), then 200 SSE
# clients connected at once, each of 20 events timed from the request that made it to
# its delivery to every client, and the daemon's memory (VmRSS, VmHWM) while they are connected.
# Usage: bench/api.sh [REPLICAS] [SSE_CLIENTS]   (BATON_BIN=... to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
clients=${2:-200}
scripts/ensure-docker.sh >/dev/null
scripts/make-test-image.sh >/dev/null
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
if [ -z "${BATON_BIN:-}" ]; then
  cargo build --release --locked -q
  BATON_BIN=$PWD/target/release/baton
fi
baton=$BATON_BIN
bench=$PWD/bench
work=$(mktemp -d)
export BATON_STATE_DIR=$work/state
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  cd "$work" && "$baton" -p apibench down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
printf 'services:\n  web:\n    image: baton-test/busybox:latest\n    init: true\n    stop_grace_period: 1s\n    restart: always\n    command: [sleep, "3600"]\n    deploy:\n      replicas: %s\n' "$n" > compose.yaml
"$baton" -p apibench up -d >/dev/null 2>&1
viewer=$("$baton" token create bench-viewer --role viewer 2>/dev/null)
admin=$("$baton" token create bench-admin --role admin 2>/dev/null)
port=${BENCH_PORT:-18991}
"$baton" serve --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" -o /dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port/api/v1/projects/apibench/services"
running=$(curl -s -H "Authorization: Bearer $viewer" "$url" | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"][0]["running"])')
echo "GET services: $running replicas running" >&2
cat > auth.lua <<LUA
wrk.headers["Authorization"] = "Bearer $viewer"
LUA
wrk -t2 -c16 -d20s --latency -s auth.lua "$url" > wrk.out
cat wrk.out >&2
p50=$(awk '$1 == "50%" {print $2}' wrk.out)
p99=$(awk '$1 == "99%" {print $2}' wrk.out)
rps=$(awk '/Requests\/sec/ {print $2}' wrk.out)
errors=$(grep -c "Non-2xx" wrk.out || true)
sse=$(python3 "$bench/sse_clients.py" "$port" "$viewer" "$admin" "$clients" 20 "$pid")
echo "| GET services ($n replicas) p50 | p99 | requests/s | non-2xx lines |"
echo "|---|---|---|---|"
echo "| $p50 | $p99 | $rps | $errors |"
echo
echo "SSE (latency from the request that made each event to its delivery; memory while connected): $sse"
