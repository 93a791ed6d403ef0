import { createReadStream, promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { authenticate, type AuthenticateResult } from './mailauth.ts';
import type { AppContext } from '../../server.ts';
import type { Spool, SpoolFile } from '../../spool/index.ts';
import { refusalReply, type LocalDelivery, type LocalOutcome } from '../../delivery/local.ts';
import type { DkimSigner } from '../../dkim/sign.ts';
import { recordEvent } from '../../events/record.ts';
import { runningQueue } from '../../queue/handoff.ts';
import { commitWithoutFsync } from '../../db/group-commit.ts';
import { isLetterboxError } from '../../errors.ts';
import { decide, type AuthResult, type Decision, type Evidence } from './policy.ts';
import type { SpamEvidence } from '../../spam/policy.ts';
import { HeaderFilter, LineEndingGuard, type HeaderInfo } from './stream.ts';
import { receivedHeader, type ReceivedInfo } from '../../mail/received.ts';
import { SmtpReply, internalFailure, newRef, reply } from '../../mail/reply.ts';
import { buildDsn, dsnSigningDomains, type DsnRecipient } from '../../mail/dsn.ts';
import { headerSection, readHeaderSection } from '../../mail/headers.ts';
import { parseAddress } from '../../mail/address.ts';
import { srsForward } from '../../mail/srs.ts';
import { lmtpAddress, resolveRecipient, type Target } from '../../routing/resolve.ts';
import { VERDICT_ID_HEADER, authVerdictsOf, saveVerdicts } from '../../verdicts/store.ts';
import { usersFileSettling } from '../../dovecot/sync.ts';
import { capsState } from '../../submit/accept.ts';
import { checkMessageCap, checkRecipientCaps, recordSend } from '../../submit/caps.ts';
import { sendingState } from '../../services/mailbox-queries.ts';
import { deliveredToHeader, guardForwards } from './forward-guard.ts';
import { dmarcEvaluationOf, noteDmarcEvaluation } from '../../reports/dmarc-out.ts';

/** Messages up to this size are also kept in memory while spooled (read back from the file above it). */
const KEEP_IN_MEMORY = 256 * 1024;

/** What the listener collected for one mail transaction (MAIL FROM … RCPT TO …). */
export interface Transaction {
  mailFrom: string; // '' = null sender
  rcpts: { address: string; targets: Target[] }[];
}

export interface SessionInfo {
  id: string;
  remoteAddress: string;
  helo: string;
  clientHostname: string | null;
  transmissionType: string;
  tls: { protocol: string; cipher: string } | null;
}

export interface InboundDeps {
  app: AppContext;
  spool: Spool;
  srsSecret: string;
  /** ARC sealing key for a forwarding domain, or null (then forwards go unsealed). */
  sealKey(domain: string): Promise<{ signingDomain: string; selector: string; privateKey: Buffer } | null>;
  /** Local delivery (LMTP to Dovecot), with sessions kept open between messages. */
  delivery: LocalDelivery;
  /** Signs the DSNs the MX sends. */
  dkim: DkimSigner;
}

/** One Dovecot recipient (a mailbox, or a mailbox's plus folder) and the RCPT addresses that led to it. */
export interface LocalTarget {
  lmtpRcpt: string;
  target: Extract<Target, { kind: 'local' }>;
  originals: string[];
}

/** One forwarding target and the RCPT addresses that led to it. */
export interface ForwardTarget {
  target: Extract<Target, { kind: 'forward' }>;
  originals: string[];
}

/** Where the message goes: Dovecot recipients and forwarding targets, each once. Pure. */
export function planRecipients(tx: Transaction): { locals: LocalTarget[]; forwards: ForwardTarget[] } {
  const locals = new Map<string, LocalTarget>();
  const forwards = new Map<string, ForwardTarget>();
  for (const r of tx.rcpts) {
    for (const t of r.targets) {
      if (t.kind === 'local') {
        const key = `${t.mailboxId}\u0000${t.detail ?? ''}`;
        const e = locals.get(key);
        if (e) e.originals.push(r.address);
        else locals.set(key, { lmtpRcpt: lmtpAddress(t), target: t, originals: [r.address] });
      } else {
        const e = forwards.get(t.address);
        if (e) e.originals.push(r.address);
        else forwards.set(t.address, { target: t, originals: [r.address] });
      }
    }
  }
  return { locals: [...locals.values()], forwards: [...forwards.values()] };
}

/** A recipient (after alias expansion) the message could not be delivered or queued for. */
export interface Failure {
  originals: string[];
  final: string;
  reply: SmtpReply;
  diagnostic: string;
}

export type Outcome = { action: 'accept'; dsn: DsnRecipient[] } | { action: 'refuse'; reply: SmtpReply };

/**
 * The answer to the sending MTA once delivery was attempted. Pure. Someone got it: 250, and the
 * failed recipients go into a DSN. Nobody got it: the first temporary refusal (so the sender
 * retries), else the first permanent one.
 */
export function decideOutcome(o: { succeeded: number; failures: Failure[] }): Outcome {
  if (o.succeeded > 0) {
    const dsn = o.failures.flatMap((f) => f.originals.map((original): DsnRecipient => ({ address: f.final, original, action: 'failed', status: f.reply.enhanced.replace(/^4/, '5'), diagnostic: f.diagnostic })));
    return { action: 'accept', dsn };
  }
  const f = o.failures.find((x) => x.reply.temporary)?.reply ?? o.failures[0]?.reply;
  if (f && f.temporary && !f.ref) return { action: 'refuse', reply: reply(f.responseCode, f.enhanced, f.text) };
  return { action: 'refuse', reply: f ?? internalFailure() };
}

/**
 * Receives one message (the DATA stream) and returns the 250 text, or throws an SmtpReply.
 *
 * gather: spool (streamed, size-limited, smuggling-guarded, spoofed Authentication-Results removed)
 * → verdicts (checkMessage: SPF, DKIM, DMARC, ARC; then the spam scan) → decide: policy (pure) →
 * act: LMTP to Dovecot for local recipients, outbound queue for forwards → decide: the reply
 * (decideOutcome, pure) → act: DSN, events. 250 only once every recipient is stored by Dovecot or
 * durably queued; see README "Receiving mail (MX)" for the partial-failure policy.
 */
export async function receiveMessage(deps: InboundDeps, stream: Readable, session: SessionInfo, tx: Transaction): Promise<string> {
  const { app } = deps;
  const started = Date.now();
  const arrival = new Date(app.clock.now());
  const planned = planRecipients(tx);
  if (planned.forwards.length > 0 && !runningQueue(app)) {
    // Nothing may be accepted that cannot be forwarded durably: the client keeps it and retries.
    const ref = newRef();
    app.log.error({ ref, session: session.id, component: 'mx' }, 'forward needed but the outbound queue is not running; answered 451');
    drain(stream);
    throw internalFailure(ref);
  }

  const { file, filter } = await spoolMessage(deps, stream);
  app.crash('mx.after-spool');
  const releases: (() => void)[] = [];
  try {
    const { locals, forwards } = guardOwnForwards(deps, planned, filter.info.deliveredTo, session, releases);
    // Gather the verdicts (authentication, then the spam scan); the policy decides (pure).
    const { auth, evidence, decision, spam } = await judgeMessage(deps, file, session, tx, locals, forwards);
    noteForDmarcReports(deps, session, tx, auth, decision);
    refuseByPolicy(deps, session, tx, decision);
    const prefix = tracePrefix(file.id, spam?.headerText ?? '', auth.headers, receivedHeader(receivedFields(session, app.config.hostname, file.id, tx, arrival)));
    if (locals.length > 0) saveVerdicts(app.db, file.id, { ...verdictsOf(auth, spam, app.config.hostname, locals), now: app.clock.now() });
    // Act: local delivery (Junk when quarantined or scored as spam for that recipient), then forwards.
    const junk = junkFlags(decision.action, spam?.recipients, locals.length);
    const local = await deliverLocal(deps, session, tx, file, prefix, locals, (i) => junk[i]);
    app.crash('mx.after-lmtp');
    const fwd = await queueForwards(deps, session, tx, file, prefix, forwards, filter.info.messageId);
    const failures = [...local.failures, ...fwd.failures];

    // Decide the reply (pure), then act on it.
    const outcome = decideOutcome({ succeeded: local.delivered.length + fwd.forwarded, failures });
    if (outcome.action === 'refuse') {
      app.log.info({ session: session.id, from: tx.mailFrom, failed: failures.map((f) => f.final), component: 'mx' }, 'message not delivered to any recipient');
      throw outcome.reply;
    }
    if (outcome.dsn.length > 0 && tx.mailFrom !== '') {
      const headers = file.data ? headerSection(file.data) : await readHeaderSection(file.path!);
      await sendDsn(deps, tx.mailFrom, outcome.dsn, arrival, headers, filter.info, session);
    }
    await recordReceived(deps, local.delivered, tx, filter.info, evidence, decision, file);
    app.log.info(
      {
        component: 'mx',
        session: session.id,
        id: file.id,
        from: tx.mailFrom,
        delivered: local.delivered.length,
        forwarded: fwd.forwarded,
        failed: outcome.dsn.length,
        anyTemp: failures.some((f) => f.reply.temporary),
        size: file.size,
        spf: evidence.spf,
        dmarc: evidence.dmarc?.result ?? 'none',
        action: decision.action,
        ms: Date.now() - started,
      },
      'message received',
    );
    app.crash('mx.before-reply');
    return `OK: message accepted as ${file.id}`;
  } finally {
    for (const r of releases) r();
    if (file.path) deps.spool.remove(file.id).catch(() => {});
  }
}

/**
 * A mailbox's own forwarding: the loop guard, and its sending caps (forward-guard.ts). A forward
 * that is made reserves the mailbox's send allowance until it is queued (the release goes into
 * `releases`); one that is not is kept in the mailbox instead, with a warning.
 */
function guardOwnForwards(deps: InboundDeps, planned: ReturnType<typeof planRecipients>, deliveredTo: string[], session: SessionInfo, releases: (() => void)[]): { locals: LocalTarget[]; forwards: ForwardTarget[] } {
  const { app } = deps;
  const { locals, forwards, kept } = guardForwards(planned, deliveredTo, (m, n) => {
    const st = sendingState(app.db, m.id);
    if (!st || !st.outbound_enabled) return false;
    const cs = capsState(app, { id: m.id, address: m.address, domain: m.domain });
    if (checkMessageCap(cs.caps, cs.usage) || checkRecipientCaps(cs.caps, cs.usage, n)) return false;
    releases.push(app.sendReservations.reserve(m.id, n));
    return true;
  });
  for (const k of kept) {
    app.log.warn({ session: session.id, mailbox: k.mailbox, targets: k.targets, reason: k.reason, component: 'mx' }, k.reason === 'loop' ? 'forwarding loop: the message was already forwarded for this mailbox; stored in the mailbox instead' : "forward not made (the mailbox's sending caps or outbound suspended); stored in the mailbox instead");
  }
  return { locals, forwards };
}

/**
 * Gather 2 and 3, then decide: the authentication verdicts, the policy's decision on them, and the
 * spam scan (issue #14; all logic in src/spam/) of what authentication did not refuse, after which
 * the policy decides again with the spam verdict in the evidence.
 */
async function judgeMessage(deps: InboundDeps, file: SpoolFile, session: SessionInfo, tx: Transaction, locals: LocalTarget[], forwards: ForwardTarget[]) {
  const { app } = deps;
  const settings = { dmarcReject: app.config.smtp.dmarc_reject, spfFail: app.config.smtp.spf_fail };
  const { auth, evidence } = await checkMessage(deps, file, session, tx, forwards);
  let decision = decide(evidence, settings);
  const spamService = app.spam.service;
  const spam =
    spamService && wantsSpamScan(locals.length, decision.action)
      ? await spamService.scanInbound({
          message: file.data ?? (() => fsp.readFile(file.path!)),
          size: file.size,
          queueId: file.id,
          ip: session.remoteAddress,
          helo: session.helo,
          clientHostname: session.clientHostname,
          tls: session.tls,
          mailFrom: tx.mailFrom,
          rcpts: tx.rcpts.map((r) => r.address),
          mailboxes: locals.map((d) => ({ id: d.target.mailboxId, address: d.target.address })),
          auth: { ...evidence, dmarc: evidence.dmarc, arc: (auth as any).arc?.status?.result },
        })
      : null;
  if (spam) {
    evidence.spam = spam.evidence;
    decision = decide(evidence, settings);
  }
  return { auth, evidence, decision, spam };
}

/** The verdicts kept for the message's local copies (the mail client's view of them). Pure. */
export function verdictsOf(auth: AuthenticateResult, spam: { evidence: SpamEvidence } | null, hostname: string, locals: LocalTarget[]) {
  return {
    auth: authVerdictsOf(auth, hostname),
    spam: spam ? { verdict: spam.evidence.verdict, score: spam.evidence.score, action: spam.evidence.action } : undefined,
    mailboxIds: locals.map((d) => d.target.mailboxId),
  };
}

/** Scan for spam only what has local recipients and what authentication did not refuse. Pure. */
export function wantsSpamScan(localCount: number, action: Decision['action']): boolean {
  return localCount > 0 && (action === 'accept' || action === 'quarantine');
}

/** The reply for a message the policy refuses (reject: its reply; tempfail: 451 with `ref`), else null. Pure. */
export function policyRefusal(decision: Decision, ref: string): SmtpReply | null {
  if (decision.action === 'reject') return reply(decision.code, decision.enhanced, decision.text);
  if (decision.action === 'tempfail') return internalFailure(ref);
  return null;
}

/** For the DMARC aggregate reports we send (reports.dmarc_send; src/reports/): what DMARC concluded and what we did. */
function noteForDmarcReports(deps: InboundDeps, session: SessionInfo, tx: Transaction, auth: Parameters<typeof dmarcEvaluationOf>[0], decision: Decision): void {
  const { app } = deps;
  if (!app.config.reports.dmarc_send || decision.action === 'tempfail') return;
  const first = tx.rcpts[0]?.address;
  const rcptDomain = first ? first.slice(first.lastIndexOf('@') + 1).toLowerCase() : null;
  noteDmarcEvaluation(app.db, app.log, dmarcEvaluationOf(auth, { ip: session.remoteAddress, mailFrom: tx.mailFrom, rcptDomain, action: decision.action, reason: decision.reason, at: app.clock.now() }));
}

/** Act on a refusing decision: log it and throw its reply. */
function refuseByPolicy(deps: InboundDeps, session: SessionInfo, tx: Transaction, decision: Decision): void {
  const ref = newRef();
  const refusal = policyRefusal(decision, ref);
  if (!refusal) return;
  if (decision.action === 'reject') deps.app.log.info({ session: session.id, from: tx.mailFrom, reason: decision.reason, component: 'mx' }, 'message rejected by policy');
  else deps.app.log.warn({ ref, session: session.id, reason: decision.reason, component: 'mx' }, 'message deferred (451): authentication could not be completed');
  throw refusal;
}

/** Per local recipient, in order: into Junk (quarantined by policy, or junk/reject by its spam verdict)? Pure. */
export function junkFlags(action: Decision['action'], spamRecipients: readonly string[] | undefined, count: number): boolean[] {
  return Array.from({ length: count }, (_, i) => action === 'quarantine' || spamRecipients?.[i] === 'junk' || spamRecipients?.[i] === 'reject');
}

/** The Received: header's fields for this transaction (the recipient only when there is one). Pure. */
export function receivedFields(session: SessionInfo, hostname: string, id: string, tx: Transaction, arrival: Date): ReceivedInfo {
  return {
    helo: session.helo,
    clientHostname: session.clientHostname,
    ip: session.remoteAddress,
    hostname,
    transmissionType: session.transmissionType,
    tls: session.tls,
    id,
    recipient: tx.rcpts.length === 1 ? tx.rcpts[0].address : null,
    date: arrival,
  };
}

/** What goes before the received message in every stored or forwarded copy, in this order. Pure. */
export function tracePrefix(id: string, spamHeaders: string, authHeaders: string, received: string): Buffer {
  return Buffer.from(`${VERDICT_ID_HEADER}: ${id}\r\n` + spamHeaders + authHeaders + received, 'utf8');
}

/**
 * Gather 1: the DATA stream into the spool. A working copy, removed before the reply: no fsync (250
 * comes only once Dovecot stored the message or the queue has its own fsynced copy). Small
 * messages are also kept in memory, so the checks and LMTP do not read the file back. Throws the
 * SmtpReply for a message refused for its form (size, NUL, bare line ends, header too large).
 */
async function spoolMessage(deps: InboundDeps, stream: Readable): Promise<{ file: SpoolFile; filter: HeaderFilter }> {
  const { app } = deps;
  const cfg = app.config.smtp;
  const guard = new LineEndingGuard(cfg.bare_newline);
  const filter = new HeaderFilter(app.config.hostname);
  const upstream = pipeline(stream, guard, filter);
  const writing = deps.spool.write(filter, { maxBytes: cfg.max_message_size, durable: false, keep: KEEP_IN_MEMORY, memoryOnly: true });
  const [up, wr] = await Promise.allSettled([upstream, writing]);
  const file: SpoolFile | null = wr.status === 'fulfilled' ? wr.value : null;
  try {
    if (wr.status === 'rejected') {
      if (isLetterboxError(wr.reason) && wr.reason.code === 'payload_too_large') {
        throw reply(552, '5.3.4', `Message too big: the limit is ${cfg.max_message_size} bytes`);
      }
      throw wr.reason;
    }
    if (up.status === 'rejected') throw up.reason;
    if (guard.nul) throw reply(554, '5.6.0', 'Message refused: it contains NUL characters');
    if (guard.bad) throw reply(554, '5.6.0', 'Message refused: bare LF or bare CR line ending (RFC 5321 requires CRLF)');
    if (filter.tooLarge) throw reply(552, '5.3.4', 'Message refused: header section too large');
    return { file: file!, filter };
  } catch (err) {
    if (file?.path) deps.spool.remove(file.id).catch(() => {});
    throw err;
  }
}

/**
 * Gather 2: the verdicts the policy decides on. SPF, DKIM, DMARC and ARC (mailauth); the copy is
 * ARC-sealed only when something is forwarded. Further checks (a spam scan) add their verdicts to
 * the evidence here, and the policy (decide, policy.ts) weighs them.
 */
async function checkMessage(deps: InboundDeps, file: SpoolFile, session: SessionInfo, tx: Transaction, forwards: ForwardTarget[]): Promise<{ auth: AuthenticateResult; evidence: Evidence }> {
  const { app } = deps;
  const seal = forwards.length > 0 ? await deps.sealKey(forwards[0].target.via) : null;
  const auth = await authenticate(file.data ?? createReadStream(file.path!), {
    ip: session.remoteAddress,
    helo: session.helo,
    sender: tx.mailFrom,
    mta: app.config.hostname,
    resolver: app.resolver.resolve,
    disableBimi: true,
    ...(seal ? { seal } : {}),
  });
  return { auth, evidence: evidenceOf(auth) };
}

/** Act 1: local recipients over LMTP (to their Junk folder when quarantined). */
async function deliverLocal(
  deps: InboundDeps,
  session: SessionInfo,
  tx: Transaction,
  file: SpoolFile,
  prefix: Buffer,
  locals: LocalTarget[],
  toJunk: (i: number) => boolean,
): Promise<{ delivered: { d: LocalTarget; folder: string | null }[]; failures: Failure[] }> {
  const delivered: { d: LocalTarget; folder: string | null }[] = [];
  const failures: Failure[] = [];
  if (locals.length === 0) return { delivered, failures };
  const rcpts = locals.map((d, i) => (toJunk(i) ? `${d.target.local}+Junk@${d.target.domain}` : d.lmtpRcpt));
  const data = file.data;
  const path = file.path!;
  const results: LocalOutcome[] = await deps.delivery.deliver({ from: tx.mailFrom, body: data ? Buffer.concat([prefix, data]) : () => concat(prefix, path) }, rcpts);
  if (results.some((r) => r.unavailable)) {
    const ref = newRef();
    deps.app.log.error({ ref, session: session.id, err: results[0].response, component: 'mx' }, 'local delivery failed (Dovecot unavailable); answered 451');
    throw internalFailure(ref);
  }
  results.forEach((res, i) => {
    const d = locals[i];
    if (res.status === 'delivered') delivered.push({ d, folder: toJunk(i) ? 'Junk' : d.target.detail });
    else failures.push({ originals: d.originals, final: d.target.address, reply: refusalReply(res, () => usersFileSettling(deps.app.dovecot.paths.users)), diagnostic: res.response });
  });
  return { delivered, failures };
}

/** Act 2: forwards with an SRS envelope sender, the ARC-sealed copy, durably queued. */
async function queueForwards(
  deps: InboundDeps,
  session: SessionInfo,
  tx: Transaction,
  file: SpoolFile,
  prefix: Buffer,
  forwards: ForwardTarget[],
  messageId: string | null,
): Promise<{ forwarded: number; failures: Failure[] }> {
  const { app } = deps;
  const failures: Failure[] = [];
  let forwarded = 0;
  if (forwards.length === 0) return { forwarded, failures };
  const queue = runningQueue(app)!;
  const body = file.data ?? (await fsp.readFile(file.path!));
  const message = Buffer.concat([prefix, body]);
  const groups = new Map<string, { from: string; via: string; mailboxId: string | null; deliveredTo: string | null; recipients: string[]; originals: string[] }>();
  for (const { target, originals } of forwards) {
    const from = target.srsBounce ? '' : srsForward(tx.mailFrom, target.via, deps.srsSecret, app.clock.now());
    const key = `${from}\u0000${target.via}\u0000${target.mailbox?.id ?? ''}`;
    const g = groups.get(key) ?? { from, via: target.via, mailboxId: target.mailbox?.id ?? null, deliveredTo: target.mailbox?.address ?? null, recipients: [], originals: [] };
    g.recipients.push(target.address);
    g.originals.push(...originals);
    groups.set(key, g);
  }
  for (const g of groups.values()) {
    try {
      // A mailbox's forward names the mailbox (the loop guard's mark) and counts against its caps,
      // in the transaction that queues it.
      const mailboxId = g.mailboxId;
      const out = g.deliveredTo ? Buffer.concat([Buffer.from(deliveredToHeader(g.deliveredTo), 'utf8'), message]) : message;
      const count = mailboxId ? () => void recordSend(app.db, mailboxId, app.clock.now(), g.recipients.length) : undefined;
      await queue.enqueue({ message: out, from: g.from, recipients: g.recipients, mailboxId, sendingDomain: g.via, messageId, origin: 'forward', ...(count ? { inTransaction: count } : {}) });
      forwarded += g.recipients.length;
    } catch (err: any) {
      const ref = newRef();
      app.log.error({ ref, session: session.id, err: err.message, recipients: g.recipients, component: 'mx' }, 'could not queue a forward');
      for (const r of g.recipients) failures.push({ originals: g.originals, final: r, reply: internalFailure(ref), diagnostic: `451 4.3.0 could not queue the forward (ref ${ref})` });
    }
  }
  return { forwarded, failures };
}

function evidenceOf(auth: AuthenticateResult): Evidence {
  const spf = ((auth.spf && auth.spf.status?.result) || 'none') as AuthResult;
  const dm: any = auth.dmarc;
  return {
    spf,
    dmarc: dm ? { result: dm.status?.result ?? 'none', policy: dm.policy ?? null, domain: dm.status?.header?.from ?? dm.domain ?? '' } : null,
    dkim: dkimSummary(auth.dkim?.results ?? []),
  };
}

function dkimSummary(results: any[]): AuthResult {
  if (results.some((r) => r.status?.result === 'pass')) return 'pass';
  return (results[0]?.status?.result as AuthResult) ?? 'none';
}

function concat(prefix: Buffer, path: string): Readable {
  const out = new PassThrough();
  out.write(prefix);
  const file = createReadStream(path);
  file.on('error', (err) => out.destroy(err));
  file.pipe(out);
  return out;
}

function drain(stream: Readable): void {
  stream.on('error', () => {});
  stream.resume();
}

/**
 * Tells the sender about recipients that failed after others accepted the message. A local sender
 * gets it over LMTP, a remote one through the outbound queue. If it cannot be handed over, the
 * whole message is answered 451: the sender retries (the recipients that did get it may get it
 * twice), which is better than accepting and losing the failure notice.
 */
async function sendDsn(deps: InboundDeps, to: string, failed: DsnRecipient[], arrival: Date, headers: string, info: HeaderInfo, session: SessionInfo): Promise<void> {
  const { app } = deps;
  const hostname = app.config.hostname;
  const now = new Date(app.clock.now());
  try {
    const dsn = buildDsn({
      reportingMta: hostname,
      to,
      originalMessageId: info.messageId,
      originalSubject: info.subject,
      originalHeaders: headers,
      arrivalDate: arrival,
      recipients: failed,
      now,
      messageId: `<${randomBytes(12).toString('hex')}@${hostname}>`,
      boundary: `lb-dsn-${randomBytes(8).toString('hex')}`,
    });
    // Signed like any other outgoing message (the failed recipients are in one of our domains).
    const signed = await deps.dkim.signWithFirst(dsnSigningDomains(hostname, parseAddress(failed[0].address).domain), dsn, now);
    const local = resolveRecipient(app.db, to, { srsSecret: deps.srsSecret, now: app.clock.now() });
    if (local.ok && local.targets.every((t) => t.kind === 'local')) {
      const res = await deps.delivery.deliver({ from: '', body: signed }, local.targets.map((t) => t.address));
      if (res.some((r) => r.status === 'delivered')) return;
      throw new Error(`DSN refused by Dovecot: ${res[0]?.response}`);
    }
    const queue = runningQueue(app);
    if (!queue) throw new Error('the outbound queue is not running');
    await queue.enqueue({ message: signed, from: '', recipients: [to], mailboxId: null, sendingDomain: null, origin: 'dsn' });
  } catch (err: any) {
    const ref = newRef();
    app.log.error({ ref, session: session.id, err: err.message, component: 'mx' }, 'could not send the DSN for failed recipients; answered 451');
    throw internalFailure(ref);
  }
}

async function recordReceived(deps: InboundDeps, delivered: { d: LocalTarget; folder: string | null }[], tx: Transaction, info: HeaderInfo, e: Evidence, decision: Decision, file: SpoolFile): Promise<void> {
  if (delivered.length === 0) return;
  const { app } = deps;
  const authentication = { spf: e.spf, dkim: e.dkim, dmarc: e.dmarc?.result ?? 'none', dmarcPolicy: e.dmarc?.policy ?? null };
  try {
    // The mail is already stored by Dovecot: the tracking row needs no fsync of its own (the next
    // FULL commit makes it durable; a power cut can lose only it and later commits, never mail).
    commitWithoutFsync(app.db, () => {
      for (const { d, folder } of delivered) {
        recordEvent(app.db, app.clock, {
          type: 'message.received',
          mailboxId: d.target.mailboxId,
          domain: d.target.domain,
          messageId: info.messageId,
          data: {
            mailbox: d.target.address,
            recipients: d.originals,
            from: tx.mailFrom,
            headerFrom: info.from,
            subject: info.subject,
            folder: folder ?? 'INBOX',
            size: file.size,
            authentication,
            policy: decision.action,
            spam: e.spam ? { verdict: e.spam.verdict, score: e.spam.score } : null, // issue #14
          },
        });
      }
    });
  } catch (err: any) {
    // The mail is stored; a missing event must not turn into a retry and a duplicate.
    app.log.error({ err: err.message, id: file.id, component: 'mx' }, 'could not record message.received events');
  }
}
