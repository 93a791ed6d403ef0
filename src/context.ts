// The composition root: every long-lived service of `letterbox serve` is built here, once, as a
// typed field of the AppContext. Components (src/components.ts) only start and stop what the
// context holds; nothing else keeps a table of services keyed by the app or the database.
import { crashPointsFrom, type CrashPoint } from './util/crash-points.ts';
import type { Config } from './config/schema.ts';
import { openDatabase, dbPath, type DB } from './db/index.ts';
import type { Logger } from './log.ts';
import type { Clock } from './clock.ts';
import { prepareDovecot, type DovecotSetup } from './dovecot/setup.ts';
import { DovecotSupervisor } from './dovecot/supervisor.ts';
import { parseHostPort } from './config/schema.ts';
import type { ServiceContext } from './services/context.ts';
import { createResolver, type Resolver } from './dns/resolver.ts';
import { createMetrics, type Metrics } from './metrics/index.ts';
import { DkimSigner } from './dkim/sign.ts';
import { ensureSecret } from './secrets.ts';
import { ImapPool, imapLogin, noImapListener } from './imap/pool.ts';
import { ImapAppender } from './imap/append.ts';
import { imapMailstore, type Mailstore } from './imap/mail.ts';
import { WebhookDispatcher } from './webhooks/dispatcher.ts';
import { TlsReloadHooks } from './tls/reload.ts';
import { SendReservations } from './submit/caps.ts';
import { Queue } from './queue/engine.ts';
import type { QueueService } from './queue/handoff.ts';
import type { Component } from './server.ts';
import { LocalDelivery } from './delivery/local.ts';
import { Slots } from './util/slots.ts';
import { LmtpPool } from './delivery/lmtp.ts';
import { createLoginGuard, type LoginGuard } from './auth/guard-setup.ts';
import type { SpamService } from './spam/service.ts';

/** Everything a long-running component of `letterbox serve` may use, built by createAppContext (no singletons). */
export interface AppContext extends ServiceContext {
  /** Dovecot's generated configuration (paths, master user). */
  dovecot: DovecotSetup;
  /** The supervised Dovecot (null when dovecot.managed = false); started by startServer. */
  supervisor: DovecotSupervisor | null;
  /** The one DNS resolver (from dns.servers). */
  resolver: Resolver;
  /** The appliance's Prometheus registry and counters. */
  metrics: Metrics;
  /** Signs outgoing mail with the active keys of the sending domain. */
  dkim: DkimSigner;
  /** data_dir/secrets/srs (SRS rewriting and bounce addresses), created on first use. */
  readonly srsSecret: string;
  /** The API's IMAP connections (master login). Reading it without listen.imap throws 503 unavailable. */
  readonly imapPool: ImapPool;
  /** The APPEND sessions (Sent copies). Reading it without listen.imap throws 503 unavailable. */
  readonly imapAppender: ImapAppender;
  /** The mailboxes' mail as the API reads and changes it (over the IMAP pool and appender). */
  mail: Mailstore;
  /** The webhook dispatcher (started by its component; the API's redelivery uses it too). */
  webhooks: WebhookDispatcher;
  /** Hooks run when the TLS certificate is renewed or replaced. */
  tlsReload: TlsReloadHooks;
  /** Submission caps: sends that passed the caps and are not committed yet. */
  sendReservations: SendReservations;
  /**
   * Spam scanning and learning over rspamd: `service` is set by the spam component while its
   * rspamd and Redis run, and null when spam filtering is off (rspamd not installed or disabled).
   * A slot rather than a service built here, because whether it exists is known only once the
   * supervised daemons have started.
   */
  spam: { service: SpamService | null };
  /** The one login guard (submission AUTH and, through Dovecot's auth policy, IMAP). */
  loginGuard: LoginGuard;
  /** Local delivery (LMTP to Dovecot): the MX, submission, the API's send, the queue and DSNs. */
  delivery: LocalDelivery;
  /** The outbound queue, started and stopped by its component; hand messages to it with runningQueue(). */
  queue: QueueService & Component;
  /** Test-only crash points (src/util/crash-points.ts); a no-op unless LB_TEST_CRASH_FILE is set. */
  crash: CrashPoint;
}

/**
 * What an API worker thread has (src/api/worker.ts) and what a route marked `anyThread` may touch:
 * its own database connection, the config, the clock and the log.
 */
export type ThreadContext = Pick<AppContext, 'db' | 'config' | 'log' | 'clock'>;

/** The log and clock, plus any service a caller (a test) wants to provide itself instead of the real one. */
export interface AppContextOverrides {
  log: Logger;
  clock: Clock;
  crash?: CrashPoint;
  db?: DB;
  dovecot?: DovecotSetup;
  /** null: no supervisor even when dovecot.managed is set. */
  supervisor?: DovecotSupervisor | null;
  resolver?: Resolver;
  dkim?: DkimSigner;
  loginGuard?: LoginGuard;
  webhooks?: (app: AppContext) => WebhookDispatcher;
  queue?: (app: AppContext) => QueueService & Component;
}

