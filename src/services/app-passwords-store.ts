// The app_passwords and app_password_required tables: the only SQL of device (app) passwords.
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';

export interface AppPasswordRow {
  id: string;
  mailboxId: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
  lastUsedProtocol: string | null;
}

const COLS = 'id, mailbox_id AS mailboxId, name, created_at AS createdAt, last_used_at AS lastUsedAt, last_used_ip AS lastUsedIp, last_used_protocol AS lastUsedProtocol';

export function insertAppPassword(db: DB, r: { id: string; mailboxId: string; name: string; hash: string; createdAt: string }): void {
  db.prepare('INSERT INTO app_passwords (id, mailbox_id, name, hash, created_at) VALUES (?, ?, ?, ?, ?)').run(r.id, r.mailboxId, r.name, r.hash, r.createdAt);
}

export function listAppPasswords(db: DB, mailboxId: string): AppPasswordRow[] {
  return db.prepare(`SELECT ${COLS} FROM app_passwords WHERE mailbox_id = ? ORDER BY created_at, id`).all(mailboxId) as AppPasswordRow[];
}

export function countAppPasswords(db: DB, mailboxId: string): number {
  return (db.prepare('SELECT count(*) AS n FROM app_passwords WHERE mailbox_id = ?').get(mailboxId) as { n: number }).n;
}

export function findAppPassword(db: DB, mailboxId: string, idOrName: string): AppPasswordRow | undefined {
  return db.prepare(`SELECT ${COLS} FROM app_passwords WHERE mailbox_id = ? AND (id = ? OR name = ?) ORDER BY created_at LIMIT 1`).get(mailboxId, idOrName, idOrName) as AppPasswordRow | undefined;
}

export function deleteAppPassword(db: DB, id: string): boolean {
  return db.prepare('DELETE FROM app_passwords WHERE id = ?').run(id).changes > 0;
}

/** The app password of this mailbox with this hash (SMTP AUTH's check), if any. */
export function appPasswordByHash(db: DB, mailboxId: string, hash: string): { id: string; lastUsedAt: string | null } | undefined {
  return stmt(db, 'SELECT id, last_used_at AS lastUsedAt FROM app_passwords WHERE mailbox_id = ? AND hash = ?').get(mailboxId, hash) as { id: string; lastUsedAt: string | null } | undefined;
}

/** Records a use, unless one was recorded less than a minute ago (one write a minute at most). */
export function touchAppPassword(db: DB, id: string, at: string, before: string, ip: string, protocol: string): boolean {
  return (
    stmt(db, 'UPDATE app_passwords SET last_used_at = ?, last_used_ip = ?, last_used_protocol = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)').run(at, ip, protocol, id, before).changes > 0
  );
}

/** Every app password of every enabled mailbox, for Dovecot's app-passwords file. */
export function appPasswordEntries(db: DB): { address: string; id: string; hash: string }[] {
  return db.prepare('SELECT m.address, a.id, a.hash FROM app_passwords a JOIN mailboxes m ON m.id = a.mailbox_id WHERE m.disabled = 0 ORDER BY m.address, a.id').all() as { address: string; id: string; hash: string }[];
}

export function appPasswordsRequired(db: DB, mailboxId: string): boolean {
  return stmt(db, 'SELECT 1 FROM app_password_required WHERE mailbox_id = ?', { pluck: true }).get(mailboxId) !== undefined;
}

/** Addresses of the mailboxes whose main password is refused for logins. */
export function mailboxesRequiringAppPasswords(db: DB): Set<string> {
  return new Set(db.prepare('SELECT m.address FROM app_password_required r JOIN mailboxes m ON m.id = r.mailbox_id').pluck().all() as string[]);
}

export function setAppPasswordsRequired(db: DB, mailboxId: string, required: boolean): void {
  if (required) db.prepare('INSERT OR IGNORE INTO app_password_required (mailbox_id) VALUES (?)').run(mailboxId);
  else db.prepare('DELETE FROM app_password_required WHERE mailbox_id = ?').run(mailboxId);
}
