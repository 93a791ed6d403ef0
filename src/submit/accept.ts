// "Accept an outbound message": the one path shared by SMTP submission (587/465) and the API's
// send endpoint. Authenticated mailbox + raw message + envelope → checks (outbound suspended,
// sender authorization, caps, suppressions, unknown local recipients) → fix-ups (Received,
// Message-ID, Date, Bcc removed) → DKIM (every active key of the signing domain) → every recipient
// durably in the queue first, then local ones over LMTP now (the queue keeps those Dovecot could
// not take now), remote ones delivered by the queue.
import { randomBytes } from 'node:crypto';
import type { AppContext } from '../server.ts';
import { LetterboxError } from '../errors.ts';
import { sendingState } from '../services/mailbox-queries.ts';
import { parseAddress } from '../mail/address.ts';
import { refusalText, type LocalOutcome } from '../delivery/local.ts';
import { receivedValue } from '../mail/received.ts';
import { reply, type SmtpReply } from '../mail/reply.ts';
import { checkOutboundSpam } from '../spam/outbound.ts';
import { isLocalDomain, resolveRecipient, splitTargets, type Resolution } from '../routing/resolve.ts';
import { runningQueue } from '../queue/handoff.ts';
import { isSuppressed } from '../queue/store.ts';
import { recordEvent } from '../events/record.ts';
import { isAuthorizedSender, ownedAddresses } from './authorize.ts';
import { checkMessageCap, checkRecipientCaps, effectiveCaps, recordSend, unrecordSend, usageOf, type Caps, type Usage } from './caps.ts';
import { applyFixups } from './fixups.ts';
import { checkAuthorHeaders } from './from-check.ts';

export interface Sender {
  id: string;
  address: string;
  domain: string;
}

export interface AcceptInput {
  /** The authenticated mailbox (SMTP AUTH, or the mailbox an API key sends as). */
  mailbox: Sender;
  /** The complete RFC 5322 message (for the API: built with nodemailer's MailComposer). */
  message: Buffer;
  /**
   * Envelope: MAIL FROM and RCPT TO addresses. '' (the null sender) only for origin 'sieve'
   * (vacation replies, RFC 5230 §5.6).
   */
  envelope: { from: string; to: string[] };
  /** Sandbox (API test keys): checked and recorded as delivered, never delivered. */
  sandbox?: boolean;
  /**
   * 'sieve': sent by Dovecot's Sieve for the mailbox (vacation reply or redirect) through the
   * loopback injection listener (src/smtp/inject/server.ts): a vacation reply has the null sender
   * and the mailbox's From; a redirect keeps the original author's From (signed with the
   * mailbox's domain) and has the original envelope sender rewritten with SRS (`redirect` below).
   */
  origin: 'submission' | 'api' | 'sieve';
  /**
   * A Sieve redirect attributed by the injection listener (src/smtp/inject/redirect.ts): the
   * envelope sender is the original one rewritten with SRS in the mailbox's domain (not one of the
   * mailbox's own addresses, so not checked against them), the From is the original author's; the
   * message is DKIM-signed with the mailbox's domain, then `seal` (ARC) runs on the signed copy.
   */
  redirect?: { seal: (message: Buffer) => Promise<Buffer> };
  /** The client, for the Received header. */
  client?: { ip?: string; helo?: string; tls?: string | null; protocol?: string };
}

export interface AcceptedRecipient {
  recipient: string;
  /** 'delivered': stored in a local mailbox now; 'queued': in the outbound queue; 'sandbox': recorded only. */
  status: 'delivered' | 'queued' | 'sandbox';
  queueId?: string;
}

/** A refused recipient as the API reports it (`rejected[]`); the SMTP listeners answer it as replyOf(code, reason). */
export interface RejectedRecipient {
  recipient: string;
  code: number; // SMTP code (550, 451...)
  reason: string; // the reply's enhanced code and text: "5.7.1 <x@y> is on the suppression list..."
}

/** A recipient refused with `r` (the one reply shape, src/mail/reply.ts). */
function refused(recipient: string, r: SmtpReply): RejectedRecipient {
  return { recipient, code: r.responseCode, reason: r.message };
}

export interface AcceptResult {
  messageId: string; // Message-ID header value, <...>
  accepted: AcceptedRecipient[];
  rejected: RejectedRecipient[];
}

