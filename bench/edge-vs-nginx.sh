#!/usr/bin/env bash
# baton's edge against nginx terminating TLS, in the same run: 3 keep-alive hyper backends
# on loopback (crates/baton-proxy/examples/backend.rs), baton's edge
# (examples/edge.rs, one host over HTTPS, round-robin) and nginx in front of the same
# three with the same certificate (ECDSA P-256, made here by openssl, for `localhost` so
# wrk's SNI and Host need no resolver tricks), then ROUNDS times, the order alternating:
#   1. keep-alive: `wrk -t2 -c50 -dDURATION --latency https://localhost:PORT/` (after a
#      2 s warm-up): throughput and p99;
#   2. new connections: the same with `Connection: close`, so every request opens a TCP
#      connection and does a TLS handshake (wrk resumes sessions, and both servers offer
#      TLS 1.3 tickets, so these are mostly resumed handshakes, each with a fresh ECDHE);
#   3. full handshakes: 4 `openssl s_time -new` clients in parallel for DURATION (no
#      resumption, each one a signature and an ECDHE), connections summed. OpenSSL 3.0's
#      s_time sends no SNI: nginx answers with its only server, the edge with its only
#      certificate.
# Prints one row per round and measure, and the medians of the per-round ratios.
# Fairness: both one worker per CPU (nginx `worker_processes auto`, baton's per-CPU
# workers), TLS 1.2 and 1.3 with each one's defaults otherwise, keep-alive to the
# upstreams (nginx `keepalive 64`, baton's pool), access logging off, X-Forwarded-For set
# by both. wrk, openssl and the backends share the machine, so absolute numbers only
# compare within one run. Run it on a quiet machine (load average < 0.5).
# Usage: bench/edge-vs-nginx.sh [DURATION] [ROUNDS]   (default 10s, 3 rounds; installs
# nginx, wrk and openssl via apt if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
rounds=${2:-3}
base=${BENCH_PORT_BASE:-18180}
secs=${duration%s}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v openssl >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk openssl >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk openssl >/dev/null
fi
nginx=$(command -v nginx)

cargo build --release -q -p baton-proxy --examples
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/examples

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

backends=()
for i in 1 2 3; do
  port=$((base + i))
  "$bin/backend" "$port" & pids+=($!)
  backends+=("127.0.0.1:$port")
done
edge_http=$((base + 10))
edge_https=$((base + 11))
nginx_https=$((base + 12))

"$bin/edge" "127.0.0.1:$edge_http" "127.0.0.1:$edge_https" localhost "$work/cert.pem" "$work/key.pem" \
  "${backends[@]}" 2>"$work/edge.log" & pids+=($!)
edge_pid=$!

mkdir -p "$work/tmp"
{
  echo "worker_processes auto; daemon off; pid $work/nginx.pid; error_log $work/error.log warn;"
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
  echo "    listen 127.0.0.1:$nginx_https ssl;"
  echo "    http2 on;"
  echo "    server_name localhost;"
  echo "    ssl_certificate $work/cert.pem;"
  echo "    ssl_certificate_key $work/key.pem;"
  echo "    location / {"
  echo "      proxy_pass http://backends;"
  echo "      proxy_http_version 1.1;"
  echo "      proxy_set_header Connection \"\";"
  echo "      proxy_set_header X-Forwarded-For \$remote_addr;"
  echo "    }"
  echo "  }"
  echo "}"
} > "$work/nginx.conf"
# nginx 1.22 has no `http2 on;` (1.25.1+): put it on the listen line instead.
if ! "$nginx" -t -q -c "$work/nginx.conf" 2>/dev/null; then
  sed -i -e '/http2 on;/d' -e "s/listen 127.0.0.1:$nginx_https ssl;/listen 127.0.0.1:$nginx_https ssl http2;/" "$work/nginx.conf"
fi
"$nginx" -c "$work/nginx.conf" -e "$work/error.log" & pids+=($!)
nginx_pid=$!

for url in "http://127.0.0.1:$((base + 1))/" "https://localhost:$edge_https/" "https://localhost:$nginx_https/"; do
  for _ in $(seq 100); do
    curl -fsS -o /dev/null --cacert "$work/cert.pem" "$url" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null --cacert "$work/cert.pem" "$url" || { echo "$url did not come up" >&2; cat "$work/edge.log" "$work/error.log" >&2; exit 1; }
done

to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }

