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
  | 'domain.verification_failed';

export interface EventInput {
  type: EventType;
  mailboxId?: string | null;
  domain?: string | null;
  messageId?: string | null;
  data: Record<string, unknown>;
}

/** Appends to the tracking log. Call inside the transaction that made the change it describes. */
export function recordEvent(db: DB, clock: Clock, e: EventInput): number {
  const r = stmt(db, 'INSERT INTO events (type, mailbox_id, domain, message_id, data, created_at) VALUES (?, ?, ?, ?, ?, ?)')
    .run(e.type, e.mailboxId ?? null, e.domain ?? null, e.messageId ?? null, JSON.stringify(e.data), new Date(clock.now()).toISOString());
  return Number(r.lastInsertRowid);
}
