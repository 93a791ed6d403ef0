// The daily DKIM job of `letterbox serve` (node-cron): ends the grace period of replaced keys
// (their private keys are deleted; src/dkim/rotate.ts) and, with dkim.rotate_every_months set,
// starts the rotations that are due. The switch to published new keys is made by domain
// verification (on demand, and the daily DNS job in src/doctor/daily.ts).
import { schedule, type ScheduledTask } from 'node-cron';
import type { AppContext, Component, ComponentFactory } from '../server.ts';
import type { ServiceContext } from '../services/context.ts';
import { autoRotate, retireExpired } from './rotate.ts';

/** One run; never throws. */
export async function dkimDaily(ctx: ServiceContext): Promise<{ retired: { domain: string; selectors: string[] }[]; rotated: string[] }> {
  let retired: { domain: string; selectors: string[] }[] = [];
  let rotated: string[] = [];
  try {
    retired = retireExpired(ctx);
  } catch (err: any) {
    ctx.log.error({ err: err?.message ?? String(err) }, 'DKIM job: ending grace periods failed');
  }
  try {
    rotated = await autoRotate(ctx);
  } catch (err: any) {
    ctx.log.error({ err: err?.message ?? String(err) }, 'DKIM job: automatic rotation failed');
  }
  return { retired, rotated };
}

export function createDkimJobComponent(opts: { cron?: string } = {}): ComponentFactory {
  return (app: AppContext): Component => {
    let task: ScheduledTask | null = null;
    let running: Promise<unknown> | null = null;
    return {
      name: 'dkim-rotation',
      async start() {
        task = schedule(opts.cron ?? '17 4 * * *', () => {
          if (!running) running = dkimDaily(app).finally(() => (running = null));
        });
      },
      async stop() {
        task?.stop();
        if (running) await running;
      },
    };
  };
}

export const dkimJobComponent: ComponentFactory = createDkimJobComponent();
