#!/usr/bin/env bash
# Installs what the benchmarks need (not needed by the tests): Postfix (smtp-source, smtp-sink and
# the classic-stack peer) without starting its service, OpenDKIM (the outbound peer's signer), wrk,
# and the npm tools in bench/node_modules.
# Usage: bash bench/setup.sh      (root; Debian 12 / Ubuntu 24.04)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
app="$(cd "$here/.." && pwd)"
if ! command -v smtp-source >/dev/null || ! command -v postfix >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package's own service from starting: we run private instances only.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string bench.invalid" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq postfix >/dev/null
  # Even without a service manager, make sure the system instance is not running.
  postfix stop >/dev/null 2>&1 || true
fi
# OpenDKIM: the DKIM signer of bench/outbound.ts's Postfix peer (private instances only; its own
# service stays stopped).
if [ ! -x /usr/sbin/opendkim ]; then
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq opendkim opendkim-tools >/dev/null || { apt-get update -qq && apt-get install -y -qq opendkim opendkim-tools >/dev/null; }
fi
if [ ! -x /usr/bin/time ]; then # GNU time: the CPU a load generator used (bench/lib.ts runWrk)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
fi
if ! command -v wrk >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
nodebin="$(cat "$app/.runtime/nodebin" 2>/dev/null || dirname "$(command -v node)")"
export PATH="$nodebin:$PATH"
if [ ! -x "$here/node_modules/.bin/autocannon" ] || [ ! -d "$here/node_modules/Haraka" ]; then
  (cd "$here" && flock /tmp/npm.lock npm install --no-audit --no-fund --save-exact autocannon@9.0.0 Haraka@3.3.4 >/dev/null)
fi
echo "bench setup done: $(command -v smtp-source), $(command -v wrk), /usr/sbin/opendkim, autocannon, Haraka"
