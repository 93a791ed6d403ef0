// The outbound queue: durable enqueue (spool fsynced + rows committed), an index-driven scheduler
// with global and per-domain concurrency, delivery (LMTP for our own domains, SMTP otherwise),
// retries, DSNs, suppressions and events. Rows left in flight by a crash are reclaimed at start.
import { createReadStream, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import type { AppContext, Component } from '../server.ts';
import type { EnqueueRequest, EnqueueResult, OutboundQueue } from './handoff.ts';
import { Spool } from '../spool/index.ts';
import { newId } from '../util/ids.ts';
import { stmt } from '../db/stmt.ts';
import { commitWithoutFsync, groupCommit } from '../db/group-commit.ts';
import { parseAddress } from '../util/address.ts';
import { recordEvent } from '../events/record.ts';
import { DkimSigner } from '../dkim/sign.ts';
import { parseDuration, parseHostPort } from '../config/schema.ts';
import { isLocalDomain, replyLine, resolveRecipient, splitTargets } from '../routing/resolve.ts';
import { ensureSecret } from '../secrets.ts';
import { SmtpClient, type AttemptInfo, type RcptResult } from './smtp-client.ts';
import { MtaSts } from './mta-sts.ts';
import { onTempFail, type RetryPolicy } from './schedule.ts';
import { isHardBounce, outcomeOf } from './classify.ts';
import { buildDsn, dsnSigningDomains, dsnStatusFor, type DsnRecipient } from '../mail/dsn.ts';
import { headerValue, readHeaderSection } from '../mail/headers.ts';
import { addSuppression } from './store.ts';
import { pruneSendLog } from '../smtp/submission/caps.ts';

interface MessageRow {
  id: string;
  spool_id: string | null;
  size: number;
  mail_from: string;
  mailbox_id: string | null;
  sending_domain: string | null;
  message_id: string | null;
  origin: string;
  sandbox: number;
  pending: number;
  created_at: number;
}

interface QueueRow {
  id: string;
  message_id: string;
  recipient: string;
  domain: string;
  attempts: number;
  delay_notified: number;
  created_at: number;
}

interface Prepared {
  req: EnqueueRequest;
  rcpts: { address: string; domain: string }[];
  held: boolean[];
  msgId: string;
  ids: string[];
  spoolId: string | null;
}

/** What one attempt means for one queue row, decided before anything is written. */
interface Decision {
  row: QueueRow;
  r: RcptResult;
  outcome: 'delivered' | 'deferred' | 'bounced';
  expired: boolean;
  nextAttemptAt: number | null;
  delayNotified: boolean;
  dsn: DsnRecipient | null;
  /** A bounce held back because its DSN could not be written. */
  dsnFailed?: boolean;
}

const MAX_RCPTS_PER_JOB = 100;
/** When a bounce's DSN cannot be written, the recipient stays queued and is tried again this much later. */
const DSN_RETRY_MS = 60_000;

export class Queue implements OutboundQueue, Component {
  name = 'queue';
  readonly spool: Spool;
  private client: SmtpClient;
  private policy: RetryPolicy;
  private active = new Set<Promise<void>>();
  private activeByDomain = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private housekeeping: NodeJS.Timeout | null = null;
  private stopping = false;
  private ticking = false;
  private again = false;

  private app: AppContext;
  /** Signs the DSNs the queue sends. */
  private dkim: DkimSigner;
  private srs: string | null = null;
  private srsSecret(): string {
    return (this.srs ??= ensureSecret(this.app.config.data_dir, 'srs'));
  }
  constructor(app: AppContext) {
    this.app = app;
    this.dkim = new DkimSigner(app.db, app.log);
    const o = app.config.outbound;
    this.spool = new Spool(app.config.data_dir);
    const ca = o.tls_ca_file ? readFileSync(o.tls_ca_file, 'utf8') : undefined;
    let smarthost = null;
    if (o.smarthost) {
      const hp = parseHostPort(o.smarthost)!;
      const pass = o.smarthost_password_file ? readFileSync(o.smarthost_password_file, 'utf8').trim() : '';
      smarthost = { host: hp.host, port: hp.port, tls: o.smarthost_tls, user: o.smarthost_user, pass };
    }
    this.client = new SmtpClient({
      resolver: app.resolver,
      log: app.log,
      hostname: app.config.hostname,
      port: o.port,
      ipv4Only: o.ipv4_only,
      ipv4OnlyDomains: o.ipv4_only_domains.map((d) => d.toLowerCase()),
      sourceIps: o.source_ips,
      domainIps: Object.fromEntries(Object.entries(o.domain_ips).map(([k, v]) => [k.toLowerCase(), v])),
      defaultIp: mainIp(app.config.ips),
      mtaSts: o.mta_sts && !smarthost ? new MtaSts({ resolver: app.resolver, db: app.db, clock: app.clock, log: app.log, port: o.mta_sts_port, ca, timeoutMs: o.connect_timeout_ms }) : null,
      ca,
      connectTimeoutMs: o.connect_timeout_ms,
      socketTimeoutMs: o.socket_timeout_ms,
      smarthost,
    });
    this.policy = {
      schedule: o.retry_schedule.map(parseDuration),
      jitter: o.retry_jitter,
      maxAge: parseDuration(o.max_age),
      delayNoticeAfter: parseDuration(o.delay_notice_after),
    };
  }

  // --- enqueue ------------------------------------------------------------------------------

  async enqueue(req: EnqueueRequest): Promise<EnqueueResult> {
    if (req.recipients.length === 0) return { queueIds: [], id: null };
    const p = await this.prepare(req);
    try {
      // One commit for the rows, the event and the caller's own writes (inTransaction), shared
      // with the other enqueues and deliveries finishing in the same turn of the event loop.
      await groupCommit(this.app.db).run(() => {
        this.insert(p);
        req.inTransaction?.();
      });
    } catch (err) {
      if (p.spoolId) await this.spool.remove(p.spoolId).catch(() => {});
      throw err;
    }
    if (!req.sandbox) this.wake();
    return { queueIds: p.ids, id: p.msgId };
  }

  /** Step 1 of an enqueue: recipients normalised, the message written to the spool and fsynced. */
  private async prepare(req: EnqueueRequest): Promise<Prepared> {
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
    const spoolFile = req.sandbox ? null : await this.spool.write(req.message, { id: msgId.slice(4) });
    return { req, rcpts, held: req.recipients.map((r) => held.has(r)), msgId, ids, spoolId: spoolFile?.id ?? null };
  }

  /** Step 2 of an enqueue: the rows. Synchronous; runs inside the caller's transaction. */
  private insert(p: Prepared): void {
    const { db, clock } = this.app;
    const { req, rcpts, msgId, ids } = p;
    const now = clock.now();
    stmt(db,
      'INSERT INTO outbound_messages (id, spool_id, size, mail_from, mailbox_id, sending_domain, message_id, origin, sandbox, pending, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(msgId, p.spoolId, req.message.length, req.from, req.mailboxId, req.sendingDomain, req.messageId ?? null, req.origin, req.sandbox ? 1 : 0, req.sandbox ? 0 : rcpts.length, now);
    const ins = stmt(db,
      'INSERT INTO outbound_queue (id, message_id, recipient, domain, status, attempts, next_attempt_at, created_at, updated_at, last_code, last_reply) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    rcpts.forEach((r, i) => {
      if (req.sandbox) ins.run(ids[i], msgId, r.address, r.domain, 'delivered', 1, null, now, now, 250, '250 sandbox: recorded, not delivered');
      // Held: the caller is delivering it right now and reports with settle(); a crash before that
      // leaves it in flight, and in-flight rows are queued again at the next start.
      else if (p.held[i]) ins.run(ids[i], msgId, r.address, r.domain, 'inflight', 0, null, now, now, null, null);
      else ins.run(ids[i], msgId, r.address, r.domain, 'queued', 0, now, now, now, null, null);
    });
    recordEvent(db, clock, {
      type: 'message.queued',
      mailboxId: req.mailboxId,
      domain: req.sendingDomain,
      messageId: req.messageId ?? null,
      data: { id: msgId, from: req.from, recipients: rcpts.map((r, i) => ({ recipient: r.address, queueId: ids[i] })), origin: req.origin, sandbox: !!req.sandbox, size: req.message.length },
    });
    if (req.sandbox) {
      const att = stmt(db, "INSERT INTO outbound_attempts (queue_id, at, mx, outcome, code, reply) VALUES (?, ?, 'sandbox', 'delivered', 250, '250 sandbox: recorded, not delivered')");
      rcpts.forEach((r, i) => {
        att.run(ids[i], now);
        recordEvent(db, clock, { type: 'message.delivered', mailboxId: req.mailboxId, domain: req.sendingDomain, messageId: req.messageId ?? null, data: { id: msgId, queueId: ids[i], recipient: r.address, sandbox: true } });
      });
    }
  }

  /**
   * The outcome of the caller's own delivery attempt of held recipients (enqueue's `held`), recorded
   * like one of the queue's attempts: delivered → done; 4xx → retried on the schedule; 5xx → bounced
   * with a DSN to the sender, or, with `cancelPermanent` (the client is told instead), cancelled.
   */
  async settle(id: string, results: { queueId: string; code: number; reply: string }[], opts: { mx: string; cancelPermanent?: boolean }): Promise<void> {
    const { db, clock } = this.app;
    const msg = stmt(db, 'SELECT * FROM outbound_messages WHERE id = ?').get(id) as MessageRow;
    const byId = new Map(results.map((r) => [r.queueId, r]));
    const rows = (stmt(db, `SELECT id, message_id, recipient, domain, attempts, delay_notified, created_at FROM outbound_queue WHERE message_id = ? AND status = 'inflight'`).all(id) as QueueRow[]).filter((r) => byId.has(r.id));
    const perm = (r: QueueRow) => byId.get(r.id)!.code >= 500;
    const cancel = opts.cancelPermanent ? rows.filter(perm) : [];
    const rest = opts.cancelPermanent ? rows.filter((r) => !perm(r)) : rows;
    if (cancel.length) {
      const now = clock.now();
      db.transaction(() => {
        const up = stmt(db, "UPDATE outbound_queue SET status = 'cancelled', next_attempt_at = NULL, last_code = ?, last_reply = ?, updated_at = ? WHERE id = ?");
        for (const r of cancel) up.run(byId.get(r.id)!.code, byId.get(r.id)!.reply, now, r.id);
        stmt(db, 'UPDATE outbound_messages SET pending = pending - ? WHERE id = ?').run(cancel.length, id);
      }).immediate();
    }
    const attempt: AttemptInfo = { mx: opts.mx, ip: null, sourceIp: null, tlsVersion: null, tlsCipher: null, transcript: '' };
    if (rest.length) {
      await this.finish(msg, rest, rest.map((r) => {
        const x = byId.get(r.id)!;
        return { recipient: r.recipient, code: x.code, reply: x.reply, outcome: outcomeOf(x.code) };
      }), attempt, []);
    } else if (msg.spool_id && (stmt(db, 'SELECT pending FROM outbound_messages WHERE id = ?', { pluck: true }).get(id) as number) <= 0) {
      await this.spool.remove(msg.spool_id);
    }
    this.wake();
  }

  // --- lifecycle ----------------------------------------------------------------------------

  async start(): Promise<void> {
    const { db, clock, log } = this.app;
    const now = clock.now();
    const r = db.prepare("UPDATE outbound_queue SET status = 'queued', next_attempt_at = ?, updated_at = ? WHERE status = 'inflight'").run(now, now);
    if (r.changes) log.warn({ reclaimed: r.changes }, 'queue entries left in flight by an earlier run are queued again (the remote may have received them once already)');
    this.app.handoff.queue = this;
    this.housekeeping = setInterval(() => this.purge(), 3_600_000);
    this.housekeeping.unref();
    this.wake();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.housekeeping) clearInterval(this.housekeeping);
    // Finish what is in flight (bounded); anything still running is reclaimed at next start.
    await Promise.race([Promise.allSettled([...this.active]), new Promise((r) => setTimeout(r, 3000).unref())]);
    this.client.close();
    if (this.app.handoff.queue === this) this.app.handoff.queue = null;
  }

  /** Hourly: drop cap counters older than a day and finished messages older than outbound.retention. */
  purge(): number {
    const { db, clock, config, log } = this.app;
    const now = clock.now();
    try {
      pruneSendLog(db, now);
      const r = db.prepare('DELETE FROM outbound_messages WHERE pending <= 0 AND created_at < ?').run(now - parseDuration(config.outbound.retention));
      if (r.changes) log.info({ purged: r.changes }, 'finished outbound messages purged');
      return r.changes;
    } catch (err: any) {
      log.error({ err: err.message }, 'queue housekeeping failed');
      return 0;
    }
  }

  /** Look for due entries soon (after enqueue, a retry, or a finished job). */
  wake(): void {
    if (this.stopping) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), 0);
  }

  private tick(): void {
    if (this.stopping) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    try {
      this.schedule();
    } catch (err: any) {
      this.app.log.error({ err: err.message }, 'queue scheduling failed');
    } finally {
      this.ticking = false;
    }
    if (this.again) {
      this.again = false;
      this.wake();
      return;
    }
    this.armTimer();
  }

  private armTimer(): void {
    if (this.stopping) return;
    const { db, clock, config } = this.app;
    const next = stmt(db, "SELECT min(next_attempt_at) FROM outbound_queue WHERE status = 'queued'", { pluck: true }).get() as number | null;
    const poll = config.outbound.poll_interval_ms;
    const now = clock.now();
    const delay = next === null ? poll : next <= now ? poll : Math.min(next - now, poll);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), delay);
  }

  private schedule(): void {
    const { db, clock, config } = this.app;
    const free = config.outbound.concurrency - this.active.size;
    if (free <= 0) return;
    const now = clock.now();
    const rows = stmt(db, "SELECT id, message_id, recipient, domain, attempts, delay_notified, created_at FROM outbound_queue WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?")
      .all(now, free * 20) as QueueRow[];
    if (rows.length === 0) return;
    const groups = new Map<string, QueueRow[]>();
    const domainSlots = new Map<string, number>();
    const jobs: QueueRow[][] = [];
    for (const r of rows) {
      const key = `${r.message_id}|${r.domain}`;
      const g = groups.get(key);
      if (g) {
        if (g.length < MAX_RCPTS_PER_JOB) g.push(r);
        continue;
      }
      if (jobs.length >= free) continue;
      const used = (this.activeByDomain.get(r.domain) ?? 0) + (domainSlots.get(r.domain) ?? 0);
      if (used >= config.outbound.concurrency_per_domain) continue;
      domainSlots.set(r.domain, (domainSlots.get(r.domain) ?? 0) + 1);
      const ng = [r];
      groups.set(key, ng);
      jobs.push(ng);
    }
    const claim = stmt(db, "UPDATE outbound_queue SET status = 'inflight', updated_at = ? WHERE id = ? AND status = 'queued'");
    // A claim only marks rows as being delivered; rows in flight are queued again at start, so a
    // claim lost in a power failure changes nothing: no fsync of its own (the next commit's covers it).
    const claimed = commitWithoutFsync(db, () => jobs.map((g) => g.filter((r) => claim.run(now, r.id).changes === 1)));
    for (const g of claimed) {
      if (g.length === 0) continue;
      const domain = g[0].domain;
      this.activeByDomain.set(domain, (this.activeByDomain.get(domain) ?? 0) + 1);
      const p: Promise<void> = this.runJob(g)
        .catch((err) => {
          this.app.log.error({ err: err.message, stack: err.stack, queueIds: g.map((r) => r.id) }, 'queue job failed; its entries are tried again later');
          this.release(g);
        })
        .finally(() => {
          this.active.delete(p);
          const n = (this.activeByDomain.get(domain) ?? 1) - 1;
          if (n <= 0) this.activeByDomain.delete(domain);
          else this.activeByDomain.set(domain, n);
          this.wake();
        });
      this.active.add(p);
    }
  }

  // --- delivery -----------------------------------------------------------------------------

  /** Entries of a job that failed before recording anything: queued again for a later attempt. */
  private release(rows: QueueRow[]): void {
    try {
      const { db, clock } = this.app;
      const up = stmt(db, "UPDATE outbound_queue SET status = 'queued', next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'inflight'");
      const now = clock.now();
      db.transaction(() => rows.forEach((r) => up.run(now + DSN_RETRY_MS, now, r.id))).immediate();
    } catch (err: any) {
      this.app.log.error({ err: err.message }, 'could not release queue entries; they are queued again at the next start');
    }
  }

  private async runJob(rows: QueueRow[]): Promise<void> {
    const { db } = this.app;
    const msg = stmt(db, 'SELECT * FROM outbound_messages WHERE id = ?').get(rows[0].message_id) as MessageRow;
    const domain = rows[0].domain;
    const recipients = rows.map((r) => r.recipient);
    let results: RcptResult[];
    let attempt: AttemptInfo;
    let extraExternal: string[] = [];
    const spoolPath = this.spool.pathFor(msg.spool_id!);
    if (isLocalDomain(db, domain)) {
      ({ results, attempt, extraExternal } = await this.deliverLocal(msg, recipients, spoolPath));
      // External alias targets are added once, on the first attempt (a retry must not add them again).
      if (rows.some((r) => r.attempts > 0)) extraExternal = [];
    } else {
      ({ results, attempt } = await this.client.deliver({
        domain,
        from: msg.mail_from,
        recipients,
        size: msg.size,
        body: () => createReadStream(spoolPath),
        sendingDomain: msg.sending_domain,
      }));
    }
    await this.finish(msg, rows, results, attempt, extraExternal);
  }

  private async deliverLocal(msg: MessageRow, recipients: string[], spoolPath: string): Promise<{ results: RcptResult[]; attempt: AttemptInfo; extraExternal: string[] }> {
    const { db, config } = this.app;
    const attempt: AttemptInfo = { mx: 'lmtp', ip: null, sourceIp: null, tlsVersion: null, tlsCipher: null, transcript: '' };
    const targets = new Map<string, string[]>();
    const extraExternal: string[] = [];
    const fixed = new Map<string, RcptResult>();
    for (const r of recipients) {
      // The one routing code path (the MX's and submission's): loops, catch-all, plus folders, disabled.
      const res = resolveRecipient(db, r, { srsSecret: this.srsSecret(), now: this.app.clock.now(), hostname: config.hostname });
      if (!res.ok) fixed.set(r, { recipient: r, code: res.reply.responseCode, reply: replyLine(res.reply), outcome: outcomeOf(res.reply.responseCode) });
      else {
        const x = splitTargets(res.targets);
        targets.set(r, x.lmtp);
        extraExternal.push(...x.forwards);
      }
    }
    const lmtpTo = [...new Set([...targets.values()].flat())];
    const byTarget = new Map<string, { code: number; response: string; status: string }>();
    if (lmtpTo.length) {
      const res = await this.app.delivery.deliver({ from: msg.mail_from, body: () => createReadStream(spoolPath) }, lmtpTo);
      for (const x of res) byTarget.set(x.recipient, x);
    }
    const results = recipients.map((r) => {
      const f = fixed.get(r);
      if (f) return f;
      const outs = (targets.get(r) ?? []).map((t) => byTarget.get(t)!);
      const worst = outs.find((o) => o.code >= 400 && o.code < 500) ?? outs.find((o) => o.code >= 500) ?? outs[0];
      if (!worst) return { recipient: r, code: 250, reply: '250 2.1.5 forwarded', outcome: 'delivered' as const };
      return { recipient: r, code: worst.code, reply: worst.response, outcome: outcomeOf(worst.code) };
    });
    return { results, attempt, extraExternal };
  }

  /**
   * Records the outcome of one attempt for each recipient. A DSN (failure or delay notice) is written
   * to the spool (fsynced) first and its queue rows are inserted in the same transaction as the state
   * change that causes it: a crash at any point leaves either both or neither (at worst an orphan
   * spool file). If the DSN cannot be written, the bounce is not recorded either: the recipient stays
   * queued and the attempt is made again later (a delay notice is simply left for a later attempt).
   */
  private async finish(msg: MessageRow, rows: QueueRow[], results: RcptResult[], attempt: AttemptInfo, extraExternal: string[]): Promise<void> {
    const { db, clock, log } = this.app;
    const now = clock.now();
    const canDsn = msg.mail_from !== '' && msg.origin !== 'dsn';
    const decisions: Decision[] = rows.map((row, i) => {
      const r = results[i];
      if (r.outcome === 'deferred') {
        const d = onTempFail({ now, createdAt: row.created_at, attempts: row.attempts + 1, delayNotified: row.delay_notified === 1, policy: this.policy, rand: Math.random() });
        if (d.action === 'expire') {
          const dsn: DsnRecipient = { address: row.recipient, action: 'failed', status: '4.4.7', remoteMta: attempt.mx, diagnostic: r.reply, lastAttemptAt: new Date(now) };
          return { row, r, outcome: 'bounced', expired: true, nextAttemptAt: null, delayNotified: row.delay_notified === 1, dsn: canDsn ? dsn : null };
        }
        const dsn: DsnRecipient | null =
          d.delayNotice && canDsn
            ? { address: row.recipient, action: 'delayed', status: dsnStatusFor(r.code, r.reply, '4.0.0'), remoteMta: attempt.mx, diagnostic: r.reply, lastAttemptAt: new Date(now), willRetryUntil: new Date(row.created_at + this.policy.maxAge) }
            : null;
        return { row, r, outcome: 'deferred', expired: false, nextAttemptAt: d.nextAttemptAt, delayNotified: d.delayNotice || row.delay_notified === 1, dsn };
      }
      if (r.outcome === 'delivered') return { row, r, outcome: 'delivered', expired: false, nextAttemptAt: null, delayNotified: row.delay_notified === 1, dsn: null };
      const dsn: DsnRecipient = { address: row.recipient, action: 'failed', status: dsnStatusFor(r.code, r.reply, '5.0.0'), remoteMta: attempt.mx, diagnostic: r.reply, lastAttemptAt: new Date(now) };
      return { row, r, outcome: 'bounced', expired: false, nextAttemptAt: null, delayNotified: row.delay_notified === 1, dsn: canDsn ? dsn : null };
    });

    // DSNs on disk (fsynced) before the commit that records what they report.
    const dsns: Prepared[] = [];
    const failed = decisions.filter((d) => d.dsn?.action === 'failed');
    const delayed = decisions.filter((d) => d.dsn?.action === 'delayed');
    if (failed.length || delayed.length) {
      try {
        const headers = await this.originalHeaders(msg);
        for (const group of [failed, delayed]) if (group.length) dsns.push(await this.prepare(await this.dsnRequest(msg, headers, group.map((d) => d.dsn!))));
      } catch (err: any) {
        for (const p of dsns.splice(0)) if (p.spoolId) await this.spool.remove(p.spoolId).catch(() => {});
        log.error({ err: err.message, id: msg.id }, 'could not write a delivery status notification; the bounce is not recorded and the recipients are tried again later');
        for (const d of failed) Object.assign(d, { outcome: 'deferred', expired: false, nextAttemptAt: now + DSN_RETRY_MS, dsn: null, dsnFailed: true });
        for (const d of delayed) Object.assign(d, { delayNotified: d.row.delay_notified === 1, dsn: null });
      }
    }

    const ev = (type: any, data: Record<string, unknown>) =>
      recordEvent(db, clock, { type, mailboxId: msg.mailbox_id, domain: msg.sending_domain, messageId: msg.message_id, data: { id: msg.id, from: msg.mail_from, ...data } });
    let pendingLeft: number;
    try {
      pendingLeft = await groupCommit(db).run(() => {
        const att = stmt(db,
          'INSERT INTO outbound_attempts (queue_id, at, mx, ip, source_ip, tls_version, tls_cipher, code, reply, outcome, transcript) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        );
        const final = stmt(db, 'UPDATE outbound_queue SET status = ?, attempts = attempts + 1, next_attempt_at = NULL, last_code = ?, last_reply = ?, updated_at = ? WHERE id = ?');
        const retry = stmt(db, "UPDATE outbound_queue SET status = 'queued', attempts = attempts + 1, next_attempt_at = ?, last_code = ?, last_reply = ?, delay_notified = ?, updated_at = ? WHERE id = ?");
        let done = 0;
        for (const d of decisions) {
          const { row, r } = d;
          const base = { queueId: row.id, recipient: row.recipient, code: r.code, reply: r.reply, mx: attempt.mx, attempts: row.attempts + 1 };
          if (d.outcome === 'deferred') {
            retry.run(d.nextAttemptAt, r.code, r.reply, d.delayNotified ? 1 : 0, now, row.id);
            ev('message.deferred', { ...base, nextAttemptAt: new Date(d.nextAttemptAt!).toISOString(), ...(d.dsnFailed ? { reason: 'the bounce notice could not be written; tried again later' } : {}) });
          } else if (d.outcome === 'delivered') {
            final.run('delivered', r.code, r.reply, now, row.id);
            done++;
            ev('message.delivered', base);
          } else {
            final.run('bounced', r.code, r.reply, now, row.id);
            done++;
            ev('message.bounced', d.expired ? { ...base, reason: 'expired' } : base);
            if (!d.expired && msg.sending_domain && msg.origin !== 'dsn' && isHardBounce(r.code, r.reply)) {
              if (addSuppression(db, { domain: msg.sending_domain, address: row.recipient, reason: 'hard bounce', code: r.code, createdAt: new Date(now).toISOString() })) {
                ev('message.suppressed', { recipient: row.recipient, reason: 'hard bounce', code: r.code, reply: r.reply });
              }
            }
          }
          att.run(row.id, now, attempt.mx, attempt.ip, attempt.sourceIp, attempt.tlsVersion, attempt.tlsCipher, r.code, r.reply, d.outcome, d.outcome === 'delivered' ? null : attempt.transcript || null);
        }
        // Alias targets outside our domains found while delivering locally join the same message.
        const ins = stmt(db, "INSERT INTO outbound_queue (id, message_id, recipient, domain, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)");
        for (const x of [...new Set(extraExternal)]) ins.run(newId('q'), msg.id, x, parseAddress(x).domain, now, now, now);
        for (const p of dsns) this.insert(p);
        return stmt(db, 'UPDATE outbound_messages SET pending = pending - ? + ? WHERE id = ? RETURNING pending', { pluck: true }).get(done, new Set(extraExternal).size, msg.id) as number;
      });
    } catch (err) {
      for (const p of dsns) if (p.spoolId) await this.spool.remove(p.spoolId).catch(() => {});
      throw err;
    }
    if (extraExternal.length || dsns.length) this.wake();
    if (pendingLeft <= 0 && msg.spool_id) await this.spool.remove(msg.spool_id);
  }

  private originalHeaders(msg: MessageRow): Promise<string> {
    return readHeaderSection(this.spool.pathFor(msg.spool_id!));
  }

  /** A DSN to the sender of `msg`, DKIM-signed like any other outgoing message. */
  private async dsnRequest(msg: MessageRow, headers: string, recipients: DsnRecipient[]): Promise<EnqueueRequest> {
    const { config, clock } = this.app;
    const subject = headerValue(headers, 'subject');
    const now = new Date(clock.now());
    const dsn = buildDsn({
      reportingMta: config.hostname,
      to: msg.mail_from,
      originalMessageId: msg.message_id,
      originalSubject: subject,
      originalHeaders: headers,
      arrivalDate: new Date(msg.created_at),
      recipients,
      now,
      messageId: `<${randomBytes(12).toString('hex')}@${config.hostname}>`,
      boundary: `lb-dsn-${randomBytes(8).toString('hex')}`,
    });
    const signed = await this.dkim.signWithFirst(dsnSigningDomains(config.hostname, msg.sending_domain), dsn, now);
    return { message: signed, from: '', recipients: [msg.mail_from], mailboxId: msg.mailbox_id, sendingDomain: null, origin: 'dsn', messageId: null };
  }
}

/** The first configured address that is assigned to this host (binding any other would fail, e.g. behind NAT). */
function mainIp(ips: string[]): string | null {
  const local = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address)));
  return ips.find((ip) => local.has(ip)) ?? null;
}

/** Component factory for `letterbox serve` (before the listeners that hand mail to it). */
export function createQueueComponent(app: AppContext): Component {
  return new Queue(app);
}
