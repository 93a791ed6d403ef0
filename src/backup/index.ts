// `letterbox backup` and `letterbox restore`: one .tar.gz with a manifest (SHA-256 of every file)
// holding a consistent online copy of the SQLite database, everything else under data_dir (secrets,
// DKIM keys, the spool, Dovecot's Maildirs and files), the config file and the TLS certificate.
//
// Consistency: the database is copied with SQLite's online backup API (a snapshot even while
// Letterbox writes). The rest is first staged on the same file system — Maildir message files are
// hard-linked (Dovecot never rewrites them in place; it renames them), everything else is copied —
// then hashed and archived, so the manifest describes exactly what is in the archive.
import { chmodSync, copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, createReadStream, chownSync } from 'node:fs';
import { flushSpamState, spamBackupSkip } from '../spam/manage.ts';
import { createHash } from 'node:crypto';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import type { Config } from '../config/schema.ts';
import { parseHostPort } from '../config/schema.ts';
import { appliedMigrationIds, type DB } from '../db/index.ts';
import { LetterboxError } from '../errors.ts';
import { APP_DIR } from '../config/load.ts';

const run = promisify(execFile);

export const BACKUP_FORMAT = 'letterbox-backup';
export const BACKUP_VERSION = 1;

export interface ManifestFile {
  path: string; // inside the archive, '/'-separated
  size: number;
  sha256: string;
}

export interface Manifest {
  format: typeof BACKUP_FORMAT;
  version: number;
  createdAt: string;
  hostname: string;
  letterboxVersion: string;
  /** Where things came from (restore puts them where the *current* config says). */
  source: { dataDir: string; config: string | null; cert: string; key: string };
  migrations: number[];
  files: ManifestFile[];
}

/** Under data_dir, never archived: the live database (copied separately), runtime state, backups. */
function skipInDataDir(rel: string): boolean {
  const top = rel.split(sep)[0];
  if (top === 'backups' || top.startsWith('.backup-') || top.startsWith('.restore-') || top.startsWith('.before-restore-') || top === 'restored-config.toml') return true;
  if (/^letterbox\.db(-wal|-shm|-journal)?$/.test(rel)) return true;
  if (/^letterbox\.db\..*\.bak$/.test(rel)) return true; // pre-migration copies
  if (rel === join('dovecot', 'run') || rel.startsWith(join('dovecot', 'run') + sep)) return true;
  if (rel === join('dovecot', 'state') || rel.startsWith(join('dovecot', 'state') + sep)) return true;
  if (spamBackupSkip(rel)) return true; // rspamd sockets and caches (issue #14)
  return false;
}

/** Copies src (a directory) into dst: hard links for Maildir message files, copies for the rest. */
function stageTree(src: string, dst: string, rel: string, filter: (rel: string) => boolean): void {
  // data_dir/dovecot and data_dir/mail may be symlinks to where Dovecot can reach them (dovecot/setup.ts).
  const st = rel === 'dovecot' || rel === 'mail' ? statSync(src) : lstatSync(src);
  if (st.isDirectory()) {
    mkdirSync(dst, { recursive: true });
    chmodSync(dst, st.mode & 0o7777);
    if (process.getuid?.() === 0) chownSync(dst, st.uid, st.gid);
    for (const name of readdirSync(src)) {
      const r = rel ? join(rel, name) : name;
      if (filter(r)) continue;
      stageTree(join(src, name), join(dst, name), r, filter);
    }
    return;
  }
  if (!st.isFile()) return; // sockets, fifos, symlinks: runtime artefacts
  const inMaildir = rel.split(sep).includes('Maildir') && !basename(rel).startsWith('dovecot');
  if (inMaildir) {
    try {
      linkSync(src, dst);
      return;
    } catch (err: any) {
      if (err.code === 'ENOENT') return; // moved (new → cur) while we walked: Dovecot's rename
      if (err.code !== 'EXDEV' && err.code !== 'EPERM') throw err;
    }
  }
  try {
    copyFileSync(src, dst);
  } catch (err: any) {
    if (err.code === 'ENOENT') return;
    throw err;
  }
  chmodSync(dst, st.mode & 0o7777);
  if (process.getuid?.() === 0) chownSync(dst, st.uid, st.gid);
}

function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('end', () => res(h.digest('hex')))
      .on('error', rej);
  });
}

