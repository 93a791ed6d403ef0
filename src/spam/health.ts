import type { AppContext } from '../server.ts';

export interface SpamHealth {
  ok: boolean;
  problem: string | null;
  enabled: boolean;
  rspamd: boolean | null;
  redis: boolean | null;
}

/** rspamd and Redis as /healthz sees them (null = not run because spam filtering is off). */
export function spamHealth(app: AppContext): SpamHealth {
  const spam = app.spam.service;
  if (!spam) {
    const wanted = app.config.spam.enabled === true;
    return { ok: !wanted, problem: wanted ? 'spam: rspamd is not running (spam.enabled = true)' : null, enabled: false, rspamd: null, redis: null };
  }
  const s = spam.status();
  const down = [!s.redis.running && 'redis', !s.rspamd.running && 'rspamd'].filter(Boolean) as string[];
  const problem = down.length
    ? `spam: ${down.join(' and ')} not running (the supervisor restarts ${down.length > 1 ? 'them' : 'it'}; mail is answered ${app.config.spam.on_failure === 'tempfail' ? '451 meanwhile' : 'unscanned meanwhile'})`
    : null;
  return { ok: !problem, problem, enabled: true, rspamd: s.rspamd.running, redis: s.redis.running };
}
