// The sending_limits and send_log tables (the submission caps): every statement on them is here.
// The decisions on these numbers are pure, in src/submit/caps.ts.
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import type { Config } from '../config/schema.ts';

export interface Caps {
  messagesPerHour: number; // 0 = unlimited
  recipientsPerDay: number; // 0 = unlimited
  recipientsPerMessage: number;
}

export interface Usage {
  messagesLastHour: number;
  recipientsLastDay: number;
}


const HOUR = 3_600_000;
const DAY = 86_400_000;

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

/** Messages sent in the last hour and recipients in the last day, as committed in send_log (only the counts `need` asks for; 0 otherwise). */
export function sendCounts(db: DB, mailboxId: string, now: number, need: { messages: boolean; recipients: boolean }): Usage {
  const h = need.messages ? (stmt(db, 'SELECT count(*) AS n FROM send_log WHERE mailbox_id = ? AND at > ?').get(mailboxId, now - HOUR) as { n: number }).n : 0;
  const d = need.recipients ? (stmt(db, 'SELECT coalesce(sum(recipients), 0) AS r FROM send_log WHERE mailbox_id = ? AND at > ?').get(mailboxId, now - DAY) as { r: number }).r : 0;
  return { messagesLastHour: h, recipientsLastDay: d };
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
