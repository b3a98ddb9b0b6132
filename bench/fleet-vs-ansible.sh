#!/usr/bin/env bash
# baton's fleets against ansible-core (PyPI) and plain ssh in the same run, on the same
# N=50 real sshd hosts on loopback ports (each its own sshd, host key and config; one
# client key). Measures wall time of:
#   1. an ad-hoc `hostname` on every host: `baton fleet run all --forks 50 -- hostname`,
#      `ansible all -f 50 -m command -a hostname`, and 50 plain `ssh ... hostname`
#      processes started in parallel;
#   2. a 5-step runbook (file content, template, command, shell, copy) against the
#      equivalent Ansible playbook (gather_facts off, pipelining on: Ansible's fast path).
# Installs ansible-core into a venv under /tmp (not a CI dependency). Prints a markdown
# table. Usage: bench/fleet-vs-ansible.sh [N] (default 50); REPEAT=3 runs each 3 times
# and reports the median.
#
# BENCH_USER=NAME logs in as NAME instead of the current user: the account is created if
# missing (login shell /bin/sh, no rc files: what a server account usually is) and the
# hosts' roots are given to it. On this machine root's ~/.bashrc runs `pyenv init`, which
# bash sources for every command run over SSH (~125 ms each): a cost of the host, paid
# alike by every tool, that this isolates. ANSIBLE_DEFAULTS=1 also times Ansible's default
# connection settings (no pipelining), which is how the issue's ~80 s was measured.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50}
repeat=${REPEAT:-1}

scripts/ensure-fleet.sh
venv=/tmp/baton-bench-venv
if [ ! -x "$venv/bin/ansible" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ansible-core
fi
cargo build --release -q -p baton-cli
baton=${CARGO_TARGET_DIR:-$PWD/target}/release/baton

work=$(mktemp -d /tmp/baton-bench-fleet.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

user=${BENCH_USER:-$(id -un)}
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir "/var/lib/$user" --shell /bin/sh "$user"
fi
if [ "$user" != "$(id -un)" ]; then
  usermod -p '*' "$user" # not locked: sshd without PAM refuses locked accounts
  mkdir -p "$(getent passwd "$user" | cut -d: -f6)"
  chown "$user" "$(getent passwd "$user" | cut -d: -f6)"
  chmod 755 "$work" # sshd reads authorized_keys as the user
fi
ssh-keygen -q -t ed25519 -N "" -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
: > "$work/known_hosts"
ports=()
for i in $(seq 1 "$n"); do
  h=$(printf 'h%02d' "$i")
  mkdir -p "$work/$h/root"
  chown "$user" "$work/$h/root"
  ssh-keygen -q -t ed25519 -N "" -f "$work/$h/host_key"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$work/$h/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $work/$h/host_key
PidFile $work/$h/sshd.pid
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
MaxSessions 200
MaxStartups 200
CFG
  /usr/sbin/sshd -D -e -f "$work/$h/sshd_config" 2>>"$work/$h/sshd.log" &
  pids+=($!)
  ports+=("$port")
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/$h/host_key.pub")" >> "$work/known_hosts"
done
for port in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
done

# The same hosts three ways: baton.yaml, an Ansible INI inventory, a port list for ssh.
{
  echo "hosts:"
  for i in $(seq 1 "$n"); do
    h=$(printf 'h%02d' "$i")
    printf '  %s:\n    address: 127.0.0.1\n    port: %s\n    user: %s\n    key: %s\n    vars: {root: %s}\n' \
      "$h" "${ports[$((i-1))]}" "$user" "$work/client_key" "$work/$h/root"
  done
  cat <<'YAML'
x-baton:
  runbooks:
    five:
      steps:
        - name: config file
          file: {path: '{{ root }}/app.conf', content: "workers=4\n", mode: '0644'}
        - name: template
          template: {content: "host={{ host }} root={{ root }}\n", dest: '{{ root }}/host.conf'}
        - name: command
          command: [mkdir, -p, '{{ root }}/data']
        - name: shell
          shell: echo deployed > {{ root }}/data/stamp
        - name: copy
          copy: {src: payload.txt, dest: '{{ root }}/payload.txt'}
YAML
} > "$work/baton.yaml"
echo "payload" > "$work/payload.txt"
{
  echo "[fleet]"
  for i in $(seq 1 "$n"); do
    h=$(printf 'h%02d' "$i")
    echo "$h ansible_host=127.0.0.1 ansible_port=${ports[$((i-1))]} ansible_user=$user ansible_ssh_private_key_file=$work/client_key root=$work/$h/root"
  done
} > "$work/inventory.ini"
cat > "$work/ansible.cfg" <<CFG
[defaults]
host_key_checking = True
interpreter_python = /usr/bin/python3
forks = 50
[ssh_connection]
pipelining = True
ssh_args = -o UserKnownHostsFile=$work/known_hosts -o ControlMaster=auto -o ControlPersist=60s
CFG
cat > "$work/playbook.yml" <<'YML'
- hosts: all
  gather_facts: false
  tasks:
    - name: config file
      copy: {dest: "{{ root }}/app.conf", content: "workers=4\n", mode: "0644"}
    - name: template
      copy: {dest: "{{ root }}/host.conf", content: "host={{ inventory_hostname }} root={{ root }}\n"}
    - name: command
      command: mkdir -p {{ root }}/data
    - name: shell
      shell: echo deployed > {{ root }}/data/stamp
    - name: copy
      copy: {src: payload.txt, dest: "{{ root }}/payload.txt"}
YML

export BATON_STATE_DIR="$work/state" BATON_KNOWN_HOSTS="$work/known_hosts" ANSIBLE_CONFIG="$work/ansible.cfg"
cd "$work"

# Wall time of a command in seconds (3 decimals); the command must succeed.
timed() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" > "$work/last.out" 2>&1 || { echo "failed: $*" >&2; tail -20 "$work/last.out" >&2; exit 1; }
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b - a) / 1e9}' 
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
parallel_ssh() {
  local p
  for p in "${ports[@]}"; do
    ssh -q -i "$work/client_key" -o BatchMode=yes -o UserKnownHostsFile="$work/known_hosts" \
      -p "$p" "$user@127.0.0.1" hostname > /dev/null &
  done
  wait
}
reset_roots() { rm -rf "$work"/h*/root/*; }
# Each tool's runbook really did its work on every host.
verify_roots() {
  local d
  for d in "$work"/h*/root; do
    grep -qx 'workers=4' "$d/app.conf" && grep -q "^host=h" "$d/host.conf" &&
      grep -qx deployed "$d/data/stamp" && cmp -s "$work/payload.txt" "$d/payload.txt" ||
      { echo "runbook incomplete in $d" >&2; exit 1; }
  done
}
# Ansible's defaults: no pipelining (each task: make a temp dir, upload, run, clean up).
ansible_defaults() { ANSIBLE_PIPELINING=False "$@"; }

