#!/usr/bin/env bash
# Letterbox installer.
#
#   bash install.sh --dev [--test-tools]   prepare this checkout for development and tests:
#                                          Node 24 (system's if >= 22.19, else the npm registry's
#                                          node@24 under .runtime/), npm dependencies (npm ci),
#                                          and, when run as root, Dovecot's Debian packages and the
#                                          'vmail' user, rspamd and redis-server (spam filtering).
#                                          --test-tools adds swaks, python3-dkim, dnsmasq, xmllint (libxml2-utils),
#                                          fusepy + fuse3 (the power-loss test), unbound, nsd, ldnsutils (DANE tests),
#                                          chromium (the web console's browser tests).
#
#   bash install.sh [options]              production install (or upgrade) on Debian 12 or 13, Ubuntu 24.04 or 26.04:
#     --hostname NAME       the server's FQDN (MX target, EHLO, certificate); default: hostname -f
#     --ip ADDR             a public IP of this server (repeatable); default: the global addresses
#     --acme-email ADDR     contact for Let's Encrypt certificates (enables ACME)
#     --smarthost [USER[:PASS]@]HOST:PORT   relay all outbound mail through this host
#     --resolver IP         resolver for rspamd's blocklist lookups (default: a local unbound,
#                           installed on 127.0.0.1: blocklists refuse public resolvers)
#     --no-start            install and enable, but do not start the service
#     --dry-run             print every action, change nothing
#     --root DIR            install into the tree DIR instead of / (tests, staging): no users, no
#                           apt, no systemctl start; files inside DIR refer to paths inside DIR
#     --uninstall [--purge] remove the program and units; keeps config and data unless --purge
#   Re-running is an upgrade: config, secrets, keys, certificates and data are never overwritten.
set -euo pipefail

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNTIME_DIR="$APP_DIR/.runtime"
MIN_NODE_MAJOR=22
MIN_NODE_MINOR=19
DOVECOT_PACKAGES=(dovecot-imapd dovecot-lmtpd dovecot-sieve dovecot-managesieved)
TEST_PACKAGES=(swaks python3-dkim dnsmasq-base openssl systemd libxml2-utils python3-fusepy fuse3 chromium)
# DANE tests (issue #18): a signed zone (ldnsutils) served by nsd, validated by unbound, all run by the tests themselves.
TEST_PACKAGES+=(unbound nsd ldnsutils)
# Spam filtering (issue #14): supervised by Letterbox like Dovecot; their own services stay off.
SPAM_PACKAGES=(rspamd redis-server)

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

node_ok() {
  # $1: a node binary. True when it is >= MIN_NODE_MAJOR.MIN_NODE_MINOR.
  local v major minor
  v="$("$1" -p 'process.versions.node' 2>/dev/null)" || return 1
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  [ "$major" -gt "$MIN_NODE_MAJOR" ] || { [ "$major" -eq "$MIN_NODE_MAJOR" ] && [ "$minor" -ge "$MIN_NODE_MINOR" ]; }
}

npm_install_node24() {
  # $1: a folder. npm's registry package node@24 into it. Its install script (which fetches the
  # binary for this architecture) is approved in a package.json of that folder, the way npm 11
  # wants install scripts approved ("allowScripts"), so npm does not warn that it is unreviewed.
  mkdir -p "$1"
  [ -f "$1/package.json" ] || printf '{ "private": true, "allowScripts": { "node": true } }\n' > "$1/package.json"
  npm install --prefix "$1" --no-save --no-audit --no-fund node@24 >&2
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
  npm_install_node24 "$RUNTIME_DIR" || die "could not install node@24 from the npm registry"
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
    # rspamd and Redis run as Letterbox's children from its generated config (issue #14).
    systemctl disable --now rspamd.service redis-server.service >/dev/null 2>&1 || true
    systemctl mask rspamd.service redis-server.service >/dev/null 2>&1 || true
    # nsd (a test tool: the DANE tests run their own) would take port 53 from the local unbound.
    systemctl disable --now nsd.service >/dev/null 2>&1 || true
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
  apt_install "${DOVECOT_PACKAGES[@]}" "${SPAM_PACKAGES[@]}"
  [ "$with_test_tools" = 1 ] && apt_install "${TEST_PACKAGES[@]}"
  disable_system_dovecot
  ensure_vmail_user
  nodebin="$(ensure_node)"
  ensure_deps "$nodebin"
  mkdir -p "$RUNTIME_DIR"
  echo "$nodebin" > "$RUNTIME_DIR/nodebin"
}

# ------------------------------------------------------------------------------------------------
# Production mode
# ------------------------------------------------------------------------------------------------
SVC_USER=letterbox
MAIL_USER=vmail
ROOT=""            # --root DIR: everything goes under DIR (empty: the real /)
DRY_RUN=0
NO_START=0
UNINSTALL=0
PURGE=0
HOSTNAME_ARG=""
IPS=()
ACME_EMAIL=""
SMARTHOST=""
RESOLVER=""
CHANGES=()
WARNINGS=()
NODE_BIN=""
FRESH_CONFIG=0
APP_CHANGED=0
SKIP_INIT=0

prod_paths() {
  OPT_DIR="$ROOT/opt/letterbox"
  ETC_DIR="$ROOT/etc/letterbox"
  CONFIG="$ETC_DIR/letterbox.toml"
  CERT_DIR="$ETC_DIR/certs"
  DATA_DIR="$ROOT/var/lib/letterbox"
  CACHE_DIR="$ROOT/var/cache/letterbox" # Node's compile cache (systemd CacheDirectory=): nothing to keep
  UNIT_DIR="$ROOT/etc/systemd/system"
  WRAPPER="$ROOT/usr/local/bin/letterbox"
  PROD_RUNTIME="$OPT_DIR/.runtime"
}

