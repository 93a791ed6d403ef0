import type { Config } from './config/schema.ts';
import type { Logger } from './log.ts';
import type { Clock } from './clock.ts';
import { ensureSelfSignedCert } from './tls/selfsigned.ts';
import { syncUsersFile } from './dovecot/sync.ts';
import { createAppContext, type AppContext, type AppContextOverrides } from './context.ts';

export type { AppContext } from './context.ts';

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
 * Starts the appliance: certificate, the context (database with migrations, Dovecot's generated
 * files, every service: src/context.ts), Dovecot's supervised process, then each component in
 * order. Stops in reverse order.
 */
export async function startServer(opts: { config: Config; log: Logger; clock: Clock; components: ComponentFactory[]; overrides?: Partial<AppContextOverrides> }): Promise<Server> {
  const { config, log, clock } = opts;
  if (await ensureSelfSignedCert({ cert: config.tls.cert, key: config.tls.key, hostname: config.hostname, ips: config.ips })) {
    log.warn({ cert: config.tls.cert }, 'generated a self-signed certificate; mail clients will warn until a real one is configured');
  }
  const app = await createAppContext(config, { ...opts.overrides, log, clock });
  const { db, supervisor } = app;
  syncUsersFile(db, config.data_dir);
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
    if (supervisor) await supervisor.start();
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
