// The webhook dispatcher: a durable outbox over the `events` table.
//
// 1. Fan-out: new rows of `events` (written in the same transaction as the change they describe)
//    become one `webhook_deliveries` row per subscribed endpoint, in one transaction with the
//    cursor, so an event is never lost or fanned out twice, even across SIGKILL.
// 2. Delivery: pending rows that are due are POSTed (signed), with retries on the configured
//    schedule (~32 h by default); every attempt is recorded. Delivery is at-least-once: a crash
//    after the receiver answered but before the result was stored sends it again; receivers
//    deduplicate on Letterbox-Event-Id.
// 3. Housekeeping: endpoints failing for webhooks.disable_after are disabled with a reason; the
//    delivery log is kept for webhooks.retention.
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { retryDelay } from '../queue/schedule.ts';
import type { AppContext, Component } from '../server.ts';
import { addressProblem, type TargetPolicy } from './ssrf.ts';
import { signatureHeader } from './sign.ts';
import {
  activeSecrets,
  deliveryRow,
  disableWebhook,
  dueDeliveryIds,
  enabledWebhookRows,
  insertDelivery,
  markWebhookFailing,
  markWebhookHealthy,
  outboxCursor,
  pruneDeliveries,
  recordDeliveryAttempt,
  setOutboxCursor,
  webhookFailingState,
  webhookRow,
  type DeliveryRow,
  type WebhookRow,
} from './store.ts';
import { eventsAfter, type EventRow } from '../events/record.ts';

export type { EventRow } from '../events/record.ts';

const USER_AGENT = 'Letterbox-Webhooks/1';

/** The JSON body of a delivery: { id, type, createdAt, data }. */
export function eventPayload(e: EventRow): string {
  let data: Record<string, unknown> = {};
  try {
    data = JSON.parse(e.data);
  } catch {}
  return JSON.stringify({ id: `evt_${e.id}`, type: e.type, createdAt: e.created_at, data: { ...data, mailboxId: e.mailbox_id, domain: e.domain, messageId: e.message_id } });
}

function subscribed(w: WebhookRow, e: EventRow): boolean {
  if (e.id <= w.from_event_id) return false;
  const types = JSON.parse(w.events) as string[];
  if (!types.includes('*') && !types.includes(e.type)) return false;
  if (w.domains) return !!e.domain && (JSON.parse(w.domains) as string[]).includes(e.domain);
  return true;
}

interface PostResult {
  statusCode: number | null;
  error: string | null;
  response: string | null;
  blocked: boolean;
}

export class WebhookDispatcher {
  private readonly app: AppContext;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly inflight = new Map<string, Promise<void>>();
  private lastPrune = 0;
  private ticking = false;

  constructor(app: AppContext) {
    this.app = app;
  }

  private get cfg() {
    return this.app.config.webhooks;
  }

