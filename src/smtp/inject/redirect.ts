// Sieve redirects through the injection listener (issue #17): which mailbox redirected a message,
// the loop guard, and the ARC seal. The decisions are pure functions; sealRedirect reads the stored
// verdicts and the domain's key.
//
// How a redirect is attributed to a mailbox, safely. Dovecot hands a redirect to the loopback
// injection listener with the ORIGINAL envelope sender (`sieve_redirect_envelope_from = sender`,
// src/dovecot/selfservice.ts), so the envelope says nothing about which mailbox's script sent it.
// Pigeonhole's redirect (act_redirect_send, 2.3 and 2.4) prepends exactly two fields to the
// message it sends: `X-Sieve: Pigeonhole ...` then `X-Sieve-Redirected-From: <the recipient whose
// script ran>`. So the listener takes a message as a redirect of mailbox M only when its FIRST
// field is X-Sieve and its SECOND is X-Sieve-Redirected-From naming M; any later
// X-Sieve-Redirected-From is ignored:
//  - a remote sender cannot reach the listener (loopback only, checked per connection); the copy
//    of the field it writes into its message stays where it was, below Dovecot's two (Pigeonhole
//    2.3.19 keeps such copies, as test/sieve-redirect.test.ts shows), so it never decides;
//  - a user's script cannot put it second either: editheader refuses to add that field, and the
//    headers of a `notify` mailto: URI, a vacation reply or a reject come after Pigeonhole's own
//    X-Sieve, Message-ID, Date;
//  - a vacation reply or a notification has no such field: it is attributed by its own sender
//    as before (the mailbox's address, or the From of a null-sender reply).
// What remains is the trust every loopback submission listener has (Postfix's sendmail too): a
// process on the machine itself can write anything; the listener never binds beyond loopback.
import { createSeal } from 'mailauth/lib/arc/index.js';
import { promises as fsp } from 'node:fs';
import type { AppContext } from '../../server.ts';
import { headerValue, parseHeader, splitMessage, type HeaderField } from '../../submit/fixups.ts';
import { getVerdicts, VERDICT_ID_HEADER } from '../../verdicts/store.ts';
import { findDomain } from '../../services/domains.ts';

/** The address in Pigeonhole's X-Sieve-Redirected-From (the second field) when `fields` are a redirect, else null. Pure. */
export function redirectedFrom(fields: HeaderField[]): string | null {
  if (fields.length < 2 || fields[0].name !== 'x-sieve' || fields[1].name !== 'x-sieve-redirected-from') return null;
  const v = headerValue(fields[1]).replace(/^<|>$/g, '').trim();
  return /^[^\s@<>]+@[^\s@<>]+$/.test(v) ? v : null;
}

/** `a` is `mailbox` or one of its plus-addresses (local+detail@domain), case-insensitively. Pure. */
function sameMailbox(a: string, mailbox: string): boolean {
  const x = a.replace(/^<|>$/g, '').trim().toLowerCase();
  const m = mailbox.toLowerCase();
  if (x === m) return true;
  const at = m.lastIndexOf('@');
  return x.startsWith(`${m.slice(0, at)}+`) && x.endsWith(m.slice(at));
}

/**
 * The loop guard. Pure. Dovecot's LMTP writes `Delivered-To: <recipient>` above its own Received
 * field when it stores the message, and every copy we redirect or forward leaves with it (Postfix's
 * convention, the one the MX's forwarding guard reads too). A `Delivered-To` naming the mailbox
 * BELOW the first Received field was written at an earlier hop: the message already went through
 * this mailbox and came back, so redirecting it again would loop.
 */
export function redirectLoops(fields: HeaderField[], mailbox: string): boolean {
  const firstReceived = fields.findIndex((f) => f.name === 'received');
  if (firstReceived < 0) return false;
  return fields.slice(firstReceived + 1).some((f) => f.name === 'delivered-to' && sameMailbox(headerValue(f), mailbox));
}

/** What the ARC seal of a redirect is made from (null: the message goes unsealed, and why). Pure. */
export function sealInput(
  verdicts: { mailboxIds: string[]; auth: { header: string; arc: { result: string } } } | null,
  mailboxId: string,
): { authResults: string; cv: 'none' | 'pass' } | { skip: string } {
  // Only our MX's verdicts, for a message it delivered to this very mailbox (X-Letterbox-Id is
  // written by the MX alone: it removes incoming copies, and submission strips it).
  if (!verdicts) return { skip: 'no verdicts of our MX for this message (not received over the MX)' };
  if (!verdicts.mailboxIds.includes(mailboxId)) return { skip: 'the verdicts are of another mailbox' };
  if (!verdicts.auth.header) return { skip: 'no Authentication-Results recorded' };
  const arc = verdicts.auth.arc.result;
  // RFC 8617 §5.1: a failed chain is not sealed again (mailauth does the same for forwards).
  if (arc !== 'none' && arc !== 'pass') return { skip: `the ARC chain it arrived with is ${arc}` };
  return { authResults: verdicts.auth.header, cv: arc };
}

/**
 * ARC-seals a redirect the way the MX seals a forward: the Authentication-Results our MX recorded
 * when it received the message (its stored verdicts, found by X-Letterbox-Id; nothing a sender
 * wrote) become the ARC-Authentication-Results, signed with the mailbox domain's DKIM key. Returns
 * the sealed message, or the message as it was (logged) when there is nothing trustworthy to seal.
 */
export async function sealRedirect(app: AppContext, o: { original: Buffer; message: Buffer; mailbox: { id: string; address: string; domain: string } }): Promise<Buffer> {
  const fields = parseHeader(splitMessage(o.original).header);
  const idField = fields.find((f) => f.name === VERDICT_ID_HEADER.toLowerCase());
  const input = sealInput(idField ? getVerdicts(app.db, headerValue(idField)) : null, o.mailbox.id);
  if ('skip' in input) {
    app.log.info({ component: 'inject', mailbox: o.mailbox.address, reason: input.skip }, 'redirect not ARC-sealed');
    return o.message;
  }
  const d = findDomain(app, o.mailbox.domain);
  const k = d?.dkim.find((x) => x.active && x.algorithm === 'rsa') ?? d?.dkim.find((x) => x.active);
  if (!d || !k) {
    app.log.warn({ component: 'inject', mailbox: o.mailbox.address }, 'redirect not ARC-sealed: the domain has no active DKIM key');
    return o.message;
  }
  const seal = { signingDomain: d.name, selector: k.selector, privateKey: await fsp.readFile(k.privateKeyPath), cv: input.cv, authResults: input.authResults, signTime: new Date(app.clock.now()) };
  const r = await createSeal(o.message, { seal });
  if (r.errors?.length || !r.headers?.length) {
    app.log.warn({ component: 'inject', mailbox: o.mailbox.address, err: r.errors?.[0]?.err?.message ?? 'no seal headers' }, 'redirect not ARC-sealed: sealing failed');
    return o.message;
  }
  return Buffer.concat([Buffer.from(r.headers.join('\r\n') + '\r\n', 'utf8'), o.message]);
}
