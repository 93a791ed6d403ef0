#!/usr/bin/env bash
# Runs every benchmark of bench/ in sequence and keeps the output in bench/results/ (not in git).
# Usage: bash bench/run-all.sh [quick]     ("quick": small counts, a smoke run of a few minutes)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
app="$(cd "$here/.." && pwd)"
bash "$here/setup.sh"
nodebin="$(cat "$app/.runtime/nodebin" 2>/dev/null || dirname "$(command -v node)")"
export PATH="$nodebin:$PATH"
out="$here/results/$(date -u +%Y%m%dT%H%MZ)"
mkdir -p "$out"
n() { node --disable-warning=ExperimentalWarning "$@"; }
if [ "${1:-}" = quick ]; then
  n "$here/inbound.ts" --messages 300 | tee "$out/inbound.log"
  n "$here/outbound.ts" --messages 300 | tee "$out/outbound.log"
  n "$here/api-load.ts" --mailboxes 2000 --seconds 5 | tee "$out/api-load.log"
  n "$here/queue.ts" --messages 50 --rcpts 100 | tee "$out/queue.log"
  n "$here/exhaustion.ts" --idle 200 --slow 5 | tee "$out/exhaustion.log"
else
  n "$here/inbound.ts" --messages 2000 | tee "$out/inbound.log"
  n "$here/outbound.ts" --messages 2000 | tee "$out/outbound.log"
  n "$here/api-load.ts" --mailboxes 10000 --seconds 10 | tee "$out/api-load.log"
  n "$here/queue.ts" --messages 1000 --rcpts 100 | tee "$out/queue.log"
  n "$here/exhaustion.ts" --idle 1000 --slow 20 | tee "$out/exhaustion.log"
fi
echo "results in $out"