ticks() { # pid: CPU ticks of the process and its children (nginx's workers)
  local all=$1 c total=0
  for c in $(pgrep -P "$1"); do all+=" $c"; done
  for c in $all; do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)
declare -A pid_of=([baton]=$edge_pid [nginx]=$nginx_pid)
declare -A port_of=([baton]=$edge_https [nginx]=$nginx_https)
declare -A rps p99 errors cpu hs hs_errors full

# keep-alive NAME
keepalive() {
  local url="https://localhost:${port_of[$1]}/" out before after requests
  wrk -t2 -c50 -d2s "$url" >/dev/null
  before=$(ticks "${pid_of[$1]}")
  out=$(wrk -t2 -c50 -d"$duration" --latency "$url")
  after=$(ticks "${pid_of[$1]}")
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  cpu[$1]=$(awk -v t=$((after - before)) -v hz="$hz" -v n="${requests:-0}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')
  rps[$1]=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p99[$1]=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  errors[$1]=$(awk '/Non-2xx|Socket errors/ { $1 = $1; print }' <<<"$out" | paste -sd ';' -)
}

# handshakes NAME: requests per second with a new connection each
handshakes() {
  local out
  out=$(wrk -t2 -c50 -d"$duration" -H "Connection: close" "https://localhost:${port_of[$1]}/")
  hs[$1]=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  hs_errors[$1]=$(awk '/Non-2xx|Socket errors/ { $1 = $1; print }' <<<"$out" | paste -sd ';' -)
}

# full NAME: full handshakes per second from 4 openssl s_time clients
full() {
  local i total=0 n clients=()
  for i in 1 2 3 4; do
    openssl s_time -connect "127.0.0.1:${port_of[$1]}" -new -time "$secs" \
      >"$work/stime-$i.txt" 2>/dev/null & clients+=($!)
  done
  wait "${clients[@]}" 2>/dev/null || true
  for i in 1 2 3 4; do
    n=$(awk '/connections in/ && /real seconds/ { print $1; exit }' "$work/stime-$i.txt")
    total=$((total + ${n:-0}))
  done
  full[$1]=$(awk -v n="$total" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "$(nproc) CPUs, $(nginx -v 2>&1 | sed 's/.*: //'), $(openssl version | cut -d' ' -f1-2), wrk -t2 -c50 -d$duration, $rounds rounds"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
echo
echo "| round | measure | baton | nginx | ratio | notes |"
echo "| --- | --- | ---: | ---: | ---: | --- |"
tput_r="" p99_r="" hs_r="" full_r=""
for r in $(seq "$rounds"); do
  if ((r % 2)); then order="baton nginx"; else order="nginx baton"; fi
  for who in $order; do keepalive "$who"; done
  for who in $order; do handshakes "$who"; done
  for who in $order; do full "$who"; done
  t=$(ratio "${rps[baton]}" "${rps[nginx]}"); tput_r+=" $t"
  q=$(ratio "${p99[baton]}" "${p99[nginx]}"); p99_r+=" $q"
  h=$(ratio "${hs[baton]}" "${hs[nginx]}"); hs_r+=" $h"
  f=$(ratio "${full[baton]}" "${full[nginx]}"); full_r+=" $f"
  echo "| $r | keep-alive req/s | ${rps[baton]} | ${rps[nginx]} | $t | CPU µs/req ${cpu[baton]} / ${cpu[nginx]}; errors: baton ${errors[baton]:-none}, nginx ${errors[nginx]:-none} |"
  echo "| | keep-alive p99 ms | ${p99[baton]} | ${p99[nginx]} | $q | |"
  echo "| | new connections/s (Connection: close) | ${hs[baton]} | ${hs[nginx]} | $h | errors: baton ${hs_errors[baton]:-none}, nginx ${hs_errors[nginx]:-none} |"
  echo "| | full handshakes/s (s_time -new ×4) | ${full[baton]} | ${full[nginx]} | $f | |"
done
echo
echo "median baton/nginx: keep-alive throughput $(median <<<"$tput_r") (rounds:$tput_r), p99 $(median <<<"$p99_r") (rounds:$p99_r)"
echo "median baton/nginx: new connections $(median <<<"$hs_r") (rounds:$hs_r), full handshakes $(median <<<"$full_r") (rounds:$full_r)"
echo "load after: $(uptime | sed 's/.*load average/load average/')"
echo "(targets: throughput >= 0.9, p99 <= 1.2, handshakes >= 0.8)"
