import type { DB } from '../db/index.ts';
import { mailboxLogins } from '../services/mailbox-queries.ts';
import { dovecotPaths } from './config.ts';
import { renderUsersFile, writeDovecotFile } from './users.ts';

/**
 * Rewrites Dovecot's users file from the database. Call it inside the IMMEDIATE transaction that
 * changed mailboxes: SQLite's write lock then serialises writers across processes (CLI and server),
 * so a stale snapshot can never replace a newer one.
 */
export function syncUsersFile(db: DB, dataDir: string): boolean {
  const rows = mailboxLogins(db);
  return writeDovecotFile(
    dovecotPaths(dataDir).users,
    renderUsersFile(rows.map((r) => ({ ...r, disabled: r.disabled === 1 }))),
  );
}
