#!/usr/bin/env bash
# What the fleet tests need: OpenSSH's server, ssh-keygen, ssh-agent and ssh-add (the tests start their own
# sshd processes on loopback ports; no system service is enabled), and sshd's
# privilege-separation directory; iproute2 (`ip netns`) for the jump-host test, whose
# targets live in a network namespace. Idempotent.
set -euo pipefail

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1 || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-agent >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
fi
if ! command -v ip >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd
