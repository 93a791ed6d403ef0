import { createReadStream, promises as fsp } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { authenticate, type AuthenticateResult } from 'mailauth';
import type { AppContext } from '../../server.ts';
import type { Spool, SpoolFile } from '../../spool/index.ts';
import { deliverLmtp, type LmtpPool, type LmtpRecipientResult } from '../../delivery/lmtp.ts';
import { recordEvent } from '../../events/record.ts';
import { commitWithoutFsync } from '../../db/group-commit.ts';
import { isLetterboxError } from '../../errors.ts';
import { decide, type AuthResult, type Decision, type Evidence } from './policy.ts';
import { HeaderFilter, LineEndingGuard, type HeaderInfo } from './stream.ts';
import { receivedHeader } from './headers.ts';
import { SmtpReply, internalFailure, newRef, reply } from './replies.ts';
import { srsForward } from './srs.ts';
import { buildDsn, type FailedRecipient } from './dsn.ts';
import { lmtpAddress, resolveRecipient, type Target } from '../../routing/resolve.ts';

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
  /** LMTP sessions to Dovecot kept open between messages (optional: without it, one per message). */
  lmtpPool?: LmtpPool;
}

interface LocalDelivery {
  lmtpRcpt: string;
  target: Extract<Target, { kind: 'local' }>;
  originals: string[];
}

/**
 * Receives one message (the DATA stream) and returns the 250 text, or throws an SmtpReply.
 *
 * spool (streamed, size-limited, smuggling-guarded, spoofed Authentication-Results removed) →
 * mailauth (SPF, DKIM, DMARC, ARC) → policy → LMTP to Dovecot for local recipients → outbound
 * queue for forwards → events. 250 only once every recipient is stored by Dovecot or durably
 * queued; see README "Receiving mail (MX)" for the partial-failure policy.
 */
