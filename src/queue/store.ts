// The queue's tables (outbound_messages, outbound_queue, outbound_attempts, suppressions): every
// SQL statement on them. Listing, inspection and operator actions (the CLI, the API) and the
// engine's writes (below). Times are ms since the epoch.
import type { TlsOutcome } from './tls-outcome.ts';
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import { commitWithoutFsync } from '../db/group-commit.ts';
import { LetterboxError } from '../errors.ts';
import { normalizeDomain } from '../mail/address.ts';

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

// --- the engine's statements -----------------------------------------------------------------
// Every write to outbound_messages, outbound_queue and outbound_attempts made while mail flows
// (enqueue, claim, attempt outcomes, reclaim, purge). Synchronous; callers choose the transaction
// (groupCommit, commitWithoutFsync or db.transaction), so a state change and the rows it causes
// (a DSN's, an event) commit together.

export interface MessageRow {
  id: string;
  spool_id: string | null;
  size: number;
  mail_from: string;
  mailbox_id: string | null;
  sending_domain: string | null;
  message_id: string | null;
  origin: string;
  sandbox: number;
  pending: number;
  created_at: number;
}

/** The columns of a queue entry the scheduler and the attempt work with (QueueRow in decide.ts). */
const ROW_COLUMNS = 'id, message_id, recipient, domain, attempts, delay_notified, created_at';

