// What one delivery attempt means for each queue row: delivered, retried later (maybe with a delay
// notice), or bounced (maybe with a DSN, maybe suppressing the address). Pure: no clock, no
// randomness, no I/O of its own; the engine records what is decided here (src/queue/attempt.ts).
import { onTempFail, type RetryPolicy } from './schedule.ts';
import { isHardBounce, type Outcome } from './classify.ts';
import { dsnStatusFor, type DsnRecipient } from '../mail/dsn.ts';
import { reply } from '../mail/reply.ts';

const FORWARDED = reply(250, '2.1.5', 'forwarded').line;

/** A queue entry as the scheduler claims it. */
export interface QueueRow {
  id: string;
  message_id: string;
  recipient: string;
  domain: string;
  attempts: number;
  delay_notified: number;
  created_at: number;
}

/** One recipient's result of an attempt (the remote's or Dovecot's reply). */
export interface AttemptResult {
  recipient: string;
  code: number;
  reply: string;
  outcome: Outcome;
}

/** What is known of the message and the attempt besides the rows. */
export interface AttemptContext {
  /** The MX (or 'lmtp') the attempt went to; named in DSNs. */
  mx: string | null;
  /** A DSN may be sent: the message has a sender and is not itself a DSN. */
  canDsn: boolean;
  /** Hard bounces suppress the address for this sending domain (null: nothing to suppress for). */
  suppressFor: string | null;
}

export interface Decision {
  row: QueueRow;
  r: AttemptResult;
  outcome: 'delivered' | 'deferred' | 'bounced';
  expired: boolean;
  nextAttemptAt: number | null;
  delayNotified: boolean;
  dsn: DsnRecipient | null;
  /** The address goes on the suppression list of this sending domain (a hard bounce). */
  suppress: boolean;
  /** A bounce held back because its DSN could not be written. */
  dsnFailed?: boolean;
}

/** The decision for every row (results[i] is rows[i]'s). `random` gives the retry jitter, in [0,1). */
export function decideOutcomes(rows: QueueRow[], results: AttemptResult[], policy: RetryPolicy, now: number, random: () => number, ctx: AttemptContext): Decision[] {
  return rows.map((row, i) => {
    const r = results[i];
    const notified = row.delay_notified === 1;
    if (r.outcome === 'deferred') {
      const d = onTempFail({ now, createdAt: row.created_at, attempts: row.attempts + 1, delayNotified: notified, policy, rand: random() });
      if (d.action === 'expire') {
        const dsn: DsnRecipient = { address: row.recipient, action: 'failed', status: '4.4.7', remoteMta: ctx.mx, diagnostic: r.reply, lastAttemptAt: new Date(now) };
        return { row, r, outcome: 'bounced', expired: true, nextAttemptAt: null, delayNotified: notified, dsn: ctx.canDsn ? dsn : null, suppress: false };
      }
      const dsn: DsnRecipient | null =
        d.delayNotice && ctx.canDsn
          ? { address: row.recipient, action: 'delayed', status: dsnStatusFor(r.code, r.reply, '4.0.0'), remoteMta: ctx.mx, diagnostic: r.reply, lastAttemptAt: new Date(now), willRetryUntil: new Date(row.created_at + policy.maxAge) }
          : null;
      return { row, r, outcome: 'deferred', expired: false, nextAttemptAt: d.nextAttemptAt, delayNotified: d.delayNotice || notified, dsn, suppress: false };
    }
    if (r.outcome === 'delivered') return { row, r, outcome: 'delivered', expired: false, nextAttemptAt: null, delayNotified: notified, dsn: null, suppress: false };
    const dsn: DsnRecipient = { address: row.recipient, action: 'failed', status: dsnStatusFor(r.code, r.reply, '5.0.0'), remoteMta: ctx.mx, diagnostic: r.reply, lastAttemptAt: new Date(now) };
    return { row, r, outcome: 'bounced', expired: false, nextAttemptAt: null, delayNotified: notified, dsn: ctx.canDsn ? dsn : null, suppress: !!ctx.suppressFor && isHardBounce(r.code, r.reply) };
  });
}

/**
 * The same decisions once their DSNs could not be written: a bounce is not recorded without its
 * DSN (the recipient stays queued and is tried again `retryMs` later); a delay notice is left for a
 * later attempt.
 */
export function withoutDsns(decisions: Decision[], now: number, retryMs: number): Decision[] {
  return decisions.map((d) => {
    if (d.dsn?.action === 'failed') return { ...d, outcome: 'deferred', expired: false, nextAttemptAt: now + retryMs, dsn: null, suppress: false, dsnFailed: true };
    if (d.dsn?.action === 'delayed') return { ...d, delayNotified: d.row.delay_notified === 1, dsn: null };
    return d;
  });
}

/**
 * One result per original recipient of a local delivery, from Dovecot's answers for the mailboxes
 * it expanded to: the worst answer wins (a temporary failure before a permanent one, so the
 * recipient is retried); no mailbox at all (only outside alias targets): delivered (forwarded).
 */
export function combineLocalResults(recipient: string, answers: { code: number; response: string }[], outcomeOf: (code: number) => Outcome): AttemptResult {
  const worst = answers.find((o) => o.code >= 400 && o.code < 500) ?? answers.find((o) => o.code >= 500) ?? answers[0];
  if (!worst) return { recipient, code: 250, reply: FORWARDED, outcome: 'delivered' };
  return { recipient, code: worst.code, reply: worst.response, outcome: outcomeOf(worst.code) };
}
