import { createHash, randomBytes } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer';
import addressparser from 'nodemailer/lib/addressparser';
import { z } from 'zod';
import { LetterboxError } from '../../errors.ts';
import { acceptOutbound } from '../../submit/accept.ts';
import { parseAddress } from '../../util/address.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { visibleMailbox } from '../access.ts';
import { claimKey, completeClaim, getClaim, pruneClaims, releaseClaim } from '../idempotency.ts';
import { IdParams } from '../schemas/common.ts';
import { SendBody, SendResultSchema } from '../schemas/send.ts';
import type { ApiRequest } from '../types.ts';

const tag = 'Sending';
const DAY = 24 * 3600 * 1000;

type Body = z.output<typeof SendBody>;
interface Addr {
  name: string;
  address: string;
}

/** Parses an address field value ("a@b", "Name <a@b>", "a@b, c@d") into checked mailbox addresses. */
function parseField(field: string, value: string | string[] | undefined): Addr[] {
  if (value === undefined) return [];
  const out: Addr[] = [];
  for (const v of Array.isArray(value) ? value : [value]) {
    const parsed = addressparser(v);
    if (!parsed.length) throw new LetterboxError('validation_error', `body.${field}: "${v}" is not an address`);
    for (const p of parsed) {
      if ('group' in p && p.group) throw new LetterboxError('validation_error', `body.${field}: address groups are not supported ("${v}")`);
      const a = p as { name: string; address: string };
      if (!a.address) throw new LetterboxError('validation_error', `body.${field}: "${v}" has no address`);
      try {
        out.push({ name: a.name ?? '', address: parseAddress(a.address).address });
      } catch (err: any) {
        throw new LetterboxError('validation_error', `body.${field}: ${err.message}`);
      }
    }
  }
  return out;
}

