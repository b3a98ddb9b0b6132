#!/usr/bin/env bash
# The proxy's throughput while dashboards stream events (issue 12): one service of 3
# keep-alive backend replicas (crates/baton-proxy/examples/backend.rs, built static
# into baton-bench/backend by scripts/make-bench-backend-image.sh) behind `baton
# serve`'s proxy, `wrk -t2 -c50` against its published port, ROUNDS times alternating: no event stream open, then CLIENTS streams
# on /api/v1/events (what each open dashboard holds) with events flowing (a token made
# and revoked through the API every 250 ms, each an audit entry delivered to every
# stream). Prints requests/s per round and the median of (with streams / without).
# Target: ≥ 0.95.
# Usage: bench/proxy-with-dashboards.sh [DURATION] [ROUNDS] [CLIENTS]
#   (default 10s, 3, 50; BATON_BIN=... to use another build). Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
rounds=${2:-3}
clients=${3:-50}
scripts/ensure-docker.sh >/dev/null
scripts/make-bench-backend-image.sh >/dev/null
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
if [ -z "${BATON_BIN:-}" ]; then
  cargo build --release --locked -q -p baton-cli
  BATON_BIN=$PWD/target/release/baton
fi
baton=$BATON_BIN
work=$(mktemp -d)
export BATON_STATE_DIR=$work/state
pid=
streams=
cleanup() {
  [ -n "$streams" ] && kill "$streams" 2>/dev/null || true
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  cd "$work" && "$baton" -p dashbench down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
web=${BENCH_WEB_PORT:-18992}
api=${BENCH_PORT:-18993}
cat > compose.yaml <<YAML
services:
  web:
    image: baton-bench/backend:latest
    init: true
    stop_grace_period: 1s
    command: ["/backend", "80", "0.0.0.0"]
    ports: ["127.0.0.1:$web:80"]
    deploy: {replicas: 3}
    x-baton:
      rollout: {strategy: rolling}     # published through baton's proxy
YAML
"$baton" -p dashbench up -d >/dev/null 2>"$work/up.err" || { cat "$work/up.err" >&2; exit 1; }
viewer=$("$baton" token create bench-viewer --role viewer 2>/dev/null)
admin=$("$baton" token create bench-admin --role admin 2>/dev/null)
"$baton" serve --listen "127.0.0.1:$api" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$web/" -o /dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$web/" >/dev/null || { echo "the proxy does not answer" >&2; exit 1; }

# CLIENTS event streams held open and events made every 250 ms, until killed.
open_streams() {
  python3 - "$api" "$viewer" "$admin" "$clients" <<'PY' &
import http.client, socket, sys, threading, time
port, viewer, admin, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
got = [0]
lock = threading.Lock()
def stream():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
               f"Authorization: Bearer {viewer}\r\n\r\n").encode())
    while True:
        b = s.recv(65536)
        if not b:
            return
        with lock:
            got[0] += b.count(b"\ndata:") + b.count(b"data:", 0, 5)
for _ in range(n):
    threading.Thread(target=stream, daemon=True).start()
i = 0
while True:
    c = http.client.HTTPConnection("127.0.0.1", port)
    name = f"ev{i}"
    c.request("POST", "/api/v1/tokens", body=f'{{"name": "{name}", "role": "viewer"}}',
              headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    c.getresponse().read()
    c.request("DELETE", f"/api/v1/tokens/{name}", headers={"Authorization": f"Bearer {admin}"})
    c.getresponse().read()
    c.close()
    i += 1
    time.sleep(0.25)
PY
  streams=$!
  sleep 2
}

run_wrk() {
  wrk -t2 -c50 -d"$duration" "http://127.0.0.1:$web/" | awk '/Requests\/sec/ {print $2}'
}

wrk -t2 -c50 -d2s "http://127.0.0.1:$web/" >/dev/null # warm-up
echo "| round | without streams (req/s) | with $clients streams (req/s) | ratio |"
echo "|---|---|---|---|"
ratios=()
close_streams() {
  kill "$streams" 2>/dev/null || true
  wait "$streams" 2>/dev/null || true
  streams=
}
for r in $(seq "$rounds"); do
  # The order alternates, so a drift of the machine's speed favours neither side.
  if ((r % 2)); then
    without=$(run_wrk)
    open_streams
    with=$(run_wrk)
    close_streams
  else
    open_streams
    with=$(run_wrk)
    close_streams
    without=$(run_wrk)
  fi
  ratio=$(python3 -c "print(f'{$with / $without:.3f}')")
  ratios+=("$ratio")
  echo "| $r | $without | $with | $ratio |"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo
echo "median ratio (with / without): $median (target ≥ 0.95)"