say() { printf '%s\n' "$*"; }
note() { log "$*"; }
warn() { WARNINGS+=("$*"); printf 'install.sh: WARNING: %s\n' "$*" >&2; }
changed() { [ "$DRY_RUN" = 1 ] && return 0; CHANGES+=("$*"); log "$*"; }
root_mode() { [ -n "$ROOT" ]; }
# systemd is the init system (PID 1) of this machine, and we are installing onto it.
systemd_running() { ! root_mode && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# Runs a command, or in --dry-run prints it. Every change to the system goes through here (or
# through put_file), so --dry-run changes nothing.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] %s\n' "$*"
    return 0
  fi
  "$@"
}

# The same, with the command's own output silenced.
run_quiet() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] %s\n' "$*"
    return 0
  fi
  "$@" >/dev/null 2>&1
}

# put_file DEST MODE OWNER(user:group or -) < content: writes DEST only when its content differs.
put_file() {
  local dest="$1" mode="$2" owner="$3" tmp
  tmp="$(mktemp)"
  cat > "$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
    run chmod "$mode" "$dest"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] write %s (mode %s)\n' "$dest" "$mode"
    rm -f "$tmp"
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  install -m "$mode" "$tmp" "$dest.new"
  [ "$owner" != - ] && ! root_mode && chown "$owner" "$dest.new"
  mv -f "$dest.new" "$dest"
  rm -f "$tmp"
  changed "wrote $dest"
}

set_owner() {
  # set_owner OWNER PATH...: chown, except in --root mode (no users are created there).
  local owner="$1"; shift
  root_mode && return 0
  run chown "$owner" "$@"
}

usage_prod() { awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

parse_prod_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --hostname) [ $# -ge 2 ] || die "--hostname needs a value"; HOSTNAME_ARG="$2"; shift ;;
      --hostname=*) HOSTNAME_ARG="${1#*=}" ;;
      --ip) [ $# -ge 2 ] || die "--ip needs a value"; IPS+=("$2"); shift ;;
      --ip=*) IPS+=("${1#*=}") ;;
      --acme-email) [ $# -ge 2 ] || die "--acme-email needs a value"; ACME_EMAIL="$2"; shift ;;
      --acme-email=*) ACME_EMAIL="${1#*=}" ;;
      --smarthost) [ $# -ge 2 ] || die "--smarthost needs a value"; SMARTHOST="$2"; shift ;;
      --smarthost=*) SMARTHOST="${1#*=}" ;;
      --resolver) [ $# -ge 2 ] || die "--resolver needs an IP"; RESOLVER="$2"; shift ;;
      --resolver=*) RESOLVER="${1#*=}" ;;
      --no-start) NO_START=1 ;;
      --dry-run) DRY_RUN=1 ;;
      --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT="$2"; shift ;;
      --root=*) ROOT="${1#*=}" ;;
      --uninstall) UNINSTALL=1 ;;
      --purge) PURGE=1 ;;
      -h|--help) usage_prod; exit 0 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
    shift
  done
  if [ -n "$ROOT" ]; then
    case "$ROOT" in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
    ROOT="${ROOT%/}"
    [ "$ROOT" != "" ] || die "--root /: omit --root to install onto this system"
  fi
  [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ] && die "--purge only goes with --uninstall"
  prod_paths
}

# ---- preflight ----------------------------------------------------------------------------------
is_fqdn() {
  local h="$1"
  [[ "$h" =~ ^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$ ]] || return 1
  [ "${#h}" -le 253 ] || return 1
  case "$h" in *.local|*.localdomain|localhost.*) return 1 ;; esac
  return 0
}

