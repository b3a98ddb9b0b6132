#!/usr/bin/env bash
# Live migration between two hosts in network namespaces (each its own address on a
# veth pair), baton against raw QEMU in the same run, same guest (the tiny test guest,
# TCG, 256 MB, a 64 MB qcow2 disk both hosts see at the same path), same devices, QEMU's
# defaults for bandwidth and downtime limit on both sides. Rounds alternate:
#   baton: a `baton vm agent` in each namespace (token, TLS as off loopback), the guest
#          started on A through A's agent, then `baton vm migrate VM --from A --to B`
#          (the CLI asks A's agent, which asks B's to take it in).
#   raw:   the guest started by `qemu-system-x86_64` in A; then a plain script starts
#          QEMU with `-incoming tcp:B:PORT` in B, sends QMP `migrate` to A, follows
#          `query-migrate` every 50 ms (as baton does), waits for B to say `running`
#          and quits A.
# Total: from the request until the guest runs on B and the source QEMU has ended (what
# `baton vm migrate` returns after). Downtime: what QEMU's query-migrate reports.
# Needs root (ip netns), qemu-system-x86_64, qemu-img, openssl, python3.
# Usage: bench/vm-migrate-netns.sh [ROUNDS]   (BATON_BIN: the baton binary to measure)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [ROUNDS]" >&2; exit 2; }
scripts/ensure-vm.sh >/dev/null
command -v python3 >/dev/null || { apt-get install -y -qq python3 >/dev/null; }
if [[ -z ${BATON_BIN:-} ]]; then
  cargo build --release --locked -q -p baton-cli
  BATON_BIN=$PWD/target/release/baton
