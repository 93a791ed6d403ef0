import { readFileSync } from 'node:fs';
import type { DB } from '../db/index.ts';
import { dovecotPaths, dovecotSeries, type DovecotPaths, type DovecotSeries } from './config.ts';
import { renderUsersFile, writeDovecotFile } from './users.ts';

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
  const rows = db
    .prepare('SELECT m.address, m.password_hash AS passwordHash, m.quota_bytes AS quotaBytes, m.disabled FROM mailboxes m')
    .all() as { address: string; passwordHash: string; quotaBytes: number; disabled: number }[];
  const paths = dovecotPaths(dataDir);
  return writeDovecotFile(
    paths.users,
    renderUsersFile(rows.map((r) => ({ ...r, disabled: r.disabled === 1 })), writtenSeries(paths)),
  );
}