export async function receiveMessage(deps: InboundDeps, stream: Readable, session: SessionInfo, tx: Transaction): Promise<string> {
  const { app } = deps;
  const cfg = app.config.smtp;
  const started = Date.now();
  const arrival = new Date(app.clock.now());
  const locals = new Map<string, LocalDelivery>();
  const forwards = new Map<string, { target: Extract<Target, { kind: 'forward' }>; originals: string[] }>();
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
  const queue = app.handoff.queue;
  if (forwards.size > 0 && !queue) {
    // Nothing may be accepted that cannot be forwarded durably: the client keeps it and retries.
    const ref = newRef();
    app.log.error({ ref, session: session.id, component: 'mx' }, 'forward needed but the outbound queue is not running; answered 451');
    drain(stream);
    throw internalFailure(ref);
  }

  // 1. Spool: streamed, never whole in memory.
  const guard = new LineEndingGuard(cfg.bare_newline);
  const filter = new HeaderFilter(app.config.hostname);
  const upstream = pipeline(stream, guard, filter);
  // A working copy, removed before the reply: no fsync (250 comes only once Dovecot stored the
  // message or the queue has its own fsynced copy). Small messages are also kept in memory, so the
  // checks and LMTP do not read the file back.
  const writing = deps.spool.write(filter, { maxBytes: cfg.max_message_size, durable: false, keep: KEEP_IN_MEMORY, memoryOnly: true });
  const [up, wr] = await Promise.allSettled([upstream, writing]);
  let file: SpoolFile | null = wr.status === 'fulfilled' ? wr.value : null;
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
    const path = file!.path;

    // 2. Authentication (SPF, DKIM, DMARC, ARC); ARC-sealed only when something is forwarded.
    const firstForward = forwards.values().next().value;
    const seal = firstForward ? await deps.sealKey(firstForward.target.via) : null;
    const auth = await authenticate(file!.data ?? createReadStream(path), {
      ip: session.remoteAddress,
      helo: session.helo,
      sender: tx.mailFrom,
      mta: app.config.hostname,
      resolver: app.resolver.resolve,
      disableBimi: true,
      ...(seal ? { seal } : {}),
    });
    const evidence = evidenceOf(auth);
    let decision = decide(evidence, { dmarcReject: cfg.dmarc_reject, spfFail: cfg.spf_fail });
    // --- spam scan (issue #14; all logic in src/spam/): only what authentication did not refuse ---
    const spamService = app.handoff.spam;
    const spam =
      spamService && locals.size > 0 && (decision.action === 'accept' || decision.action === 'quarantine')
        ? await spamService.scanInbound({
            message: file!.data ?? (() => fsp.readFile(path)),
            size: file!.size,
            queueId: file!.id,
            ip: session.remoteAddress,
            helo: session.helo,
            clientHostname: session.clientHostname,
            tls: session.tls,
            mailFrom: tx.mailFrom,
            rcpts: tx.rcpts.map((r) => r.address),
            mailboxes: [...locals.values()].map((d) => ({ id: d.target.mailboxId, address: d.target.address })),
            auth: { ...evidence, dmarc: evidence.dmarc, arc: (auth as any).arc?.status?.result },
          })
        : null;
    if (spam) {
      evidence.spam = spam.evidence;
      decision = decide(evidence, { dmarcReject: cfg.dmarc_reject, spfFail: cfg.spf_fail });
    }
    const spamJunk = (i: number) => spam?.recipients[i] === 'junk' || spam?.recipients[i] === 'reject';
    // --- end spam scan ---
    if (decision.action === 'reject') {
      app.log.info({ session: session.id, from: tx.mailFrom, reason: decision.reason, component: 'mx' }, 'message rejected by policy');
      throw reply(decision.code, decision.enhanced, decision.text);
    }
    if (decision.action === 'tempfail') {
      const ref = newRef();
      app.log.warn({ ref, session: session.id, reason: decision.reason, component: 'mx' }, 'message deferred (451): authentication could not be completed');
      throw internalFailure(ref);
    }
    const received = receivedHeader({
      helo: session.helo,
      clientHostname: session.clientHostname,
      ip: session.remoteAddress,
      hostname: app.config.hostname,
      transmissionType: session.transmissionType,
      tls: session.tls,
      id: file!.id,
      recipient: tx.rcpts.length === 1 ? tx.rcpts[0].address : null,
      date: arrival,
    });
    const prefix = Buffer.from((spam?.headerText ?? '') + auth.headers + received, 'utf8');

    // 3. Local delivery over LMTP.
    const failed: FailedRecipient[] = [];
    const delivered: { d: LocalDelivery; folder: string | null }[] = [];
    let anyTemp = false;
    let firstFailure: SmtpReply | null = null;
    const noteFailure = (originals: string[], final: string, r: SmtpReply, diagnostic: string) => {
      if (r.temporary) anyTemp = true;
      if (!firstFailure || (r.temporary && !firstFailure.temporary)) firstFailure = r;
      for (const o of originals) failed.push({ original: o, final, status: r.enhanced.replace(/^4/, '5'), diagnostic });
    };
    if (locals.size > 0) {
      const list = [...locals.values()];
      const rcpts = list.map((d, i) => (decision.action === 'quarantine' || spamJunk(i) ? `${d.target.local}+Junk@${d.target.domain}` : d.lmtpRcpt));
      let results: LmtpRecipientResult[];
      try {
        const data = file!.data;
        results = await deliverLmtp(app.dovecot.paths.lmtpSocket, { from: tx.mailFrom, to: rcpts }, data ? Buffer.concat([prefix, data]) : () => concat(prefix, path), { lhlo: app.config.hostname, pool: deps.lmtpPool });
      } catch (err: any) {
        const ref = newRef();
        app.log.error({ ref, session: session.id, err: err.message, component: 'mx' }, 'local delivery failed (Dovecot unavailable); answered 451');
        throw internalFailure(ref);
      }
      results.forEach((res, i) => {
        const d = list[i];
        if (res.status === 'delivered') {
          delivered.push({ d, folder: decision.action === 'quarantine' || spamJunk(i) ? 'Junk' : d.target.detail });
          return;
        }
        noteFailure(d.originals, d.target.address, lmtpReply(res), res.response);
      });
    }

    // 4. Forwards: SRS envelope sender, ARC-sealed copy, durably queued.
    let forwarded = 0;
    if (forwards.size > 0) {
      const body = file!.data ?? (await fsp.readFile(path));
      const message = Buffer.concat([prefix, body]);
      const groups = new Map<string, { from: string; via: string; recipients: string[]; originals: string[] }>();
      for (const { target, originals } of forwards.values()) {
        const from = target.srsBounce ? '' : srsForward(tx.mailFrom, target.via, deps.srsSecret, app.clock.now());
        const key = `${from}\u0000${target.via}`;
        const g = groups.get(key) ?? { from, via: target.via, recipients: [], originals: [] };
        g.recipients.push(target.address);
        g.originals.push(...originals);
        groups.set(key, g);
      }
      for (const g of groups.values()) {
        try {
          await queue!.enqueue({ message, from: g.from, recipients: g.recipients, mailboxId: null, sendingDomain: g.via, messageId: filter.info.messageId, origin: 'forward' });
          forwarded += g.recipients.length;
        } catch (err: any) {
          const ref = newRef();
          app.log.error({ ref, session: session.id, err: err.message, recipients: g.recipients, component: 'mx' }, 'could not queue a forward');
          for (const r of g.recipients) noteFailure(g.originals, r, internalFailure(ref), `451 4.3.0 could not queue the forward (ref ${ref})`);
        }
      }
    }

    // 5. The reply. Partial failure: accept, and a DSN for the failed recipients.
    const ok = delivered.length + forwarded;
    if (ok === 0) {
      app.log.info({ session: session.id, from: tx.mailFrom, failed, component: 'mx' }, 'message not delivered to any recipient');
      const f = firstFailure as SmtpReply | null;
      if (f && f.temporary && !f.ref) throw reply(f.responseCode, f.enhanced, f.text);
      throw f ?? internalFailure();
    }
    if (failed.length > 0 && tx.mailFrom !== '') {
      await sendDsn(deps, tx.mailFrom, failed, arrival, file!.data ? headerSectionOf(file!.data) : await readHeaderSection(path), session);
    }
    await recordReceived(deps, delivered, tx, filter.info, evidence, decision, file!);
    app.log.info(
      {
        component: 'mx',
        session: session.id,
        id: file!.id,
        from: tx.mailFrom,
        delivered: delivered.length,
        forwarded,
        failed: failed.length,
        anyTemp,
        size: file!.size,
        spf: evidence.spf,
        dmarc: evidence.dmarc?.result ?? 'none',
        action: decision.action,
        ms: Date.now() - started,
      },
      'message received',
    );
    return `OK: message accepted as ${file!.id}`;
  } finally {
    if (file?.path) deps.spool.remove(file.id).catch(() => {});
  }
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

