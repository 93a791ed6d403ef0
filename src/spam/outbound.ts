import type { AppContext } from '../server.ts';
import { LetterboxError } from '../errors.ts';
import { recordEvent } from '../events/record.ts';

/**
 * The outbound abuse check (issue #14) for authenticated submission and API sends: the message is
 * scored by rspamd (no greylisting); at or above [spam] outbound_threshold it is refused (SMTP
 * 550 5.7.1, API 422 message_rejected) and a message.blocked_outbound event is recorded, so a
 * leaked password cannot turn the box into a spam cannon. Nothing is queued or delivered.
 */
export async function checkOutboundSpam(
  app: AppContext,
  o: { message: Buffer; mailbox: string; mailboxId: string; domain: string; from: string; rcpts: string[]; origin: string; ip?: string; messageId?: string | null },
): Promise<void> {
  const spam = app.spam.service;
  if (!spam) return;
  const r = await spam.scanOutbound(o.message, { user: o.mailbox, from: o.from, rcpts: o.rcpts, ip: o.ip });
  if (!r.blocked) return;
  const threshold = app.config.spam.outbound_threshold;
  app.log.warn({ component: 'spam', mailbox: o.mailbox, score: r.score, threshold, origin: o.origin, recipients: o.rcpts.length }, 'outbound message refused as spam');
  try {
    recordEvent(app.db, app.clock, {
      type: 'message.blocked_outbound',
      mailboxId: o.mailboxId,
      domain: o.domain,
      messageId: o.messageId ?? null,
      data: { mailbox: o.mailbox, from: o.from, recipients: o.rcpts, origin: o.origin, score: r.score, threshold },
    });
  } catch (err: any) {
    app.log.error({ component: 'spam', err: err.message }, 'could not record message.blocked_outbound');
  }
  throw new LetterboxError('message_rejected', `Message refused: it was classified as spam (score ${r.score}, limit ${threshold})`, { smtp: '550 5.7.1', score: r.score });
}
