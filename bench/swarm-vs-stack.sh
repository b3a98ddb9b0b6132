#!/usr/bin/env bash
# A 30-service file on this machine's one-node swarm: `baton --target swarm up -d`
# against `docker stack deploy` of the same file, in the same run, rounds alternating,
# each measured from the command's start until every service's task runs (baton's `up`
# returns then; for `docker stack deploy`, which returns at once, `docker service ls` is
# polled every 100 ms). Between rounds the stack is removed and its containers gone.
# Then an unchanged re-`up` (baton plans, finds nothing to do), timed 10 times.
# Needs docker (scripts/ensure-docker.sh) and a swarm (scripts/ensure-swarm.sh).
# Usage: bench/swarm-vs-stack.sh [ROUNDS] [SERVICES]   (BATON_BIN: the baton to measure)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
services=${2:-30}
[[ $rounds =~ ^[1-9][0-9]*$ && $services =~ ^[1-9][0-9]*$ ]] || {
  echo "usage: $0 [ROUNDS] [SERVICES]" >&2
  exit 2
}
scripts/ensure-docker.sh >/dev/null
scripts/make-test-image.sh >/dev/null
scripts/ensure-swarm.sh
if [[ -z ${BATON_BIN:-} ]]; then
  cargo build --release --locked -q -p baton-cli
  BATON_BIN=$PWD/target/release/baton
fi
baton=$BATON_BIN
[[ -x $baton ]] || { echo "BATON_BIN=$baton is not executable" >&2; exit 1; }

work=$(mktemp -d)
export BATON_STATE_DIR=$work/state
stack=bstk$$
project=bbat$$
cleanup() {
  docker stack rm "$stack" >/dev/null 2>&1 || true
  (cd "$work" && "$baton" -p "$project" --target swarm down >/dev/null 2>&1) || true
  rm -rf "$work"
}
trap cleanup EXIT

# The file: SERVICES small services on one overlay network, each one task. Where the
# kernel has no IPVS (no /proc/net/ip_vs), baton gives services DNS round robin instead
# of virtual IPs, which answer nothing there; the stack file then says the same, so both
# deploy the same services. The stack file has no `targets:`; baton's copy adds it.
stack_endpoint=""
[[ -e /proc/net/ip_vs ]] || stack_endpoint=", endpoint_mode: dnsrr"
{
  echo 'version: "3.8"'
  echo 'services:'
  for i in $(seq 1 "$services"); do
    cat <<EOF
  s$i:
    image: baton-test/busybox:latest
    command: ["sleep", "86400"]
    environment: {INDEX: "$i"}
    deploy: {replicas: 1${stack_endpoint}}
EOF
  done
} >"$work/stack.yaml"
sed "s/, endpoint_mode: dnsrr//" "$work/stack.yaml" >"$work/compose.yaml"
printf 'targets:\n  swarm: {swarm: {}}\n' >>"$work/compose.yaml"

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# Every service of the stack (name prefix) shows 1/1 replicas.
all_running() {
  local prefix=$1 n
  n=$(docker service ls --filter "name=${prefix}_" --format '{{.Replicas}}' | grep -c '^1/1' || true)
  [[ $n -eq $services ]]
}

# Waits until no task container of the prefix is left.
gone() {
  local prefix=$1
  for _ in $(seq 1 600); do
    if [[ -z $(docker ps -a --filter "label=com.docker.swarm.service.name" --format '{{.Label "com.docker.swarm.service.name"}}' | grep "^${prefix}_" || true) ]] &&
      [[ -z $(docker service ls -q --filter "name=${prefix}_") ]]; then
      return 0
    fi
    sleep 0.2
  done
  echo "containers of $prefix are still there after 120 s" >&2
  exit 1
}

declare -a t_baton t_stack t_never
for r in $(seq 1 "$rounds"); do
  start=$(now)
  (cd "$work" && "$baton" -p "$project" --target swarm up -d >/dev/null 2>"$work/up.err") || {
    cat "$work/up.err" >&2
    exit 1
  }
  all_running "$project" || { echo "baton returned before every task ran" >&2; exit 1; }
  t_baton+=("$(elapsed "$start")")
  (cd "$work" && "$baton" -p "$project" --target swarm down >/dev/null 2>&1)
  gone "$project"

  start=$(now)
  docker stack deploy -c "$work/stack.yaml" "$stack" >/dev/null 2>&1
  until all_running "$stack"; do sleep 0.1; done
  t_stack+=("$(elapsed "$start")")
  docker stack rm "$stack" >/dev/null 2>&1
  gone "$stack"

  # The docker CLI asks a registry for each image's digest first (none answers here);
  # `--resolve-image never` skips that, as baton does.
  start=$(now)
  docker stack deploy --resolve-image never -c "$work/stack.yaml" "$stack" >/dev/null 2>&1
  until all_running "$stack"; do sleep 0.1; done
  t_never+=("$(elapsed "$start")")
  docker stack rm "$stack" >/dev/null 2>&1
  gone "$stack"
  printf 'round %d: baton %.2f s, docker stack deploy %.2f s, with --resolve-image never %.2f s\n' \
    "$r" "${t_baton[-1]}" "${t_stack[-1]}" "${t_never[-1]}"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mb=$(median "${t_baton[@]}")
ms=$(median "${t_stack[@]}")
mn=$(median "${t_never[@]}")
printf 'until every task runs, median of %d: baton %.2f s, docker stack deploy %.2f s (ratio %.2f), with --resolve-image never %.2f s (ratio %.2f)\n' \
  "$rounds" "$mb" "$ms" "$(echo "$mb / $ms" | bc -l)" "$mn" "$(echo "$mb / $mn" | bc -l)"

# Unchanged re-up.
(cd "$work" && "$baton" -p "$project" --target swarm up -d >/dev/null 2>&1)
declare -a t_re
for _ in $(seq 1 10); do
  start=$(now)
  (cd "$work" && "$baton" -p "$project" --target swarm up -d >/dev/null 2>"$work/re.err")
  t_re+=("$(elapsed "$start")")
  grep -q "nothing to do" "$work/re.err" || { echo "an unchanged up changed something:" >&2; cat "$work/re.err" >&2; exit 1; }
done
printf 'unchanged re-up of %d services, median of 10: %.0f ms\n' "$services" "$(echo "$(median "${t_re[@]}") * 1000" | bc -l)"
