// The queue's tables: listing, inspection and operator actions (shared by the CLI, the API and
// the queue engine). Times are ms since the epoch.
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import { LetterboxError } from '../errors.ts';
import { normalizeDomain } from '../util/address.ts';

export interface QueueEntry {
  id: string;
  messageId: string;
  recipient: string;
  domain: string;
  from: string;
  status: 'queued' | 'inflight' | 'delivered' | 'bounced' | 'cancelled';
  attempts: number;
  nextAttemptAt: string | null;
  lastCode: number | null;
  lastReply: string | null;
  origin: string;
  sandbox: boolean;
  messageIdHeader: string | null;
  mailboxId: string | null;
  size: number;
  createdAt: string;
  updatedAt: string;
}

export interface Attempt {
  at: string;
  mx: string | null;
  ip: string | null;
  sourceIp: string | null;
  tlsVersion: string | null;
  tlsCipher: string | null;
  code: number | null;
  reply: string | null;
  outcome: string;
  transcript: string | null;
}

const SELECT = `SELECT q.*, m.mail_from, m.origin, m.sandbox, m.message_id AS mid_header, m.mailbox_id, m.size
  FROM outbound_queue q JOIN outbound_messages m ON m.id = q.message_id`;

const iso = (n: number | null) => (n === null || n === undefined ? null : new Date(n).toISOString());

function toEntry(r: any): QueueEntry {
  return {
    id: r.id,
    messageId: r.message_id,
    recipient: r.recipient,
    domain: r.domain,
    from: r.mail_from,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: iso(r.next_attempt_at),
    lastCode: r.last_code,
    lastReply: r.last_reply,
    origin: r.origin,
    sandbox: r.sandbox === 1,
    messageIdHeader: r.mid_header,
    mailboxId: r.mailbox_id,
    size: r.size,
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
  };
}

export interface ListQueueFilter {
  status?: string[]; // default: queued + inflight
  domain?: string;
  mailboxId?: string;
  /** Only entries sent by a mailbox of these domains (a domain-restricted API key). */
  mailboxDomains?: string[];
  limit?: number;
  /** Entries created before this id's row (pagination by created_at, id). */
  cursor?: string | null;
}

export function listQueue(db: DB, f: ListQueueFilter = {}): { entries: QueueEntry[]; nextCursor: string | null } {
  const where: string[] = [];
  const args: unknown[] = [];
  const status = f.status ?? ['queued', 'inflight'];
  where.push(`q.status IN (${status.map(() => '?').join(',')})`);
  args.push(...status);
  if (f.domain) (where.push('q.domain = ?'), args.push(normalizeDomain(f.domain)));
  if (f.mailboxId) (where.push('m.mailbox_id = ?'), args.push(f.mailboxId));
  if (f.mailboxDomains) {
    where.push('m.mailbox_id IN (SELECT mb.id FROM mailboxes mb JOIN domains d ON d.id = mb.domain_id WHERE d.name IN (SELECT value FROM json_each(?)))');
    args.push(JSON.stringify(f.mailboxDomains));
  }
  if (f.cursor) {
    const c = db.prepare('SELECT created_at, id FROM outbound_queue WHERE id = ?').get(f.cursor) as { created_at: number; id: string } | undefined;
    if (c) (where.push('(q.created_at < ? OR (q.created_at = ? AND q.id < ?))'), args.push(c.created_at, c.created_at, c.id));
  }
  const limit = Math.min(Math.max(f.limit ?? 100, 1), 1000);
  const rows = db.prepare(`${SELECT} WHERE ${where.join(' AND ')} ORDER BY q.created_at DESC, q.id DESC LIMIT ?`).all(...args, limit + 1) as any[];
  const more = rows.length > limit;
  const entries = rows.slice(0, limit).map(toEntry);
  return { entries, nextCursor: more ? entries[entries.length - 1].id : null };
}

export function getQueueEntry(db: DB, id: string): QueueEntry & { attemptLog: Attempt[] } {
  const r = db.prepare(`${SELECT} WHERE q.id = ?`).get(id);
  if (!r) throw new LetterboxError('not_found', `no queue entry "${id}"; see 'letterbox queue list'`);
  const attempts = (db.prepare('SELECT * FROM outbound_attempts WHERE queue_id = ? ORDER BY id').all(id) as any[]).map((a) => ({
    at: iso(a.at)!,
    mx: a.mx,
    ip: a.ip,
    sourceIp: a.source_ip,
    tlsVersion: a.tls_version,
    tlsCipher: a.tls_cipher,
    code: a.code,
    reply: a.reply,
    outcome: a.outcome,
    transcript: a.transcript,
  }));
  return { ...toEntry(r), attemptLog: attempts };
}

