#!/usr/bin/env python3
"""N Server-Sent Events clients on one daemon: each connects to /api/v1/events; then
events are made one at a time (an audit entry each: a token made and revoked through
the API) and the time from the request's answer to each client's receipt is measured.
Prints: clients connected, events, deliveries, missing, max and p99 latency (ms).
Standard library only.
With PID, also the daemon's memory while every client is connected.
Usage: sse_clients.py PORT VIEWER_TOKEN ADMIN_TOKEN [CLIENTS] [EVENTS] [PID]"""

import http.client
import json
import socket
import sys
import threading
import time

port = int(sys.argv[1])
viewer, admin = sys.argv[2], sys.argv[3]
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 200
events = int(sys.argv[5]) if len(sys.argv) > 5 else 20
pid = sys.argv[6] if len(sys.argv) > 6 else None

received = {}  # marker -> list of receipt times
lock = threading.Lock()
connected = threading.Semaphore(0)


def client():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        (
            "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Accept: text/event-stream\r\nAuthorization: Bearer {viewer}\r\n\r\n"
        ).encode()
    )
    f = s.makefile("rb")
    chunked = False
    while True:
        line = f.readline()
        if not line:
            return
        if line.lower().startswith(b"transfer-encoding: chunked"):
            chunked = True
        if line == b"\r\n":
            break
    connected.release()
    pending = b""
    while True:
        if chunked:
            size = f.readline()
            if not size:
                return
            n = int(size.strip() or b"0", 16)
            if n == 0:
                return
            data = f.read(n + 2)[:n]
        else:
            data = f.readline()
            if not data:
                return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.startswith(b"data:"):
                now = time.monotonic()
                try:
                    e = json.loads(line[5:])
                except ValueError:
                    continue
                target = e.get("message", "")
                if "token.create bench-" in target:
                    marker = target.split("token.create ", 1)[1].split(":", 1)[0]
                    with lock:
                        received.setdefault(marker, []).append(now)


threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
for t in threads:
    t.start()
for _ in range(clients):
    if not connected.acquire(timeout=30):
        sys.exit("not every client connected within 30 s")


def call(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {admin}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


sent = {}
for i in range(events):
    marker = f"bench-{i}"
    status = call("POST", "/api/v1/tokens", {"name": marker, "role": "viewer"})
    sent[marker] = time.monotonic()
    assert status == 201, status
    call("DELETE", f"/api/v1/tokens/{marker}")
    time.sleep(0.25)
time.sleep(1.5)

memory = {}
if pid:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[key] = int(value.split()[0]) // 1024

latencies = []
missing = 0
for marker, at in sent.items():
    got = received.get(marker, [])
    missing += clients - len(got)
    latencies.extend(max(0.0, t - at) * 1000 for t in got)
latencies.sort()
p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
print(
    json.dumps(
        {
            "clients": clients,
            "events": events,
            "deliveries": len(latencies),
            "missing": missing,
            "max_ms": round(max(latencies), 1) if latencies else None,
            "p99_ms": round(p99, 1),
            "daemon_rss_mb": memory.get("VmRSS"),
            "daemon_hwm_mb": memory.get("VmHWM"),
        }
    )
)
