import { readFileSync, statSync } from 'node:fs';
import { execFile } from 'node:child_process';
import type { DB } from '../db/index.ts';
import { mailboxLogins } from '../services/mailbox-queries.ts';
import { dovecotPaths, dovecotSeries, type DovecotPaths, type DovecotSeries } from './config.ts';
import { renderUsersFile, writeDovecotFile } from './users.ts';
import { appPasswordEntries, mailboxesRequiringAppPasswords } from '../services/app-passwords-store.ts';
import { LOCKED_MAIN_PASSWORD, renderAppPasswordsFile } from './app-passwords.ts';

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
  const apps = writeDovecotFile(paths.appPasswords, renderAppPasswordsFile(appPasswordEntries(db)));
  const users = writeDovecotFile(
    paths.users,
    renderUsersFile(rows.map((r) => ({ ...r, passwordHash: locked.has(r.address) ? LOCKED_MAIN_PASSWORD : r.passwordHash, disabled: r.disabled === 1 })), writtenSeries(paths)),
  );
  return users || apps;
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
