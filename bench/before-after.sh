#!/usr/bin/env bash
# Before/after comparison of two checkouts (each with its own bench/ and app), alternating in one
# sitting so both see the same machine: inbound (Letterbox stack only) and outbound, N messages a
# row, PAIRS pairs; the order within a pair flips every pair. /proc/loadavg is printed around every
# run. Used for "#13 restructuring: before vs after" in bench/README.md:
#   git worktree add --detach /tmp/before 3b7af14 && ln -s "$PWD/node_modules" /tmp/before/ && ln -s "$PWD/.runtime" /tmp/before/
#   git worktree add --detach /tmp/after HEAD     && ln -s "$PWD/node_modules" /tmp/after/  && ln -s "$PWD/.runtime" /tmp/after/
#   N=800 PAIRS=3 bash bench/before-after.sh /tmp/before /tmp/after | tee before-after.log
# Environment: N (messages per row, 800), PAIRS (3), FIRST (first pair number, 1),
# KINDS ("inbound,outbound", or one of them).
set -uo pipefail
BEFORE=${1:?usage: before-after.sh BEFORE_DIR AFTER_DIR}
AFTER=${2:?usage: before-after.sh BEFORE_DIR AFTER_DIR}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE="$(cat "$here/../.runtime/nodebin" 2>/dev/null || dirname "$(command -v node)")/node"
N=${N:-800}
PAIRS=${PAIRS:-3}
KINDS=${KINDS:-inbound,outbound}
run() { # tree label kind
  local tree=$1 label=$2 kind=$3
  echo "=== $label $kind pair=$pair start $(date -u +%H:%M:%S) loadavg $(cat /proc/loadavg)"
  if [ "$kind" = inbound ]; then
    (cd "$tree" && "$NODE" --disable-warning=ExperimentalWarning bench/inbound.ts --messages "$N" --stacks letterbox) 2>&1 | sed "s/^/[$label $kind $pair] /"
  else
    (cd "$tree" && "$NODE" --disable-warning=ExperimentalWarning bench/outbound.ts --messages "$N") 2>&1 | sed "s/^/[$label $kind $pair] /"
  fi
  echo "=== $label $kind pair=$pair end $(date -u +%H:%M:%S) loadavg $(cat /proc/loadavg)"
}
for pair in $(seq "${FIRST:-1}" "$PAIRS"); do
  if [ $((pair % 2)) -eq 1 ]; then A=("$BEFORE" before); B=("$AFTER" after); else A=("$AFTER" after); B=("$BEFORE" before); fi
  case "$KINDS" in *inbound*) run "${A[@]}" inbound; run "${B[@]}" inbound ;; esac
  case "$KINDS" in *outbound*) run "${B[@]}" outbound; run "${A[@]}" outbound ;; esac
done
echo "=== done $(date -u +%H:%M:%S)"
