// Abuse caps on sending: decisions are pure; counts come from send_log by index range (the
// sending_limits and send_log tables belong to src/services/sending-limits.ts).
import type { DB } from '../db/index.ts';
import { sendCounts, type Caps, type Usage } from '../services/sending-limits.ts';

export { effectiveCaps, recordSend, unrecordSend, setLimits, pruneSendLog, type Caps, type Usage } from '../services/sending-limits.ts';

export interface CapViolation {
  cap: 'max_messages_per_hour' | 'max_recipients_per_day' | 'max_recipients_per_message';
  limit: number;
  message: string;
}

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

/**
 * Sends counted from send_log plus those reserved and not committed yet. `need` limits the work to
 * the counts a cap uses (an unlimited cap needs no count; it reads as 0).
 */
export function usageOf(db: DB, reserved: SendReservations, mailboxId: string, now: number, need: { messages: boolean; recipients: boolean } = { messages: true, recipients: true }): Usage {
  const c = sendCounts(db, mailboxId, now, need);
  const r = reserved.of(mailboxId);
  return { messagesLastHour: c.messagesLastHour + (need.messages ? (r?.messages ?? 0) : 0), recipientsLastDay: c.recipientsLastDay + (need.recipients ? (r?.recipients ?? 0) : 0) };
}

/**
 * Sends that passed the caps and whose send_log row is not committed yet (it is written in the
 * same transaction as the message's queue rows, later, after DKIM and the spool). Counted by
 * usageOf, so concurrent sessions of one mailbox cannot all pass the same cap meanwhile. One per
 * appliance (AppContext.sendReservations).
 */
export class SendReservations {
  private readonly byMailbox = new Map<string, { messages: number; recipients: number }>();

  of(mailboxId: string): { messages: number; recipients: number } | undefined {
    return this.byMailbox.get(mailboxId);
  }

  /** Reserves one message with `recipients` recipients; call the returned function once to release it. */
  reserve(mailboxId: string, recipients: number): () => void {
    const m = this.byMailbox;
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
}

