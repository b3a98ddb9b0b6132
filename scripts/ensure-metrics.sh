#!/usr/bin/env bash
# What baton-metrics' exposition test uses: python3 with PyPI's prometheus_client, whose
# parsers (text format 0.0.4 and OpenMetrics) read baton's /metrics output the way a
# Prometheus scraper does. Idempotent.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
fi
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668) unless told.
  python3 -m pip install --quiet --root-user-action=ignore 'prometheus-client>=0.20' 2>/dev/null \
    || python3 -m pip install --quiet --root-user-action=ignore --break-system-packages 'prometheus-client>=0.20'
fi
