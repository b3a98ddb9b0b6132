#!/usr/bin/env bash
# baton pipelines against GNU make in the same run: one generated DAG of 1000 jobs that
# each run `true` (20 layers of 50; each job needs 2 jobs of the layer before, picked by a
# fixed formula), written once as a baton pipeline and once as a Makefile. Both run with
# two jobs in flight (`make -j2`, `baton pipeline run --jobs 2`); wall time and peak RSS
# come from /usr/bin/time -v, median of RUNS runs each. Like make, baton runs a plain
# one-line script without a shell; a third row forces bash (`run: 'true;'`) to show
# what a shell start costs per job. Prints a markdown table.
# Usage: bench/pipeline-vs-make.sh [RUNS]   (default 3; needs make and /usr/bin/time)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
layers=20
width=50

if ! command -v make >/dev/null || [ ! -x /usr/bin/time ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make time >/dev/null
fi

cargo build --release -q -p baton-cli
baton=${CARGO_TARGET_DIR:-$PWD/target}/release/baton

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same DAG twice: job L_I needs L-1_((I*7)%W) and L-1_((I*13+3)%W).
{
  echo "pipelines:"
  echo "  big:"
  echo "    jobs:"
  for ((l = 0; l < layers; l++)); do
    for ((i = 0; i < width; i++)); do
      echo "      j${l}_${i}:"
      echo "        run: 'true'"
      if ((l > 0)); then
        a=$(((i * 7) % width)); b=$(((i * 13 + 3) % width))
        echo "        needs: [j$((l - 1))_${a}, j$((l - 1))_${b}]"
      fi
    done
  done
} >"$work/baton.yaml"
mkdir -p "$work/bash"
sed "s/run: 'true'/run: 'true;'/" "$work/baton.yaml" >"$work/bash/baton.yaml"
{
  all=""
  for ((l = 0; l < layers; l++)); do
    for ((i = 0; i < width; i++)); do all+=" j${l}_${i}"; done
  done
  echo ".PHONY: all$all"
  echo "all:$all"
  for ((l = 0; l < layers; l++)); do
    for ((i = 0; i < width; i++)); do
      deps=""
      if ((l > 0)); then
        a=$(((i * 7) % width)); b=$(((i * 13 + 3) % width))
        deps=" j$((l - 1))_${a} j$((l - 1))_${b}"
      fi
      printf 'j%s_%s:%s\n\t@true\n' "$l" "$i" "$deps"
    done
  done
} >"$work/Makefile"

# Prints "<wall seconds> <peak RSS KiB>" of a command (its output discarded).
measure() {
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>&1 || true
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  echo "$wall $rss"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

make_wall=() make_rss=() baton_wall=() baton_rss=() bash_wall=() bash_rss=()
for ((r = 0; r < runs; r++)); do
  read -r w m < <(measure make -j2 -s -C "$work" -f "$work/Makefile" all)
  make_wall+=("$w") make_rss+=("$m")
  rm -rf "$work/state"
  read -r w m < <(cd "$work" && BATON_STATE_DIR="$work/state" measure "$baton" pipeline run big --jobs 2)
  baton_wall+=("$w") baton_rss+=("$m")
  rm -rf "$work/bash/state"
  read -r w m < <(cd "$work/bash" && BATON_STATE_DIR="$work/bash/state" measure "$baton" pipeline run big --jobs 2)
  bash_wall+=("$w") bash_rss+=("$m")
done
# The last baton run must have passed every job.
status=$(cd "$work" && BATON_STATE_DIR="$work/state" "$baton" --json pipeline history | awk -F'"' '/"status"/ {print $4; exit}')
jobs=$(cd "$work" && BATON_STATE_DIR="$work/state" "$baton" pipeline show 1 | grep -cE '^ *[0-9]+\. .* success$' || true)

mw=$(printf '%s\n' "${make_wall[@]}" | median)
mr=$(printf '%s\n' "${make_rss[@]}" | median)
bw=$(printf '%s\n' "${baton_wall[@]}" | median)
br=$(printf '%s\n' "${baton_rss[@]}" | median)
sw=$(printf '%s\n' "${bash_wall[@]}" | median)
sr=$(printf '%s\n' "${bash_rss[@]}" | median)
ratio=$(awk -v b="$bw" -v m="$mw" 'BEGIN {printf "%.2f", b / m}')

echo "1000-job DAG of \`true\`, 2 in flight, median of $runs runs ($(nproc) CPUs)"
echo
echo "| tool | wall (s) | peak RSS (MiB) |"
echo "|---|---|---|"
printf '| GNU make -j2 | %s | %.1f |\n' "$mw" "$(awk -v k="$mr" 'BEGIN {print k / 1024}')"
printf '| baton pipeline run --jobs 2 | %s | %.1f |\n' "$bw" "$(awk -v k="$br" 'BEGIN {print k / 1024}')"
printf '| baton, every script through bash | %s | %.1f |\n' "$sw" "$(awk -v k="$sr" 'BEGIN {print k / 1024}')"
echo
echo "baton / make wall time: ${ratio}x; last baton run: $status, $jobs jobs passed"
