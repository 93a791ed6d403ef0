// The daily job of `letterbox serve` (node-cron, 00:23 UTC) that sends the DMARC aggregate and TLS
// reports of the previous UTC day (src/reports/send-out.ts), when reports.dmarc_send / tls_send is on.
import { schedule, type ScheduledTask } from 'node-cron';
import type { AppContext, Component, ComponentFactory } from '../server.ts';
import { runningQueue } from '../queue/handoff.ts';
import { runReportsOut, type ReportsOutDeps, type RunSummary } from './send-out.ts';

/** The run's dependencies in the serving process: its resolver, DKIM keys and running queue. */
export function reportsOutDeps(app: AppContext): ReportsOutDeps {
  return {
    db: app.db,
    config: app.config,
    log: app.log,
    clock: app.clock,
    resolve: app.resolver.resolve,
    dkimSignatures: (d, m, now) => app.dkim.signatures(d, m, now),
    enqueue: (req) => {
      const q = runningQueue(app);
      if (!q) throw new Error('the outbound queue is not running');
      return q.enqueue(req);
    },
  };
}

/** One run; never throws. */
export async function reportsDaily(app: AppContext): Promise<RunSummary | null> {
  try {
    const s = await runReportsOut(reportsOutDeps(app));
    if (s.sent.length || s.skipped.length) app.log.info({ component: 'reports', sent: s.sent.length, skipped: s.skipped.length, period: s.period }, 'daily reports built');
    return s;
  } catch (err: any) {
    app.log.error({ component: 'reports', err: err?.message ?? String(err) }, 'daily reports run failed');
    return null;
  }
}

export function createReportsOutComponent(opts: { cron?: string } = {}): ComponentFactory {
  return (app: AppContext): Component => {
    let task: ScheduledTask | null = null;
    let running: Promise<unknown> | null = null;
    return {
      name: 'reports-out',
      async start() {
        if (!app.config.reports.dmarc_send && !app.config.reports.tls_send) return;
        task = schedule(
          opts.cron ?? '23 0 * * *',
          () => {
            if (!running) running = reportsDaily(app).finally(() => (running = null));
          },
          { timezone: 'UTC' },
        );
      },
      async stop() {
        task?.stop();
        if (running) await running;
      },
    };
  };
}

export const reportsOutComponent: ComponentFactory = createReportsOutComponent();
