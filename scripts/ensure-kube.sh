#!/usr/bin/env bash
# What the Kubernetes rendering tests use: PyPI's kubernetes-validate, which carries the
# official Kubernetes JSON schemas (no cluster can run here; the manifests baton renders
# are validated against them, strict, Kubernetes 1.30). Idempotent.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
fi
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668) unless told.
  python3 -m pip install --quiet --root-user-action=ignore 'kubernetes-validate>=1.30' 2>/dev/null \
    || python3 -m pip install --quiet --root-user-action=ignore --break-system-packages 'kubernetes-validate>=1.30'
fi
