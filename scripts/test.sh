#!/usr/bin/env bash
# Runs every test of the project on this machine: makes sure a Docker engine and the
# local test image exist, checks formatting and lints, then runs the whole workspace's
# tests against the real engine (BATON_REQUIRE_DOCKER, _SSHD, _VM, _REGISTRY, _PYTHON, _EDGE,
# _BROWSER, _SMTP=1: no silent skips).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-docker.sh
scripts/make-test-image.sh
scripts/ensure-pipeline.sh
scripts/ensure-fleet.sh
scripts/ensure-vm.sh
scripts/ensure-registry.sh
scripts/ensure-edge.sh
scripts/ensure-metrics.sh
scripts/ensure-alerts.sh
scripts/ensure-kube.sh
scripts/ensure-swarm.sh
scripts/ensure-browser.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests drive target/debug/baton: build it first (cargo test alone only
# builds binaries for their own package's tests).
cargo build --workspace --locked
BATON_REQUIRE_DOCKER=1 BATON_REQUIRE_SSHD=1 BATON_REQUIRE_VM=1 BATON_REQUIRE_REGISTRY=1 BATON_REQUIRE_PYTHON=1 BATON_REQUIRE_KUBE_SCHEMAS=1 BATON_REQUIRE_EDGE=1 BATON_REQUIRE_BROWSER=1 BATON_REQUIRE_SMTP=1 cargo test --workspace --locked
