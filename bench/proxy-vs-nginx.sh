#!/usr/bin/env bash
# baton-proxy against nginx in the same run: N=3 keep-alive hyper backends on loopback
# (crates/baton-proxy/examples/backend.rs), each proxy in front of the same three, then
# `wrk -t2 -c50 -d10s --latency` against each (after a 2 s warm-up), ROUNDS times with the
# order alternating (baton first, then nginx first, ...), so load from other processes on
# the machine hits both alike. Prints one row per round and the median of the per-round
# ratios.
# Fairness: both proxies use one worker per CPU (nginx `worker_processes auto`, baton's
# per-CPU worker threads), keep-alive to the upstreams (nginx `keepalive 64`, baton's
# pool), access logging off, round-robin, X-Forwarded-For set by both. wrk and the
# backends share the same machine, so absolute numbers are only comparable within one run.
# WORKERS=N gives both the same N workers (nginx `worker_processes N`, baton
# BATON_PROXY_WORKERS=N); by default each uses one per CPU.
# Usage: bench/proxy-vs-nginx.sh [DURATION] [ROUNDS]   (default 10s, 3 rounds; installs
# nginx and wrk via apt if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
rounds=${2:-3}
base=${BENCH_PORT_BASE:-18080}
workers=${WORKERS:-auto}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null
fi
nginx=$(command -v nginx)

cargo build --release -q -p baton-proxy --examples
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/examples

work=$(mktemp -d)
pids=()
cleanup() {
  # TERM, not INT: background jobs of a non-interactive shell ignore SIGINT.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

backends=()
for i in 1 2 3; do
  port=$((base + i))
  "$bin/backend" "$port" & pids+=($!)
  backends+=("127.0.0.1:$port")
done
proxy_port=$((base + 10))
nginx_port=$((base + 11))

if [ "$workers" != auto ]; then export BATON_PROXY_WORKERS=$workers; fi
"$bin/proxy" "127.0.0.1:$proxy_port" "${backends[@]}" 2>"$work/proxy.log" & pids+=($!)
proxy_pid=$!

mkdir -p "$work/tmp"
{
  echo "worker_processes $workers; daemon off; pid $work/nginx.pid; error_log $work/error.log warn;"
  echo "user root;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  echo "  access_log off;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $work/tmp/$t;"; done
  echo "  upstream backends {"
  for b in "${backends[@]}"; do echo "    server $b;"; done
  echo "    keepalive 64;"
  echo "  }"
  echo "  server {"
  echo "    listen 127.0.0.1:$nginx_port;"
  echo "    location / {"
  echo "      proxy_pass http://backends;"
  echo "      proxy_http_version 1.1;"
  echo "      proxy_set_header Connection \"\";"
  echo "      proxy_set_header X-Forwarded-For \$remote_addr;"
  echo "    }"
  echo "  }"
  echo "}"
} > "$work/nginx.conf"
"$nginx" -c "$work/nginx.conf" -e "$work/error.log" & pids+=($!)
nginx_pid=$!

# Wait until every listener answers.
for port in $((base + 1)) $((base + 2)) $((base + 3)) "$proxy_port" "$nginx_port"; do
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$port/" || { echo "port $port did not come up" >&2; exit 1; }
done

# to_ms VALUE: wrk latency (e.g. 812.00us, 1.23ms, 1.01s) in milliseconds
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }

# CPU time (user + system, in clock ticks) used so far by a process and its children
# (nginx's master and workers; baton's proxy is one process).
ticks() { # pid
  local all=$1 c total=0
  for c in $(pgrep -P "$1"); do all+=" $c"; done
  for c in $all; do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)
declare -A pid_of=([baton]=$proxy_pid [nginx]=$nginx_pid)
declare -A rps p50 p99 errors cpu
run() { # name port
  wrk -t2 -c50 -d2s "http://127.0.0.1:$2/" >/dev/null
  local out before=0 after=0 requests
  [ -n "${pid_of[$1]:-}" ] && before=$(ticks "${pid_of[$1]}")
  out=$(wrk -t2 -c50 -d"$duration" --latency "http://127.0.0.1:$2/")
  [ -n "${pid_of[$1]:-}" ] && after=$(ticks "${pid_of[$1]}")
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  # Microseconds of the proxy's CPU per request: less sensitive to other load than req/s.
  cpu[$1]=$(awk -v t=$((after - before)) -v hz="$hz" -v n="${requests:-0}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')
  echo "$out" > "$work/wrk-$1.txt"
  rps[$1]=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50[$1]=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99[$1]=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  errors[$1]=$(awk '/Non-2xx|Socket errors/ { $1 = $1; print }' <<<"$out" | paste -sd ';' -)
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "wrk -t2 -c50 -d$duration --latency, 3 backends, $(nproc) CPUs, workers: $workers each, $(nginx -v 2>&1 | sed 's/.*: //'), $rounds rounds"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
echo
echo "| round | baton req/s | nginx req/s | baton p50 / p99 (ms) | nginx p50 / p99 (ms) | throughput ratio | p99 ratio | CPU µs/req baton / nginx | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
tput_ratios=""
p99_ratios=""
for r in $(seq "$rounds"); do
  if ((r % 2)); then run baton "$proxy_port"; run nginx "$nginx_port"; else run nginx "$nginx_port"; run baton "$proxy_port"; fi
  t=$(ratio "${rps[baton]}" "${rps[nginx]}")
  q=$(ratio "${p99[baton]}" "${p99[nginx]}")
  tput_ratios+=" $t"
  p99_ratios+=" $q"
  echo "| $r | ${rps[baton]} | ${rps[nginx]} | ${p50[baton]} / ${p99[baton]} | ${p50[nginx]} / ${p99[nginx]} | $t | $q | ${cpu[baton]} / ${cpu[nginx]} | baton: ${errors[baton]:-none}; nginx: ${errors[nginx]:-none} |"
done
run direct $((base + 1))
echo
echo "median baton/nginx: throughput $(median <<<"$tput_ratios") (rounds:$tput_ratios), p99 $(median <<<"$p99_ratios") (rounds:$p99_ratios)"
echo "direct (wrk against one backend, no proxy): ${rps[direct]} req/s, p50 ${p50[direct]} ms, p99 ${p99[direct]} ms"
echo "load after: $(uptime | sed 's/.*load average/load average/')"
echo "(targets: throughput ratio >= 0.9, p99 ratio <= 1.2)"
