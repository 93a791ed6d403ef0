// The daily DNS re-verification job of `letterbox serve` (node-cron): every domain's records are
// checked through the configured resolvers (no cache) with the same verifyDomain the API and CLI
// use, which records `domain.verified` when all is right and `domain.verification_failed` (with the failing records) when not.
import { schedule, type ScheduledTask } from 'node-cron';
import type { AppContext, Component, ComponentFactory } from '../server.ts';
import type { ServiceContext } from '../services/context.ts';
import type { ResolveFn } from '../dns/resolver.ts';
import { createResolver } from '../dns/resolver.ts';
import { listDomains } from '../services/domains.ts';
import { verifyDomain } from '../services/verify.ts';

export interface VerifyAllResult {
  domain: string;
  ok: boolean;
  failing: string[];
}

/** Verifies every domain, one at a time; never throws (a failure is logged and reported). */
export async function verifyAllDomains(ctx: ServiceContext, resolve: ResolveFn): Promise<VerifyAllResult[]> {
  const out: VerifyAllResult[] = [];
  for (const d of listDomains(ctx)) {
    try {
      const v = await verifyDomain(ctx, resolve, d.id);
      // Only what mail needs: the mail-client SRV records (required: false) are left to domain verify.
      const failing = v.records.filter((r) => !r.ok && r.required).map((r) => `${r.purpose} ${r.name}: ${r.problem}`);
      if (!v.ok) ctx.log.warn({ domain: d.name, failing }, 'daily DNS verification: records missing or wrong (letterbox doctor prints the fixes)');
      out.push({ domain: d.name, ok: v.ok, failing });
    } catch (err: any) {
      ctx.log.error({ domain: d.name, err: err?.message ?? String(err) }, 'daily DNS verification failed');
      out.push({ domain: d.name, ok: false, failing: [String(err?.message ?? err)] });
    }
  }
  return out;
}

export function createDailyVerifyComponent(opts: { cron?: string } = {}): ComponentFactory {
  return (app: AppContext): Component => {
    let task: ScheduledTask | null = null;
    let running: Promise<unknown> | null = null;
    const resolve = createResolver({ servers: app.config.dns.servers, timeoutMs: app.config.dns.timeout_ms, clock: app.clock, cacheMs: 0, negativeCacheMs: 0 }).resolve;
    return {
      name: 'dns-verify',
      async start() {
        task = schedule(opts.cron ?? '41 4 * * *', () => {
          if (!running) running = verifyAllDomains(app, resolve).finally(() => (running = null));
        });
      },
      async stop() {
        task?.stop();
        if (running) await running;
      },
    };
  };
}

export const dailyVerifyComponent: ComponentFactory = createDailyVerifyComponent();
