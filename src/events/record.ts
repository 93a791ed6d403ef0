import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import type { Clock } from '../clock.ts';

export type EventType =
  | 'message.received'
  | 'message.queued'
  | 'message.delivered'
  | 'message.deferred'
  | 'message.bounced'
  | 'message.suppressed'
  | 'message.blocked_outbound'
  | 'domain.verified'
  | 'domain.verification_failed'
  | 'dkim.rotation_started'
  | 'dkim.rotated'
  | 'dkim.retired'
  | 'report.sent';

/** A row of the events table (the tracking log; also the webhooks' outbox source). */
export interface EventRow {
  id: number;
  type: string;
  mailbox_id: string | null;
  domain: string | null;
  message_id: string | null;
  data: string;
  created_at: string;
}

export interface EventInput {
  type: EventType;
  mailboxId?: string | null;
  domain?: string | null;
  messageId?: string | null;
  data: Record<string, unknown>;
}

// The events table: written here only (recordEvent), read by the API, the metrics and the webhooks.

/** Appends to the tracking log. Call inside the transaction that made the change it describes. */
export function recordEvent(db: DB, clock: Clock, e: EventInput): number {
  const r = stmt(db, 'INSERT INTO events (type, mailbox_id, domain, message_id, data, created_at) VALUES (?, ?, ?, ?, ?, ?)')
    .run(e.type, e.mailboxId ?? null, e.domain ?? null, e.messageId ?? null, JSON.stringify(e.data), new Date(clock.now()).toISOString());
  return Number(r.lastInsertRowid);
}

/** Up to `limit` events after `lastId`, oldest first (metrics, webhook fan-out). */
export function eventsAfter(db: DB, lastId: number, limit: number): EventRow[] {
  return stmt(db, 'SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?').all(lastId, limit) as EventRow[];
}

export interface EventFilter {
  types?: string[];
  mailboxId?: string;
  domain?: string;
  /** ISO time: created at or after. */
  since?: string;
  /** Only these domains (a key limited to domains); [] matches nothing. */
  domains?: string[] | null;
  /** Continue after this event id (in the direction of `order`). */
  after?: number;
  order: 'asc' | 'desc';
  limit: number;
}

/** A page of the tracking log (limit rows at most). */
export function listEvents(db: DB, f: EventFilter): EventRow[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (f.types?.length) (where.push(`type IN (${f.types.map(() => '?').join(',')})`), args.push(...f.types));
  if (f.mailboxId) (where.push('mailbox_id = ?'), args.push(f.mailboxId));
  if (f.domain) (where.push('domain = ?'), args.push(f.domain));
  if (f.since) (where.push('created_at >= ?'), args.push(f.since));
  if (f.domains) (where.push(`domain IN (${f.domains.map(() => '?').join(',') || "''"})`), args.push(...f.domains));
  if (f.after !== undefined) (where.push(f.order === 'asc' ? 'id > ?' : 'id < ?'), args.push(f.after));
  const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id ${f.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
  return db.prepare(sql).all(...args, f.limit) as EventRow[];
}
