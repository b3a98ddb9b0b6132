#!/usr/bin/env bash
# What the Swarm tests use: this machine's engine as a one-node swarm manager on
# loopback (`docker swarm init --advertise-addr 127.0.0.1`). Plain containers keep
# working on a manager; the routing mesh does not on a kernel without IPVS, which baton
# detects (host-mode publishing). Run after ensure-docker.sh.
set -euo pipefail
state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown)
case "$state" in
  active) ;;
  inactive) docker swarm init --advertise-addr 127.0.0.1 >/dev/null ;;
  *) echo "the engine's swarm state is $state; fix it with 'docker swarm leave --force'" >&2; exit 1 ;;
esac
docker info --format '{{.Swarm.ControlAvailable}}' | grep -qx true \
  || { echo "this engine is in a swarm but not a manager" >&2; exit 1; }