  start(): void {
    this.running = true;
    const loop = async () => {
      if (!this.running) return;
      try {
        await this.tick();
      } catch (err: any) {
        this.app.log.error({ component: 'webhooks', err: err?.message }, 'webhook dispatcher tick failed');
      }
      if (this.running) {
        this.timer = setTimeout(loop, this.cfg.poll_interval_ms);
      }
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // Attempts in flight get 2 s to finish (the whole shutdown must fit in 10 s); unfinished ones
    // stay pending and are sent again after the restart (delivery is at least once).
    await Promise.race([Promise.allSettled([...this.inflight.values()]), new Promise((r) => setTimeout(r, 2000).unref())]);
  }

  /** One pass: fan out new events, start due deliveries, prune. Returns once the started deliveries are launched. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      while (this.fanOut() === 500);
      this.startDue();
      this.prune();
    } finally {
      this.ticking = false;
    }
  }

  /** Moves up to 500 new events into the outbox; returns how many events it read. */
  fanOut(): number {
    const { db, clock } = this.app;
    return db
      .transaction(() => {
        const events = eventsAfter(db, outboxCursor(db), 500);
        if (!events.length) return 0;
        const hooks = enabledWebhookRows(db);
        const now = clock.now();
        for (const e of events) {
          const targets = hooks.filter((w) => subscribed(w, e));
          if (!targets.length) continue;
          const payload = eventPayload(e);
          for (const w of targets) insertDelivery(db, now, { webhookId: w.id, eventId: `evt_${e.id}`, eventType: e.type, payload });
        }
        setOutboxCursor(db, events[events.length - 1].id);
        return events.length;
      })
      .immediate();
  }

  private startDue(): void {
    const { db, clock } = this.app;
    const free = this.cfg.concurrency - this.inflight.size;
    if (free <= 0) return;
    const due = dueDeliveryIds(db, clock.now(), free + this.inflight.size);
    for (const id of due) {
      if (this.inflight.size >= this.cfg.concurrency) break;
      if (this.inflight.has(id)) continue;
      void this.attempt(id);
    }
  }

  private prune(): void {
    const { db, clock } = this.app;
    const now = clock.now();
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    const cutoff = now - this.cfg.retention;
    pruneDeliveries(db, cutoff);
  }

  /** Attempts one delivery now (unless one is already running for it) and resolves when recorded. */
  attempt(id: string): Promise<void> {
    const existing = this.inflight.get(id);
    if (existing) return existing;
    const p = this.doAttempt(id).finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  private async doAttempt(id: string): Promise<void> {
    const { db, clock, log } = this.app;
    const d = deliveryRow(db, id);
    if (!d || d.status !== 'pending') return;
    const w = webhookRow(db, d.webhook_id);
    if (!w) return;
    const started = clock.now();
    const t = Math.floor(started / 1000);
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'User-Agent': USER_AGENT,
      'Letterbox-Event-Id': d.event_id,
      'Letterbox-Event-Type': d.event_type,
      'Letterbox-Delivery-Id': d.id,
      'Letterbox-Signature': signatureHeader(activeSecrets(w, started), t, d.payload),
    };
    const perf0 = performance.now();
    const r = await postJson(w.url, d.payload, headers, this.cfg.timeout_ms, this.cfg, this.app);
    if (r.statusCode !== null && r.statusCode < 300) this.app.crash('webhook.after-send');
    const duration = Math.round(performance.now() - perf0);
    const now = clock.now();
    const ok = r.statusCode !== null && r.statusCode >= 200 && r.statusCode < 300;
    const outcome = ok ? 'success' : r.blocked ? 'blocked' : r.statusCode !== null ? 'http_error' : 'network_error';
    this.app.metrics.webhookDeliveries.inc({ outcome });
    const next = nextDeliveryState({ ok, blocked: r.blocked, isTest: d.event_type === 'webhook.test', attempts: d.attempts + 1, schedule: this.cfg.retry_schedule, now, random: Math.random() });
    db.transaction(() => {
      recordDeliveryAttempt(db, d.id, { at: started, statusCode: r.statusCode, error: r.error, durationMs: duration, response: r.response }, { ...next, now });
      if (next.isTest) return;
      if (ok) {
        markWebhookHealthy(db, w.id);
        return;
      }
      const cur = webhookFailingState(db, w.id);
      if (!cur) return;
      const since = cur.failing_since ?? started;
      if (cur.failing_since === null) markWebhookFailing(db, w.id, since);
      if (cur.enabled && now - since >= this.cfg.disable_after) {
        const reason = `disabled automatically at ${new Date(now).toISOString()}: every delivery failed since ${new Date(since).toISOString()} (last: ${r.error ?? `HTTP ${r.statusCode}`}); fix the endpoint, then PATCH {"enabled": true}`;
        disableWebhook(db, w.id, reason, now);
        log.warn({ component: 'webhooks', webhook: w.id, url: w.url }, 'webhook endpoint disabled after failing for too long');
      }
    }).immediate();
    log.info({ component: 'webhooks', webhook: w.id, delivery: d.id, event: d.event_id, statusCode: r.statusCode, error: r.error, ms: duration, attempt: next.attempts }, ok ? 'webhook delivered' : 'webhook delivery failed');
  }
}

/**
 * The delivery's state after an attempt: succeeded; failed (a test event, a blocked address, or
 * the retry schedule exhausted); else pending until the next slot of the schedule (±10 % jitter).
 */
export function nextDeliveryState(a: { ok: boolean; blocked: boolean; isTest: boolean; attempts: number; schedule: number[]; now: number; random: number }): {
  status: DeliveryRow['status'];
  attempts: number;
  nextAttemptAt: number | null;
  isTest: boolean;
} {
  let status: DeliveryRow['status'] = 'pending';
  let nextAttemptAt: number | null = null;
  if (a.ok) status = 'succeeded';
  else if (a.isTest || a.blocked || a.attempts > a.schedule.length) status = 'failed';
  // The queue's retry arithmetic: the schedule's delay for this attempt, ±10% jitter.
  else nextAttemptAt = a.now + retryDelay(a.attempts, { schedule: a.schedule, jitter: 0.1 }, a.random);
  return { status, attempts: a.attempts, nextAttemptAt, isTest: a.isTest };
}

/** POSTs to `url` after checking (and pinning) its address; never follows redirects. */
async function postJson(url: string, body: string, headers: Record<string, string>, timeoutMs: number, policy: TargetPolicy, app: AppContext): Promise<PostResult> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { statusCode: null, error: 'invalid URL', response: null, blocked: true };
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  let address: string;
  try {
    if (isIP(host)) address = host;
    else if (host === 'localhost' || host.endsWith('.localhost')) address = '127.0.0.1';
    else {
      const v4 = ((await app.resolver.resolve(host, 'A').catch(() => [])) as string[]) ?? [];
      const v6 = ((await app.resolver.resolve(host, 'AAAA').catch(() => [])) as string[]) ?? [];
      const all = [...v4, ...v6];
      if (!all.length) return { statusCode: null, error: `cannot resolve ${host}`, response: null, blocked: false };
      for (const a of all) {
        const why = addressProblem(a, policy);
        if (why) return { statusCode: null, error: `refused: ${host} resolves to ${why}`, response: null, blocked: true };
      }
      address = all[0];
    }
  } catch (err: any) {
    return { statusCode: null, error: `cannot resolve ${host}: ${err?.message}`, response: null, blocked: false };
  }
  const why = addressProblem(address, policy);
  if (why) return { statusCode: null, error: `refused: ${why}`, response: null, blocked: true };
  const family = isIP(address);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise<PostResult>((resolve) => {
    let done = false;
    const finish = (r: PostResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = mod.request(
      u,
      {
        method: 'POST',
        headers: { ...headers, 'Content-Length': String(Buffer.byteLength(body)) },
        // Connect to the address that was checked, whatever the name resolves to by now.
        lookup: ((_h: string, opts: any, cb: any) => (opts?.all ? cb(null, [{ address, family }]) : cb(null, address, family))) as any,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < 1024) chunks.push(c);
          size += c.length;
          if (size > 64 * 1024) res.destroy();
        });
        const end = () => {
          const status = res.statusCode ?? null;
          const text = Buffer.concat(chunks).toString('utf8').slice(0, 1024);
          const redirect = status !== null && status >= 300 && status < 400;
          finish({ statusCode: status, error: redirect ? `redirect to ${res.headers.location ?? '?'} not followed` : status !== null && (status < 200 || status >= 300) ? `HTTP ${status}` : null, response: text || null, blocked: false });
        };
        res.on('end', end);
        res.on('close', end);
        res.on('error', end);
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish({ statusCode: null, error: `timed out after ${timeoutMs} ms`, response: null, blocked: false });
    }, timeoutMs);
    req.on('error', (err: any) => finish({ statusCode: null, error: String(err?.code ?? err?.message ?? err), response: null, blocked: false }));
    req.end(body);
  });
}

/** Starts and stops the context's dispatcher (AppContext.webhooks). */
export function createWebhookComponent(app: AppContext): Component {
  const d = app.webhooks;
  return {
    name: 'webhooks',
    async start() {
      d.start();
    },
    async stop() {
      await d.stop();
    },
  };
}
