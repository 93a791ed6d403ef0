// One delivery attempt of a claimed job (one message, one destination domain, up to 100 entries):
// gather (deliver: LMTP for our own domains, SMTP otherwise) → decide (decideOutcomes, pure) → act
// (DSNs written to the spool first, then one transaction records outcomes, attempts, events,
// suppressions, new alias targets and the DSNs' rows; then the spool file goes when nothing is
// pending).
import { noCrashPoints } from '../util/crash-points.ts';
import { createReadStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { AppContext } from '../server.ts';
import type { Spool } from '../spool/index.ts';
import type { DkimSigner } from '../dkim/sign.ts';
import type { EnqueueRequest } from './handoff.ts';
import type { RetryPolicy } from './schedule.ts';
import type { SmtpClient, AttemptInfo } from './smtp-client.ts';
import { groupCommit } from '../db/group-commit.ts';
import { newId } from '../util/ids.ts';
import { parseAddress } from '../mail/address.ts';
import { recordEvent } from '../events/record.ts';
import { isLocalDomain, resolveRecipient, splitTargets } from '../routing/resolve.ts';
import { buildDsn, dsnSigningDomains, type DsnRecipient } from '../mail/dsn.ts';
import { headerValue, readHeaderSection } from '../mail/headers.ts';
import { outcomeOf } from './classify.ts';
import { combineLocalResults, decideOutcomes, withoutDsns, type AttemptResult, type Decision, type QueueRow } from './decide.ts';
import { prepareEnqueue, insertEnqueued, type Prepared } from './enqueue.ts';
import { addRecipients, addSuppression, getMessage, insertAttempt, recordOutcome, updatePending, type MessageRow } from './store.ts';

/** When a bounce's DSN cannot be written, the recipient stays queued and is tried again this much later. */
export const DSN_RETRY_MS = 60_000;

export interface AttemptDeps {
  app: AppContext;
  spool: Spool;
  client: SmtpClient;
  policy: RetryPolicy;
  /** Signs the DSNs. */
  dkim: DkimSigner;
  srsSecret(): string;
  /** Retry jitter source, in [0,1). */
  random(): number;
  /** The scheduler should look for due entries soon (new entries were added). */
  wake(): void;
}

/** Delivers a claimed job and records the outcome for each of its entries. */
export async function runAttempt(deps: AttemptDeps, rows: QueueRow[]): Promise<void> {
  const msg = getMessage(deps.app.db, rows[0].message_id);
  const { results, attempt, extraExternal } = await deliverJob(deps, msg, rows);
  await finishAttempt(deps, msg, rows, results, attempt, extraExternal);
}

async function deliverJob(deps: AttemptDeps, msg: MessageRow, rows: QueueRow[]): Promise<{ results: AttemptResult[]; attempt: AttemptInfo; extraExternal: string[] }> {
  const domain = rows[0].domain;
  const recipients = rows.map((r) => r.recipient);
  const spoolPath = deps.spool.pathFor(msg.spool_id!);
  if (isLocalDomain(deps.app.db, domain)) {
    const local = await deliverLocal(deps, msg, recipients, spoolPath);
    // External alias targets are added once, on the first attempt (a retry must not add them again).
    return rows.some((r) => r.attempts > 0) ? { ...local, extraExternal: [] } : local;
  }
  const { results, attempt } = await deps.client.deliver({ domain, from: msg.mail_from, recipients, size: msg.size, body: () => createReadStream(spoolPath), sendingDomain: msg.sending_domain });
  return { results, attempt, extraExternal: [] };
}

async function deliverLocal(deps: AttemptDeps, msg: MessageRow, recipients: string[], spoolPath: string): Promise<{ results: AttemptResult[]; attempt: AttemptInfo; extraExternal: string[] }> {
  const { db, config, clock } = deps.app;
  const attempt: AttemptInfo = { mx: 'lmtp', ip: null, sourceIp: null, tlsVersion: null, tlsCipher: null, transcript: '' };
  const targets = new Map<string, string[]>();
  const extraExternal: string[] = [];
  const fixed = new Map<string, AttemptResult>();
  for (const r of recipients) {
    // The one routing code path (the MX's and submission's): loops, catch-all, plus folders, disabled.
    const res = resolveRecipient(db, r, { srsSecret: deps.srsSecret(), now: clock.now(), hostname: config.hostname });
    if (!res.ok) fixed.set(r, { recipient: r, code: res.reply.responseCode, reply: res.reply.line, outcome: outcomeOf(res.reply.responseCode) });
    else {
      const x = splitTargets(res.targets);
      targets.set(r, x.lmtp);
      extraExternal.push(...x.forwards);
    }
  }
  const lmtpTo = [...new Set([...targets.values()].flat())];
  const byTarget = new Map<string, { code: number; response: string }>();
  for (const x of await deps.app.delivery.deliver({ from: msg.mail_from, body: () => createReadStream(spoolPath) }, lmtpTo)) byTarget.set(x.recipient, x);
  const results = recipients.map((r) => fixed.get(r) ?? combineLocalResults(r, (targets.get(r) ?? []).map((t) => byTarget.get(t)!), outcomeOf));
  return { results, attempt, extraExternal };
}

/**
 * Records the outcome of one attempt for each entry. A DSN (failure or delay notice) is written to
 * the spool (fsynced) first and its queue rows are inserted in the same transaction as the state
 * change that causes it: a crash at any point leaves either both or neither (at worst an orphan
 * spool file). If the DSN cannot be written, the bounce is not recorded either: the recipient stays
 * queued and the attempt is made again later (a delay notice is simply left for a later attempt).
 */
export async function finishAttempt(deps: AttemptDeps, msg: MessageRow, rows: QueueRow[], results: AttemptResult[], attempt: AttemptInfo, extraExternal: string[]): Promise<void> {
  if (deps.app.crash !== noCrashPoints && results.some((r) => r.code >= 200 && r.code < 300)) deps.app.crash('queue.after-remote-accept');
  const now = deps.app.clock.now();
  const decided = decideOutcomes(rows, results, deps.policy, now, deps.random, {
    mx: attempt.mx,
    canDsn: msg.mail_from !== '' && msg.origin !== 'dsn',
    suppressFor: msg.origin !== 'dsn' ? msg.sending_domain : null,
  });
  const { decisions, dsns } = await writeDsns(deps, msg, decided, now);
  let pendingLeft: number;
  try {
    pendingLeft = await groupCommit(deps.app.db).run(() => record(deps, msg, decisions, attempt, extraExternal, dsns, now));
  } catch (err) {
    for (const p of dsns) if (p.spoolId) await deps.spool.remove(p.spoolId).catch(() => {});
    throw err;
  }
  if (extraExternal.length || dsns.length) deps.wake();
  if (pendingLeft <= 0 && msg.spool_id) await deps.spool.remove(msg.spool_id);
}

/** DSNs on disk (fsynced) before the commit that records what they report; without them, the decisions that needed them change. */
async function writeDsns(deps: AttemptDeps, msg: MessageRow, decisions: Decision[], now: number): Promise<{ decisions: Decision[]; dsns: Prepared[] }> {
  const failed = decisions.filter((d) => d.dsn?.action === 'failed');
  const delayed = decisions.filter((d) => d.dsn?.action === 'delayed');
  const dsns: Prepared[] = [];
  if (!failed.length && !delayed.length) return { decisions, dsns };
  try {
    const headers = await readHeaderSection(deps.spool.pathFor(msg.spool_id!));
    for (const group of [failed, delayed]) if (group.length) dsns.push(await prepareEnqueue(deps.spool, await dsnRequest(deps, msg, headers, group.map((d) => d.dsn!))));
    return { decisions, dsns };
  } catch (err: any) {
    for (const p of dsns) if (p.spoolId) await deps.spool.remove(p.spoolId).catch(() => {});
    deps.app.log.error({ err: err.message, id: msg.id }, 'could not write a delivery status notification; the bounce is not recorded and the recipients are tried again later');
    return { decisions: withoutDsns(decisions, now, DSN_RETRY_MS), dsns: [] };
  }
}

/** The writes of one attempt (synchronous, inside the group commit); returns the message's pending count. */
function record(deps: AttemptDeps, msg: MessageRow, decisions: Decision[], attempt: AttemptInfo, extraExternal: string[], dsns: Prepared[], now: number): number {
  const { db, clock } = deps.app;
  const ev = (type: any, data: Record<string, unknown>) =>
    recordEvent(db, clock, { type, mailboxId: msg.mailbox_id, domain: msg.sending_domain, messageId: msg.message_id, data: { id: msg.id, from: msg.mail_from, ...data } });
  let done = 0;
  for (const d of decisions) {
    const { row, r } = d;
    const base = { queueId: row.id, recipient: row.recipient, code: r.code, reply: r.reply, mx: attempt.mx, attempts: row.attempts + 1 };
    recordOutcome(db, { queueId: row.id, outcome: d.outcome, code: r.code, reply: r.reply, nextAttemptAt: d.nextAttemptAt, delayNotified: d.delayNotified, now });
    if (d.outcome === 'deferred') {
      ev('message.deferred', { ...base, nextAttemptAt: new Date(d.nextAttemptAt!).toISOString(), ...(d.dsnFailed ? { reason: 'the bounce notice could not be written; tried again later' } : {}) });
    } else if (d.outcome === 'delivered') {
      done++;
      ev('message.delivered', base);
    } else {
      done++;
      ev('message.bounced', d.expired ? { ...base, reason: 'expired' } : base);
      if (d.suppress && addSuppression(db, { domain: msg.sending_domain!, address: row.recipient, reason: 'hard bounce', code: r.code, createdAt: new Date(now).toISOString() })) {
        ev('message.suppressed', { recipient: row.recipient, reason: 'hard bounce', code: r.code, reply: r.reply });
      }
    }
    insertAttempt(db, {
      queueId: row.id,
      at: now,
      mx: attempt.mx,
      ip: attempt.ip,
      sourceIp: attempt.sourceIp,
      tlsVersion: attempt.tlsVersion,
      tlsCipher: attempt.tlsCipher,
      code: r.code,
      reply: r.reply,
      outcome: d.outcome,
      transcript: d.outcome === 'delivered' ? null : attempt.transcript || null,
      tls: attempt.tls ?? null,
    });
  }
  // Alias targets outside our domains found while delivering locally join the same message.
  const extra = [...new Set(extraExternal)];
  addRecipients(db, msg.id, extra.map((x) => ({ id: newId('q'), recipient: x, domain: parseAddress(x).domain })), now);
  for (const p of dsns) insertEnqueued(db, clock, p);
  return updatePending(db, msg.id, done, extra.length);
}

/** A DSN to the sender of `msg`, DKIM-signed like any other outgoing message. */
async function dsnRequest(deps: AttemptDeps, msg: MessageRow, headers: string, recipients: DsnRecipient[]): Promise<EnqueueRequest> {
  const { config, clock } = deps.app;
  const now = new Date(clock.now());
  const dsn = buildDsn({
    reportingMta: config.hostname,
    to: msg.mail_from,
    originalMessageId: msg.message_id,
    originalSubject: headerValue(headers, 'subject'),
    originalHeaders: headers,
    arrivalDate: new Date(msg.created_at),
    recipients,
    now,
    messageId: `<${randomBytes(12).toString('hex')}@${config.hostname}>`,
    boundary: `lb-dsn-${randomBytes(8).toString('hex')}`,
  });
  const signed = await deps.dkim.signWithFirst(dsnSigningDomains(config.hostname, msg.sending_domain), dsn, now);
  return { message: signed, from: '', recipients: [msg.mail_from], mailboxId: msg.mailbox_id, sendingDomain: null, origin: 'dsn', messageId: null };
}
