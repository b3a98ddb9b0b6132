#!/usr/bin/env bash
# Zero-downtime updates, measured: UPDATES consecutive updates of a 3-replica HTTP
# service with each baton strategy (rolling, blue-green, canary) under continuous wrk
# load on the published port, then docker-compose 1.29 recreating the same change under
# the same load (one replica: compose cannot publish one host port for three). Prints
# the requests and the failed requests (socket errors + non-2xx) of each run.
# Usage: bench/rollout-vs-compose.sh [UPDATES]   (default 20; loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."
updates=${1:-20}
scripts/ensure-docker.sh
scripts/make-test-image.sh
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v docker-compose >/dev/null || apt-get install -y -qq docker-compose >/dev/null
cargo build --release --locked -q
baton=$PWD/target/release/baton
work=$(mktemp -d)
port=18290
export BATON_STATE_DIR=$work/state
cleanup() {
  [ -n "${serve:-}" ] && kill "$serve" 2>/dev/null || true
  (cd "$work" && "$baton" -p rbench down >/dev/null 2>&1; docker-compose -p rbenchc -f compose-v1.yaml down >/dev/null 2>&1) || true
  rm -rf "$work"
}
trap cleanup EXIT

service() { # $1: extra lines under the service
  cat <<YAML
services:
  web:
    image: baton-test/busybox:latest
    init: true
    stop_grace_period: 1s
    command: [sh, -c, 'mkdir -p /www && echo "v\$\$VERSION" > /www/index.html && exec httpd -f -p 80 -h /www']
    environment:
      VERSION: \${VERSION:-0}
    ports: ["127.0.0.1:$port:80"]
    healthcheck:
      test: [CMD, wget, -q, -O, /dev/null, http://127.0.0.1/]
      interval: 1s
      timeout: 1s
      retries: 2
$1
YAML
}

wait_page() { for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/" >/dev/null && return 0; sleep 0.1; done; return 1; }

# Runs wrk while "$@" performs the updates; prints "requests failed seconds".
under_load() {
  wrk -t1 -c4 -d3600s "http://127.0.0.1:$port/" > "$work/wrk.out" 2>&1 &
  local w=$! s=$(date +%s)
  sleep 1
  "$@"
  sleep 1
  kill -INT $w; wait $w || true
  local req err non2xx
  req=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  err=$(awk '/Socket errors/ {gsub(",", ""); print $4+$6+$8+$10}' "$work/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")
  echo "${req:-0} $(( ${err:-0} + ${non2xx:-0} )) $(( $(date +%s) - s ))"
}

cd "$work"
"$baton" serve >/dev/null 2>&1 &
serve=$!
sleep 0.5

baton_updates() { for i in $(seq 1 "$updates"); do VERSION=$i "$baton" -p rbench up -d >/dev/null 2>&1 || echo "update $i failed" >&2; done; }
compose_updates() { for i in $(seq 1 "$updates"); do VERSION=$i docker-compose -p rbenchc -f compose-v1.yaml up -d >/dev/null 2>&1; done; }

echo "| run | updates | requests | failed requests | seconds |"
echo "|---|---|---|---|---|"
for strategy in rolling blue-green canary; do
  case $strategy in
    rolling) extra="        strategy: rolling" ;;
    blue-green) extra="        strategy: blue-green
        keep_old: 1s" ;;
    canary) extra="        strategy: canary
        steps: [{weight: 34, pause: 1s}, {weight: 67, pause: 1s}]
        analysis: {max_error_rate: 1%, max_p95_latency: 500ms}" ;;
  esac
  service "    deploy:
      replicas: 3
      update_config: {monitor: 1s, failure_action: rollback}
    x-baton:
      rollout:
$extra" > compose.yaml
  VERSION=0 "$baton" -p rbench up -d >/dev/null 2>&1
  wait_page
  read -r req failed secs < <(under_load baton_updates)
  echo "| baton $strategy | $updates | $req | $failed | $secs |"
  "$baton" -p rbench down >/dev/null 2>&1
done

service "" > compose-v1.yaml
VERSION=0 docker-compose -p rbenchc -f compose-v1.yaml up -d >/dev/null 2>&1
wait_page
read -r req failed secs < <(under_load compose_updates)
echo "| docker-compose 1.29 (\`up -d\`, 1 replica) | $updates | $req | $failed | $secs |"
