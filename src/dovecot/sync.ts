import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import type { DB } from '../db/index.ts';
import { mailboxLogins } from '../services/mailbox-queries.ts';
import { dovecotPaths, dovecotSeries, type DovecotPaths, type DovecotSeries } from './config.ts';
import { lookupDovecotGid, renderUsersFile, writeDovecotFile } from './users.ts';
import { appPasswordEntries, mailboxesRequiringAppPasswords } from '../services/app-passwords-store.ts';
import { LOCKED_MAIN_PASSWORD, renderAppPasswordsDir, renderAppPasswordsFile } from './app-passwords.ts';

/** The series the files under data_dir/dovecot were last generated for (written by prepareDovecot). */
export function writtenSeries(paths: DovecotPaths): DovecotSeries {
  try {
    return dovecotSeries(readFileSync(paths.series, 'utf8')) ?? '2.3';
  } catch {
    return '2.3';
  }
}

/**
 * Rewrites Dovecot's users file from the database. Call it inside the IMMEDIATE transaction that
 * changed mailboxes: SQLite's write lock then serialises writers across processes (CLI and server),
 * so a stale snapshot can never replace a newer one.
 */
export function syncUsersFile(db: DB, dataDir: string): boolean {
  const rows = mailboxLogins(db);
  const paths = dovecotPaths(dataDir);
  // Device (app) passwords (issue #17): their own file, and the main password locked where required.
  const locked = mailboxesRequiringAppPasswords(db);
  const series = writtenSeries(paths);
  const entries = appPasswordEntries(db);
  const apps = writeDovecotFile(paths.appPasswords, renderAppPasswordsFile(entries));
  if (series === '2.4') syncAppPasswordsDir(paths.appPasswordsDir, renderAppPasswordsDir(entries));
  const users = writeDovecotFile(
    paths.users,
    renderUsersFile(rows.map((r) => ({ ...r, passwordHash: locked.has(r.address) ? LOCKED_MAIN_PASSWORD : r.passwordHash, disabled: r.disabled === 1 })), series),
  );
  return users || apps;
}

/** A folder Dovecot's auth process may enter (group dovecot, 0750; rootless: Dovecot runs as us). */
function dovecotDir(path: string): void {
  mkdirSync(path, { recursive: true });
  chmodSync(path, 0o750);
  const gid = lookupDovecotGid();
  if (gid !== null) {
    try {
      chownSync(path, -1, gid);
    } catch {
      /* rootless */
    }
  }
}

/** Dovecot 2.4's app-password files (<dir>/<login>/<sha256>): written, and stale ones removed. */
function syncAppPasswordsDir(dir: string, files: Map<string, string>): void {
  dovecotDir(dir);
  for (const [rel, content] of files) {
    const sub = join(dir, rel.slice(0, rel.indexOf('/')));
    dovecotDir(sub);
    writeDovecotFile(join(dir, rel), content);
  }
  for (const user of readdirSync(dir)) {
    const sub = join(dir, user);
    let names: string[];
    try {
      names = readdirSync(sub);
    } catch {
      continue;
    }
    for (const n of names) if (!files.has(`${user}/${n}`)) unlinkSync(join(sub, n));
    if (readdirSync(sub).length === 0) rmdirSync(sub);
  }
}

/** How long after a users-file change Dovecot may still answer from the old one (see writeDovecotFile). */
export const USERS_FILE_SETTLE_MS = 5000;

/**
 * True while a change to Dovecot's users file may not have reached Dovecot yet: it re-reads the
 * file when the whole-second mtime changes, checked at most once a second (NOTES), and a writer may
 * set the mtime a second or two ahead. Afterwards, Dovecot not knowing a user is final.
 */
export function usersFileSettling(path: string, now = Date.now()): boolean {
  try {
    return statSync(path).mtimeMs > now - USERS_FILE_SETTLE_MS;
  } catch {
    return true;
  }
}

/**
 * Ends every Dovecot session of `user` (IMAP, ManageSieve; `doveadm kick`). Resolves once doveadm
 * has answered; never rejects (no session, or Dovecot not running, is not an error here).
 */
export function kickUser(opts: { doveadm: string; config: string; user: string }): Promise<{ ok: boolean; output: string }> {
  return new Promise((res) => {
    execFile(opts.doveadm, ['-c', opts.config, 'kick', opts.user], { timeout: 10_000 }, (err, stdout, stderr) => {
      res({ ok: !err, output: `${stdout}${stderr}`.trim().slice(0, 500) });
    });
  });
}