/** The supervisor of a managed Dovecot (not started), probing the first IMAP listener. */
function dovecotSupervisor(config: Config, dovecot: DovecotSetup, log: Logger): DovecotSupervisor | null {
  if (!config.dovecot.managed) return null;
  const probe = parseHostPort(config.listen.imap[0])!;
  return new DovecotSupervisor({
    binary: config.dovecot.binary,
    configPath: dovecot.paths.config,
    baseDir: dovecot.paths.baseDir,
    probe: { host: probe.host === '0.0.0.0' ? '127.0.0.1' : probe.host === '::' ? '::1' : probe.host, port: probe.port },
    lmtpSocket: dovecot.paths.lmtpSocket,
    log,
  });
}

/**
 * The process's one LocalDelivery: at most dovecot.lmtp_sessions LMTP sessions to Dovecot at once
 * (Dovecot's lmtp process_limit is the same number), a few of them kept open between messages. One
 * pool for every user (MX, submission, API send, queue): with one pool a new session is opened
 * only when none is idle, so open sessions never exceed the limit. Its idle sessions are closed
 * when the server stops (server.ts).
 */
function localDelivery(config: Config, socketPath: string): LocalDelivery {
  const slots = new Slots(config.dovecot.lmtp_sessions);
  const pool = new LmtpPool({ socketPath, lhlo: config.hostname, max: Math.min(8, slots.max) });
  return new LocalDelivery({ socketPath, lhlo: config.hostname, slots, pool });
}

/**
 * Builds every long-lived service once: the database (migrated; its statement cache, read caches
 * and group committer live on the connection), Dovecot's files and supervisor (not started), the
 * resolver, metrics, DKIM signer, IMAP pool and appender, webhook dispatcher, TLS reload hooks,
 * submission cap reservations and the queue (not started). Nothing here listens or connects.
 */
export async function createAppContext(config: Config, o: AppContextOverrides): Promise<AppContext> {
  const { log, clock } = o;
  const db = o.db ?? openDatabase(dbPath(config.data_dir), { log, clock });
  try {
    return await buildServices(config, o, db);
  } catch (err) {
    if (!o.db) db.close(); // a service that cannot be built (e.g. a missing smarthost password file) leaves nothing open
    throw err;
  }
}

async function buildServices(config: Config, o: AppContextOverrides, db: DB): Promise<AppContext> {
  const { log, clock } = o;
  const dovecot = o.dovecot ?? (await prepareDovecot(config));
  const supervisor = o.supervisor !== undefined ? o.supervisor : dovecotSupervisor(config, dovecot, log);
  const resolver = o.resolver ?? createResolver({ servers: config.dns.servers, timeoutMs: config.dns.timeout_ms, clock });
  let srsSecret: string | undefined;
  const login = imapLogin({ config, dovecot, supervisor, log });
  const imapPool = login ? new ImapPool(login) : null;
  const imapAppender = login ? new ImapAppender(login) : null;
  // Filled in below: the metrics, the dispatcher and the queue read the context they belong to.
  const app = {
    db,
    config,
    log,
    clock,
    dovecot,
    supervisor,
    resolver,
    dkim: o.dkim ?? new DkimSigner(db, log),
    loginGuard: o.loginGuard ?? createLoginGuard(config, clock, log),
    delivery: localDelivery(config, dovecot.paths.lmtpSocket),
    get srsSecret(): string {
      // Read (or created) when first needed, not at start: an appliance that never rewrites keeps no secret.
      return (srsSecret ??= ensureSecret(config.data_dir, 'srs'));
    },
    get imapPool(): ImapPool {
      if (!imapPool) throw noImapListener();
      return imapPool;
    },
    get imapAppender(): ImapAppender {
      if (!imapAppender) throw noImapListener();
      return imapAppender;
    },
    tlsReload: new TlsReloadHooks(),
    spam: { service: null },
    sendReservations: new SendReservations(),
    crash: o.crash ?? crashPointsFrom(process.env, log),
  } as Omit<AppContext, 'metrics' | 'mail' | 'webhooks' | 'queue'> as AppContext;
  app.mail = imapMailstore(app);
  app.metrics = createMetrics({ db, clock, supervisor, imapPoolStats: () => imapPool?.stats() ?? { busy: 0, idle: 0, waiting: 0 } });
  app.webhooks = o.webhooks ? o.webhooks(app) : new WebhookDispatcher(app);
  app.queue = o.queue ? o.queue(app) : new Queue(app);
  return app;
}
