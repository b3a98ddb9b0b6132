#!/usr/bin/env bash
# The idle CPU of `baton serve` with metrics on (issue 13): one service of 3 replicas
# behind the daemon's proxy, health-checked by baton, autoscaled (the decider looks
# every second) and with an alert rule, the API listening (so /metrics is served);
# nothing sends traffic. After 15 s to settle, the daemon's user+system CPU time is
# read from /proc over SECONDS, once with the default 10 s sampling into the history and
# once with 1 s sampling. Prints the share of one core. Target: ≤ 2 %.
# Usage: bench/daemon-idle-cpu.sh [SECONDS]   (default 60; BATON_BIN=... to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
scripts/ensure-docker.sh >/dev/null
scripts/make-test-image.sh >/dev/null
if [ -z "${BATON_BIN:-}" ]; then
  cargo build --release --locked -q -p baton-cli
  BATON_BIN=$PWD/target/release/baton
fi
baton=$BATON_BIN
work=$(mktemp -d)
export BATON_STATE_DIR=$work/state
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  cd "$work" && "$baton" -p idlebench down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
web=${BENCH_WEB_PORT:-18995}
api=${BENCH_PORT:-18996}
cat > compose.yaml <<YAML
services:
  web:
    image: baton-test/busybox:latest
    init: true
    stop_grace_period: 1s
    command: [httpd, -f, -p, "80", -h, /]
    ports: ["127.0.0.1:$web:80"]
    deploy: {replicas: 3}
    x-baton:
      rollout: {strategy: rolling}
      healthcheck: {tcp: 80, interval: 2s}
      autoscale: {min: 3, max: 6, metrics: [{rps: 100}]}
alerts:
  rules:
    web_errors:
      expr: sum(rate(baton_proxy_requests_total{service="web",code="5xx"}[1m])) > 1
      for: 1m
YAML
"$baton" -p idlebench up -d >/dev/null 2>"$work/up.err" || { cat "$work/up.err" >&2; exit 1; }
"$baton" token create bench --role viewer >/dev/null 2>&1
hz=$(getconf CLK_TCK)
echo "| history sampling | CPU time over ${secs} s | share of one core | target |"
echo "|---|---|---|---|"
for interval in 10s 1s; do
  "$baton" -p idlebench serve --listen "127.0.0.1:$api" --sample-interval "$interval" >"$work/serve.log" 2>&1 &
  pid=$!
  sleep 15
  ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
  a=$(ticks)
  sleep "$secs"
  b=$(ticks)
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  python3 -c "t=($b-$a)/$hz; print(f'| every $interval | {t:.2f} s | {100*t/$secs:.2f} % | ≤ 2 % |')"
done
