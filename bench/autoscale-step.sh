#!/usr/bin/env bash
# Autoscaling under a load step (issue 13): one service whose handler burns CPU (a
# busybox httpd CGI loop, each replica limited to a quarter of a core, so replicas add
# capacity) behind `baton serve`'s proxy, autoscaled on p95 and requests per second:
#   min 1, max 6, metrics [{p95: 150ms}, {rps: RPS_PER_REPLICA}]
#   scale_up {stabilization: 0s, max_step: 4, period: 1s}
#   scale_down {stabilization: WINDOW, max_step: 100%, period: 15s}
# An open-loop load (fixed arrival rate, every request timed) runs:
#   1. 20 s at 2 req/s (idle);
#   2. the step: STEP req/s for 60 s;
#   3. nothing until the service is back at min (the scale-down window, then the step);
#   4. an oscillating load: 4 cycles of 15 s at STEP req/s and 15 s at 2 req/s.
# Prints: the step's first scale-up (seconds after the step), when p95 (1-second
# windows) came back under 150 ms and stayed there, the largest count, failed requests
# over the whole run, when the count was back at min after the load stopped, and the
# scale-downs during the oscillation per window.
# Usage: bench/autoscale-step.sh [STEP_RPS] [WINDOW]   (default 40, 60s; BATON_BIN=...)
# Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
step_rps=${1:-40}
window=${2:-60s}
rps_per_replica=${RPS_PER_REPLICA:-10}
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
  cd "$work" && "$baton" -p scalebench down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
web=${BENCH_WEB_PORT:-18994}
cat > compose.yaml <<YAML
services:
  burn:
    image: baton-test/busybox:latest
    init: true
    stop_grace_period: 1s
    command:
      - sh
      - -c
      - |
        mkdir -p /www/cgi-bin
        printf '#!/bin/sh\ni=0\nwhile [ \$\$i -lt 1500 ]; do i=\$\$((i+1)); done\nprintf "Content-Type: text/plain\\\\r\\\\n\\\\r\\\\nburnt\\\\n"\n' > /www/cgi-bin/burn
        chmod +x /www/cgi-bin/burn
        echo ok > /www/index.html
        exec httpd -f -p 80 -h /www
    ports: ["127.0.0.1:$web:80"]
    healthcheck:
      test: [CMD, wget, -q, -O, /dev/null, http://127.0.0.1/]
      interval: 1s
      timeout: 3s
      retries: 3
    deploy:
      replicas: 1
      resources: {limits: {cpus: "0.25"}}
    x-baton:
      rollout: {strategy: rolling}
      autoscale:
        min: 1
        max: 6
        metrics: [{p95: 150ms}, {rps: $rps_per_replica}]
        behavior:
          scale_up: {stabilization: 0s, max_step: 4, period: 1s}
          scale_down: {stabilization: $window, max_step: 100%, period: 15s}
YAML
"$baton" -p scalebench up -d >/dev/null 2>"$work/up.err" || { cat "$work/up.err" >&2; exit 1; }
"$baton" -p scalebench serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$web/cgi-bin/burn" -o /dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$web/cgi-bin/burn" >/dev/null || { echo "the service does not answer" >&2; exit 1; }

python3 - "$web" "$step_rps" "$baton" "$window" <<'PY'
import json, subprocess, sys, threading, time, http.client
from concurrent.futures import ThreadPoolExecutor

port, step, baton, window = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
window_s = float(window.rstrip("s"))
TARGET_MS = 150.0
lock = threading.Lock()
results = []          # (sent_at, latency_ms, ok)
counts = []           # (t, replicas, ready)
stop = threading.Event()
t_start = time.monotonic()

def now():
    return time.monotonic() - t_start

def one(sent):
    ok = False
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/cgi-bin/burn")
        r = c.getresponse()
        body = r.read()
        ok = r.status == 200 and body.startswith(b"burnt")
        c.close()
    except Exception:
        ok = False
    with lock:
        results.append((sent, (now() - sent) * 1000.0, ok))

pool = ThreadPoolExecutor(max_workers=400)

def load(rate, seconds):
    """Open loop: requests sent at `rate` per second for `seconds`, whatever answers."""
    end = now() + seconds
    if rate <= 0:
        while now() < end:
            time.sleep(0.05)
        return
    gap, nxt = 1.0 / rate, now()
    while nxt < end:
        d = nxt - now()
        if d > 0:
            time.sleep(d)
        pool.submit(one, nxt)
        nxt += gap

def watch():
    while not stop.is_set():
        t = now()
        try:
            out = subprocess.run([baton, "-p", "scalebench", "--json", "autoscale", "status", "burn"],
                                 capture_output=True, timeout=5).stdout
            s = json.loads(out)
            counts.append((t, s["observation"]["replicas"], s["observation"]["ready"]))
        except Exception:
            pass
        time.sleep(max(0.0, 1.0 - (now() - t)))

w = threading.Thread(target=watch, daemon=True)
w.start()
load(2, 20)
step_at = now()
load(step, 60)
stop_at = now()
# Back to min: the window, then the scale-down period.
deadline = now() + window_s + 120
while now() < deadline:
    time.sleep(1)
    if counts and counts[-1][0] > stop_at + 1 and counts[-1][1] == 1:
        break
back_at_min = next((t for t, n, _ in counts if t > stop_at and n == 1
                    and all(m == 1 for tt, m, _ in counts if tt >= t)), None)
osc_from = now()
for _ in range(4):
    load(step, 15)
    load(2, 15)
osc_to = now()
pool.shutdown(wait=True)
stop.set()
w.join()

def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))] if xs else 0.0

# 1-second windows of the step: when p95 came under target and stayed there.
sec = {}
for sent, lat, ok in results:
    if step_at <= sent < stop_at:
        sec.setdefault(int(sent - step_at), []).append(lat)
worst = max((p95(v) for v in sec.values()), default=0.0)
under = None
for s in sorted(sec):
    if all(p95(sec[k]) < TARGET_MS for k in sec if k >= s):
        under = s + 1
        break
first_up = next((t - step_at for t, n, _ in counts if t >= step_at and n > 1), None)
peak = max((n for t, n, _ in counts if step_at <= t <= stop_at + 5), default=0)
failed = sum(1 for _, _, ok in results if not ok)
# Scale-downs while the load oscillated: each fall of the count.
downs = []
prev = None
for t, n, _ in counts:
    if osc_from <= t <= osc_to + 5 and prev is not None and n < prev:
        downs.append(t)
    prev = n
per_window = 0
for t in downs:
    per_window = max(per_window, sum(1 for u in downs if t <= u < t + window_s))
steady = [lat for sent, lat, ok in results if stop_at - 30 <= sent < stop_at]
fmt = lambda v: "never" if v is None else f"{v:.1f} s"
print(f"| step | {step:.0f} req/s (from 2), {len(results)} requests in all |")
print("|---|---|")
print(f"| first scale-up after the step | {fmt(first_up)} |")
print(f"| p95 under {TARGET_MS:.0f} ms for good after the step | {fmt(under)} (worst 1-s p95 {worst:.0f} ms) |")
print(f"| p95 over the step's last 30 s | {p95(steady):.0f} ms |")
print(f"| most replicas | {peak} |")
print(f"| failed requests (whole run) | {failed} |")
print(f"| back at min after the load stopped | {fmt(None if back_at_min is None else back_at_min - stop_at)} (window {window}) |")
print(f"| scale-downs during the oscillation | {len(downs)}; at most {per_window} within one window |")
PY