/** Checks made at MAIL FROM (and again by acceptOutbound): may this mailbox send as `from` now? */
export function checkSender(app: AppContext, mailbox: Sender, from: string, opts: { allowNullSender?: boolean; srsRedirect?: boolean } = {}): { caps: Caps; usage: Usage } {
  const st = sendingState(app.db, mailbox.id);
  if (!st || st.disabled) throw new LetterboxError('unauthorized', 'mailbox is disabled or no longer exists', { smtp: '535 5.7.8' });
  if (!st.outbound_enabled) throw new LetterboxError('forbidden', `outbound mail for ${mailbox.domain} is suspended by the administrator`, { smtp: '550 5.7.1' });
  if (!from && !opts.allowNullSender) throw new LetterboxError('forbidden', 'the null sender cannot be used for submission', { smtp: '553 5.7.1' });
  if (from && !opts.srsRedirect && !isAuthorizedSender(from, ownedAddresses(app.db, mailbox.address))) {
    throw new LetterboxError('forbidden', `${mailbox.address} may not send as <${from}>: use your own address or an alias that points only to you`, { smtp: '553 5.7.1' });
  }
  const cs = capsState(app, mailbox);
  const v = checkMessageCap(cs.caps, cs.usage);
  if (v) throw new LetterboxError('rate_limited', v.message, { smtp: '451 4.7.1', cap: v.cap, limit: v.limit });
  return cs;
}

/** Caps and current usage of a mailbox, read once per message (at MAIL FROM). */
export function capsState(app: AppContext, mailbox: Sender): { caps: Caps; usage: Usage } {
  const caps = effectiveCaps(app.db, app.config, mailbox);
  return { caps, usage: usageOf(app.db, app.sendReservations, mailbox.id, app.clock.now(), { messages: caps.messagesPerHour > 0, recipients: caps.recipientsPerDay > 0 }) };
}

/** Checks made at each RCPT TO: null when acceptable, else the per-recipient refusal. `count` includes it. */
export function checkRecipient(app: AppContext, mailbox: Sender, rcpt: string, count: number, state: { caps: Caps; usage: Usage } = capsState(app, mailbox)): RejectedRecipient | null {
  let a;
  try {
    a = parseAddress(rcpt);
  } catch (err: any) {
    return refused(rcpt, reply(553, '5.1.3', err.message));
  }
  const v = checkRecipientCaps(state.caps, state.usage, count);
  if (v) return refused(rcpt, reply(451, '4.7.1', v.message));
  if (isSuppressed(app.db, mailbox.domain, a.address)) {
    recordEvent(app.db, app.clock, { type: 'message.suppressed', mailboxId: mailbox.id, domain: mailbox.domain, data: { recipient: a.address, from: mailbox.address, refused: true, reason: 'on the suppression list' } });
    return refused(rcpt, reply(550, '5.7.1', `<${a.address}> is on the suppression list of ${mailbox.domain} after a hard bounce; remove it with 'letterbox suppression rm ${mailbox.domain} ${a.address}'`));
  }
  if (isLocalDomain(app.db, a.domain)) {
    const res = resolveLocal(app, rcpt);
    if (!res.ok) return refused(rcpt, reply(res.reply.responseCode, res.reply.enhanced, `<${a.address}>: ${res.reply.text}`));
  }
  return null;
}

/**
 * An address in one of our domains, resolved by the one routing code path (src/routing/resolve.ts,
 * the same as the MX's): mailbox, plus-address folder (case kept), alias (loops refused), catch-all.
 */
function resolveLocal(app: AppContext, rcpt: string): Resolution {
  return resolveRecipient(app.db, rcpt.trim(), { srsSecret: app.srsSecret, now: app.clock.now(), hostname: app.config.hostname });
}

/** The recipient as routed: domain normalized; the local part as written for our domains (the plus folder keeps its case). */
function routedAddress(app: AppContext, rcpt: string): string {
  const a = parseAddress(rcpt);
  if (!isLocalDomain(app.db, a.domain)) return a.address;
  const raw = rcpt.trim();
  return `${raw.slice(0, raw.lastIndexOf('@'))}@${a.domain}`;
}

/**
 * Accepts an outbound message for delivery. Durable before it resolves: local recipients are stored
 * by Dovecot and the rest are in the queue (spool fsynced, rows committed). Throws a LetterboxError
 * (`forbidden`, `rate_limited`, `unauthorized`, `unavailable`, `validation_error`) when the whole
 * message is refused; `details.smtp` holds the SMTP reply code to use. Recipients refused one by
 * one are listed in `rejected`; when every recipient is refused nothing is sent.
 */