export function insertMessage(db: DB, m: Omit<MessageRow, 'sandbox'> & { sandbox: boolean }): void {
  stmt(db,
    'INSERT INTO outbound_messages (id, spool_id, size, mail_from, mailbox_id, sending_domain, message_id, origin, sandbox, pending, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  ).run(m.id, m.spool_id, m.size, m.mail_from, m.mailbox_id, m.sending_domain, m.message_id, m.origin, m.sandbox ? 1 : 0, m.pending, m.created_at);
}

/**
 * A recipient's entry: 'queued' (due now), 'inflight' (held: the caller is delivering it right now
 * and reports with settle; in-flight rows are queued again at the next start) or 'sandbox'
 * (recorded as delivered, with its attempt row).
 */
export function insertRecipient(db: DB, r: { id: string; messageId: string; recipient: string; domain: string; state: 'queued' | 'inflight' | 'sandbox'; now: number }): void {
  const ins = stmt(db,
    'INSERT INTO outbound_queue (id, message_id, recipient, domain, status, attempts, next_attempt_at, created_at, updated_at, last_code, last_reply) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  if (r.state === 'sandbox') {
    ins.run(r.id, r.messageId, r.recipient, r.domain, 'delivered', 1, null, r.now, r.now, 250, '250 sandbox: recorded, not delivered');
    stmt(db, "INSERT INTO outbound_attempts (queue_id, at, mx, outcome, code, reply) VALUES (?, ?, 'sandbox', 'delivered', 250, '250 sandbox: recorded, not delivered')").run(r.id, r.now);
  } else if (r.state === 'inflight') ins.run(r.id, r.messageId, r.recipient, r.domain, 'inflight', 0, null, r.now, r.now, null, null);
  else ins.run(r.id, r.messageId, r.recipient, r.domain, 'queued', 0, r.now, r.now, r.now, null, null);
}

export function getMessage(db: DB, id: string): MessageRow {
  return stmt(db, 'SELECT * FROM outbound_messages WHERE id = ?').get(id) as MessageRow;
}

export function pendingOf(db: DB, id: string): number {
  return stmt(db, 'SELECT pending FROM outbound_messages WHERE id = ?', { pluck: true }).get(id) as number;
}

export function inflightRowsOf<R>(db: DB, messageId: string): R[] {
  return stmt(db, `SELECT ${ROW_COLUMNS} FROM outbound_queue WHERE message_id = ? AND status = 'inflight'`).all(messageId) as R[];
}

/** Held entries the client was told were refused: cancelled, no DSN. Own transaction. */
export function cancelRecipients(db: DB, messageId: string, rows: { id: string; code: number; reply: string }[], now: number): void {
  db.transaction(() => {
    const up = stmt(db, "UPDATE outbound_queue SET status = 'cancelled', next_attempt_at = NULL, last_code = ?, last_reply = ?, updated_at = ? WHERE id = ?");
    for (const r of rows) up.run(r.code, r.reply, now, r.id);
    stmt(db, 'UPDATE outbound_messages SET pending = pending - ? WHERE id = ?').run(rows.length, messageId);
  }).immediate();
}

/** At start: entries left in flight by an earlier run are due again now. Returns how many. */
export function requeueInflight(db: DB, now: number): number {
  return db.prepare("UPDATE outbound_queue SET status = 'queued', next_attempt_at = ?, updated_at = ? WHERE status = 'inflight'").run(now, now).changes;
}

/** Finished messages created before `before` (with their entries and attempts, by cascade). */
export function purgeFinished(db: DB, before: number): number {
  return db.prepare('DELETE FROM outbound_messages WHERE pending <= 0 AND created_at < ?').run(before).changes;
}

/** When the next queued entry is due (null: none). */
export function nextDueAt(db: DB): number | null {
  return stmt(db, "SELECT min(next_attempt_at) FROM outbound_queue WHERE status = 'queued'", { pluck: true }).get() as number | null;
}

/** Queued entries due at `now`, oldest due first. */
export function dueRows<R>(db: DB, now: number, limit: number): R[] {
  return stmt(db, `SELECT ${ROW_COLUMNS} FROM outbound_queue WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?`).all(now, limit) as R[];
}

/**
 * Marks the jobs' entries as being delivered; returns each job with the entries it won. A claim only
 * marks rows in flight, and rows in flight are queued again at start, so a claim lost in a power
 * failure changes nothing: no fsync of its own (the next commit's covers it).
 */
export function claimRows<R extends { id: string }>(db: DB, jobs: R[][], now: number): R[][] {
  const up = stmt(db, "UPDATE outbound_queue SET status = 'inflight', updated_at = ? WHERE id = ? AND status = 'queued'");
  return commitWithoutFsync(db, () => jobs.map((g) => g.filter((r) => up.run(now, r.id).changes === 1)));
}

/** Entries of a job that failed before recording anything: queued again, due at `at`. */
export function releaseRows(db: DB, ids: string[], at: number, now: number): void {
  const up = stmt(db, "UPDATE outbound_queue SET status = 'queued', next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'inflight'");
  db.transaction(() => ids.forEach((id) => up.run(at, now, id))).immediate();
}

/** One attempt's outcome for an entry: 'delivered'/'bounced' (final) or 'deferred' (queued again). Inside the caller's transaction. */
export function recordOutcome(
  db: DB,
  o: { queueId: string; outcome: 'delivered' | 'deferred' | 'bounced'; code: number; reply: string; nextAttemptAt: number | null; delayNotified: boolean; now: number },
): void {
  if (o.outcome === 'deferred') {
    stmt(db, "UPDATE outbound_queue SET status = 'queued', attempts = attempts + 1, next_attempt_at = ?, last_code = ?, last_reply = ?, delay_notified = ?, updated_at = ? WHERE id = ?")
      .run(o.nextAttemptAt, o.code, o.reply, o.delayNotified ? 1 : 0, o.now, o.queueId);
  } else {
    stmt(db, 'UPDATE outbound_queue SET status = ?, attempts = attempts + 1, next_attempt_at = NULL, last_code = ?, last_reply = ?, updated_at = ? WHERE id = ?').run(o.outcome, o.code, o.reply, o.now, o.queueId);
  }
}

/** The attempt log line of an entry. */
export function insertAttempt(
  db: DB,
  a: { queueId: string; at: number; mx: string | null; ip: string | null; sourceIp: string | null; tlsVersion: string | null; tlsCipher: string | null; code: number; reply: string; outcome: string; transcript: string | null; tls?: TlsOutcome | null },
): void {
  stmt(db,
    'INSERT INTO outbound_attempts (queue_id, at, mx, ip, source_ip, tls_version, tls_cipher, code, reply, outcome, transcript, tls_policy, tls_result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  ).run(a.queueId, a.at, a.mx, a.ip, a.sourceIp, a.tlsVersion, a.tlsCipher, a.code, a.reply, a.outcome, a.transcript, a.tls?.policy ?? null, a.tls?.result ?? null);
}

/** New entries of an existing message (alias targets outside our domains found while delivering locally). */
export function addRecipients(db: DB, messageId: string, recipients: { id: string; recipient: string; domain: string }[], now: number): void {
  const ins = stmt(db, "INSERT INTO outbound_queue (id, message_id, recipient, domain, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)");
  for (const r of recipients) ins.run(r.id, messageId, r.recipient, r.domain, now, now, now);
}

/** The message's count of unfinished entries after `done` finished and `added` were added; returns what is left. */
export function updatePending(db: DB, messageId: string, done: number, added: number): number {
  return stmt(db, 'UPDATE outbound_messages SET pending = pending - ? + ? WHERE id = ? RETURNING pending', { pluck: true }).get(done, added, messageId) as number;
}
