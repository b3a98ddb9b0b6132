#!/usr/bin/env bash
# baton against docker-compose 1.29 in the same run: 30 busybox services with
# stop_grace_period: 1s. Times `up -d` from nothing, `up -d` of the unchanged file, and
# `down`, each ROUNDS times (median reported), plus 30 parallel `docker run -d` as a floor.
# Usage: bench/compose-vs-baton.sh [ROUNDS]   (needs docker-compose: apt-get install docker-compose)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
scripts/ensure-docker.sh
scripts/make-test-image.sh
command -v docker-compose >/dev/null || { apt-get install -y -qq docker-compose >/dev/null; }
cargo build --release --locked -q
baton=$PWD/target/release/baton

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "services:"
  for i in $(seq -w 1 30); do
    printf '  s%s:\n    image: baton-test/busybox:latest\n    command: ["sleep", "3600"]\n    stop_grace_period: 1s\n' "$i"
  done
} > "$work/compose.yaml"
export BATON_STATE_DIR=$work/state

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A t
run_tool() { # name, up-cmd..., (down uses the same prefix)
  local name=$1; shift
  for _ in $(seq "$rounds"); do
    s=$(now); "$@" up -d >/dev/null 2>&1; t[$name.up]+="$(elapsed "$s") "
    s=$(now); "$@" up -d >/dev/null 2>&1; t[$name.reup]+="$(elapsed "$s") "
    s=$(now); "$@" down >/dev/null 2>&1; t[$name.down]+="$(elapsed "$s") "
  done
}

cd "$work"
run_tool compose docker-compose -p benchcompose
run_tool baton "$baton" -p benchbaton

for _ in $(seq "$rounds"); do
  s=$(now)
  for i in $(seq 1 30); do docker run -d --name benchrun$i --stop-timeout 1 baton-test/busybox:latest sleep 3600 >/dev/null & done
  wait
  t[run.up]+="$(elapsed "$s") "
  s=$(now); docker rm -f $(docker ps -aq --filter name=benchrun) >/dev/null; t[run.down]+="$(elapsed "$s") "
done

m() { echo "${t[$1]}" | tr ' ' '\n' | grep . | median; }
ratio() { echo "scale=2; $1 / $2" | bc; }
printf '| step | docker-compose 1.29 | baton | baton / compose |\n|---|---|---|---|\n'
for step in up reup down; do
  c=$(m compose.$step); b=$(m baton.$step)
  printf '| %s | %.3f s | %.3f s | %s |\n' "$step" "$c" "$b" "$(ratio "$b" "$c")"
done
printf '| 30 × `docker run -d` in parallel | | %.3f s (up) | |\n' "$(m run.up)"
echo
echo "rounds: $rounds; $(nproc) cores; $(docker version --format 'dockerd {{.Server.Version}}')"
