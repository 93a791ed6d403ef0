import type { Config } from './config/schema.ts';
import type { Logger } from './log.ts';
import type { Clock } from './clock.ts';
import { ensureSelfSignedCert } from './tls/selfsigned.ts';
import { syncUsersFile } from './dovecot/sync.ts';
import { createAppContext, type AppContext, type AppContextOverrides } from './context.ts';
import { parseHostPort } from './config/schema.ts';
import { prepareDovecot } from './dovecot/setup.ts';
import { createLoginGuard } from './auth/guard-setup.ts';
import { startPolicyEndpoint } from './auth/dovecot-policy.ts';
import { recordAppPasswordUse } from './services/app-passwords.ts';

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
  // The one login guard, and the endpoint Dovecot asks before and after each IMAP login (its
  // address and secret go into Dovecot's config, so it listens before that config is written).
  const loginGuard = opts.overrides?.loginGuard ?? createLoginGuard(config, clock, log);
  const policyListen = parseHostPort(config.submission.auth_policy_listen)!;
  const policy = await startPolicyEndpoint({ guard: loginGuard, log, host: policyListen.host, port: policyListen.port });
  let app: AppContext;
  try {
    const dovecot = opts.overrides?.dovecot ?? (await prepareDovecot(config, { authPolicy: policy.dovecot, log, relocate: true }));
    app = await createAppContext(config, { ...opts.overrides, log, clock, dovecot, loginGuard });
  } catch (err) {
    await policy.close();
    throw err;
  }
  const { db, supervisor } = app;
  syncUsersFile(db, config.data_dir);
  // "Last used" of device (app) passwords that Dovecot accepted (its auth policy report names them).
  policy.onAppPassword((u) => recordAppPasswordUse(db, u.id, { now: clock.now(), ip: u.remote, protocol: u.protocol }));
  const started: Component[] = [];
  const stopAll = async () => {
    for (const c of started.reverse()) {
      try {
        await c.stop();
      } catch (err: any) {
        log.error({ component: c.name, err: err.message }, 'component failed to stop cleanly');
      }
    }
    app.delivery.close(); // its idle LMTP sessions, before Dovecot stops
    if (supervisor) await supervisor.stop();
    await policy.close();
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