export async function acceptOutbound(app: AppContext, input: AcceptInput): Promise<AcceptResult> {
  const { db, clock, config } = app;
  const { mailbox } = input;
  // A Sieve redirect (input.redirect, SRS envelope sender; or, from a Dovecot configured before
  // SRS, the mailbox's address as envelope sender) keeps the original author's From; everything
  // else must be From the mailbox.
  const redirect = input.origin === 'sieve' && (input.envelope.from !== '' || !!input.redirect);
  const st = checkSender(app, mailbox, input.envelope.from, { allowNullSender: input.origin === 'sieve', srsRedirect: input.origin === 'sieve' && !!input.redirect });
  const rejected: RejectedRecipient[] = [];
  const rcpts: string[] = [];
  for (const r of input.envelope.to) {
    const bad = checkRecipient(app, mailbox, r, rcpts.length + 1, st);
    if (bad) rejected.push(bad);
    else rcpts.push(routedAddress(app, r));
  }
  if (rcpts.length === 0 && input.envelope.to.length === 0) throw new LetterboxError('validation_error', 'no recipients', { smtp: '554 5.5.1' });

  const now = new Date(clock.now());
  const c = input.client ?? {};
  const received = receivedValue({
    helo: c.helo ?? 'api',
    ip: c.ip ?? null,
    hostname: config.hostname,
    transmissionType: c.protocol ?? (input.origin === 'api' ? 'HTTP' : 'ESMTPSA'),
    tls: c.tls ?? null,
    id: randomBytes(6).toString('hex'),
    date: now,
  });
  const fixed = applyFixups({ message: input.message, received, now, newMessageId: () => `<${randomBytes(12).toString('hex')}@${mailbox.domain}>` });
  if (fixed.from.length === 0) throw new LetterboxError('validation_error', 'the message has no From header', { smtp: '550 5.6.0' });
  // From/Sender read strictly (RFC 5322), never guessed: from-check.ts. Not for a redirect: its
  // From is the original author's, never checked against the mailbox.
  if (!redirect) checkAuthorHeaders(fixed.headers);
  const owned = ownedAddresses(db, mailbox.address);
  for (const f of redirect ? [] : fixed.from) {
    if (!isAuthorizedSender(f, owned)) {
      throw new LetterboxError('forbidden', `${mailbox.address} may not send with From: ${f}: use your own address or an alias that points only to you`, { smtp: '553 5.7.1' });
    }
  }
  if (rcpts.length === 0) return { messageId: fixed.messageId, accepted: [], rejected };
  // Reserved now, in the same synchronous stretch as the cap checks above, so concurrent sessions
  // cannot all pass the same cap; the send_log row is written in the transaction that queues the
  // message (one commit), and taken back below if nothing is accepted.
  // A sandbox send (API test key) is checked against the caps like a live one but never counted:
  // it must not use up the mailbox's live sending allowance.
  const release = input.sandbox ? () => {} : app.sendReservations.reserve(mailbox.id, rcpts.length);
  const log: { id: number | null } = { id: null };
  const count = input.sandbox ? () => {} : () => void (log.id = recordSend(db, mailbox.id, clock.now(), rcpts.length));
  try {
    const r = await deliverAccepted(app, input, fixed.message, fixed.from, fixed.messageId, rcpts, rejected, now, count, redirect ? mailbox.domain : null);
    if (r.accepted.length === 0 && log.id !== null) unrecordSend(db, log.id);
    return r;
  } catch (err) {
    if (log.id !== null) unrecordSend(db, log.id);
    throw err;
  } finally {
    release();
  }
}