valid_ip() {
  local ip="$1"
  if [[ "$ip" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
    local o; for o in "${BASH_REMATCH[@]:1}"; do [ "$o" -le 255 ] || return 1; done; return 0
  fi
  [[ "$ip" =~ ^[0-9a-fA-F:]+$ ]] && [[ "$ip" == *:*:* ]]
}

detect_ips() {
  command -v ip >/dev/null || return 0
  ip -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1
}

# problem MESSAGE: fatal on a real install, a warning in --root mode (the tree is not this system).
problem() {
  if root_mode; then warn "$* (ignored with --root)"; else PREFLIGHT_ERRORS+=("$*"); fi
}

preflight() {
  PREFLIGHT_ERRORS=()
  # Who
  if ! root_mode && [ "$(id -u)" -ne 0 ]; then
    PREFLIGHT_ERRORS+=("run as root (sudo bash install.sh ...); or use --root DIR to install into a directory tree")
  fi
  # OS
  # LETTERBOX_OS_RELEASE: another os-release file (tests check every supported release with it).
  local id="" ver="" osr="${LETTERBOX_OS_RELEASE:-/etc/os-release}"
  if [ -r "$osr" ]; then
    id="$(. "$osr"; echo "${ID:-}")"; ver="$(. "$osr"; echo "${VERSION_ID:-}")"
  fi
  case "$id:$ver" in
    debian:12|ubuntu:24.04) note "preflight: OS $id $ver: supported (Dovecot 2.3)" ;;
    debian:13|ubuntu:26.04) note "preflight: OS $id $ver: supported (Dovecot 2.4)" ;;
    *) problem "unsupported OS '${id:-unknown} ${ver:-}': Letterbox supports Debian 12 and 13, Ubuntu 24.04 and 26.04 (their Dovecot 2.3 or 2.4; Letterbox generates the config for either)" ;;
  esac
  # Architecture
  case "$(uname -m)" in
    x86_64|aarch64) note "preflight: architecture $(uname -m): supported" ;;
    *) problem "unsupported architecture $(uname -m): Node.js 24 builds exist for x86_64 and aarch64" ;;
  esac
  # RAM
  local mem_kb
  mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)"
  # 1 GB (README "Memory use", bench/README "Memory (#15)": Node 110-120 MB idle, ~150 MB at peak;
  # Dovecot up to ~210 MB with 100 deliveries at once; rspamd + Redis). A "1 GB" VPS reports
  # 940-1000 MB of MemTotal.
  if [ "${mem_kb:-0}" -lt $((900 * 1024)) ]; then
    problem "only $((mem_kb / 1024)) MB of RAM: Letterbox needs a machine with at least 1 GB (Node.js, Dovecot, rspamd and Redis use about 300 MB idle and 500-600 MB at peak)"
  else
    note "preflight: RAM $((mem_kb / 1024)) MB: ok"
  fi
  # Disk: where /var/lib/letterbox will live
  local probe="${ROOT:-/}" free_mb
  [ -d "$probe" ] || probe="$(dirname "$probe")"
  while [ ! -d "$probe" ]; do probe="$(dirname "$probe")"; done
  free_mb="$(df -Pm "$probe" 2>/dev/null | awk 'NR==2 {print $4}')"
  if [ "${free_mb:-0}" -lt 1024 ]; then
    problem "only ${free_mb:-0} MB free on $probe: at least 1 GB is needed (program ~300 MB, plus mail)"
  elif [ "${free_mb:-0}" -lt 5120 ]; then
    warn "only ${free_mb} MB free on $probe: fine to start, but mail storage will need more"
  else
    note "preflight: disk $free_mb MB free: ok"
  fi
  # Hostname
  if [ -z "$HOSTNAME_ARG" ]; then
    HOSTNAME_ARG="$(hostname -f 2>/dev/null || hostname 2>/dev/null || true)"
    note "preflight: no --hostname given; using this machine's name '$HOSTNAME_ARG'"
  fi
  if is_fqdn "$HOSTNAME_ARG"; then
    note "preflight: hostname $HOSTNAME_ARG: ok"
  else
    PREFLIGHT_ERRORS+=("hostname '$HOSTNAME_ARG' is not a fully qualified domain name: pass --hostname mail.example.com (the name your MX record and reverse DNS will point to)")
  fi
  # IPs
  local ip
  for ip in "${IPS[@]+"${IPS[@]}"}"; do
    valid_ip "$ip" || PREFLIGHT_ERRORS+=("--ip $ip: not an IPv4 or IPv6 address")
  done
  if [ "${#IPS[@]}" -eq 0 ]; then
    if root_mode; then
      warn "no --ip given: SPF records will name no addresses until you add 'ips' to the config"
    else
      mapfile -t IPS < <(detect_ips)
      if [ "${#IPS[@]}" -eq 0 ]; then warn "no --ip given and no global address found: add 'ips' to the config"; else note "preflight: no --ip given; using ${IPS[*]}"; fi
    fi
  fi
  # Ports
  check_ports
  # Outbound port 25
  check_outbound_25
  if [ "${#PREFLIGHT_ERRORS[@]}" -gt 0 ]; then
    local e
    for e in "${PREFLIGHT_ERRORS[@]}"; do printf 'install.sh: preflight failed: %s\n' "$e" >&2; done
    exit 1
  fi
}

# held_by_letterbox SS_LINE: the listener belongs to the installed Letterbox (an upgrade): its process
# runs in letterbox.service's cgroup or as the service user. (Not by name: Node 24's main thread,
# which ss shows, is called "MainThread".)
held_by_letterbox() {
  local pid
  for pid in $(grep -o 'pid=[0-9]*' <<<"$1" | cut -d= -f2); do
    grep -q '/letterbox\.service' "/proc/$pid/cgroup" 2>/dev/null && return 0
    [ "$(stat -c %U "/proc/$pid" 2>/dev/null)" = "$SVC_USER" ] && return 0
  done
  [[ "$1" == *'"node"'* || "$1" == *'"dovecot"'* || "$1" == *'"imap-login"'* ]]
}

check_ports() {
  if root_mode; then note "preflight: port checks skipped (--root: nothing listens from this tree)"; return 0; fi
  if ! command -v ss >/dev/null; then warn "cannot check ports (no 'ss'; apt-get install iproute2)"; return 0; fi
  local port line
  note "preflight: checking that ports 25, 587, 465, 993, 80 and 443 are free"
  for port in 25 587 465 993 80 443; do
    line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1 || true)"
    [ -z "$line" ] && continue
    if [ -f "$CONFIG" ] && held_by_letterbox "$line"; then
      note "preflight: port $port is in use by Letterbox itself (upgrade)"
      continue
    fi
    local who; who="$(grep -o 'users:(("[^"]*"' <<<"$line" | cut -d'"' -f2 || true)"
    case "$port" in
      80|443) warn "port $port is in use${who:+ by $who}: ACME (80) and MTA-STS (443) need it; stop that service or put it in front of Letterbox" ;;
      *) PREFLIGHT_ERRORS+=("port $port is in use${who:+ by $who}: stop and disable it (e.g. systemctl disable --now ${who:-postfix} or apt-get remove exim4-daemon-light postfix)") ;;
    esac
  done
}

