// The api_idempotency table (Idempotency-Key of POST /mailboxes/{id}/send): every statement on it.
import type { DB } from '../db/index.ts';

const DAY = 24 * 3600 * 1000;

export interface IdemRow {
  request_hash: string;
  status: number | null;
  response: string | null;
  created_at: number;
}

/**
 * Claims (key, Idempotency-Key) for a request with this body hash, after dropping claims older than
 * a day. Returns null when claimed now, else the earlier claim's row.
 */
export function claimIdempotencyKey(db: DB, keyId: string, idem: string, hash: string, now: number): IdemRow | null {
  db.prepare('DELETE FROM api_idempotency WHERE created_at < ?').run(now - DAY);
  const claimed = db.prepare('INSERT OR IGNORE INTO api_idempotency (key_id, idem_key, request_hash, created_at) VALUES (?, ?, ?, ?)').run(keyId, idem, hash, now).changes === 1;
  if (claimed) return null;
  return db.prepare('SELECT request_hash, status, response, created_at FROM api_idempotency WHERE key_id = ? AND idem_key = ?').get(keyId, idem) as IdemRow;
}

/** Stores the answer replayed to later requests with the same key. */
export function completeIdempotencyKey(db: DB, keyId: string, idem: string, status: number, response: string): void {
  db.prepare('UPDATE api_idempotency SET status = ?, response = ? WHERE key_id = ? AND idem_key = ?').run(status, response, keyId, idem);
}

/** Nothing was sent: the key may be used again. */
export function releaseIdempotencyKey(db: DB, keyId: string, idem: string): void {
  db.prepare('DELETE FROM api_idempotency WHERE key_id = ? AND idem_key = ? AND status IS NULL').run(keyId, idem);
}
