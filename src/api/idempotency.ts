// Idempotency-Key claims of POST /mailboxes/{id}/send (table api_idempotency): one row per API key
// and Idempotency-Key, kept 24 hours. A row without a status is a request in progress; it records
// the Message-ID the send will use, so that after a crash the claim can be settled from the queue.
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';

export interface IdemClaim {
  requestHash: string;
  /** null while the first request is in progress. */
  status: number | null;
  response: string | null;
  createdAt: number;
}

/** Drops claims older than `before` (ms). */
export function pruneClaims(db: DB, before: number): void {
  stmt(db, 'DELETE FROM api_idempotency WHERE created_at < ?').run(before);
}

/** Claims `idemKey` for this request; false when it is already claimed (see getClaim). */
export function claimKey(db: DB, keyId: string, idemKey: string, requestHash: string, now: number, messageId: string): boolean {
  return stmt(db, 'INSERT OR IGNORE INTO api_idempotency (key_id, idem_key, request_hash, created_at, message_id) VALUES (?, ?, ?, ?, ?)').run(keyId, idemKey, requestHash, now, messageId).changes === 1;
}

export function getClaim(db: DB, keyId: string, idemKey: string): IdemClaim | null {
  const r = stmt(db, 'SELECT request_hash, status, response, created_at FROM api_idempotency WHERE key_id = ? AND idem_key = ?').get(keyId, idemKey) as
    | { request_hash: string; status: number | null; response: string | null; created_at: number }
    | undefined;
  return r ? { requestHash: r.request_hash, status: r.status, response: r.response, createdAt: r.created_at } : null;
}

/** Records the response of the request that holds the claim. */
export function completeClaim(db: DB, keyId: string, idemKey: string, status: number, response: unknown): void {
  stmt(db, 'UPDATE api_idempotency SET status = ?, response = ? WHERE key_id = ? AND idem_key = ?').run(status, JSON.stringify(response), keyId, idemKey);
}

/** Gives the key back (nothing was sent): a retry with it runs again. */
export function releaseClaim(db: DB, keyId: string, idemKey: string): void {
  stmt(db, 'DELETE FROM api_idempotency WHERE key_id = ? AND idem_key = ? AND status IS NULL').run(keyId, idemKey);
}

/**
 * Settles the claims a previous process left in progress (it died mid-request: no request can be
 * in progress before the API listens). The outbound queue is the record of what was accepted: the
 * send path queues every recipient durably before anything is delivered, so a message with queue
 * entries was accepted — its claim gets the response the request would have given (replayed with
 * `Idempotent-Replayed: true`, `sentCopy` null) — and a message without any was never sent: its
 * claim is released, so a retry with the same key sends it.
 */
export function recoverClaims(db: DB): { resolved: number; released: number } {
  const rows = db.prepare('SELECT key_id, idem_key, message_id FROM api_idempotency WHERE status IS NULL').all() as { key_id: string; idem_key: string; message_id: string | null }[];
  let resolved = 0;
  let released = 0;
  for (const r of rows) {
    const msg = r.message_id
      ? (db.prepare('SELECT id, sandbox FROM outbound_messages WHERE message_id = ? ORDER BY created_at DESC LIMIT 1').get(r.message_id) as { id: string; sandbox: number } | undefined)
      : undefined;
    const entries = msg ? (db.prepare('SELECT id, recipient, status FROM outbound_queue WHERE message_id = ? ORDER BY id').all(msg.id) as { id: string; recipient: string; status: string }[]) : [];
    const live = entries.filter((e) => e.status !== 'cancelled');
    if (!msg || live.length === 0) {
      releaseClaim(db, r.key_id, r.idem_key);
      released++;
      continue;
    }
    const sandbox = msg.sandbox === 1;
    const accepted = live.map((e) => ({ recipient: e.recipient, status: sandbox ? 'sandbox' : e.status === 'delivered' ? 'delivered' : 'queued', queueId: e.id }));
    completeClaim(db, r.key_id, r.idem_key, 200, { messageId: r.message_id, accepted, rejected: [], queueIds: live.map((e) => e.id), sandbox, sentCopy: null });
    resolved++;
  }
  return { resolved, released };
}