check_outbound_25() {
  if root_mode; then note "preflight: outbound port 25 check skipped (--root)"; return 0; fi
  if [ "$DRY_RUN" = 1 ]; then note "preflight: outbound port 25 check skipped (--dry-run)"; return 0; fi
  local host="${LETTERBOX_PORT25_PROBE:-gmail-smtp-in.l.google.com}"
  if timeout 8 bash -c "exec 3<>/dev/tcp/$host/25" 2>/dev/null; then
    note "preflight: outbound port 25 to $host: reachable"
  elif [ -n "$SMARTHOST" ]; then
    note "preflight: outbound port 25 looks blocked, but --smarthost $(smarthost_hostport) relays outbound mail"
  else
    warn "OUTBOUND PORT 25 LOOKS BLOCKED (no connection to $host:25 in 8 s). Many VPS providers block it:
    ask yours to unblock it, or relay outbound mail through a smarthost: re-run with
    --smarthost user:password@smtp.relay.example:587 (or set [outbound] smarthost in $CONFIG)."
  fi
}

smarthost_hostport() { printf '%s' "${SMARTHOST##*@}"; }

# ---- packages, users, Node ----------------------------------------------------------------------
prod_packages() {
  if root_mode; then
    note "--root: not installing Debian packages (Dovecot, openssl); the tree uses this machine's"
    command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || warn "Dovecot is not installed on this machine (apt-get install ${DOVECOT_PACKAGES[*]})"
    return 0
  fi
  local want=("${DOVECOT_PACKAGES[@]}" "${SPAM_PACKAGES[@]}" openssl ca-certificates) missing=() p
  [ -z "$RESOLVER" ] && want+=(unbound) # local recursive resolver for rspamd's blocklists
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -eq 0 ]; then note "Debian packages present: ${want[*]}"; return 0; fi
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] apt-get install -y %s\n' "${missing[*]}"; return 0; fi
  apt_install "${missing[@]}"
  changed "installed Debian packages: ${missing[*]}"
}

prod_disable_system_dovecot() {
  root_mode && return 0
  systemd_running || return 0
  if systemctl is-enabled --quiet dovecot.service 2>/dev/null || systemctl is-active --quiet dovecot.service 2>/dev/null; then
    run systemctl disable --now dovecot.service dovecot.socket
    changed "disabled the distribution's dovecot.service (Letterbox runs its own Dovecot)"
  fi
  local s
  for s in rspamd.service redis-server.service; do
    if [ "$(systemctl is-enabled "$s" 2>/dev/null)" != masked ] && systemctl cat "$s" >/dev/null 2>&1; then
      run systemctl disable --now "$s"; run systemctl mask "$s"
      changed "disabled and masked the distribution's $s (Letterbox runs its own rspamd and Redis)"
    fi
  done
  if [ -z "$RESOLVER" ] && systemctl cat unbound.service >/dev/null 2>&1 && ! systemctl is-active --quiet unbound.service; then
    run systemctl enable --now unbound.service
    changed "started unbound, a local recursive resolver on 127.0.0.1 for rspamd's blocklist lookups"
  fi
}

prod_users() {
  if root_mode; then note "--root: not creating users $SVC_USER and $MAIL_USER (files stay owned by $(id -un))"; return 0; fi
  if ! id "$SVC_USER" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir /var/lib/letterbox --no-create-home --shell /usr/sbin/nologin --comment "Letterbox mail server" "$SVC_USER"
    changed "created system user $SVC_USER"
  fi
  if ! id "$MAIL_USER" >/dev/null 2>&1; then
    run useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$MAIL_USER"
    changed "created system user $MAIL_USER"
  fi
}

prod_node() {
  # Sets NODE_BIN: the system's Node if >= 22.19, else Node 24 from the npm registry under /opt.
  local sys bundled="$PROD_RUNTIME/node_modules/node/bin"
  sys="$(command -v node || true)"
  if [ -n "$sys" ] && node_ok "$sys"; then
    NODE_BIN="$(dirname "$(readlink -f "$sys")")"
    note "using the system's Node.js $("$sys" --version) ($NODE_BIN)"
    return 0
  fi
  if [ -x "$bundled/node" ] && node_ok "$bundled/node"; then
    NODE_BIN="$bundled"
    note "using Node.js $("$bundled/node" --version) in $bundled"
    return 0
  fi
  NODE_BIN="$bundled"
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] npm install --prefix %s node@24 (system Node.js is %s)\n' "$PROD_RUNTIME" "${sys:-missing}"; return 0; fi
  if ! command -v npm >/dev/null; then
    root_mode && die "no Node.js >= $MIN_NODE_MAJOR.$MIN_NODE_MINOR and no npm to fetch one: install npm or Node.js 24"
    note "no npm: installing Debian's npm to fetch Node 24 from the npm registry"
    # With its recommends: they bring the compiler toolchain that 'npm ci' falls back to when a
    # native module's prebuilt binary cannot be downloaded (better-sqlite3's come from GitHub).
    apt_install npm
  fi
  note "installing Node 24 from the npm registry into $PROD_RUNTIME (system Node.js is ${sys:-missing} or older than $MIN_NODE_MAJOR.$MIN_NODE_MINOR)"
  mkdir -p "$PROD_RUNTIME"
  npm_install_node24 "$PROD_RUNTIME" || die "could not install node@24 from the npm registry"
  node_ok "$bundled/node" || die "node@24 installed but does not run: $bundled/node"
  changed "installed Node.js $("$bundled/node" --version) into $bundled"
}

# ---- the application ----------------------------------------------------------------------------
APP_FILES=(package.json package-lock.json tsconfig.json README.md install.sh src systemd)

