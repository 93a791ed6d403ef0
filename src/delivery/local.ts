// Local delivery: the one path by which a message reaches a mailbox. Used by the MX (messages and
// DSNs), submission and the API's send (local recipients), and the outbound queue (retries of
// local recipients, DSNs to local senders). Dovecot's LMTP answers become per-recipient outcomes
// here, and the SMTP reply the MX gives for a refused recipient is chosen here (refusalReply).
import type { Readable } from 'node:stream';
import { deliverLmtp, probeRecipient, type LmtpPool, type LmtpRecipientResult, type ProbeAnswer } from './lmtp.ts';
import { SmtpReply, parseReply, reply } from '../mail/reply.ts';
import type { Slots } from '../util/slots.ts';

/** One recipient's outcome: Dovecot's answer, or `unavailable` when Dovecot could not be reached. */
export interface LocalOutcome extends LmtpRecipientResult {
  /** Nothing was handed over: Dovecot (LMTP) was unreachable or the session broke before its answers. */
  unavailable: boolean;
}

export interface LocalMessage {
  /** Envelope sender ('' = null sender). */
  from: string;
  /** The message, or a function opening a fresh stream of it (a retry may need it twice). */
  body: Buffer | (() => Readable);
}

export interface LocalDeliveryOptions {
  socketPath: string;
  /** Our LHLO name (the hostname). */
  lhlo: string;
  /** Sessions kept open between messages; without one, each delivery connects. */
  pool?: LmtpPool | null;
  timeoutMs?: number;
  /**
   * The LMTP sessions to Dovecot this appliance may hold at once (dovecot.lmtp_sessions), shared by
   * every LocalDelivery of the process; a delivery or probe waits for one, up to its timeout.
   */
  slots?: Slots | null;
}

export class LocalDelivery {
  readonly socketPath: string;
  private readonly lhlo: string;
  private readonly pool: LmtpPool | null;
  private readonly timeoutMs: number | undefined;
  readonly slots: Slots | null;
  constructor(o: LocalDeliveryOptions) {
    this.socketPath = o.socketPath;
    this.lhlo = o.lhlo;
    this.pool = o.pool ?? null;
    this.timeoutMs = o.timeoutMs;
    this.slots = o.slots ?? null;
  }

  /** Runs `fn` holding one LMTP session slot (when slots are set): waits up to the timeout for one. */
  private async inSlot<T>(fn: () => Promise<T>): Promise<T> {
    const release = this.slots ? await this.slots.acquire(this.timeoutMs ?? 30_000, 'Dovecot LMTP session') : null;
    try {
      return await fn();
    } finally {
      release?.();
    }
  }

  /**
   * Hands `message` to Dovecot for `recipients` (user@domain, or user+Folder@domain to file into
   * Folder) and returns one outcome per recipient, in order. Never throws: when Dovecot cannot be
   * reached every outcome is a 451 with `unavailable` set (nothing stored for anyone).
   */
  async deliver(message: LocalMessage, recipients: string[]): Promise<LocalOutcome[]> {
    if (recipients.length === 0) return [];
    try {
      const res = await this.inSlot(() => deliverLmtp(this.socketPath, { from: message.from, to: recipients }, message.body, { lhlo: this.lhlo, pool: this.pool ?? undefined, timeoutMs: this.timeoutMs }));
      return res.map((r) => ({ ...r, unavailable: false }));
    } catch (err: any) {
      const response = reply(451, '4.3.0', err?.message ?? 'Dovecot LMTP unavailable').line;
      return recipients.map((recipient) => ({ recipient, status: 'tempfail' as const, code: 451, response, unavailable: true }));
    }
  }

  /** Would Dovecot take mail for `address` now (quota check at RCPT)? Rejects when it cannot be reached. */
  probe(address: string): Promise<ProbeAnswer> {
    return this.inSlot(() => probeRecipient(this.socketPath, address, { lhlo: this.lhlo, timeoutMs: this.timeoutMs }));
  }

  /** Closes the idle pooled sessions (if any). */
  close(): void {
    this.pool?.close();
  }
}

/**
 * The SMTP reply for a recipient Dovecot refused, as the MX gives it to the sending MTA (and as
 * the DSN reports it): Dovecot's enhanced code and text (addresses removed), except that Dovecot
 * not knowing a mailbox our database has means its users file is a moment behind (retry) while
 * `usersSettling()` says a change is still being picked up, else the mailbox is gone for good (550:
 * never an endless 451).
 */
export function refusalReply(o: LmtpRecipientResult, usersSettling: () => boolean = () => true): SmtpReply {
  const answer = parseReply(o.response);
  const enhanced = answer?.enhanced || (o.status === 'permfail' ? '5.0.0' : '4.0.0');
  if (enhanced === '5.1.1') return usersSettling() ? reply(451, '4.3.0', 'Mailbox is being set up, try again shortly') : reply(550, '5.1.1', 'No such user here');
  const text = (answer?.enhanced ? answer.text : o.response).replace(/\s*<[^>]*>\s*/g, ' ').trim().slice(0, 200) || 'Delivery failed';
  return reply(o.code, enhanced, text);
}

/** The reply text a client is given for a refused recipient (code stripped): "5.2.2 Quota exceeded". */
export function refusalText(o: LmtpRecipientResult): string {
  return parseReply(o.response)?.message ?? o.response;
}