/** Dovecot's per-recipient refusal → our reply for that recipient. */
function lmtpReply(res: LmtpRecipientResult): SmtpReply {
  const m = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3}) (.*)$/s.exec(res.response);
  const enhanced = m?.[1] ?? (res.status === 'permfail' ? '5.0.0' : '4.0.0');
  // Dovecot not knowing a mailbox our database has means its users file is a moment behind: retry.
  if (enhanced === '5.1.1') return reply(451, '4.3.0', 'Mailbox is being set up, try again shortly');
  const text = (m?.[2] ?? res.response).replace(/\s*<[^>]*>\s*/g, ' ').trim().slice(0, 200) || 'Delivery failed';
  return reply(res.code, enhanced, text);
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

async function readHeaderSection(path: string): Promise<string> {
  const fh = await fsp.open(path, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return headerSectionOf(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

function headerSectionOf(buf: Buffer): string {
  const text = buf.subarray(0, 64 * 1024).toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  return end === -1 ? text : text.slice(0, end + 2);
}

/**
 * Tells the sender about recipients that failed after others accepted the message. A local sender
 * gets it over LMTP, a remote one through the outbound queue. If it cannot be handed over, the
 * whole message is answered 451: the sender retries (the recipients that did get it may get it
 * twice), which is better than accepting and losing the failure notice.
 */
async function sendDsn(deps: InboundDeps, to: string, failed: FailedRecipient[], arrival: Date, headers: string, session: SessionInfo): Promise<void> {
  const { app } = deps;
  const dsn = buildDsn({ hostname: app.config.hostname, to, failed, arrival, originalHeaders: headers, now: new Date(app.clock.now()) });
  try {
    const local = resolveRecipient(app.db, to, { srsSecret: deps.srsSecret, now: app.clock.now() });
    if (local.ok && local.targets.every((t) => t.kind === 'local')) {
      const res = await deliverLmtp(app.dovecot.paths.lmtpSocket, { from: '', to: local.targets.map((t) => (t as any).address) }, dsn, { lhlo: app.config.hostname, pool: deps.lmtpPool });
      if (res.some((r) => r.status === 'delivered')) return;
      throw new Error(`DSN refused by Dovecot: ${res[0]?.response}`);
    }
    const queue = app.handoff.queue;
    if (!queue) throw new Error('the outbound queue is not running');
    await queue.enqueue({ message: dsn, from: '', recipients: [to], mailboxId: null, sendingDomain: null, origin: 'dsn' });
  } catch (err: any) {
    const ref = newRef();
    app.log.error({ ref, session: session.id, err: err.message, component: 'mx' }, 'could not send the DSN for failed recipients; answered 451');
    throw internalFailure(ref);
  }
}

async function recordReceived(deps: InboundDeps, delivered: { d: LocalDelivery; folder: string | null }[], tx: Transaction, info: HeaderInfo, e: Evidence, decision: Decision, file: SpoolFile): Promise<void> {
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