app_checksum() {
  # $1: a directory holding APP_FILES. One checksum over names and contents.
  (cd "$1" && find "${APP_FILES[@]}" -type f 2>/dev/null | LC_ALL=C sort | xargs -d '\n' sha256sum 2>/dev/null | sha256sum | cut -d' ' -f1)
}

prod_deploy() {
  umask 022
  if [ "$(readlink -f "$APP_DIR")" = "$(readlink -f "$OPT_DIR" 2>/dev/null || echo "$OPT_DIR")" ]; then
    note "running from $OPT_DIR itself: program files already in place"
  else
    local have="" want
    want="$(app_checksum "$APP_DIR")"
    [ -f "$PROD_RUNTIME/app.sha256" ] && have="$(cat "$PROD_RUNTIME/app.sha256")"
    if [ "$want" = "$have" ] && [ -d "$OPT_DIR/src" ]; then
      note "program files in $OPT_DIR are up to date"
    elif [ "$DRY_RUN" = 1 ]; then
      printf '[dry-run] copy %s from %s to %s\n' "${APP_FILES[*]}" "$APP_DIR" "$OPT_DIR"
    else
      mkdir -p "$OPT_DIR" "$PROD_RUNTIME"
      local f
      for f in "${APP_FILES[@]}"; do
        [ -e "$APP_DIR/$f" ] || continue
        rm -rf "$OPT_DIR/$f.new"
        cp -R "$APP_DIR/$f" "$OPT_DIR/$f.new"
        rm -rf "$OPT_DIR/$f"
        mv "$OPT_DIR/$f.new" "$OPT_DIR/$f"
      done
      chmod -R u+rwX,go+rX,go-w "$OPT_DIR"
      echo "$want" > "$PROD_RUNTIME/app.sha256"
      APP_CHANGED=1
      changed "deployed Letterbox $(sed -n 's/^  "version": "\(.*\)",/\1/p' "$APP_DIR/package.json") to $OPT_DIR"
    fi
  fi
  prod_npm_ci
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] record Node path %s in %s/nodebin\n' "$NODE_BIN" "$PROD_RUNTIME"; return 0; fi
  mkdir -p "$PROD_RUNTIME"
  echo "$NODE_BIN" | put_file "$PROD_RUNTIME/nodebin" 0644 -
}

prod_npm_ci() {
  local stamp="$PROD_RUNTIME/lock.sha256" want have=""
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] (cd %s && npm ci --omit=dev) when package-lock.json or Node changed\n' "$OPT_DIR"; return 0; fi
  want="$( (sha256sum < "$OPT_DIR/package-lock.json"; "$NODE_BIN/node" -p process.versions.modules) | sha256sum | cut -d' ' -f1)"
  [ -f "$stamp" ] && have="$(cat "$stamp")"
  if [ "$want" = "$have" ] && [ -d "$OPT_DIR/node_modules" ]; then note "npm dependencies up to date"; return 0; fi
  note "installing npm dependencies (npm ci --omit=dev)"
  (cd "$OPT_DIR" && PATH="$NODE_BIN:$PATH" npm ci --omit=dev --no-audit --no-fund >&2) || die "npm ci failed in $OPT_DIR"
  echo "$want" > "$stamp"
  APP_CHANGED=1
  changed "installed npm dependencies in $OPT_DIR/node_modules"
}

prod_wrapper() {
  # /usr/local/bin/letterbox: the CLI with the system config; as root it drops to the service user,
  # so files it creates (database rows, DKIM keys, backups) stay readable by the service.
  local drop=""
  root_mode || drop="$SVC_USER"
  put_file "$WRAPPER" 0755 - <<EOF
#!/bin/sh
# Installed by Letterbox's install.sh: the letterbox CLI for this installation.
export LETTERBOX_CONFIG="\${LETTERBOX_CONFIG:-$CONFIG}"
if [ -n "$drop" ] && [ "\$(id -u)" = 0 ] && [ -z "\${LETTERBOX_AS_ROOT:-}" ] && id "$drop" >/dev/null 2>&1; then
  cd / && exec runuser -u "$drop" -- "$OPT_DIR/src/bin/letterbox" "\$@"
fi
exec "$OPT_DIR/src/bin/letterbox" "\$@"
EOF
}

# ---- configuration, secrets, data ---------------------------------------------------------------
letterbox_cli() { LETTERBOX_CONFIG="$CONFIG" "$OPT_DIR/src/bin/letterbox" --config "$CONFIG" "$@"; }

# The same as the service user (so SQLite's -wal/-shm files and anything else it creates stay the
# service's); as the caller in --root mode.
letterbox_cli_svc() {
  if ! root_mode && [ "$(id -u)" -eq 0 ] && id "$SVC_USER" >/dev/null 2>&1; then
    (cd / && runuser -u "$SVC_USER" -- env LETTERBOX_CONFIG="$CONFIG" "$OPT_DIR/src/bin/letterbox" --config "$CONFIG" "$@")
  else
    letterbox_cli "$@"
  fi
}

# Upgrading a running service: stop it before 'letterbox init' opens the database (schema
# migrations, each after a backup copy, must not run under the old program), start it again after.
prod_quiesce() {
  [ -f "$CONFIG" ] || return 0
  systemd_running || return 0
  systemctl is-active --quiet letterbox.service || return 0
  if [ "$NO_START" = 1 ]; then
    SKIP_INIT=1
    warn "letterbox.service is running and --no-start was given: not running 'letterbox init' now; the new program (and any schema migration, after a backup copy) takes over at the next 'systemctl restart letterbox'"
    return 0
  fi
  if [ "$APP_CHANGED" = 1 ]; then
    run systemctl stop letterbox.service
    changed "stopped letterbox.service for the upgrade (it is started again below)"
  fi
}