async function deliverAccepted(app: AppContext, input: AcceptInput, message: Buffer, fromHeader: string[], messageId: string, rcpts: string[], rejected: RejectedRecipient[], now: Date, inTransaction: () => void, signAs: string | null): Promise<AcceptResult> {
  const { db, config } = app;
  const { mailbox } = input;
  const fixed = { message, messageId, from: fromHeader };
  // d= is the From domain (one of ours: the mailbox's or an owned alias's domain); a Sieve
  // redirect is signed with the mailbox's domain (its From is the original author's).
  // Outbound abuse check (issue #14, src/spam/outbound.ts): refuses spam before anything is queued.
  await checkOutboundSpam(app, { message, mailbox: mailbox.address, mailboxId: mailbox.id, domain: mailbox.domain, from: input.envelope.from, rcpts, origin: input.origin, ip: input.client?.ip, messageId });
  const signingDomain = signAs ?? parseAddress(fixed.from[0]).domain;
  const dkimSigned = await app.dkim.sign(signingDomain, fixed.message, now);
  // A redirect is ARC-sealed last, over the DKIM-signed copy (src/smtp/inject/redirect.ts).
  const signed = input.origin === 'sieve' && input.redirect ? await input.redirect.seal(dkimSigned) : dkimSigned;

  // Split recipients: local mailboxes (LMTP now), external (queue).
  const local = new Map<string, string[]>(); // recipient → mailbox addresses
  const remote: string[] = [];
  for (const r of rcpts) {
    const d = parseAddress(r).domain;
    if (isLocalDomain(db, d)) {
      const res = resolveLocal(app, r);
      // Changed since RCPT (alias removed, mailbox disabled): refused like it would be now.
      if (!res.ok) rejected.push(refused(r, reply(res.reply.responseCode, res.reply.enhanced, `<${r}>: ${res.reply.text}`)));
      else {
        const x = splitTargets(res.targets);
        local.set(r, x.lmtp);
        remote.push(...x.forwards);
      }
    } else remote.push(r);
  }
  const accepted: AcceptedRecipient[] = [];
  const queue = runningQueue(app);
  if (!queue) throw new LetterboxError('unavailable', 'the outbound queue is not running', { smtp: '451 4.3.0' });
  const enqueueBase = { message: signed, from: input.envelope.from, mailboxId: mailbox.id, sendingDomain: mailbox.domain, messageId: fixed.messageId, origin: input.origin, inTransaction };

  if (input.sandbox) {
    const all = [...new Set([...[...local.values()].flat(), ...remote])];
    const q = await queue.enqueue({ ...enqueueBase, recipients: all, sandbox: true });
    all.forEach((r, i) => accepted.push({ recipient: r, status: 'sandbox', queueId: q.queueIds[i] }));
  } else {
    const toQueue = [...new Set(remote)];
    const lmtpTo = [...new Set([...local.values()].flat())];
    // Durable first: every recipient goes into the queue (spool fsynced, rows committed), the local
    // ones held in flight for the LMTP attempt below. If this fails, the client's 451 means that
    // nothing was delivered anywhere, so its retry duplicates nothing.
    let q;
    try {
      q = await queue.enqueue({ ...enqueueBase, recipients: [...toQueue, ...lmtpTo], held: lmtpTo });
      app.crash('submit.after-queue-commit');
    } catch (err: any) {
      app.log.error({ err: err.message, messageId: fixed.messageId }, 'could not queue an outbound message; nothing was delivered');
      throw new LetterboxError('unavailable', 'the message could not be stored durably; nothing was sent; try again later', { smtp: '451 4.3.0' }, { cause: err });
    }
    const queued: AcceptedRecipient[] = toQueue.map((r, i) => ({ recipient: r, status: 'queued', queueId: q.queueIds[i] }));
    if (lmtpTo.length) {
      const ids = new Map(lmtpTo.map((r, i) => [r, q.queueIds[toQueue.length + i]]));
      const results: LocalOutcome[] = await app.delivery.deliver({ from: input.envelope.from, body: signed }, lmtpTo);
      // Every recipient refused for good by Dovecot (and none remote): the client is told, no DSN.
      const refuseAll = toQueue.length === 0 && results.every((r) => r.status === 'permfail');
      try {
        // Delivered → done; tempfail → the queue retries over LMTP; permfail among others → bounced
        // with a DSN to the sender.
        await queue.settle(q.id!, results.map((r) => ({ queueId: ids.get(r.recipient)!, code: r.code, reply: r.response })), { mx: 'lmtp', cancelPermanent: refuseAll });
      } catch (err: any) {
        // Still durable: the entries stay in flight and are queued again at the next start.
        app.log.error({ err: err.message, messageId: fixed.messageId }, 'could not record the local delivery outcome; the queue takes it over at the next start');
      }
      for (const r of results) {
        if (r.status === 'delivered') accepted.push({ recipient: r.recipient, status: 'delivered' });
        else if (refuseAll) rejected.push({ recipient: r.recipient, code: r.code, reason: refusalText(r) });
        else queued.push({ recipient: r.recipient, status: 'queued', queueId: ids.get(r.recipient) });
      }
    }
    accepted.push(...queued);
  }
  app.log.info({ mailbox: mailbox.address, messageId: fixed.messageId, accepted: accepted.length, rejected: rejected.length, origin: input.origin, sandbox: !!input.sandbox }, 'outbound message accepted');
  app.crash('submit.before-reply');
  return { messageId: fixed.messageId, accepted, rejected };
}
