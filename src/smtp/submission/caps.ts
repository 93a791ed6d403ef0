// Abuse caps on sending: decisions are pure; counts come from send_log by index range.
import type { DB } from '../../db/index.ts';
import { stmt } from '../../db/stmt.ts';
import type { Config } from '../../config/schema.ts';

export interface Caps {
  messagesPerHour: number; // 0 = unlimited
  recipientsPerDay: number; // 0 = unlimited
  recipientsPerMessage: number;
}

export interface Usage {
  messagesLastHour: number;
  recipientsLastDay: number;
}

export interface CapViolation {
  cap: 'max_messages_per_hour' | 'max_recipients_per_day' | 'max_recipients_per_message';
  limit: number;
  message: string;
}

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** May this mailbox start another message? (checked at MAIL FROM / API send) */
export function checkMessageCap(caps: Caps, usage: Usage): CapViolation | null {
  if (caps.messagesPerHour > 0 && usage.messagesLastHour + 1 > caps.messagesPerHour) {
    return { cap: 'max_messages_per_hour', limit: caps.messagesPerHour, message: `sending cap reached: at most ${caps.messagesPerHour} messages per hour (max_messages_per_hour); try again later` };
  }
  return null;
}

/** May this message have `count` recipients? (checked at each RCPT TO with the running count) */
export function checkRecipientCaps(caps: Caps, usage: Usage, count: number): CapViolation | null {
  if (count > caps.recipientsPerMessage) {
    return { cap: 'max_recipients_per_message', limit: caps.recipientsPerMessage, message: `too many recipients: at most ${caps.recipientsPerMessage} per message (max_recipients_per_message)` };
  }
  if (caps.recipientsPerDay > 0 && usage.recipientsLastDay + count > caps.recipientsPerDay) {
    return { cap: 'max_recipients_per_day', limit: caps.recipientsPerDay, message: `sending cap reached: at most ${caps.recipientsPerDay} recipients per day (max_recipients_per_day); try again later` };
  }
  return null;
}

interface LimitRow {
  max_messages_per_hour: number | null;
  max_recipients_per_day: number | null;
  max_recipients_per_message: number | null;
}

/** The caps of a mailbox: its own override, else its domain's, else the config. */
export function effectiveCaps(db: DB, config: Config, mailbox: { id: string; domain: string }): Caps {
  const rows = stmt(db, 'SELECT target, max_messages_per_hour, max_recipients_per_day, max_recipients_per_message FROM sending_limits WHERE target IN (?, ?)').all(`mailbox:${mailbox.id}`, `domain:${mailbox.domain}`) as (LimitRow & { target: string })[];
  const m = rows.find((r) => r.target.startsWith('mailbox:'));
  const d = rows.find((r) => r.target.startsWith('domain:'));
  const pick = (k: keyof LimitRow, dflt: number) => m?.[k] ?? d?.[k] ?? dflt;
  return {
    messagesPerHour: pick('max_messages_per_hour', config.submission.max_messages_per_hour),
    recipientsPerDay: pick('max_recipients_per_day', config.submission.max_recipients_per_day),
    recipientsPerMessage: pick('max_recipients_per_message', config.submission.max_recipients_per_message),
  };
}

/**
 * Sends counted from send_log plus those reserved and not committed yet. `need` limits the work to
 * the counts a cap uses (an unlimited cap needs no count; it reads as 0).
 */
export function usageOf(db: DB, mailboxId: string, now: number, need: { messages: boolean; recipients: boolean } = { messages: true, recipients: true }): Usage {
  const h = need.messages ? (stmt(db, 'SELECT count(*) AS n FROM send_log WHERE mailbox_id = ? AND at > ?').get(mailboxId, now - HOUR) as { n: number }).n : 0;
  const d = need.recipients ? (stmt(db, 'SELECT coalesce(sum(recipients), 0) AS r FROM send_log WHERE mailbox_id = ? AND at > ?').get(mailboxId, now - DAY) as { r: number }).r : 0;
  const r = reservations.get(db)?.get(mailboxId);
  return { messagesLastHour: h + (need.messages ? (r?.messages ?? 0) : 0), recipientsLastDay: d + (need.recipients ? (r?.recipients ?? 0) : 0) };
}

// Sends that passed the caps and whose send_log row is not committed yet (it is written in the
// same transaction as the message's queue rows, later, after DKIM and the spool). Counted by
// usageOf, so concurrent sessions of one mailbox cannot all pass the same cap meanwhile.
const reservations = new WeakMap<DB, Map<string, { messages: number; recipients: number }>>();

/** Reserves one message with `recipients` recipients; call the returned function once to release it. */
export function reserveSend(db: DB, mailboxId: string, recipients: number): () => void {
  let m = reservations.get(db);
  if (!m) reservations.set(db, (m = new Map()));
  const r = m.get(mailboxId) ?? { messages: 0, recipients: 0 };
  r.messages++;
  r.recipients += recipients;
  m.set(mailboxId, r);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    r.messages--;
    r.recipients -= recipients;
    if (r.messages <= 0) m.delete(mailboxId);
  };
}

/** Counts a message against the caps; returns the row id (to take it back if the send fails). */
export function recordSend(db: DB, mailboxId: string, now: number, recipients: number): number {
  return Number(stmt(db, 'INSERT INTO send_log (mailbox_id, at, recipients) VALUES (?, ?, ?)').run(mailboxId, now, recipients).lastInsertRowid);
}

export function unrecordSend(db: DB, id: number): void {
  stmt(db, 'DELETE FROM send_log WHERE id = ?').run(id);
}

/** Drops counter rows older than a day (called by the queue's housekeeping). */
export function pruneSendLog(db: DB, now: number): void {
  db.prepare('DELETE FROM send_log WHERE at <= ?').run(now - DAY);
}

export function setLimits(db: DB, target: string, limits: Partial<Record<keyof LimitRow, number | null>>): void {
  const cur = (db.prepare('SELECT max_messages_per_hour, max_recipients_per_day, max_recipients_per_message FROM sending_limits WHERE target = ?').get(target) as LimitRow | undefined) ?? {
    max_messages_per_hour: null,
    max_recipients_per_day: null,
    max_recipients_per_message: null,
  };
  const next = { ...cur, ...limits };
  db.prepare(
    `INSERT INTO sending_limits (target, max_messages_per_hour, max_recipients_per_day, max_recipients_per_message) VALUES (?, ?, ?, ?)
     ON CONFLICT(target) DO UPDATE SET max_messages_per_hour = excluded.max_messages_per_hour, max_recipients_per_day = excluded.max_recipients_per_day, max_recipients_per_message = excluded.max_recipients_per_message`,
  ).run(target, next.max_messages_per_hour, next.max_recipients_per_day, next.max_recipients_per_message);
}