prod_dirs() {
  if [ ! -d "$ETC_DIR" ]; then run mkdir -p "$ETC_DIR"; changed "created $ETC_DIR"; fi
  if [ ! -d "$CERT_DIR" ]; then run mkdir -p "$CERT_DIR"; fi
  if [ ! -d "$DATA_DIR" ]; then run mkdir -p "$DATA_DIR"; changed "created $DATA_DIR"; fi
  run chmod 0750 "$ETC_DIR" "$CERT_DIR" "$DATA_DIR"
  set_owner "root:$SVC_USER" "$ETC_DIR"
  set_owner "$SVC_USER:$SVC_USER" "$CERT_DIR" "$DATA_DIR"
}

prod_init() {
  if [ "$SKIP_INIT" = 1 ]; then [ "$DRY_RUN" = 1 ] || prod_modes; return 0; fi
  local args=(init --hostname "$HOSTNAME_ARG" --data-dir "$DATA_DIR") ip
  for ip in "${IPS[@]+"${IPS[@]}"}"; do args+=(--ip "$ip"); done
  [ -f "$CONFIG" ] || FRESH_CONFIG=1
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] letterbox --config %s %s\n' "$CONFIG" "${args[*]}"
    return 0
  fi
  local before="" after backups b
  before="$(state_checksums)"
  backups="$(migration_backups)"
  letterbox_cli "${args[@]}" >&2 || die "letterbox init failed (see above)"
  # 'letterbox init' applies pending schema migrations, each after a copy of the database: name it.
  while read -r b; do
    [ -n "$b" ] && changed "migrated the database schema; the copy from before is $b (README: Going back to the previous release)"
  done < <(comm -13 <(printf '%s\n' "$backups") <(migration_backups))
  if [ "$FRESH_CONFIG" = 1 ]; then
    changed "wrote $CONFIG for $HOSTNAME_ARG${IPS[*]+ (${IPS[*]})}"
    configure_extras
  else
    note "kept existing config $CONFIG (edit it by hand; re-running never overwrites it)"
    [ -n "$SMARTHOST$ACME_EMAIL" ] && warn "--smarthost/--acme-email apply to a new config only: set [outbound] smarthost / [acme] email in $CONFIG yourself"
    [ -n "${HOSTNAME_ARG:-}" ] && ! grep -q "^hostname = \"$HOSTNAME_ARG\"" "$CONFIG" && warn "the existing config names a different hostname than $HOSTNAME_ARG; it was kept"
  fi
  after="$(state_checksums)"
  [ "$before" != "$after" ] && [ "$FRESH_CONFIG" = 0 ] && changed "created missing secrets, keys or certificates under $DATA_DIR / $CERT_DIR"
  prod_modes
}

toml_str() { local s="$1"; s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }

