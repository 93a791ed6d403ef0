// Enqueueing, in two steps so that a DSN can be written before the transaction that records the
// bounce it reports: prepare (recipients normalised, the message in the spool, fsynced), then
// insert (the rows and the message.queued event; synchronous, inside the caller's transaction).
import type { DB } from '../db/index.ts';
import type { Clock } from '../clock.ts';
import type { Spool } from '../spool/index.ts';
import type { EnqueueRequest } from './handoff.ts';
import { newId } from '../util/ids.ts';
import { parseAddress } from '../mail/address.ts';
import { recordEvent } from '../events/record.ts';
import { insertMessage, insertRecipient } from './store.ts';

export interface Prepared {
  req: EnqueueRequest;
  rcpts: { address: string; domain: string }[];
  held: boolean[];
  msgId: string;
  ids: string[];
  spoolId: string | null;
}

/** Step 1: recipients normalised, the message written to the spool and fsynced (not for a sandbox). */
export async function prepareEnqueue(spool: Spool, req: EnqueueRequest): Promise<Prepared> {
  const rcpts = req.recipients.map((r) => {
    const a = parseAddress(r);
    // A plus-address detail keeps its case: it names a folder (bob+Lists@ files into Lists).
    const raw = r.trim();
    const at = raw.lastIndexOf('@');
    const plus = raw.indexOf('+');
    const address = plus > 0 && plus < at ? `${a.local.slice(0, plus)}${raw.slice(plus, at)}@${a.domain}` : a.address;
    return { address, domain: a.domain };
  });
  const held = new Set(req.held ?? []);
  const msgId = newId('msg');
  const ids = rcpts.map(() => newId('q'));
  const spoolFile = req.sandbox ? null : await spool.write(req.message, { id: msgId.slice(4) });
  return { req, rcpts, held: req.recipients.map((r) => held.has(r)), msgId, ids, spoolId: spoolFile?.id ?? null };
}

/** Step 2: the rows and events. Synchronous; runs inside the caller's transaction. */
export function insertEnqueued(db: DB, clock: Clock, p: Prepared): void {
  const { req, rcpts, msgId, ids } = p;
  const now = clock.now();
  const sandbox = !!req.sandbox;
  insertMessage(db, {
    id: msgId,
    spool_id: p.spoolId,
    size: req.message.length,
    mail_from: req.from,
    mailbox_id: req.mailboxId,
    sending_domain: req.sendingDomain,
    message_id: req.messageId ?? null,
    origin: req.origin,
    sandbox,
    pending: sandbox ? 0 : rcpts.length,
    created_at: now,
  });
  rcpts.forEach((r, i) => insertRecipient(db, { id: ids[i], messageId: msgId, recipient: r.address, domain: r.domain, state: sandbox ? 'sandbox' : p.held[i] ? 'inflight' : 'queued', now }));
  recordEvent(db, clock, {
    type: 'message.queued',
    mailboxId: req.mailboxId,
    domain: req.sendingDomain,
    messageId: req.messageId ?? null,
    data: { id: msgId, from: req.from, recipients: rcpts.map((r, i) => ({ recipient: r.address, queueId: ids[i] })), origin: req.origin, sandbox, size: req.message.length },
  });
  if (sandbox) {
    rcpts.forEach((r, i) =>
      recordEvent(db, clock, { type: 'message.delivered', mailboxId: req.mailboxId, domain: req.sendingDomain, messageId: req.messageId ?? null, data: { id: msgId, queueId: ids[i], recipient: r.address, sandbox: true } }),
    );
  }
}
