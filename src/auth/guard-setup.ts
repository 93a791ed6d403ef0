// Builds the one LoginGuard of a running appliance from [submission] auth_* (shared by IMAP).
import type { Config } from '../config/schema.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { LoginGuard, type GuardPolicy } from './guard.ts';

export { LoginGuard };

export function guardPolicy(config: Config): GuardPolicy {
  const s = config.submission;
  return {
    maxFailures: s.auth_max_failures,
    window: s.auth_window,
    lockout: s.auth_lockout,
    delayMs: s.auth_delay_ms,
    delayMaxMs: s.auth_delay_max_ms,
    knownNetworkTtl: s.auth_known_network_ttl,
    reservationTtl: 60_000,
  };
}

export function createLoginGuard(config: Config, clock: Clock, log: Logger): LoginGuard {
  const l = log.child({ component: 'login-guard' });
  return new LoginGuard(guardPolicy(config), () => clock.now(), (e) =>
    l.warn({ event: 'auth.lockout', scope: e.scope, key: e.key, failures: e.failures, until: new Date(e.until).toISOString(), protocol: e.protocol }, `login locked out: ${e.scope} ${e.key}`),
  );
}
