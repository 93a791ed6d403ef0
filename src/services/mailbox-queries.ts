// Reads of the mailboxes table for other modules (Dovecot's users file, the submission listener
// and acceptOutbound); the table is written by src/services/mailboxes.ts only. Kept apart from it
// because src/services/mailboxes.ts imports src/dovecot/sync.ts, which needs mailboxLogins.
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';

/** Every mailbox's login data, for Dovecot's users file (src/dovecot/sync.ts). */
export function mailboxLogins(db: DB): { address: string; passwordHash: string; quotaBytes: number; disabled: number }[] {
  return db.prepare('SELECT m.address, m.password_hash AS passwordHash, m.quota_bytes AS quotaBytes, m.disabled FROM mailboxes m').all() as { address: string; passwordHash: string; quotaBytes: number; disabled: number }[];
}

/** Whether a mailbox may send now: its own disabled flag and its domain's outbound switch (undefined: no such mailbox). */
export function sendingState(db: DB, mailboxId: string): { disabled: number; outbound_enabled: number } | undefined {
  return stmt(db, 'SELECT m.disabled, d.outbound_enabled FROM mailboxes m JOIN domains d ON d.id = m.domain_id WHERE m.id = ?').get(mailboxId) as { disabled: number; outbound_enabled: number } | undefined;
}

/** The stored password hash of a mailbox (SMTP AUTH re-checks it), if the mailbox exists. */
export function passwordHashOf(db: DB, mailboxId: string): string | undefined {
  return (db.prepare('SELECT password_hash FROM mailboxes WHERE id = ?').get(mailboxId) as { password_hash: string } | undefined)?.password_hash;
}

/** What routing needs of a mailbox (by exact address), if it exists. */
export function mailboxForRouting(db: DB, address: string): { id: string; disabled: number; quota_bytes: number } | undefined {
  return stmt(db, 'SELECT id, disabled, quota_bytes FROM mailboxes WHERE address = ?').get(address) as { id: string; disabled: number; quota_bytes: number } | undefined;
}
