import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import type { Config } from '../config/schema.ts';
import { LetterboxError } from '../errors.ts';
import { hashPassword } from '../auth/passwords.ts';
import { ensureSecret } from '../secrets.ts';
import { dovecotPaths, dovecotPathsAt, dovecotSeries, renderDovecotConfig, MASTER_USER, type RenderOptions, type DovecotPaths, type DovecotSeries } from './config.ts';
import { writeDovecotFile } from './users.ts';
import type { AuthPolicyTarget } from './login-policy.ts';
import { spamDovecotBlock } from '../spam/component.ts'; // spam learning (issue #14)
import { blockedAt, type Blocked, type NodeStat, type Principal } from './access.ts';
import { lookupUser } from '../util/system-user.ts';

export interface DovecotSetup {
  /** The paths Dovecot uses (after any relocation: see relocate below). */
  paths: DovecotPaths;
  mode: 'root' | 'rootless';
  masterUser: string;
  masterPassword: string;
  series: DovecotSeries;
  /** Set when Dovecot's files and the mail live outside data_dir (symlinked from it). */
  relocatedTo: string | null;
}

function principal(name: string): Principal | null {
  const u = lookupUser(name);
  if (!u) return null;
  let gids = [u.gid];
  try {
    gids = execFileSync('id', ['-G', name], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
  } catch {
    /* primary group only */
  }
  return { name, uid: u.uid, gids };
}

const realStat = (p: string): NodeStat | null => {
  try {
    const st = statSync(p);
    return { mode: st.mode, uid: st.uid, gid: st.gid };
  } catch {
    return null;
  }
};

/** realpath of the longest existing prefix, with the rest appended (the path need not exist yet). */
function realish(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    const up = dirname(p);
    return up === p ? p : join(realish(up), p.slice(up.length + (up.endsWith('/') ? 0 : 1)));
  }
}

/** The version line of `dovecot --version` and its series; series 2.3 when Dovecot cannot be asked. */
export function detectDovecot(binary: string): { version: string | null; series: DovecotSeries } {
  let version: string;
  try {
    version = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 15000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return { version: null, series: '2.3' }; // not installed: the supervisor says so when it starts it
  }
  const series = dovecotSeries(version);
  if (!series) {
    throw new LetterboxError('config_error', `Dovecot ${version} (${binary}): Letterbox writes configuration for Dovecot 2.3 and 2.4 only; install the distribution's package (Debian 12/13, Ubuntu 24.04/26.04) or set dovecot.binary`);
  }
  return { version, series };
}

/**
 * Where Dovecot's files and the mail go when Dovecot's unprivileged users cannot reach data_dir (a
 * checkout under /root run as root): one folder per data_dir, under dovecot.fallback_dir (/var/lib).
 */
export function relocationDir(dataDir: string, fallbackDir: string): string {
  return join(fallbackDir, 'letterbox-dev-' + createHash('sha256').update(dataDir).digest('hex').slice(0, 12));
}

export interface Need {
  who: Principal;
  role: string;
  path: string;
  perms: string;
}

/** Why a Dovecot process cannot reach a path, for the log and the config_error. Pure. */
export function describe(n: Need, b: Blocked): string {
  const what = n.perms.includes('w') ? 'write to' : 'read';
  return `Dovecot's ${n.role} (user ${n.who.name}) cannot ${what} ${n.path}: ${b.at} (mode ${b.mode.toString(8).padStart(4, '0')}, owner uid ${b.owner}) does not give it ${b.lacks === 'x' ? 'search (x)' : b.lacks} permission`;
}

function firstBlocked(needs: Need[]): { need: Need; blocked: Blocked } | null {
  for (const need of needs) {
    const blocked = blockedAt(need.path, need.who, need.perms, realStat);
    if (blocked) return { need, blocked };
  }
  return null;
}