configure_extras() {
  # Only ever on a config this run created.
  if [ -n "$SMARTHOST" ]; then
    local hp="${SMARTHOST##*@}" cred="" user="" pass=""
    [[ "$SMARTHOST" == *@* ]] && cred="${SMARTHOST%@*}"
    [[ "$hp" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || die "--smarthost $hp: expected HOST:PORT, e.g. smtp.relay.example:587"
    if [ -n "$cred" ]; then user="${cred%%:*}"; [[ "$cred" == *:* ]] && pass="${cred#*:}"; fi
    local lines="smarthost = $(toml_str "$hp")             # relay all outbound mail through this host"
    [ "${hp##*:}" = 465 ] && lines+=$'\n'"smarthost_tls = \"tls\""
    [ -n "$user" ] && lines+=$'\n'"smarthost_user = $(toml_str "$user")"
    if [ -n "$pass" ]; then
      local pwfile="$DATA_DIR/secrets/smarthost-password"
      mkdir -p "$DATA_DIR/secrets"; chmod 0700 "$DATA_DIR/secrets"
      (umask 077; printf '%s\n' "$pass" > "$pwfile")
      lines+=$'\n'"smarthost_password_file = $(toml_str "$pwfile")"
    fi
    awk -v add="$lines" '{print} /^\[outbound\]/ {print add}' "$CONFIG" > "$CONFIG.new" && mv "$CONFIG.new" "$CONFIG"
    changed "configured smarthost $hp"
  fi
  # rspamd's blocklist lookups go through the local unbound (or --resolver): big blocklists refuse public resolvers.
  printf '\n[spam]                           # rspamd + Redis (see README "Spam filtering")\nresolver = [%s]\n' "$(toml_str "${RESOLVER:-127.0.0.1}")" >> "$CONFIG"
  changed "rspamd resolves blocklists through ${RESOLVER:-the local unbound (127.0.0.1)}"
  if [ -n "$ACME_EMAIL" ]; then
    printf '\n[acme]                           # certificates from Let'"'"'s Encrypt (HTTP-01 on port 80)\nenabled = true\nemail = %s\n' "$(toml_str "$ACME_EMAIL")" >> "$CONFIG"
    changed "enabled ACME with contact $ACME_EMAIL"
  fi
}

migration_backups() { { find "$DATA_DIR" -maxdepth 1 -name 'letterbox.db.before-migration-*.bak' 2>/dev/null || true; } | LC_ALL=C sort; }

state_checksums() {
  local f
  for f in "$CONFIG" "$CERT_DIR" "$DATA_DIR/secrets" "$DATA_DIR/dkim"; do
    if [ -e "$f" ]; then find "$f" -type f -print0; fi
  done | LC_ALL=C sort -z | xargs -r -0 sha256sum | sha256sum | cut -d' ' -f1
}

prod_modes() {
  # config 0640 root:letterbox; secrets and keys 0600 owned by the service user; data 0750.
  chmod 0640 "$CONFIG"
  set_owner "root:$SVC_USER" "$CONFIG"
  chmod 0750 "$ETC_DIR" "$CERT_DIR" "$DATA_DIR"
  [ -f "$CERT_DIR/privkey.pem" ] && chmod 0600 "$CERT_DIR/privkey.pem"
  [ -f "$CERT_DIR/fullchain.pem" ] && chmod 0644 "$CERT_DIR/fullchain.pem"
  if [ -d "$DATA_DIR/secrets" ]; then chmod 0700 "$DATA_DIR/secrets"; find "$DATA_DIR/secrets" -type f -exec chmod 0600 {} +; fi
  if [ -d "$DATA_DIR/dkim" ]; then find "$DATA_DIR/dkim" -type d -exec chmod 0700 {} +; find "$DATA_DIR/dkim" -type f -exec chmod 0600 {} +; fi
  if ! root_mode; then
    # The service runs as letterbox, with Dovecot rootless under the same uid: everything under the
    # data dir and the certificates belongs to it ('letterbox init' ran as root).
    find "$DATA_DIR" "$CERT_DIR" \( ! -user "$SVC_USER" -o ! -group "$SVC_USER" \) -exec chown -h "$SVC_USER:$SVC_USER" {} +
  fi
}

# ---- systemd ------------------------------------------------------------------------------------
render_unit() {
  # The unit from systemd/, with paths moved into the --root tree when there is one.
  local src="$1"
  if root_mode; then
    sed -e "s#/opt/letterbox#$ROOT/opt/letterbox#g" -e "s#/etc/letterbox#$ROOT/etc/letterbox#g" -e "s#/var/lib/letterbox#$ROOT/var/lib/letterbox#g" "$src"
  else
    cat "$src"
  fi
}

prod_units() {
  local unit name n_before=${#CHANGES[@]}
  for unit in "$APP_DIR"/systemd/*.service; do
    name="$(basename "$unit")"
    render_unit "$unit" | put_file "$UNIT_DIR/$name" 0644 -
  done
  UNITS_CHANGED=0
  [ "${#CHANGES[@]}" -gt "$n_before" ] && UNITS_CHANGED=1
  if ! command -v systemctl >/dev/null; then warn "no systemctl: units written to $UNIT_DIR but not enabled"; return 0; fi
  if root_mode; then
    run_quiet systemctl --root="$ROOT" enable letterbox.service || warn "systemctl --root=$ROOT enable letterbox.service failed"
  elif systemd_running; then
    run systemctl daemon-reload
    run_quiet systemctl enable letterbox.service
  else
    run_quiet systemctl enable letterbox.service || warn "could not enable letterbox.service offline"
    note "systemd is not running as PID 1 on this machine: letterbox.service $([ "$DRY_RUN" = 1 ] && echo 'would be' || echo 'is') installed and enabled (it starts at the next boot under systemd) but cannot be started now"
  fi
}

prod_start() {
  if [ "$NO_START" = 1 ]; then note "--no-start: not starting letterbox.service"; return 0; fi
  if root_mode; then note "--root: not starting anything (start the tree's program by hand to try it)"; return 0; fi
  if ! systemd_running; then
    note "not starting: systemd is not PID 1 here. To run Letterbox in the foreground with the unit's privileges (e.g. in a container): setpriv --reuid=$SVC_USER --regid=$SVC_USER --init-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service $OPT_DIR/src/bin/letterbox --config $CONFIG serve"
    return 0
  fi
  if systemctl is-active --quiet letterbox.service && [ "$APP_CHANGED" = 0 ] && [ "${UNITS_CHANGED:-0}" = 0 ] && [ "$FRESH_CONFIG" = 0 ]; then
    note "letterbox.service is running the current version: not restarting it"
  else
    [ "${UNITS_CHANGED:-0}" = 1 ] && run systemctl daemon-reload
    run systemctl restart letterbox.service
    changed "started letterbox.service"
  fi
  [ "$DRY_RUN" = 1 ] && return 0
  wait_healthz
}

api_address() { sed -n 's/^api *= *"\([^"]*\)".*/\1/p' "$CONFIG" | head -n1; }

wait_healthz() {
  local addr url i
  addr="$(api_address)"; addr="${addr:-127.0.0.1:8025}"
  url="http://${addr/0.0.0.0/127.0.0.1}/healthz"
  note "waiting for $url"
  for i in $(seq 1 60); do
    if "$NODE_BIN/node" -e "fetch(process.argv[1],{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" "$url" 2>/dev/null; then
      note "Letterbox is up ($url answered)"
      return 0
    fi
    if ! systemctl is-active --quiet letterbox.service && [ "$(systemctl show -p ExecMainStatus --value letterbox.service)" = 78 ]; then
      die "letterbox.service stopped with a configuration error (exit 78): journalctl -u letterbox -n 50; fix $CONFIG, then systemctl restart letterbox"
    fi
    sleep 1
  done
  die "Letterbox did not answer $url within 60 s: journalctl -u letterbox -n 100"
}

# ---- summary ------------------------------------------------------------------------------------
prod_summary() {
  [ "$DRY_RUN" = 1 ] && { say ""; say "dry run: nothing was changed."; return 0; }
  local ip domains d
  say ""
  say "== Letterbox installed: $HOSTNAME_ARG"
  say "   program $OPT_DIR, config $CONFIG, data $DATA_DIR, unit $UNIT_DIR/letterbox.service"
  if [ "${#CHANGES[@]}" -eq 0 ]; then
    say "   nothing changed (already up to date)"
  else
    say "   changes in this run:"; for d in "${CHANGES[@]}"; do say "     - $d"; done
  fi
  say ""
  say "== Ports to open in your firewall (inbound TCP)"
  say "   25 (MX), 587 (submission, STARTTLS), 465 (submissions), 993 (IMAP), 80 and 443 (ACME, MTA-STS)"
  say "   The management API listens on $(api_address) (local only)."
  say ""
  say "== DNS records to publish"
  for ip in "${IPS[@]+"${IPS[@]}"}"; do
    if [[ "$ip" == *:* ]]; then say "   $HOSTNAME_ARG.  AAAA  $ip"; else say "   $HOSTNAME_ARG.  A     $ip"; fi
    say "   PTR of $ip → $HOSTNAME_ARG   (set it at your VPS provider: reverse DNS)"
  done
  domains="$(letterbox_cli_svc --json domain list 2>/dev/null | "$NODE_BIN/node" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{for(const d of JSON.parse(s))console.log(d.name)}catch{}})' || true)"
  if [ -n "$domains" ]; then
    while read -r d; do say ""; say "   -- $d"; letterbox_cli_svc dns "$d" | sed 's/^/   /'; done <<<"$domains"
  else
    say "   (no mail domains yet: 'letterbox domain add example.com' prints each domain's MX, SPF, DKIM and DMARC records)"
  fi
  say ""
  say "== Next steps"
  say "   1. letterbox domain add example.com           # then publish the records it prints"
  say "   2. letterbox mailbox add you@example.com        # prints a generated password once"
  say "   3. letterbox doctor                              # checks ports, TLS, DNS, reverse DNS, Dovecot, disk"
  say "   4. letterbox backup                              # and schedule it (README: Operations)"
  if [ "${#WARNINGS[@]}" -gt 0 ]; then
    say ""; say "== Warnings"; for d in "${WARNINGS[@]}"; do say "   ! $d"; done
  fi
}

# ---- uninstall ----------------------------------------------------------------------------------
prod_uninstall() {
  if ! root_mode && [ "$(id -u)" -ne 0 ]; then die "run as root to uninstall"; fi
  if systemd_running; then
    run_quiet systemctl disable --now letterbox.service || true
  elif command -v systemctl >/dev/null; then
    if root_mode; then run_quiet systemctl --root="$ROOT" disable letterbox.service || true
    else run_quiet systemctl disable letterbox.service || true; fi
  fi
  local unit
  for unit in "$APP_DIR"/systemd/*.service; do
    [ -e "$UNIT_DIR/$(basename "$unit")" ] && { run rm -f "$UNIT_DIR/$(basename "$unit")"; changed "removed $UNIT_DIR/$(basename "$unit")"; }
  done
  systemd_running && run systemctl daemon-reload
  [ -e "$WRAPPER" ] && { run rm -f "$WRAPPER"; changed "removed $WRAPPER"; }
  if [ -d "$OPT_DIR" ]; then
    if [ "$(readlink -f "$APP_DIR")" = "$(readlink -f "$OPT_DIR")" ]; then cd /; fi
    run rm -rf "$OPT_DIR"; changed "removed $OPT_DIR"
  fi
  [ -d "$CACHE_DIR" ] && { run rm -rf "$CACHE_DIR"; changed "removed $CACHE_DIR (compile cache)"; }
  if [ "$PURGE" = 1 ]; then
    [ -d "$ETC_DIR" ] && { run rm -rf "$ETC_DIR"; changed "purged $ETC_DIR (config, certificates)"; }
    [ -d "$DATA_DIR" ] && { run rm -rf "$DATA_DIR"; changed "purged $DATA_DIR (database, secrets, DKIM keys, mail)"; }
    if ! root_mode; then
      id "$SVC_USER" >/dev/null 2>&1 && { run userdel "$SVC_USER"; changed "removed user $SVC_USER"; }
      id "$MAIL_USER" >/dev/null 2>&1 && { run userdel "$MAIL_USER" 2>/dev/null || true; changed "removed user $MAIL_USER"; }
    fi
  else
    say "kept: $ETC_DIR (config, certificates) and $DATA_DIR (database, secrets, DKIM keys, mail); remove them with --uninstall --purge"
  fi
  say "Letterbox uninstalled${DRY_RUN:+}$([ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing was changed)')"
}

prod_main() {
  parse_prod_args "$@"
  if [ "$UNINSTALL" = 1 ]; then prod_uninstall; return 0; fi
  note "Letterbox install$([ "$DRY_RUN" = 1 ] && echo ' (dry run)')$(root_mode && echo " into $ROOT") from $APP_DIR"
  if root_mode && [ "$DRY_RUN" = 0 ]; then mkdir -p "$ROOT"; fi
  [ -f "$CONFIG" ] && note "existing installation found ($CONFIG): upgrading; config, secrets and data are kept"
  preflight
  prod_packages
  prod_disable_system_dovecot
  prod_users
  prod_node
  prod_deploy
  prod_wrapper
  prod_dirs
  prod_quiesce
  prod_init
  prod_units
  prod_start
  prod_summary
}

main() {
  local a
  for a in "$@"; do
    if [ "$a" = --dev ]; then dev_main "$@"; return; fi
  done
  prod_main "$@"
}

dev_main() {
  local mode="" test_tools=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --dev) mode=dev ;;
      --test-tools) test_tools=1 ;;
      -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
    shift
  done
  case "$mode" in
    dev) dev_setup "$test_tools" ;;
  esac
}

main "$@"
