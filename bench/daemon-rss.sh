#!/usr/bin/env bash
# Idle memory of `baton serve` with N replicas under management (default 50): brings up
# one service with N busybox replicas (proxied and health-checked by baton), lets the daemon supervise them for 15 s, prints
# its resident memory (VmRSS, VmHWM) and CPU share, then removes everything.
# Usage: bench/daemon-rss.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
scripts/ensure-docker.sh
scripts/make-test-image.sh
cargo build --release --locked -q
baton=$PWD/target/release/baton
work=$(mktemp -d)
trap 'cd "$work" && "$baton" -p rssbench down >/dev/null 2>&1; rm -rf "$work"' EXIT
cd "$work"
# Everything on: the replicas serve HTTP behind the daemon's proxy on a published port
# (x-baton.rollout) and baton probes each of them itself (x-baton.healthcheck).
port=${BENCH_PORT:-18990}
printf 'services:\n  web:\n    image: baton-test/busybox:latest\n    init: true\n    stop_grace_period: 1s\n    restart: always\n    command: [httpd, -f, -p, "80", -h, /]\n    ports: ["127.0.0.1:%s:80"]\n    deploy:\n      replicas: %s\n    x-baton:\n      rollout: {strategy: rolling}\n      healthcheck: {tcp: 80, interval: 2s}\n' "$port" "$n" > compose.yaml
export BATON_STATE_DIR=$work/state
"$baton" -p rssbench up -d >/dev/null 2>&1
"$baton" serve >/dev/null 2>&1 &
pid=$!
sleep 15
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
echo "the daemon's proxy on :$port answers HTTP $code (busybox httpd behind it)" >&2
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
cpu=$(ps -o pcpu= -p $pid | tr -d ' ')
kill $pid
echo "| replicas | VmRSS | VmHWM (peak) | CPU (idle, 500 ms tick) |"
echo "|---|---|---|---|"
echo "| $n | $((rss / 1024)) MB | $((hwm / 1024)) MB | $cpu % |"