/** Makes queued entries due now: one id, every entry (`all`), or a destination domain. Returns how many. */
export function retryQueue(db: DB, now: number, sel: { id?: string; all?: boolean; domain?: string }): number {
  if (sel.id) {
    const r = db.prepare("UPDATE outbound_queue SET next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'queued'").run(now, now, sel.id);
    if (r.changes === 0) {
      const e = getQueueEntry(db, sel.id);
      throw new LetterboxError('conflict', `queue entry ${sel.id} is ${e.status}, not waiting for a retry`);
    }
    return r.changes;
  }
  if (sel.domain) return db.prepare("UPDATE outbound_queue SET next_attempt_at = ?, updated_at = ? WHERE domain = ? AND status = 'queued'").run(now, now, normalizeDomain(sel.domain)).changes;
  if (sel.all) return db.prepare("UPDATE outbound_queue SET next_attempt_at = ?, updated_at = ? WHERE status = 'queued' AND next_attempt_at > ?").run(now, now, now).changes;
  throw new LetterboxError('validation_error', 'name a queue id, --all or --domain D');
}

/**
 * Cancels a queued entry (no DSN). Its spool file goes when the message has no pending recipient
 * left; returns the spool id to remove in that case. An entry being delivered right now cannot be
 * removed.
 */
export function removeQueueEntry(db: DB, now: number, id: string): { entry: QueueEntry; spoolToRemove: string | null } {
  return db.transaction(() => {
    const e = getQueueEntry(db, id);
    if (e.status === 'inflight') throw new LetterboxError('conflict', `queue entry ${id} is being delivered right now; try again in a moment`);
    if (e.status !== 'queued') throw new LetterboxError('conflict', `queue entry ${id} is already ${e.status}`);
    db.prepare("UPDATE outbound_queue SET status = 'cancelled', next_attempt_at = NULL, updated_at = ? WHERE id = ?").run(now, id);
    const m = db.prepare('UPDATE outbound_messages SET pending = pending - 1 WHERE id = ? RETURNING pending, spool_id').get(e.messageId) as { pending: number; spool_id: string | null };
    return { entry: { ...e, status: 'cancelled' as const }, spoolToRemove: m.pending <= 0 ? m.spool_id : null };
  }).immediate();
}

// --- suppressions ---------------------------------------------------------------------------

export interface Suppression {
  domain: string;
  address: string;
  reason: string;
  code: number | null;
  createdAt: string;
}

export function isSuppressed(db: DB, domain: string | null, address: string): boolean {
  if (!domain) return false;
  return !!stmt(db, 'SELECT 1 FROM suppressions WHERE domain = ? AND address = ?').get(domain, address.toLowerCase());
}

export function listSuppressions(db: DB, domain?: string): Suppression[] {
  const rows = (domain ? db.prepare('SELECT * FROM suppressions WHERE domain = ? ORDER BY address').all(normalizeDomain(domain)) : db.prepare('SELECT * FROM suppressions ORDER BY domain, address').all()) as any[];
  return rows.map((r) => ({ domain: r.domain, address: r.address, reason: r.reason, code: r.code, createdAt: r.created_at }));
}

export function addSuppression(db: DB, s: { domain: string; address: string; reason: string; code?: number | null; createdAt: string }): boolean {
  return stmt(db, 'INSERT OR IGNORE INTO suppressions (domain, address, reason, code, created_at) VALUES (?, ?, ?, ?, ?)').run(s.domain, s.address.toLowerCase(), s.reason, s.code ?? null, s.createdAt).changes > 0;
}

export function removeSuppression(db: DB, domain: string, address: string): void {
  const r = db.prepare('DELETE FROM suppressions WHERE domain = ? AND address = ?').run(normalizeDomain(domain), address.toLowerCase());
  if (r.changes === 0) throw new LetterboxError('not_found', `${address} is not suppressed for ${domain}`);
}
