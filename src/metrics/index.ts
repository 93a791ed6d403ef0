// Prometheus metrics of one appliance: a prom-client Registry per AppContext (AppContext.metrics,
// built once by createAppContext; never the global default registry, so two servers in one
// process stay apart). Counters of in-process happenings
// (API requests, sends, webhook deliveries) are incremented where they happen; database-backed
// values (queue sizes, message events) are read at scrape time.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AppContext } from '../context.ts';
import { eventsAfter } from '../events/record.ts';
import { oldestWaitingAt, queueEntryCreatedAt, queueStateCounts } from '../queue/reports.ts';
import { pendingDeliveryCount } from '../webhooks/store.ts';

export interface Metrics {
  registry: Registry;
  apiRequests: Counter<'method' | 'route' | 'status'>;
  apiDuration: Histogram<'method'>;
  apiSends: Counter<'outcome' | 'sandbox'>;
  webhookDeliveries: Counter<'outcome'>;
  smtpSessions: Counter<'service' | 'port' | 'outcome'>;
  smtpMessages: Counter<'service' | 'port' | 'outcome'>;
  smtpAuth: Counter<'service' | 'result'>;
}

/** What the scrape-time collectors read: the database, the clock, Dovecot's supervisor and the IMAP pool's counts. */
export interface MetricsSource extends Pick<AppContext, 'db' | 'clock' | 'supervisor'> {
  imapPoolStats(): { busy: number; idle: number; waiting: number };
}

/** The API's own metrics, counted in every thread that serves the API (src/api/threads.ts). */
export interface ApiMetrics {
  apiRequests: Counter<'method' | 'route' | 'status'>;
  apiDuration: Histogram<'method'>;
}

export function defineApiMetrics(registry: Registry): ApiMetrics {
  return {
    apiRequests: new Counter({ name: 'letterbox_api_requests_total', help: 'Management API requests by route template and status.', labelNames: ['method', 'route', 'status'] as const, registers: [registry] }),
    apiDuration: new Histogram({ name: 'letterbox_api_request_duration_seconds', help: 'Management API request duration.', labelNames: ['method'] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [registry] }),
  };
}

const EVENT_NAMES: Record<string, string> = {
  'message.received': 'received',
  'message.queued': 'queued',
  'message.delivered': 'delivered',
  'message.deferred': 'deferred',
  'message.bounced': 'bounced',
  'message.suppressed': 'suppressed',
};

/** The appliance's registry and counters (called once, by createAppContext). */
export function createMetrics(app: MetricsSource): Metrics {
  const registry = new Registry();
  // Registered in this order (the order of the /metrics text).
  const counters = defineCounters(registry, app);
  defineQueueGauges(registry, app);
  defineEventMetrics(registry, app.db);
  defineServiceGauges(registry, app);
  return { registry, ...counters };
}

/** Counters incremented where things happen, and Dovecot's restarts. */
function defineCounters(registry: Registry, app: MetricsSource): Omit<Metrics, 'registry'> {
  const { apiRequests, apiDuration } = defineApiMetrics(registry);
  const apiSends = new Counter({ name: 'letterbox_api_sends_total', help: 'POST /mailboxes/{id}/send requests by outcome (accepted, rejected, error, replayed).', labelNames: ['outcome', 'sandbox'] as const, registers: [registry] });
  const webhookDeliveries = new Counter({ name: 'letterbox_webhook_deliveries_total', help: 'Webhook delivery attempts by outcome (success, http_error, network_error, blocked).', labelNames: ['outcome'] as const, registers: [registry] });

  const smtpSessions = new Counter({ name: 'letterbox_smtp_sessions_total', help: 'SMTP connections by service (mx, submission), local port and outcome (accepted, refused).', labelNames: ['service', 'port', 'outcome'] as const, registers: [registry] });
  const smtpMessages = new Counter({ name: 'letterbox_smtp_messages_total', help: 'Messages (DATA) by service, local port and outcome (accepted, rejected).', labelNames: ['service', 'port', 'outcome'] as const, registers: [registry] });
  const smtpAuth = new Counter({ name: 'letterbox_smtp_auth_total', help: 'SMTP AUTH attempts by result (success, failure).', labelNames: ['service', 'result'] as const, registers: [registry] });
  new Counter({
    name: 'letterbox_dovecot_restarts_total',
    help: 'Times the supervised Dovecot exited unexpectedly and was restarted.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(app.supervisor?.restartCount ?? 0);
    },
  });
  return { apiRequests, apiDuration, apiSends, webhookDeliveries, smtpSessions, smtpMessages, smtpAuth };
}

/** Queue sizes and age, read from the database at scrape time. */
function defineQueueGauges(registry: Registry, app: MetricsSource): void {
  const { db } = app;
  new Gauge({
    name: 'letterbox_queue_entries',
    help: 'Outbound queue entries (one per recipient) waiting or being delivered, by state.',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const c = queueStateCounts(db);
      this.set({ state: 'queued' }, c.queued);
      this.set({ state: 'inflight' }, c.inflight);
    },
  });
  new Gauge({
    name: 'letterbox_queue_oldest_age_seconds',
    help: 'Age of the oldest entry still waiting in the outbound queue (0 when empty).',
    registers: [registry],
    collect() {
      const min = oldestWaitingAt(db);
      this.set(min ? Math.max(0, (app.clock.now() - min) / 1000) : 0);
    },
  });
}

