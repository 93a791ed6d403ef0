// The outbound queue: durable enqueue (spool fsynced + rows committed), the scheduler
// (scheduler.ts: index-driven, global and per-domain concurrency), attempts (attempt.ts: LMTP for
// our own domains, SMTP otherwise; outcomes decided by decide.ts, a pure function), retries, DSNs,
// suppressions and events. Its SQL is in store.ts. Rows left in flight by a crash are reclaimed at start.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { AppContext, Component } from '../server.ts';
import type { EnqueueRequest, EnqueueResult, QueueService } from './handoff.ts';
import { Spool } from '../spool/index.ts';
import { groupCommit } from '../db/group-commit.ts';
import { parseHostPort } from '../config/schema.ts';
import type { DkimSigner } from '../dkim/sign.ts';
import { SmtpClient, type AttemptInfo } from './smtp-client.ts';
import { MtaSts } from './mta-sts.ts';
import { Dane } from './dane.ts';
import { createSecureResolver } from '../dns/dnssec.ts';
import type { RetryPolicy } from './schedule.ts';
import { outcomeOf } from './classify.ts';
import type { QueueRow } from './decide.ts';
import { prepareEnqueue, insertEnqueued } from './enqueue.ts';
import { DSN_RETRY_MS, finishAttempt, runAttempt, type AttemptDeps } from './attempt.ts';
import { Scheduler } from './scheduler.ts';
import { pruneVerdicts } from '../verdicts/store.ts';
import { cancelRecipients, getMessage, inflightRowsOf, pendingOf, purgeFinished, releaseRows, requeueInflight } from './store.ts';
import { pruneSendLog } from '../services/sending-limits.ts';

export class Queue implements QueueService, Component {
  /** True between start and stop (the others hand messages only to a running queue: runningQueue()). */
  running = false;
  name = 'queue';
  readonly spool: Spool;
  private client: SmtpClient;
  private policy: RetryPolicy;
  private scheduler: Scheduler;
  private attemptDeps: AttemptDeps;
  private housekeeping: NodeJS.Timeout | null = null;
  private app: AppContext;
  /** Signs the DSNs the queue sends. */
  private dkim: DkimSigner;
  private srsSecret(): string {
    return this.app.srsSecret;
  }

