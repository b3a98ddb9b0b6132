#!/usr/bin/env bash
# Idle memory of `baton serve` with N replicas under management (default 50): brings up
# one service with N busybox replicas, lets the daemon supervise them for 15 s, prints
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
printf 'services:\n  web:\n    image: baton-test/busybox:latest\n    init: true\n    stop_grace_period: 1s\n    restart: always\n    command: [sleep, "3600"]\n    deploy:\n      replicas: %s\n' "$n" > compose.yaml
export BATON_STATE_DIR=$work/state
"$baton" -p rssbench up -d >/dev/null 2>&1
"$baton" serve >/dev/null 2>&1 &
pid=$!
sleep 15
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
cpu=$(ps -o pcpu= -p $pid | tr -d ' ')
kill $pid
echo "| replicas | VmRSS | VmHWM (peak) | CPU (idle, 500 ms tick) |"
echo "|---|---|---|---|"
echo "| $n | $((rss / 1024)) MB | $((hwm / 1024)) MB | $cpu % |"
