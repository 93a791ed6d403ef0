import { parseHostPort, type Config } from './config/schema.ts';
import { openDatabase, dbPath, type DB } from './db/index.ts';
import type { Logger } from './log.ts';
import type { Clock } from './clock.ts';
import { ensureSelfSignedCert } from './tls/selfsigned.ts';
import { prepareDovecot, type DovecotSetup } from './dovecot/setup.ts';
import { syncUsersFile } from './dovecot/sync.ts';
import { DovecotSupervisor } from './dovecot/supervisor.ts';
import type { ServiceContext } from './services/context.ts';
import type { Handoff } from './queue/handoff.ts';
import { createResolver, type Resolver } from './dns/resolver.ts';

/** Everything a long-running component of `letterbox serve` may use, passed in (no singletons). */
export interface AppContext extends ServiceContext {
  dovecot: DovecotSetup;
  supervisor: DovecotSupervisor | null;
  /** The one DNS resolver (from dns.servers). */
  resolver: Resolver;
  /** Cross-component hand-offs, filled in by the components that provide them. */
  handoff: Handoff;
}

/** A part of the appliance with a lifecycle: listeners, the queue, the API, jobs. */
export interface Component {
  name: string;
  start(): Promise<void>;
  /** Stop accepting, finish what is in flight (bounded), release resources. */
  stop(): Promise<void>;
}

export type ComponentFactory = (app: AppContext) => Component | Promise<Component>;

export interface Server {
  app: AppContext;
  stop(): Promise<void>;
}

/**
 * Starts the appliance: certificate, database (with migrations), Dovecot's generated files and its
 * supervised process, then each component in order. Stops in reverse order.
 */
export async function startServer(opts: { config: Config; log: Logger; clock: Clock; components: ComponentFactory[] }): Promise<Server> {
  const { config, log, clock } = opts;
  if (await ensureSelfSignedCert({ cert: config.tls.cert, key: config.tls.key, hostname: config.hostname, ips: config.ips })) {
    log.warn({ cert: config.tls.cert }, 'generated a self-signed certificate; mail clients will warn until a real one is configured');
  }
  const db: DB = openDatabase(dbPath(config.data_dir), { log, clock });
  const dovecot = await prepareDovecot(config, { log, relocate: true });
  syncUsersFile(db, config.data_dir);
  let supervisor: DovecotSupervisor | null = null;
  const started: Component[] = [];
  const stopAll = async () => {
    for (const c of started.reverse()) {
      try {
        await c.stop();
      } catch (err: any) {
        log.error({ component: c.name, err: err.message }, 'component failed to stop cleanly');
      }
    }
    if (supervisor) await supervisor.stop();
    db.close();
  };
  try {
    if (config.dovecot.managed) {
      const probe = parseHostPort(config.listen.imap[0])!;
      supervisor = new DovecotSupervisor({
        binary: config.dovecot.binary,
        configPath: dovecot.paths.config,
        baseDir: dovecot.paths.baseDir,
        probe: { host: probe.host === '0.0.0.0' ? '127.0.0.1' : probe.host === '::' ? '::1' : probe.host, port: probe.port },
        lmtpSocket: dovecot.paths.lmtpSocket,
        log,
      });
      await supervisor.start();
    }
    const resolver = createResolver({ servers: config.dns.servers, timeoutMs: config.dns.timeout_ms, clock });
    const app: AppContext = { db, config, log, clock, dovecot, supervisor, resolver, handoff: { queue: null } };
    for (const factory of opts.components) {
      const c = await factory(app);
      await c.start();
      started.push(c);
    }
    return { app, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