/** JSON with sorted keys: the same body in another key order hashes the same. */
function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable((v as any)[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** Builds the message with MailComposer (Bcc kept: the submission path removes it before sending, the Sent copy keeps it). */
async function compose(req: ApiRequest<any, any, Body>, from: Addr, b: Body, messageId: string, now: Date): Promise<{ message: Buffer; recipients: string[] }> {
  const to = parseField('to', b.to);
  const cc = parseField('cc', b.cc);
  const bcc = parseField('bcc', b.bcc);
  const replyTo = parseField('replyTo', b.replyTo);
  const recipients = [...new Set([...to, ...cc, ...bcc].map((a) => a.address))];
  let total = 0;
  const attachments = (b.attachments ?? []).map((a, i) => {
    const content = Buffer.from(a.content, 'base64');
    total += content.length;
    if (a.content.length % 4 !== 0) throw new LetterboxError('validation_error', `body.attachments[${i}].content: base64 length must be a multiple of 4`);
    return {
      filename: a.filename,
      content,
      ...(a.contentType ? { contentType: a.contentType } : {}),
      ...(a.contentId ? { cid: a.contentId } : {}),
      ...(a.disposition ? { contentDisposition: a.disposition } : {}),
    };
  });
  const max = req.app.config.submission.max_message_size;
  if (total > max) throw new LetterboxError('payload_too_large', `the attachments add up to ${total} bytes, over the message size limit of ${max} bytes (submission.max_message_size)`);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(b.headers ?? {})) headers[k] = v;
  const mail = new MailComposer({
    from: { name: b.fromName ?? from.name, address: from.address },
    to: to.map((a) => ({ name: a.name, address: a.address })),
    ...(cc.length ? { cc: cc.map((a) => ({ name: a.name, address: a.address })) } : {}),
    ...(bcc.length ? { bcc: bcc.map((a) => ({ name: a.name, address: a.address })) } : {}),
    ...(replyTo.length ? { replyTo: replyTo.map((a) => ({ name: a.name, address: a.address })) } : {}),
    subject: b.subject,
    ...(b.text !== undefined ? { text: b.text } : {}),
    ...(b.html !== undefined ? { html: b.html } : {}),
    headers,
    attachments,
    messageId,
    date: now,
  } as any);
  const node = mail.compile();
  (node as any).keepBcc = true;
  const message = await node.build();
  if (message.length > max) throw new LetterboxError('payload_too_large', `the message is ${message.length} bytes, over the limit of ${max} bytes (submission.max_message_size)`);
  return { message, recipients };
}

async function send(req: ApiRequest<{ id: string }, any, Body>, messageId: string) {
  const { app } = req;
  const m = visibleMailbox(req, req.params.id);
  const b = req.body;
  const fromList = b.from ? parseField('from', b.from) : [{ name: '', address: m.address }];
  if (fromList.length !== 1) throw new LetterboxError('validation_error', 'body.from: exactly one address');
  const from = fromList[0];
  const now = new Date(app.clock.now());
  const { message, recipients } = await compose(req, from, b, messageId, now);
  // The Sent copy is stored while the submission path runs (its wait for Dovecot overlaps the
  // spool and queue fsyncs instead of adding to them); if the submission then sends nothing, the
  // copy is removed again. Test keys store none.
  let copyError: string | null = null;
  const copying: Promise<{ folder: string; uid: number | null } | null> = req.sandbox
    ? Promise.resolve(null)
    : app.mail.appendToSent(m.address, message).catch((err: any) => {
        copyError = String(err?.message ?? err);
        return null;
      });
  const discardCopy = async () => {
    const c = await copying;
    if (!c?.uid) return;
    await app.mail.deleteMessage(m.address, c.folder, c.uid, true).catch((err: any) =>
      req.log.warn({ requestId: req.requestId, mailbox: m.address, uid: c.uid, err: err?.message }, 'nothing was sent, but removing the copy stored in Sent failed'),
    );
  };
  let r: Awaited<ReturnType<typeof acceptOutbound>>;
  try {
    r = await acceptOutbound(app, {
      mailbox: { id: m.id, address: m.address, domain: m.domain },
      message,
      envelope: { from: from.address, to: recipients },
      sandbox: req.sandbox,
      origin: 'api',
      client: { ip: req.ctx.request.ip, helo: 'api', protocol: 'HTTP' },
    });
  } catch (err: any) {
    await discardCopy();
    // The submission path says "unauthorized" for a disabled mailbox (SMTP 535); over the API the
    // key is fine and the mailbox may not send: 403, not a 401 that would blame the key.
    if (err?.code === 'unauthorized') throw new LetterboxError('forbidden', `${m.address} cannot send: ${err.message}`);
    throw err;
  }
  if (r.accepted.length === 0) {
    await discardCopy();
    throw new LetterboxError('validation_error', `every recipient was refused: ${r.rejected.map((x) => `${x.recipient}: ${x.code} ${x.reason}`).join('; ')}`, {
      issues: r.rejected.map((x) => ({ path: 'body.to', message: `${x.recipient}: ${x.code} ${x.reason}` })),
    });
  }
  const sentCopy = await copying;
  if (copyError) req.log.warn({ requestId: req.requestId, mailbox: m.address, err: copyError }, 'sent, but storing the copy in Sent failed');
  return {
    messageId: r.messageId,
    accepted: r.accepted,
    rejected: r.rejected,
    queueIds: r.accepted.flatMap((a) => (a.queueId ? [a.queueId] : [])),
    sandbox: req.sandbox,
    sentCopy,
  };
}

export const sendRoutes: RouteSpec[] = [
  defineRoute({
    method: 'post', path: '/mailboxes/:id/send', operationId: 'sendMessage', tag, scope: 'send:write', bucket: 'send', errors: [409, 502],
    summary: 'Send a message from a mailbox',
    description:
      'Builds the message (nodemailer MailComposer) and hands it to the same path as SMTP submission: sender authorization, sending caps, suppressions, DKIM, local delivery now or the outbound queue. A copy is stored in the mailbox\'s Sent folder (not for test keys). ' +
      'Test keys (lb_test_…): checked and recorded as delivered, never delivered, `sandbox: true`. ' +
      'Idempotency: send an `Idempotency-Key` header (1-255 visible characters); the same key with the same body within 24 hours returns the first response (header `Idempotent-Replayed: true`) and sends nothing; the same key with a different body is a 409. ' +
      'CR/LF are refused in every header-bound field; extra `headers` are limited to a safe set. 400 when every recipient is refused (the reasons are in the message).',
    params: IdParams, body: SendBody, response: SendResultSchema,
    handler: async (req) => {
      const { db, clock } = req.app;
      const metrics = req.app.metrics;
      const sandboxLabel = String(req.sandbox);
      const idem = req.ctx.get('Idempotency-Key');
      if (idem && !/^[\x21-\x7e]{1,255}$/.test(idem)) throw new LetterboxError('validation_error', 'Idempotency-Key: 1-255 visible ASCII characters');
      // Chosen before the Idempotency-Key claim, which records it: after a crash, the queue tells
      // from it whether the message was accepted (recoverClaims, at the next start).
      const messageId = `<${randomBytes(12).toString('hex')}@${visibleMailbox(req, req.params.id).domain}>`;
      if (!idem) {
        try {
          const data = await send(req, messageId);
          metrics.apiSends.inc({ outcome: 'accepted', sandbox: sandboxLabel });
          return { data };
        } catch (err) {
          metrics.apiSends.inc({ outcome: (err as any)?.code === 'validation_error' ? 'rejected' : 'error', sandbox: sandboxLabel });
          throw err;
        }
      }
      const keyId = req.key!.id;
      const hash = createHash('sha256').update(stable({ mailbox: visibleMailbox(req, req.params.id).id, body: req.body })).digest('hex');
      const now = clock.now();
      pruneClaims(db, now - DAY);
      const claimed = claimKey(db, keyId, idem, hash, now, messageId);
      if (claimed) req.app.crash('api.after-idempotency-claim');
      if (!claimed) {
        const row = getClaim(db, keyId, idem)!;
        if (row.requestHash !== hash) throw new LetterboxError('conflict', 'this Idempotency-Key was already used with a different request body in the last 24 hours; use a new key');
        if (row.status === null) throw new LetterboxError('conflict', 'a request with this Idempotency-Key is still in progress; retry in a moment');
        metrics.apiSends.inc({ outcome: 'replayed', sandbox: sandboxLabel });
        return { status: row.status, data: JSON.parse(row.response!), headers: { 'Idempotent-Replayed': 'true' } };
      }
      try {
        const data = await send(req, messageId);
        completeClaim(db, keyId, idem, 200, data);
        metrics.apiSends.inc({ outcome: 'accepted', sandbox: sandboxLabel });
        return { data };
      } catch (err) {
        // Nothing was sent: the key may be used again.
        releaseClaim(db, keyId, idem);
        metrics.apiSends.inc({ outcome: (err as any)?.code === 'validation_error' ? 'rejected' : 'error', sandbox: sandboxLabel });
        throw err;
      }
    },
  }),
];
