#!/usr/bin/env bash
# What the registry tests need: Debian's docker-registry (the tests start their own
# registry processes on loopback ports with a temporary root directory; the package's
# system service is not used) and htpasswd from apache2-utils for their bcrypt password
# files. Idempotent.
set -euo pipefail

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
