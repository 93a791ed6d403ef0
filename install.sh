#!/usr/bin/env bash
# Letterbox installer.
#
#   bash install.sh --dev [--test-tools]   prepare this checkout for development and tests:
#                                          Node 24 (system's if >= 22.19, else the npm registry's
#                                          node@24 under .runtime/), npm dependencies (npm ci),
#                                          and, when run as root, Dovecot's Debian packages and the
#                                          'vmail' user. --test-tools adds swaks, python3-dkim, dnsmasq.
#
# Production installation (systemd units, /etc/letterbox, ACME) is tracked in the Production issue;
# until it lands, the production mode refuses to run rather than half-install.
set -euo pipefail

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNTIME_DIR="$APP_DIR/.runtime"
MIN_NODE_MAJOR=22
MIN_NODE_MINOR=19
DOVECOT_PACKAGES=(dovecot-imapd dovecot-lmtpd dovecot-sieve)
TEST_PACKAGES=(swaks python3-dkim dnsmasq-base openssl)

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

node_ok() {
  # $1: a node binary. True when it is >= MIN_NODE_MAJOR.MIN_NODE_MINOR.
  local v major minor
  v="$("$1" -p 'process.versions.node' 2>/dev/null)" || return 1
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  [ "$major" -gt "$MIN_NODE_MAJOR" ] || { [ "$major" -eq "$MIN_NODE_MAJOR" ] && [ "$minor" -ge "$MIN_NODE_MINOR" ]; }
}

ensure_node() {
  # Prints the directory holding a suitable node binary.
  local sys
  sys="$(command -v node || true)"
  if [ -n "$sys" ] && node_ok "$sys"; then dirname "$sys"; return; fi
  local bundled="$RUNTIME_DIR/node_modules/node/bin"
  if [ -x "$bundled/node" ] && node_ok "$bundled/node"; then echo "$bundled"; return; fi
  command -v npm >/dev/null || die "no Node.js >= $MIN_NODE_MAJOR.$MIN_NODE_MINOR and no npm to fetch one: install Node.js 24"
  log "provisioning Node 24 from the npm registry into $RUNTIME_DIR (system node is too old)"
  mkdir -p "$RUNTIME_DIR"
  npm install --prefix "$RUNTIME_DIR" --no-save --no-audit --no-fund node@24 >&2 \
    || die "could not install node@24 from the npm registry"
  node_ok "$bundled/node" || die "node@24 installed but does not run: $bundled/node"
  echo "$bundled"
}

ensure_deps() {
  local nodebin="$1" stamp="$RUNTIME_DIR/lock.sha256" want have=""
  want="$( (sha256sum "$APP_DIR/package-lock.json"; "$nodebin/node" -p process.versions.modules) | sha256sum | cut -d' ' -f1)"
  [ -f "$stamp" ] && have="$(cat "$stamp")"
  if [ "$want" != "$have" ] || [ ! -d "$APP_DIR/node_modules" ]; then
    log "installing npm dependencies (npm ci)"
    (cd "$APP_DIR" && PATH="$nodebin:$PATH" npm ci --no-audit --no-fund >&2) || die "npm ci failed"
    mkdir -p "$RUNTIME_DIR"
    echo "$want" > "$stamp"
  fi
}

apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "warning: missing Debian packages ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  # The packages' own init scripts would start a system-wide Dovecot on 143/993: forbid service
  # starts during the install (Letterbox runs its own instance from its generated config).
  local prc=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 || { [ $created -eq 1 ] && rm -f "$prc"; die "apt-get install ${missing[*]} failed"; }
  [ $created -eq 1 ] && rm -f "$prc"
  return 0
}

disable_system_dovecot() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
}

ensure_vmail_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id vmail >/dev/null 2>&1; then
    log "creating system user vmail (owner of stored mail)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail
  fi
}

dev_setup() {
  local with_test_tools="$1" nodebin
  apt_install "${DOVECOT_PACKAGES[@]}"
  [ "$with_test_tools" = 1 ] && apt_install "${TEST_PACKAGES[@]}"
  disable_system_dovecot
  ensure_vmail_user
  nodebin="$(ensure_node)"
  ensure_deps "$nodebin"
  mkdir -p "$RUNTIME_DIR"
  echo "$nodebin" > "$RUNTIME_DIR/nodebin"
}

main() {
  local mode="" test_tools=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --dev) mode=dev ;;
      --test-tools) test_tools=1 ;;
      -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
    shift
  done
  case "$mode" in
    dev) dev_setup "$test_tools" ;;
    *) die "production installation is not available yet; use --dev for a development checkout" ;;
  esac
}

main "$@"