fi
baton=$BATON_BIN
guest=${BATON_GUEST_DIR:-$PWD/.guest}
[[ -x $baton && -f $guest/vmlinuz && -f $guest/initramfs.gz ]] || { echo "no baton or guest" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
tag=$$
ns_a=bt-mig-a-$tag
ns_b=bt-mig-b-$tag
net=10.241.$((tag % 250))
ip_a=$net.1
ip_b=$net.2
agent_a=
agent_b=
cleanup() {
  set +e
  for p in "$work"/raw*/qemu.pid "$work"/host-*/vms/*/qemu.pid; do
    [[ -f $p ]] && kill -9 "$(cat "$p")" 2>/dev/null
  done
  for p in $agent_a $agent_b; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  ip netns del "$ns_a" 2>/dev/null
  ip netns del "$ns_b" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two hosts: a veth pair between two namespaces, nothing else on it.
ip netns add "$ns_a"
ip netns add "$ns_b"
ip link add "bm${tag}a" netns "$ns_a" type veth peer name "bm${tag}b" netns "$ns_b"
ip -n "$ns_a" addr add "$ip_a/24" dev "bm${tag}a"
ip -n "$ns_b" addr add "$ip_b/24" dev "bm${tag}b"
for n in "$ns_a" "$ns_b"; do ip -n "$n" link set lo up; done
ip -n "$ns_a" link set "bm${tag}a" up
ip -n "$ns_b" link set "bm${tag}b" up

# The agents' token and a CA-signed certificate naming both addresses (agents off
# loopback need TLS).
openssl rand -hex 32 > "$work/token"
chmod 600 "$work/token"
(
  cd "$work"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,IP:%s\n' "$ip_a" "$ip_b" > ext.cnf
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 -days 2 -subj "/CN=bench CA" "${ec[@]}" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -subj "/CN=bench agent" "${ec[@]}" -keyout agent.key -out agent.csr 2>/dev/null
  openssl x509 -req -days 2 -CAcreateserial -in agent.csr -CA ca.pem -CAkey ca.key -extfile ext.cnf -out agent.pem 2>/dev/null
)

# One agent per host, each on its own state directory; B allows A's VM directory
# (storage shared by the two: both see the disk at the same path).
agent() { # ns ip state_dir [args...]
  local ns=$1 addr=$2 dir=$3; shift 3
  BATON_STATE_DIR=$dir ip netns exec "$ns" "$baton" vm agent --listen "$addr:7420" \
    --token-file "$work/token" --tls-cert "$work/agent.pem" --tls-key "$work/agent.key" \
    --tls-ca "$work/ca.pem" --disk-dir "$guest" "$@" >"$dir.log" 2>&1 &
}
mkdir -p "$work/host-a/vms"
agent "$ns_a" "$ip_a" "$work/host-a"
agent_a=$!
agent "$ns_b" "$ip_b" "$work/host-b" --disk-dir "$work/host-a/vms"
agent_b=$!
for a in "$ip_a" "$ip_b"; do
  ns=$ns_a; [[ $a == "$ip_b" ]] && ns=$ns_b
  for _ in $(seq 100); do
    ip netns exec "$ns" python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], 7420), 1)' "$a" 2>/dev/null && break
    sleep 0.1
  done
done

# The file: one VM per round (a migrated VM lives on in B until removed).
mkdir -p "$work/proj"
{
  echo "vms:"
  for r in $(seq "$rounds"); do
    cat <<YAML
  bench$r:
    memory: 256M
    accel: tcg
    disks: [{size: 64M}]
    boot:
      kernel: $guest/vmlinuz
      initrd: $guest/initramfs.gz
      cmdline: console=ttyS0 quiet panic=-1
YAML
  done
} > "$work/proj/baton.yaml"

BENCH_WORK=$work BENCH_BATON=$baton BENCH_GUEST=$guest BENCH_NS_A=$ns_a BENCH_NS_B=$ns_b \
BENCH_IP_A=$ip_a BENCH_IP_B=$ip_b BENCH_ROUNDS=$rounds python3 - <<'PY'
import json, os, socket, statistics, subprocess, time

work = os.environ["BENCH_WORK"]; baton = os.environ["BENCH_BATON"]
guest = os.environ["BENCH_GUEST"]; rounds = int(os.environ["BENCH_ROUNDS"])
ns_a, ns_b = os.environ["BENCH_NS_A"], os.environ["BENCH_NS_B"]
ip_a, ip_b = os.environ["BENCH_IP_A"], os.environ["BENCH_IP_B"]
agent_a, agent_b = f"https://{ip_a}:7420", f"https://{ip_b}:7420"
env = dict(os.environ, BATON_STATE_DIR=f"{work}/cli",
           BATON_AGENT_TOKEN=open(f"{work}/token").read().strip(),
           BATON_AGENT_CA=f"{work}/ca.pem")

def inside(ns):
    """The prefix that runs a program in namespace ns's network (nsenter: no remount
    of /sys as `ip netns exec` does, so it costs both sides the same few ms)."""
    return ["nsenter", f"--net=/run/netns/{ns}", "--"]

def run(ns, argv, state=None):
    """argv inside namespace ns, from the project directory; its stdout."""
    e = dict(env, BATON_STATE_DIR=state) if state else env
    p = subprocess.run([*inside(ns), *argv], cwd=f"{work}/proj", env=e,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{argv}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout

def wait_ready(log):
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            if "baton-guest: ready" in open(log, errors="replace").read():
                return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no ready line in {log}")

class Qmp:
    def __init__(self, path, wait=10.0):
        deadline = time.time() + wait
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX); self.s.connect(path); break
            except OSError:
                if time.time() > deadline: raise
                time.sleep(0.01)
        self.f = self.s.makefile("rw"); self.f.readline()
        self.call("qmp_capabilities")
    def call(self, cmd, args=None):
        m = {"execute": cmd}
        if args: m["arguments"] = args
        self.f.write(json.dumps(m) + "\n"); self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "error" in r: raise SystemExit(f"QMP {cmd}: {r['error']}")
            if "return" in r: return r["return"]
    def close(self): self.s.close()

def raw_argv(d, incoming=None):
    """baton's own argument vector for the VM (crates/baton-vm/src/qemu.rs::argv)."""
    a = ["qemu-system-x86_64", "-name", "guest=raw,process=bench-raw", "-machine", "pc",
         "-accel", "tcg", "-m", "256M", "-smp", "1", "-nodefaults", "-no-user-config",
         "-display", "none",
         "-chardev", f"file,id=serial0,path={d}/console.log,append=on", "-serial", "chardev:serial0",
         "-chardev", f"socket,id=serial1,path={d}/console.sock,server=on,wait=off", "-serial", "chardev:serial1",
         "-qmp", f"unix:{d}/qmp.sock,server=on,wait=off", "-pidfile", f"{d}/qemu.pid",
         "-daemonize", "-no-shutdown",
         "-kernel", f"{guest}/vmlinuz", "-initrd", f"{guest}/initramfs.gz",
         "-append", "console=ttyS0 quiet panic=-1",
         "-blockdev", f"driver=file,filename={work}/rawdisk.qcow2,node-name=disk0-file",
         "-blockdev", "driver=qcow2,file=disk0-file,node-name=disk0",
         "-device", "virtio-blk-pci,drive=disk0,id=disk0-dev",
         "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile="]
    if incoming: a += ["-incoming", incoming]
    return a

def gone(pid):
    """No such process, or a zombie (its parent may reap it later)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"

def raw_round(r):
    src, dst = f"{work}/raw{r}a", f"{work}/raw{r}b"
    os.makedirs(src); os.makedirs(dst)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{work}/rawdisk.qcow2", "64M"], check=True)
    subprocess.run([*inside(ns_a), *raw_argv(src)], check=True)
    wait_ready(f"{src}/console.log"); time.sleep(2)
    a = Qmp(f"{src}/qmp.sock")
    src_pid = int(open(f"{src}/qemu.pid").read())
    port = 7500 + r
    # Timed: the request, until the guest runs on B and the source has ended.
    t0 = time.monotonic()
    subprocess.run([*inside(ns_b), *raw_argv(dst, f"tcp:{ip_b}:{port}")], check=True)
    a.call("migrate", {"uri": f"tcp:{ip_b}:{port}"})
    while True:
        st = a.call("query-migrate")
        if st.get("status") == "completed": break
        if st.get("status") in ("failed", "cancelled"): raise SystemExit(f"raw migration: {st}")
        time.sleep(0.05)
    b = Qmp(f"{dst}/qmp.sock")
    while b.call("query-status")["status"] != "running":
        time.sleep(0.01)
    a.call("quit"); a.close()
    # Ended as baton judges it (qemu.rs wait_gone): the pid file is gone (QEMU removes
    # it as it exits) or the process is.
    while os.path.exists(f"{src}/qemu.pid") and not gone(src_pid):
        time.sleep(0.01)
    total = time.monotonic() - t0
    while not gone(src_pid):
        time.sleep(0.05)
    b.call("quit"); b.close()
    dst_pid = int(open(f"{dst}/qemu.pid").read())
    while not gone(dst_pid):
        time.sleep(0.05)
    os.remove(f"{work}/rawdisk.qcow2")
    return total, st["downtime"]

def baton_round(r):
    vm = f"bench{r}"
    run(ns_a, [baton, "vm", "start", vm, "--on", agent_a])
    wait_ready(f"{work}/host-a/vms/{vm}/console.log"); time.sleep(2)
    src_pid = int(open(f"{work}/host-a/vms/{vm}/qemu.pid").read())
    t0 = time.monotonic()
    job = json.loads(run(ns_a, [baton, "--json", "vm", "migrate", vm, "--from", agent_a, "--to", agent_b]))
    total = time.monotonic() - t0
    if job.get("status") != "completed": raise SystemExit(f"baton migration: {job}")
    # The guest runs on B (as B's store and QEMU say) and the source is gone.
    st = json.loads(run(ns_b, [baton, "--json", "vm", "inspect", vm], state=f"{work}/host-b"))
    if st["status"]["state"] != "running": raise SystemExit(f"{vm} on B: {st['status']}")
    deadline = time.time() + 10
    while not gone(src_pid):
        if time.time() > deadline: raise SystemExit(f"{vm}'s source QEMU still runs")
        time.sleep(0.05)
    run(ns_b, [baton, "vm", "rm", vm], state=f"{work}/host-b")
    return total, job["downtime_ms"]

res = {"raw": [], "baton": []}
for r in range(1, rounds + 1):
    order = [("raw", raw_round), ("baton", baton_round)]
    if r % 2 == 0: order.reverse()
    for side, f in order:
        total, down = f(r)
        res[side].append((total, down))
        print(f"round {r} {side:5}: total {total:.3f} s, downtime {down} ms", flush=True)

med = lambda side, i: statistics.median(x[i] for x in res[side])
raw_t, bat_t = med("raw", 0), med("baton", 0)
print()
print(f"{'':32} {'raw qemu':>10} {'baton':>10} {'added':>8}")
print(f"{'total (request to running on B)':32} {raw_t:9.3f}s {bat_t:9.3f}s {(bat_t - raw_t) * 100 / raw_t:+7.1f}%")
print(f"{'downtime (query-migrate)':32} {med('raw', 1):8.0f}ms {med('baton', 1):8.0f}ms")
print(f"(medians of {rounds} rounds, alternating; TCG, 256 MB guest, shared 64 MB qcow2; "
      f"A={ip_a} B={ip_b} on a veth pair between two namespaces)")
PY
