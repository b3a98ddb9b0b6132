#!/usr/bin/env bash
# baton against raw QEMU driven by a plain script, in the same run, same guest (the
# tiny test guest, TCG, 256 MB), same devices: start-to-ready (until the guest's ready
# line is on the serial log) and snapshot+restore (savevm/loadvm through QMP), ROUNDS
# times each, alternating, medians reported; then the downtime QEMU reports for a live
# migration of the 256 MB guest, by baton (to a second agent) and by the raw script.
# Usage: bench/vm-vs-qemu.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
scripts/ensure-vm.sh >/dev/null
command -v python3 >/dev/null || { apt-get install -y -qq python3 >/dev/null; }
cargo build --release --locked -q -p baton-cli
baton=$PWD/target/release/baton
guest=${BATON_GUEST_DIR:-$PWD/.guest}

work=$(mktemp -d)
agent_pid=
cleanup() {
  for p in "$work"/*/qemu.pid "$work"/state*/vms/*/qemu.pid; do
    [[ -f $p ]] && kill -9 "$(cat "$p")" 2>/dev/null || true
  done
  [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
wait_ready() { until grep -q "baton-guest: ready" "$1" 2>/dev/null; do sleep 0.02; done; }

# A plain QMP call: qmp SOCKET COMMAND [ARGS_JSON] — prints the return value.
qmp() {
  python3 - "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
def call(cmd, args=None):
    m = {"execute": cmd}
    if args: m["arguments"] = args
    f.write(json.dumps(m) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r: return r
r = call("qmp_capabilities")
r = call(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)
print(json.dumps(r.get("return", r)))
PY
}

raw_start() { # dir [extra args...]
  local d=$1; shift
  mkdir -p "$d"
  [[ -f $d/disk0.qcow2 ]] || qemu-img create -q -f qcow2 "$d/disk0.qcow2" 64M
  qemu-system-x86_64 -name guest=raw -machine pc -accel tcg -m 256M -smp 1 -nodefaults -no-user-config -display none \
    -chardev file,id=serial0,path="$d/console.log",append=on -serial chardev:serial0 \
    -chardev socket,id=serial1,path="$d/console.sock",server=on,wait=off -serial chardev:serial1 \
    -qmp unix:"$d/qmp.sock",server=on,wait=off -pidfile "$d/qemu.pid" -daemonize \
    -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.gz" -append "console=ttyS0 quiet panic=-1" \
    -blockdev driver=file,filename="$d/disk0.qcow2",node-name=disk0-file -blockdev driver=qcow2,file=disk0-file,node-name=disk0 \
    -device virtio-blk-pci,drive=disk0,id=disk0-dev -netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile= "$@"
}
raw_stop() { local p; p=$(cat "$1/qemu.pid" 2>/dev/null || true); qmp "$1/qmp.sock" quit >/dev/null 2>&1 || true; while [[ -n $p ]] && kill -0 "$p" 2>/dev/null; do sleep 0.05; done; rm -rf "$1"; }

mkdir -p "$work/proj"
cat > "$work/proj/baton.yaml" <<YAML
vms:
  bench:
    memory: 256M
    accel: tcg
    disks: [{size: 64M}]
    boot:
      kernel: $guest/vmlinuz
      initrd: $guest/initramfs.gz
      cmdline: console=ttyS0 quiet panic=-1
YAML
export BATON_STATE_DIR=$work/state
cd "$work/proj"

declare -A t
for r in $(seq "$rounds"); do
  # raw QEMU
  d=$work/raw$r
  s=$(now); raw_start "$d"; wait_ready "$d/console.log"; t[raw.ready]+="$(elapsed "$s") "
  sleep 1
  s=$(now); qmp "$d/qmp.sock" human-monitor-command '{"command-line":"savevm s1"}' >/dev/null
  qmp "$d/qmp.sock" human-monitor-command '{"command-line":"loadvm s1"}' >/dev/null; t[raw.snap]+="$(elapsed "$s") "
  raw_stop "$d"
  # baton
  s=$(now); $baton vm start bench >/dev/null; wait_ready "$work/state/vms/bench/console.log"; t[baton.ready]+="$(elapsed "$s") "
  sleep 1
  s=$(now); $baton vm snapshot create bench --name s1 >/dev/null; $baton vm snapshot restore bench s1 >/dev/null; t[baton.snap]+="$(elapsed "$s") "
  $baton vm rm --disks bench >/dev/null
done

# Live migration of the 256 MB guest: baton to a second agent, then the raw script.
BATON_STATE_DIR=$work/state2 $baton vm agent --listen 127.0.0.1:7499 >/dev/null 2>&1 &
agent_pid=$!
sleep 0.5
$baton vm start bench >/dev/null; wait_ready "$work/state/vms/bench/console.log"; sleep 2
baton_mig=$($baton --json vm migrate bench --to 127.0.0.1:7499)
baton_down=$(echo "$baton_mig" | python3 -c 'import json,sys; print(json.load(sys.stdin)["downtime_ms"])')
BATON_STATE_DIR=$work/state2 $baton vm rm --disks bench >/dev/null
d=$work/rawsrc; raw_start "$d"; wait_ready "$d/console.log"; sleep 2
e=$work/rawdst; mkdir -p "$e"
# The destination uses the same disk file (shared storage), as baton does.
ln -s "$d/disk0.qcow2" "$e/disk0.qcow2"
raw_start "$e" -incoming tcp:127.0.0.1:7498
qmp "$d/qmp.sock" migrate '{"uri":"tcp:127.0.0.1:7498"}' >/dev/null
until [[ $(qmp "$d/qmp.sock" query-migrate) == *'"completed"'* ]]; do sleep 0.1; done
raw_down=$(qmp "$d/qmp.sock" query-migrate | python3 -c 'import json,sys; print(json.load(sys.stdin)["downtime"])')
raw_stop "$d"; raw_stop "$e"

m() { echo "${t[$1]}" | median; }
pct() { echo "scale=1; ($1 - $2) * 100 / $2" | bc; }
printf '%-28s %10s %10s %8s\n' "" "raw qemu" "baton" "added"
printf '%-28s %9.2fs %9.2fs %7s%%\n' "start to ready line" "$(m raw.ready)" "$(m baton.ready)" "$(pct "$(m baton.ready)" "$(m raw.ready)")"
printf '%-28s %9.2fs %9.2fs %7s%%\n' "snapshot + restore" "$(m raw.snap)" "$(m baton.snap)" "$(pct "$(m baton.snap)" "$(m raw.snap)")"
printf '%-28s %8sms %8sms\n' "live migration downtime" "$raw_down" "$baton_down"
echo "(medians of $rounds rounds; TCG, 256 MB guest; downtime as QEMU's query-migrate reports it)"
