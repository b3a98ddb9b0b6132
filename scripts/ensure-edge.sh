#!/usr/bin/env bash
# What the edge tests and benchmark need: Debian's pebble (Let's Encrypt's ACME test
# server, with pebble-challtestsrv for the DNS answers; the tests start their own on free
# loopback ports, with a listener certificate made by openssl), wrk (HTTPS load), curl and
# openssl. Idempotent.
set -euo pipefail

need=()
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
