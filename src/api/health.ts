import { parseHostPort } from '../config/schema.ts';
import { canConnect } from '../dovecot/supervisor.ts';
import type { AppContext } from '../context.ts';
import { checkReadable } from '../db/index.ts';
import { spamHealth } from '../spam/health.ts';
import type { z } from 'zod';
import type { HealthSchema } from './schemas/meta.ts';

export type Health = z.output<typeof HealthSchema>;

/** Where to connect to reach a listener bound to a wildcard address. */
function probeTarget(addr: string): { host: string; port: number } {
  const hp = parseHostPort(addr)!;
  return { host: hp.host === '0.0.0.0' ? '127.0.0.1' : hp.host === '::' ? '::1' : hp.host, port: hp.port };
}

/**
 * The appliance's health: the database answers, Dovecot is running (supervised) and accepts IMAP
 * connections, and every configured listener accepts TCP connections. A connect probe opens and
 * closes a connection without speaking; results are reused for 2 seconds, so a monitoring system
 * polling /healthz cannot turn it into a flood of connections.
 */
export function healthChecker(app: AppContext): () => Promise<Health> {
  let cached: { at: number; value: Promise<Health> } | null = null;
  const run = async (): Promise<Health> => {
    const problems: string[] = [];
    let database = { ok: true, problem: null as string | null };
    try {
      checkReadable(app.db);
    } catch (err: any) {
      database = { ok: false, problem: `database: ${err.message}` };
    }
    const imap = app.config.listen.imap[0];
    const managed = app.config.dovecot.managed;
    const running = app.supervisor ? app.supervisor.running : null;
    const listeners: { name: string; address: string }[] = [];
    for (const name of ['mx', 'submission', 'submissions', 'imap'] as const) for (const address of app.config.listen[name]) listeners.push({ name, address });
    listeners.push({ name: 'api', address: app.config.listen.api });
    const probes = await Promise.all(listeners.map((l) => canConnect(probeTarget(l.address).host, probeTarget(l.address).port, 1000)));
    const imapOk = imap ? probes[listeners.findIndex((l) => l.name === 'imap' && l.address === imap)] : false;
    let dovecotProblem: string | null = null;
    if (managed && !running) dovecotProblem = 'dovecot: not running (the supervisor restarts it; see the dovecot lines in the log)';
    else if (!imap) dovecotProblem = 'dovecot: no IMAP listener configured (listen.imap)';
    else if (!imapOk) dovecotProblem = `dovecot: not accepting IMAP connections on ${imap}`;
    const listenerChecks = listeners.map((l, i) => ({ ...l, ok: probes[i], problem: probes[i] ? null : `${l.name} listener ${l.address}: not accepting connections` }));
    const spam = spamHealth(app); // issue #14
    if (spam.problem) problems.push(spam.problem);
    if (database.problem) problems.push(database.problem);
    if (dovecotProblem) problems.push(dovecotProblem);
    for (const l of listenerChecks) if (l.problem && !(l.name === 'imap' && dovecotProblem)) problems.push(l.problem);
    return {
      status: problems.length ? 'unavailable' : 'ok',
      problems,
      checks: {
        database,
        dovecot: { ok: !dovecotProblem, problem: dovecotProblem, managed, running, imap: imap ?? '' },
        listeners: listenerChecks,
        spam,
      },
    };
  };
  return () => {
    const now = app.clock.now();
    if (!cached || now - cached.at > 2000) cached = { at: now, value: run() };
    return cached.value;
  };
}