/** Message events and inbound verdicts, counted from the events table as it grows. */
function defineEventMetrics(registry: Registry, db: MetricsSource['db']): void {
  // Message tracking events, counted from the events table (totals since the database was created).
  const latency = new Histogram({
    name: 'letterbox_delivery_latency_seconds',
    help: 'From acceptance into the outbound queue to delivery at the remote server (non-sandbox).',
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600],
    registers: [registry],
  });
  let lastEvent = 0;
  const counts = new Map<string, number>();
  const verdicts = new Map<string, number>(); // "method result" → count, from message.received
  const VERDICT = /^[a-z_]{1,20}$/;
  const scanEvents = () => {
    for (;;) {
      const rows = eventsAfter(db, lastEvent, 5000);
      if (!rows.length) return;
      for (const r of rows) {
        lastEvent = r.id;
        const name = EVENT_NAMES[r.type];
        if (!name) continue;
        counts.set(name, (counts.get(name) ?? 0) + 1);
        if (r.type === 'message.received') {
          try {
            const a = JSON.parse(r.data).authentication ?? {};
            for (const method of ['spf', 'dkim', 'dmarc']) {
              const v = String(a[method] ?? 'none').toLowerCase();
              const k = `${method} ${VERDICT.test(v) ? v : 'other'}`;
              verdicts.set(k, (verdicts.get(k) ?? 0) + 1);
            }
          } catch {}
        }
        if (r.type === 'message.delivered') {
          try {
            const d = JSON.parse(r.data);
            // Remote deliveries only: local ones over LMTP (submitted mail, DSNs) take no network time.
            if (d.sandbox || !d.queueId || d.mx === 'lmtp') continue;
            const created = queueEntryCreatedAt(db, d.queueId);
            if (created) latency.observe(Math.max(0, (Date.parse(r.created_at) - created) / 1000));
          } catch {}
        }
      }
      if (rows.length < 5000) return;
    }
  };
  new Counter({
    name: 'letterbox_messages_total',
    help: 'Message tracking events by type: received (inbound, per mailbox), queued, delivered, deferred, bounced, suppressed.',
    labelNames: ['event'] as const,
    registers: [registry],
    collect() {
      scanEvents();
      this.reset();
      for (const name of Object.values(EVENT_NAMES)) this.inc({ event: name }, counts.get(name) ?? 0);
    },
  });

  new Counter({
    name: 'letterbox_inbound_auth_results_total',
    help: 'Verdicts of the SPF, DKIM and DMARC checks on messages received over the MX (per delivered mailbox).',
    labelNames: ['method', 'result'] as const,
    registers: [registry],
    collect() {
      scanEvents();
      this.reset();
      for (const [k, n] of verdicts) {
        const [method, result] = k.split(' ');
        this.inc({ method, result }, n);
      }
    },
  });
}

/** The IMAP pool, pending webhook deliveries and Dovecot's state, read at scrape time. */
function defineServiceGauges(registry: Registry, app: MetricsSource): void {
  const { db } = app;
  new Gauge({
    name: 'letterbox_imap_pool_connections',
    help: "Connections in the API's IMAP pool, by state.",
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const s = app.imapPoolStats();
      this.set({ state: 'busy' }, s.busy);
      this.set({ state: 'idle' }, s.idle);
      this.set({ state: 'waiting' }, s.waiting);
    },
  });
  new Gauge({
    name: 'letterbox_webhook_deliveries_pending',
    help: 'Webhook deliveries waiting for a (re)try.',
    registers: [registry],
    collect() {
      this.set(pendingDeliveryCount(db));
    },
  });
  new Gauge({
    name: 'letterbox_dovecot_up',
    help: '1 when the supervised Dovecot is running.',
    registers: [registry],
    collect() {
      this.set(app.supervisor ? (app.supervisor.running ? 1 : 0) : 1);
    },
  });
}

/**
 * Koa middleware counting API requests by route template (never the raw path: ids would explode
 * the label set) and final status. Placed before the error handler so it sees error statuses too.
 * Counts every request this thread answers itself (one handed to the main thread is counted there).
 */
export function apiMetricsMiddleware(m: ApiMetrics) {
  return async (ctx: any, next: () => Promise<unknown>) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      if (!ctx.state.forwarded) {
        const route = ctx._matchedRoute ? String(ctx._matchedRoute) : 'unmatched';
        m.apiRequests.inc({ method: ctx.method, route, status: String(ctx.status) });
        m.apiDuration.observe({ method: ctx.method }, (performance.now() - started) / 1000);
      }
    }
  };
}

/** For the SMTP listeners: counts sessions, messages and AUTH results (label values are bounded). */
export function smtpMetrics(app: Pick<AppContext, 'metrics'>, service: 'mx' | 'submission') {
  const m = app.metrics;
  const port = (session: { localPort?: number } | undefined) => String(session?.localPort ?? '');
  return {
    session: (session: any, outcome: 'accepted' | 'refused') => m.smtpSessions.inc({ service, port: port(session), outcome }),
    message: (session: any, outcome: 'accepted' | 'rejected') => m.smtpMessages.inc({ service, port: port(session), outcome }),
    auth: (result: 'success' | 'failure') => m.smtpAuth.inc({ service, result }),
  };
}