async function listFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(root, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

function letterboxVersion(): string {
  try {
    return JSON.parse(readFileSync(join(APP_DIR, 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

export interface BackupResult {
  file: string;
  size: number;
  files: number;
  manifest: Manifest;
}

export async function createBackup(o: { config: Config; configPath: string | null; db: DB; destDir: string; now?: Date }): Promise<BackupResult> {
  const { config } = o;
  const now = o.now ?? new Date();
  const destDir = resolve(o.destDir);
  mkdirSync(destDir, { recursive: true, mode: 0o700 });
  const stamp = now.toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  const file = join(destDir, `letterbox-backup-${config.hostname}-${stamp}.tar.gz`);
  if (existsSync(file)) throw new LetterboxError('conflict', `${file} already exists`);
  // Staging on data_dir's own file system, so Maildir files can be hard links.
  const stage = mkdtempSync(join(config.data_dir, '.backup-'));
  chmodSync(stage, 0o700);
  try {
    const dataStage = join(stage, 'data');
    await flushSpamState(config.data_dir); // Redis's dump.rdb up to date (issue #14)
    stageTree(config.data_dir, dataStage, '', skipInDataDir);
    // The database: SQLite's online backup API, a consistent snapshot while Letterbox runs.
    await o.db.backup(join(dataStage, 'letterbox.db'));
    chmodSync(join(dataStage, 'letterbox.db'), 0o640);
    const check = new Database(join(dataStage, 'letterbox.db'), { readonly: true });
    const migrations = appliedMigrationIds(check);
    check.close();
    if (o.configPath && existsSync(o.configPath)) {
      mkdirSync(join(stage, 'config'));
      copyFileSync(o.configPath, join(stage, 'config', 'letterbox.toml'));
    }
    mkdirSync(join(stage, 'certs'));
    for (const [name, p] of [['cert.pem', config.tls.cert], ['key.pem', config.tls.key]] as const) {
      if (existsSync(p)) {
        copyFileSync(p, join(stage, 'certs', name));
        chmodSync(join(stage, 'certs', name), name === 'key.pem' ? 0o600 : 0o644);
      }
    }
    const files: ManifestFile[] = [];
    for (const rel of (await listFiles(stage)).sort()) {
      const p = join(stage, rel);
      files.push({ path: rel, size: statSync(p).size, sha256: await sha256File(p) });
    }
    const manifest: Manifest = {
      format: BACKUP_FORMAT,
      version: BACKUP_VERSION,
      createdAt: now.toISOString(),
      hostname: config.hostname,
      letterboxVersion: letterboxVersion(),
      source: { dataDir: config.data_dir, config: o.configPath, cert: config.tls.cert, key: config.tls.key },
      migrations,
      files,
    };
    writeFileSync(join(stage, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
    const tmp = `${file}.partial`;
    const members = ['manifest.json', 'data', ...(existsSync(join(stage, 'config')) ? ['config'] : []), 'certs'];
    try {
      await run('tar', ['-C', stage, '-czf', tmp, ...members], { maxBuffer: 10 * 1024 * 1024 });
    } catch (err: any) {
      rmSync(tmp, { force: true });
      throw new LetterboxError('internal_error', `tar failed: ${err.stderr || err.message}`);
    }
    chmodSync(tmp, 0o600); // it holds secrets and private keys
    renameSync(tmp, file);
    return { file, size: statSync(file).size, files: files.length, manifest };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

// ---- restore ------------------------------------------------------------------------------------

function tcpAnswers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host, port });
    const t = setTimeout(() => done(false), timeoutMs);
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      res(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Why we think Letterbox is running on this data (null: it is not). */
export async function runningInstance(config: Config): Promise<string | null> {
  const pidFile = join(config.data_dir, 'dovecot', 'run', 'master.pid');
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (pid > 0) {
      process.kill(pid, 0);
      return `its Dovecot is running (pid ${pid})`;
    }
  } catch {}
  const api = parseHostPort(config.listen.api);
  if (api) {
    const host = api.host === '0.0.0.0' ? '127.0.0.1' : api.host === '::' ? '::1' : api.host;
    if (await tcpAnswers(host, api.port)) return `its API answers on ${config.listen.api}`;
  }
  return null;
}

/** Extracts and verifies an archive into `into`; returns its manifest. Throws on any mismatch. */
export async function verifyArchive(file: string, into: string): Promise<Manifest> {
  const damaged = (why: string) => new LetterboxError('validation_error', `${file} is not a usable Letterbox backup: ${why}; nothing was restored`);
  if (!existsSync(file)) throw new LetterboxError('not_found', `${file}: no such file`);
  try {
    // -p: keep modes (secrets stay 0600); as root, tar also restores owners (e.g. vmail's mail).
    await run('tar', ['-xzpf', file, '-C', into], { maxBuffer: 10 * 1024 * 1024 });
  } catch (err: any) {
    throw damaged(`tar could not extract it (${String(err.stderr || err.message).trim().split('\n')[0]})`);
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(join(into, 'manifest.json'), 'utf8'));
  } catch {
    throw damaged('no readable manifest.json');
  }
  if (manifest.format !== BACKUP_FORMAT) throw damaged('not a Letterbox backup (manifest format)');
  if (manifest.version > BACKUP_VERSION) throw damaged(`format version ${manifest.version} is newer than this Letterbox understands; upgrade Letterbox first`);
  const listed = new Set<string>();
  for (const f of manifest.files) {
    if (f.path.split('/').includes('..') || f.path.startsWith('/')) throw damaged(`unsafe path ${f.path}`);
    listed.add(f.path);
    const p = join(into, f.path);
    let size: number;
    try {
      size = statSync(p).size;
    } catch {
      throw damaged(`${f.path} is missing`);
    }
    if (size !== f.size || (await sha256File(p)) !== f.sha256) throw damaged(`${f.path} does not match its checksum`);
  }
  for (const rel of await listFiles(into)) {
    if (rel !== 'manifest.json' && !listed.has(rel)) throw damaged(`${rel} is not in the manifest`);
  }
  if (!listed.has('data/letterbox.db')) throw damaged('no database in the archive');
  const db = new Database(join(into, 'data', 'letterbox.db'), { readonly: true });
  try {
    const r = db.pragma('integrity_check', { simple: true });
    if (r !== 'ok') throw damaged(`the database fails its integrity check (${r})`);
  } finally {
    db.close();
  }
  return manifest;
}

export interface RestoreResult {
  manifest: Manifest;
  actions: string[];
}

export async function restoreBackup(o: { config: Config; configPath: string | null; file: string; force: boolean; withConfig: boolean; now?: Date }): Promise<RestoreResult> {
  const { config } = o;
  const file = resolve(o.file);
  const running = await runningInstance(config);
  if (running && !o.force) {
    throw new LetterboxError('conflict', `Letterbox is running on ${config.data_dir} (${running}): stop it first (systemctl stop letterbox), or pass --force to replace its data anyway`);
  }
  // Everything happens inside data_dir (the service user can write there, not in its parent) and
  // by renames on one file system: the current contents are moved aside, never deleted.
  mkdirSync(config.data_dir, { recursive: true, mode: 0o750 });
  const stage = mkdtempSync(join(config.data_dir, '.restore-'));
  const actions: string[] = [];
  const stamp = (o.now ?? new Date()).toISOString().replace(/[:.]/g, '-');
  try {
    const manifest = await verifyArchive(file, stage);
    actions.push(`verified ${manifest.files.length} files against the manifest (backup of ${manifest.hostname} from ${manifest.createdAt})`);
    const current = readdirSync(config.data_dir).filter((n) => n !== basename(stage) && !n.startsWith('.before-restore-') && n !== 'backups');
    if (current.length > 0) {
      const aside = join(config.data_dir, `.before-restore-${stamp}`);
      mkdirSync(aside, { mode: 0o700 });
      for (const n of current) renameSync(join(config.data_dir, n), join(aside, n));
      actions.push(`moved the previous contents of ${config.data_dir} to ${aside} (delete it once all is well)`);
    }
    for (const n of readdirSync(join(stage, 'data'))) renameSync(join(stage, 'data', n), join(config.data_dir, n));
    actions.push(`restored ${config.data_dir}`);
    // Certificates, to where the current config wants them.
    for (const [name, dest] of [['cert.pem', config.tls.cert], ['key.pem', config.tls.key]] as const) {
      const src = join(stage, 'certs', name);
      if (!existsSync(src)) continue;
      if (existsSync(dest) && readFileSync(dest).equals(readFileSync(src))) continue;
      mkdirSync(dirname(dest), { recursive: true });
      if (existsSync(dest)) copyFileSync(dest, `${dest}.before-restore-${stamp}`);
      copyFileSync(src, dest);
      chmodSync(dest, name === 'key.pem' ? 0o600 : 0o644);
      actions.push(`restored ${dest}`);
    }
    // The config file: only with --with-config; otherwise left next to the data for comparison.
    const savedConfig = join(stage, 'config', 'letterbox.toml');
    if (existsSync(savedConfig)) {
      const keep = join(config.data_dir, 'restored-config.toml');
      copyFileSync(savedConfig, keep);
      chmodSync(keep, 0o600);
      if (o.withConfig && o.configPath) {
        try {
          if (existsSync(o.configPath)) copyFileSync(o.configPath, `${o.configPath}.before-restore-${stamp}`);
          copyFileSync(keep, o.configPath);
          chmodSync(o.configPath, 0o640);
        } catch (err: any) {
          throw new LetterboxError('unavailable', `data restored, but the config could not be written (${err.code ?? err.message}): copy ${keep} to ${o.configPath} yourself, or run the restore as root (LETTERBOX_AS_ROOT=1 letterbox restore FILE --with-config)`);
        }
        actions.push(`restored the config to ${o.configPath} (the previous one is ${o.configPath}.before-restore-${stamp})`);
      } else {
        actions.push(`kept the current config; the backed-up one is ${keep} (or restore with --with-config)`);
      }
    }
    return { manifest, actions };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

export function defaultBackupDir(config: Config): string {
  return join(config.data_dir, 'backups');
}