  constructor(app: AppContext) {
    this.app = app;
    this.dkim = app.dkim;
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
      dane: o.dane && !smarthost ? new Dane({ resolver: createSecureResolver({ servers: app.config.dns.servers, timeoutMs: app.config.dns.timeout_ms, clock: app.clock }), port: o.port }) : null,
      ca,
      connectTimeoutMs: o.connect_timeout_ms,
      socketTimeoutMs: o.socket_timeout_ms,
      smarthost,
    });
    this.policy = {
      schedule: o.retry_schedule,
      jitter: o.retry_jitter,
      maxAge: o.max_age,
      delayNoticeAfter: o.delay_notice_after,
    };
    this.scheduler = new Scheduler({
      db: app.db,
      clock: app.clock,
      log: app.log,
      concurrency: o.concurrency,
      concurrencyPerDomain: o.concurrency_per_domain,
      pollIntervalMs: o.poll_interval_ms,
      run: (rows) => runAttempt(this.attemptDeps, rows),
      release: (rows) => this.release(rows),
    });
    this.attemptDeps = {
      app,
      spool: this.spool,
      client: this.client,
      policy: this.policy,
      dkim: this.dkim,
      srsSecret: () => this.srsSecret(),
      random: Math.random,
      wake: () => this.wake(),
    };
  }

  // --- enqueue ------------------------------------------------------------------------------

  async enqueue(req: EnqueueRequest): Promise<EnqueueResult> {
    if (req.recipients.length === 0) return { queueIds: [], id: null };
    const p = await prepareEnqueue(this.spool, req);
    try {
      // One commit for the rows, the event and the caller's own writes (inTransaction), shared
      // with the other enqueues and deliveries finishing in the same turn of the event loop.
      await groupCommit(this.app.db).run(() => {
        insertEnqueued(this.app.db, this.app.clock, p);
        req.inTransaction?.();
      });
    } catch (err) {
      if (p.spoolId) await this.spool.remove(p.spoolId).catch(() => {});
      throw err;
    }
    if (!req.sandbox) this.wake();
    return { queueIds: p.ids, id: p.msgId };
  }

  /**
   * The outcome of the caller's own delivery attempt of held recipients (enqueue's `held`), recorded
   * like one of the queue's attempts: delivered → done; 4xx → retried on the schedule; 5xx → bounced
   * with a DSN to the sender, or, with `cancelPermanent` (the client is told instead), cancelled.
   */
  async settle(id: string, results: { queueId: string; code: number; reply: string }[], opts: { mx: string; cancelPermanent?: boolean }): Promise<void> {
    const { db, clock } = this.app;
    const msg = getMessage(db, id);
    const byId = new Map(results.map((r) => [r.queueId, r]));
    const rows = inflightRowsOf<QueueRow>(db, id).filter((r) => byId.has(r.id));
    const perm = (r: QueueRow) => byId.get(r.id)!.code >= 500;
    const cancel = opts.cancelPermanent ? rows.filter(perm) : [];
    const rest = opts.cancelPermanent ? rows.filter((r) => !perm(r)) : rows;
    if (cancel.length) cancelRecipients(db, id, cancel.map((r) => ({ id: r.id, code: byId.get(r.id)!.code, reply: byId.get(r.id)!.reply })), clock.now());
    const attempt: AttemptInfo = { mx: opts.mx, ip: null, sourceIp: null, tlsVersion: null, tlsCipher: null, transcript: '' };
    if (rest.length) {
      const res = rest.map((r) => {
        const x = byId.get(r.id)!;
        return { recipient: r.recipient, code: x.code, reply: x.reply, outcome: outcomeOf(x.code) };
      });
      await finishAttempt(this.attemptDeps, msg, rest, res, attempt, []);
    } else if (msg.spool_id && pendingOf(db, id) <= 0) {
      await this.spool.remove(msg.spool_id);
    }
    this.wake();
  }

  // --- lifecycle ----------------------------------------------------------------------------

  async start(): Promise<void> {
    const { db, clock, log } = this.app;
    const reclaimed = requeueInflight(db, clock.now());
    if (reclaimed) log.warn({ reclaimed }, 'queue entries left in flight by an earlier run are queued again (the remote may have received them once already)');
    this.running = true;
    this.housekeeping = setInterval(() => this.purge(), 3_600_000);
    this.housekeeping.unref();
    this.wake();
  }

  async stop(): Promise<void> {
    if (this.housekeeping) clearInterval(this.housekeeping);
    // Finish what is in flight (bounded); anything still running is reclaimed at next start.
    await this.scheduler.stop(3000);
    this.client.close();
    this.running = false;
  }

  /**
   * Hourly: drop cap counters older than a day, finished messages older than outbound.retention and
   * the MX's stored verdicts older than smtp.verdicts_retention (the one hourly job of the server).
   * Returns the number of finished messages purged.
   */
  purge(): number {
    const { db, clock, config, log } = this.app;
    const now = clock.now();
    try {
      pruneSendLog(db, now);
      const n = purgeFinished(db, now - config.outbound.retention);
      if (n) log.info({ purged: n }, 'finished outbound messages purged');
      const v = pruneVerdicts(db, now - config.smtp.verdicts_retention);
      if (v) log.info({ pruned: v }, 'stored inbound verdicts older than smtp.verdicts_retention removed');
      return n;
    } catch (err: any) {
      log.error({ err: err.message }, 'queue housekeeping failed');
      return 0;
    }
  }

  /** Look for due entries soon (after enqueue, a retry, or a finished job). */
  wake(): void {
    this.scheduler.wake();
  }

  /** Entries of a job that failed before recording anything: queued again for a later attempt. */
  private release(rows: QueueRow[]): void {
    try {
      const now = this.app.clock.now();
      releaseRows(this.app.db, rows.map((r) => r.id), now + DSN_RETRY_MS, now);
    } catch (err: any) {
      this.app.log.error({ err: err.message }, 'could not release queue entries; they are queued again at the next start');
    }
  }
}

/** The first configured address that is assigned to this host (binding any other would fail, e.g. behind NAT). */
function mainIp(ips: string[]): string | null {
  const local = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address)));
  return ips.find((ip) => local.has(ip)) ?? null;
}

/** Component of `letterbox serve` (before the listeners that hand mail to it): starts and stops the context's queue. */
export function createQueueComponent(app: AppContext): Component {
  return app.queue;
}