/** Moves folder `from` (if it is a real folder) to `to`, then leaves a symlink at `from`. */
function moveAndLink(from: string, to: string): void {
  let st;
  try {
    st = lstatSync(from);
  } catch {
    st = null;
  }
  if (st?.isSymbolicLink()) rmSync(from);
  else if (st?.isDirectory()) {
    if (existsSync(to) && readdirSync(to).length) renameSync(to, `${to}.before-${Date.now()}`);
    rmSync(to, { recursive: true, force: true });
    try {
      renameSync(from, to);
    } catch (err: any) {
      if (err.code !== 'EXDEV') throw err;
      cpSync(from, to, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
      execFileSync('chown', ['-R', '--reference', from, to]);
      rmSync(from, { recursive: true, force: true });
    }
  } else if (st) {
    throw new LetterboxError('config_error', `${from} is neither a folder nor a symlink; move it away`);
  }
  mkdirSync(to, { recursive: true });
  symlinkSync(to, from);
}

/**
 * Writes Dovecot's generated config and master-user file under data_dir/dovecot and prepares the
 * folders with the ownership its processes need. Idempotent; called by `serve` and `init`.
 *
 * As root, Dovecot's auth process runs as `dovecot` and mail is stored as the mail user: both must
 * reach their files. When data_dir sits where they cannot (e.g. a clone in /root, mode 0700),
 * data_dir/dovecot and data_dir/mail move to relocationDir(data_dir) and become symlinks to it, so
 * every path under data_dir still works; when even that cannot help, a config_error (exit 78) names
 * the path, the user and the fix. Only with `relocate` (serve).
 */
export async function prepareDovecot(config: Config, opts: { log?: { warn(o: object, m: string): void }; relocate?: boolean; authPolicy?: AuthPolicyTarget } = {}): Promise<DovecotSetup> {
  // Gather: who we are, who stores the mail, which Dovecot.
  const isRoot = process.getuid?.() === 0;
  const me = userInfo();
  const { mailUser, ids } = mailIdentity(isRoot, config.dovecot.mail_user, isRoot ? lookupUser(config.dovecot.mail_user) : null, me);
  const { series } = detectDovecot(config.dovecot.binary);
  mkdirSync(config.data_dir, { recursive: true });
  // Dovecot's processes (mail uid, auth as 'dovecot') must traverse data_dir, not list it.
  if (isRoot) chmodSync(config.data_dir, statSync(config.data_dir).mode & 0o777 | 0o711);

  const logical = dovecotPaths(config.data_dir);
  let paths = dovecotPathsAt(realish(logical.dir), realish(logical.mailRoot));
  let relocatedTo: string | null = null;
  // Only `serve` (which runs Dovecot as root right after) moves files and checks; `init` may prepare a
  // data_dir for a service that runs as another user, and must not move it anywhere.
  const needs = isRoot && opts.relocate ? accessNeeds(principal('dovecot'), principal(mailUser)!) : null;
  if (needs) ({ paths, relocatedTo } = relocateIfBlocked(config, logical, paths, needs, opts.log));
  prepareFolders(paths, isRoot ? ids : null);
  if (needs) {
    // What still stops them (e.g. dovecot.fallback_dir inside a private folder): stop here, exit 78.
    const problem = firstBlocked(needs(paths));
    if (problem) throw new LetterboxError('config_error', stillBlockedMessage(problem.need, problem.blocked));
  }

  const masterPassword = ensureSecret(config.data_dir, 'dovecot-master');
  await writeDovecotFiles(paths, masterPassword, series, renderOptions(config, paths, { isRoot, mailUser, ids, clientUser: me.username, series, authPolicy: opts.authPolicy }, spamDovecotBlock(config)));
  return { paths, mode: isRoot ? 'root' : 'rootless', masterUser: MASTER_USER, masterPassword, series, relocatedTo };
}

/**
 * Who stores the mail: as root the configured dovecot.mail_user (which must exist and not be
 * root), else the current user. Pure: `found` is that user's lookup (root only), `me` the process's user.
 */
export function mailIdentity(isRoot: boolean, configured: string, found: { uid: number; gid: number } | null, me: { username: string; uid: number; gid: number }): { mailUser: string; ids: { uid: number; gid: number } } {
  if (!isRoot) return { mailUser: me.username, ids: { uid: me.uid, gid: me.gid } };
  if (!found) {
    throw new LetterboxError('config_error', `dovecot.mail_user: user "${configured}" does not exist; create it (useradd --system --shell /usr/sbin/nologin ${configured}) or run install.sh`);
  }
  if (found.uid === 0) throw new LetterboxError('config_error', 'dovecot.mail_user: mail must not be stored as root; name an unprivileged user');
  return { mailUser: configured, ids: { uid: found.uid, gid: found.gid } };
}

/** What Dovecot's processes must reach under the given paths: the auth process (when it has a user of its own) and the mail user. Pure. */
export function accessNeeds(auth: Principal | null, mail: Principal): (p: DovecotPaths) => Need[] {
  return (p) => [
    ...(auth ? [{ who: auth, role: 'auth process', path: p.users, perms: 'r' }] : []),
    { who: mail, role: 'mail processes', path: p.mailRoot, perms: 'rwx' },
    { who: mail, role: 'mail processes', path: p.baseDir, perms: '' },
  ];
}

const FIX = 'Fix: set data_dir to a folder outside private directories (e.g. /var/lib/letterbox), run Letterbox as an unprivileged user (Dovecot then runs as that user), or set dovecot.fallback_dir to';

/** The config_error when Dovecot's users still cannot reach their files after any move. Pure. */
export function stillBlockedMessage(need: Need, blocked: Blocked): string {
  return `${describe(need, blocked)}. ${FIX} a folder those users can traverse`;
}

/** The config_error when moving Dovecot's files out of data_dir failed. Pure. */
export function relocationFailedMessage(before: string, target: string, err: { code?: string; message: string }): string {
  return `${before}; moving Dovecot's files to ${target} failed (${err.code ?? err.message}). ${FIX} a writable folder everyone can traverse`;
}

/**
 * When Dovecot's users cannot reach their files under data_dir, moves data_dir/dovecot and
 * data_dir/mail to relocationDir(data_dir) and leaves symlinks; notices an earlier move. rspamd and
 * Redis (issue #14) run as their own user too: their folders go to the same place.
 */
function relocateIfBlocked(config: Config, logical: DovecotPaths, paths: DovecotPaths, needs: (p: DovecotPaths) => Need[], log: { warn(o: object, m: string): void } | undefined): { paths: DovecotPaths; relocatedTo: string | null } {
  let relocatedTo: string | null = null;
  const problem = firstBlocked(needs(paths));
  if (problem) {
    const target = relocationDir(realish(config.data_dir), config.dovecot.fallback_dir);
    const before = describe(problem.need, problem.blocked);
    try {
      mkdirSync(target, { recursive: true, mode: 0o711 });
      chmodSync(target, 0o711);
      writeFileSync(join(target, 'DATA_DIR'), `Dovecot's files and the mail of the Letterbox data_dir ${config.data_dir} (symlinked from there)\n`);
      moveAndLink(logical.dir, join(target, 'dovecot'));
      moveAndLink(logical.mailRoot, join(target, 'mail'));
    } catch (err: any) {
      if (err instanceof LetterboxError) throw err;
      throw new LetterboxError('config_error', relocationFailedMessage(before, target, err));
    }
    relocatedTo = target;
    paths = dovecotPathsAt(realish(logical.dir), realish(logical.mailRoot));
    log?.warn({ dataDir: config.data_dir, movedTo: target, reason: before }, `Dovecot's users cannot reach data_dir: its Dovecot files and mail are kept in ${target} (symlinked from data_dir)`);
  } else if (lstatSafe(logical.dir)?.isSymbolicLink()) {
    relocatedTo = dirname(paths.dir);
  }
  if (relocatedTo) {
    for (const d of ['rspamd', 'redis']) {
      const from = join(config.data_dir, d);
      if (!lstatSafe(from)?.isSymbolicLink()) moveAndLink(from, join(relocatedTo, d));
    }
  }
  return { paths, relocatedTo };
}

/** Dovecot's folders, with the modes its processes need; the mail root owned by the mail user (`owner`, as root). */
function prepareFolders(paths: DovecotPaths, owner: { uid: number; gid: number } | null): void {
  mkdirSync(paths.dir, { recursive: true });
  chmodSync(paths.dir, 0o755); // explicit: the process umask (027) must not lock Dovecot's auth out
  mkdirSync(paths.stateDir, { recursive: true, mode: 0o750 });
  if (!existsSync(paths.mailRoot)) mkdirSync(paths.mailRoot, { mode: 0o700 });
  if (owner) chownSync(paths.mailRoot, owner.uid, owner.gid);
}

/** The options Dovecot's config is rendered with. Pure. */
export function renderOptions(
  config: Config,
  paths: DovecotPaths,
  who: { isRoot: boolean; mailUser: string; ids: { uid: number; gid: number }; clientUser: string; series: DovecotSeries; authPolicy: AuthPolicyTarget | undefined },
  spamBlock: ReturnType<typeof spamDovecotBlock>,
): RenderOptions {
  return {
    config, paths, mode: who.isRoot ? 'root' : 'rootless', mailUser: who.mailUser, mailUid: who.ids.uid, mailGid: who.ids.gid, clientUser: who.clientUser, series: who.series, authPolicy: who.authPolicy,
    // Spam learning from Junk moves (IMAPSieve).
    extraBlocks: spamBlock ? [{ name: 'spam learning', ...spamBlock }] : [],
  };
}

/** The master-user file, the empty users files, the series mark and the config. */
async function writeDovecotFiles(paths: DovecotPaths, masterPassword: string, series: DovecotSeries, renderOpts: RenderOptions): Promise<void> {
  // The master hash is regenerated only when the file is missing (argon2 salts differ per run).
  if (!existsSync(paths.masterUsers)) {
    writeDovecotFile(paths.masterUsers, `${MASTER_USER}:${await hashPassword(masterPassword)}\n`);
  }
  if (!existsSync(paths.users)) writeDovecotFile(paths.users, '# Generated by Letterbox from its database - do not edit.\n');
  if (!existsSync(paths.appPasswords)) writeDovecotFile(paths.appPasswords, '# Generated by Letterbox from its database (app passwords) - do not edit.\n');
  writeDovecotFile(paths.series, `${series}\n`);
  writeDovecotFile(paths.config, renderDovecotConfig(renderOpts));
}

function lstatSafe(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}
