#!/usr/bin/env bash
# What the alert tests use: python3 with PyPI's aiosmtpd, the local SMTP server that
# receives the email notifications (`python3 -m aiosmtpd -n -l 127.0.0.1:PORT`).
# Idempotent.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
fi
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668) unless told.
  python3 -m pip install --quiet --root-user-action=ignore 'aiosmtpd>=1.4' 2>/dev/null \
    || python3 -m pip install --quiet --root-user-action=ignore --break-system-packages 'aiosmtpd>=1.4'
fi
