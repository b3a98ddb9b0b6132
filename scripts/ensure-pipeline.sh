#!/usr/bin/env bash
# Makes sure what pipelines and their tests and benchmark use is installed: bash (jobs
# run in it), git (the git trigger polls with `git ls-remote`; the tests make a local
# repository), make and /usr/bin/time (bench/pipeline-vs-make.sh). Idempotent.
set -euo pipefail

need=()
command -v bash >/dev/null 2>&1 || need+=(bash)
command -v git >/dev/null 2>&1 || need+=(git)
command -v make >/dev/null 2>&1 || need+=(make)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