declare -a b_adhoc a_adhoc s_adhoc b_book a_book d_adhoc d_book
for _ in $(seq 1 "$repeat"); do
  b_adhoc+=("$(timed "$baton" fleet run all --forks 50 -- hostname)")
  s_adhoc+=("$(timed parallel_ssh)")
  a_adhoc+=("$(timed "$venv/bin/ansible" all -i inventory.ini -f 50 -m command -a hostname)")
  reset_roots
  b_book+=("$(timed "$baton" fleet runbook five --forks 50)")
  verify_roots
  reset_roots
  a_book+=("$(timed "$venv/bin/ansible-playbook" -i inventory.ini -f 50 playbook.yml)")
  verify_roots
  if [ "${ANSIBLE_DEFAULTS:-0}" = 1 ]; then
    d_adhoc+=("$(timed ansible_defaults "$venv/bin/ansible" all -i inventory.ini -f 50 -m command -a hostname)")
    reset_roots
    d_book+=("$(timed ansible_defaults "$venv/bin/ansible-playbook" -i inventory.ini -f 50 playbook.yml)")
    verify_roots
  fi
done
ba=$(median "${b_adhoc[@]}"); sa=$(median "${s_adhoc[@]}"); aa=$(median "${a_adhoc[@]}")
bb=$(median "${b_book[@]}"); ab=$(median "${a_book[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", a / b}'; }
echo
echo "$n sshd hosts on loopback, logged in as $user (shell $(getent passwd "$user" | cut -d: -f7)), $(nproc) CPUs, median of $repeat runs; ansible-core $("$venv/bin/ansible" --version 2>/dev/null | sed -n 1p | grep -o '[0-9][0-9.]*' | head -1), $(ssh -V 2>&1 | cut -d, -f1)"
echo
echo "| task | baton | ansible-core (pipelining) | $n parallel ssh | baton / ansible | baton / ssh |"
echo "|---|---|---|---|---|---|"
echo "| ad-hoc \`hostname\` | ${ba} s | ${aa} s | ${sa} s | $(ratio "$ba" "$aa") | $(ratio "$ba" "$sa") |"
echo "| 5-step runbook / playbook | ${bb} s | ${ab} s | – | $(ratio "$bb" "$ab") | – |"
if [ "${ANSIBLE_DEFAULTS:-0}" = 1 ]; then
  da=$(median "${d_adhoc[@]}"); db=$(median "${d_book[@]}")
  echo
  echo "| task | baton | ansible-core (defaults: no pipelining) | baton / ansible |"
  echo "|---|---|---|---|"
  echo "| ad-hoc \`hostname\` | ${ba} s | ${da} s | $(ratio "$ba" "$da") |"
  echo "| 5-step runbook / playbook | ${bb} s | ${db} s | $(ratio "$bb" "$db") |"
fi
