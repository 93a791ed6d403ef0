#!/usr/bin/env bash
# Builds (once) and prints the path of a Debian 13 (trixie) root with Dovecot 2.4, for the Dovecot 2.4
# integration tests (test/debian13/dovecot24.test.ts). These machines run Debian 12, but Debian's
# registry also serves trixie: debootstrap --variant=minbase (about 3 minutes), then
# dovecot-imapd dovecot-lmtpd dovecot-sieve dovecot-managesieved (ManageSieve) and rspamd (for its
# rspamc, which the spam-learning Sieve pipe runs inside the root) inside it (service starts
# forbidden by a policy-rc.d). A cached root that lacks one of them gets it installed.
#
#   test/debian13/setup.sh            build or reuse $LB_TRIXIE_ROOT (default
#                                     /var/cache/letterbox-ci/trixie); prints the root's path
#   test/debian13/setup.sh --wrappers DIR   also writes DIR/dovecot, doveadm, doveconf and sievec: run the root's
#                                     Dovecot 2.4 as if installed here (see below)
#
# The root's system users dovecot, dovenull and vmail get this machine's uids and gids, so that
# files Letterbox writes on the host (the users file, group dovecot; the mail, owned by vmail) mean
# the same inside. The wrappers run the root's binary in a private mount namespace where the host's
# /tmp (where the tests keep their data) is bind-mounted at the same paths (and /proc, /dev), so every path in a
# config generated on the host names the same file inside; the namespace, and with it every mount,
# goes away with the process. Needs root. Cached: a root whose marker is current is reused.
set -euo pipefail
ROOT="${LB_TRIXIE_ROOT:-/var/cache/letterbox-ci/trixie}"
MARK="$ROOT/.letterbox-root"
PACKAGES="dovecot-imapd dovecot-lmtpd dovecot-sieve dovecot-managesieved rspamd"
log() { printf 'debian13/setup.sh: %s\n' "$*" >&2; }
die() { printf 'debian13/setup.sh: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot)"

# The mirror apt already uses here (the first Debian URI of its sources), else Debian's own.
mirror() {
  local m
  m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -Eo 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ')" || true
  echo "${m:-http://deb.debian.org/debian}"
}

ids() { # the host's ids of the users the root must share
  local u
  for u in dovecot dovenull vmail; do
    printf '%s:%s:%s ' "$u" "$(id -u "$u" 2>/dev/null || echo -)" "$(id -g "$u" 2>/dev/null || echo -)"
  done
}

in_root() { chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "${@:2}"; }

# Gives the root's system users the host's ids (before the packages create them with others).
align_users() {
  local dir="$1" u uid gid
  for u in dovecot dovenull vmail; do
    uid="$(id -u "$u" 2>/dev/null)" || die "no user $u on this machine: run 'bash install.sh --dev' as root first (it installs Dovecot and creates vmail)"
    gid="$(id -g "$u")"
    if ! in_root "$dir" getent group "$u" >/dev/null; then in_root "$dir" groupadd --system -g "$gid" "$u"
    elif [ "$(in_root "$dir" getent group "$u" | cut -d: -f3)" != "$gid" ]; then in_root "$dir" groupmod -g "$gid" "$u"; fi
    if ! in_root "$dir" getent passwd "$u" >/dev/null; then
      in_root "$dir" useradd --system -u "$uid" -g "$gid" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
    elif [ "$(in_root "$dir" id -u "$u")" != "$uid" ]; then in_root "$dir" usermod -u "$uid" -g "$gid" "$u"; fi
  done
}

# Daemons package scripts started in the shared cached root (parent: init). Tests' Dovecots run
# there too, but as children of their test process: they are left alone.
stop_root_daemons() {
  local p n=0
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && [ "$(awk '/^PPid:/{print $2}' "$p/status" 2>/dev/null)" = 1 ]; then kill "${p#/proc/}" 2>/dev/null && n=$((n + 1)); fi
  done
  [ "$n" -eq 0 ] || { log "stopped $n daemon(s) the packages started inside the root"; sleep 1; }
}

stop_root_processes() { # processes (started by this script) whose root directory is $1
  local p n=0
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$1" ]; then kill "${p#/proc/}" 2>/dev/null && n=$((n + 1)); fi
  done
  [ "$n" -eq 0 ] || { log "stopped $n process(es) the packages started inside the root"; sleep 1; }
}

build() {
  local tmp="$ROOT.tmp-$$"
  rm -rf "$tmp"; mkdir -p "$(dirname "$ROOT")"
  log "building a Debian 13 root in $ROOT from $(mirror) (debootstrap, about 3 minutes)"
  debootstrap --variant=minbase trixie "$tmp" "$(mirror)" >&2 || { rm -rf "$tmp"; die "debootstrap failed"; }
  printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  align_users "$tmp"
  mount --bind /proc "$tmp/proc"
  local rc=0
  { in_root "$tmp" apt-get update -qq && in_root "$tmp" apt-get install -y -qq --no-install-recommends $PACKAGES; } >&2 || rc=$?
  in_root "$tmp" apt-get clean || true
  # The package's scripts started its system Dovecot inside the root despite the policy-rc.d (seen
  # with 2.4.1): stop whatever runs there, and drop its runtime files.
  stop_root_processes "$tmp"
  rm -rf "$tmp/run/dovecot"
  umount "$tmp/proc"
  [ "$rc" -eq 0 ] || { rm -rf "$tmp"; die "apt-get install $PACKAGES in the trixie root failed"; }
  rm -rf "$ROOT"; mv "$tmp" "$ROOT"
}

write_wrappers() {
  local dir="$1" name
  mkdir -p "$dir"
  for name in dovecot doveadm doveconf sievec; do
    bin="/usr/bin/$name"; [ "$name" = dovecot ] && bin=/usr/sbin/dovecot
    cat > "$dir/$name" <<WRAP
#!/bin/sh
# Runs the Debian 13 root's $name (Dovecot 2.4) with this machine's /tmp (and /dev, /proc) at the
# same paths (written by test/debian13/setup.sh). A private mount namespace: nothing outlives it.
exec unshare --mount --propagation private /bin/sh -c '
  r=\$0; b=\$1; shift
  for d in /tmp /dev /proc; do [ -d "\$d" ] && mkdir -p "\$r\$d" && mount --rbind "\$d" "\$r\$d"; done
  exec chroot "\$r" "\$b" "\$@"' "$ROOT" "$bin" "\$@"
WRAP
    chmod 755 "$dir/$name"
  done
}

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
command -v debootstrap >/dev/null || { log "installing debootstrap"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2; }
if [ -f "$MARK" ] && [ -x "$ROOT/usr/sbin/dovecot" ]; then
  log "reusing the cached root $ROOT"
  # A root cached before a package joined the list: install what it lacks.
  missing=""
  for p in $PACKAGES; do in_root "$ROOT" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "installing$missing in the cached root"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    mount --bind /proc "$ROOT/proc"
    rc=0
    { in_root "$ROOT" apt-get update -qq && in_root "$ROOT" apt-get install -y -qq --no-install-recommends $missing; } >&2 || rc=$?
    in_root "$ROOT" apt-get clean || true
    stop_root_daemons "$ROOT"
    umount "$ROOT/proc"
    [ "$rc" -eq 0 ] || die "apt-get install$missing in the cached trixie root failed"
  fi
else
  build
fi
# Ids may differ from the ones the cached root was built with (another machine): align them again.
if [ "$(cat "$MARK" 2>/dev/null)" != "$(ids)" ]; then
  align_users "$ROOT"
  # Files the packages created for these users follow them.
  chroot "$ROOT" /bin/sh -c 'chown -R dovecot:dovecot /var/lib/dovecot 2>/dev/null; true'
  ids > "$MARK"
fi
v="$(chroot "$ROOT" /usr/sbin/dovecot --version)"
case "$v" in 2.4.*) log "Dovecot $v in $ROOT" ;; *) die "the root's Dovecot is $v, not 2.4" ;; esac
if [ "${1:-}" = --wrappers ]; then
  [ -n "${2:-}" ] || die "--wrappers needs a directory"
  write_wrappers "$2"
fi
echo "$ROOT"
