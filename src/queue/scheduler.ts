// The queue's scheduler: an index-driven loop (next due entry or the poll interval, whichever comes
// first) that claims due entries and starts jobs within the global and per-domain concurrency.
// Grouping due rows into jobs is pure (planJobs); the loop and its timer are here, the attempt
// itself is src/queue/attempt.ts.
import type { DB } from '../db/index.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { QueueRow } from './decide.ts';
import { claimRows, dueRows, nextDueAt } from './store.ts';

/** At most this many recipients of one message and domain go in one job (one SMTP transaction). */
export const MAX_RCPTS_PER_JOB = 100;

/**
 * Due rows (oldest due first) → jobs: one per message and destination domain, up to
 * MAX_RCPTS_PER_JOB rows each, at most `free` jobs, and no domain above `perDomain` jobs counting
 * those already running (`active`). Pure.
 */
export function planJobs(rows: QueueRow[], free: number, active: ReadonlyMap<string, number>, perDomain: number): QueueRow[][] {
  const groups = new Map<string, QueueRow[]>();
  const domainSlots = new Map<string, number>();
  const jobs: QueueRow[][] = [];
  for (const r of rows) {
    const key = `${r.message_id}|${r.domain}`;
    const g = groups.get(key);
    if (g) {
      if (g.length < MAX_RCPTS_PER_JOB) g.push(r);
      continue;
    }
    if (jobs.length >= free) continue;
    const used = (active.get(r.domain) ?? 0) + (domainSlots.get(r.domain) ?? 0);
    if (used >= perDomain) continue;
    domainSlots.set(r.domain, (domainSlots.get(r.domain) ?? 0) + 1);
    const ng = [r];
    groups.set(key, ng);
    jobs.push(ng);
  }
  return jobs;
}

export interface SchedulerOptions {
  db: DB;
  clock: Clock;
  log: Logger;
  concurrency: number;
  concurrencyPerDomain: number;
  pollIntervalMs: number;
  /** Runs one claimed job; a rejection means nothing was recorded (see `release`). */
  run(rows: QueueRow[]): Promise<void>;
  /** Gives back the entries of a job that failed before recording anything. */
  release(rows: QueueRow[]): void;
}

export class Scheduler {
  private o: SchedulerOptions;
  private active = new Set<Promise<void>>();
  private activeByDomain = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private stopping = false;
  private ticking = false;
  private again = false;
  constructor(o: SchedulerOptions) {
    this.o = o;
  }

  /** Look for due entries soon (after enqueue, a retry, or a finished job). */
  wake(): void {
    if (this.stopping) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), 0);
  }

  /** Stops scheduling; waits for running jobs up to `graceMs` (the rest are reclaimed at the next start). */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.race([Promise.allSettled([...this.active]), new Promise((r) => setTimeout(r, graceMs).unref())]);
  }

  private tick(): void {
    if (this.stopping) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    try {
      this.schedule();
    } catch (err: any) {
      this.o.log.error({ err: err.message }, 'queue scheduling failed');
    } finally {
      this.ticking = false;
    }
    if (this.again) {
      this.again = false;
      this.wake();
      return;
    }
    this.armTimer();
  }

  private armTimer(): void {
    if (this.stopping) return;
    const next = nextDueAt(this.o.db);
    const poll = this.o.pollIntervalMs;
    const now = this.o.clock.now();
    const delay = next === null ? poll : next <= now ? poll : Math.min(next - now, poll);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), delay);
  }

  private schedule(): void {
    const { db, clock } = this.o;
    const free = this.o.concurrency - this.active.size;
    if (free <= 0) return;
    const now = clock.now();
    const rows = dueRows<QueueRow>(db, now, free * 20);
    if (rows.length === 0) return;
    const claimed = claimRows(db, planJobs(rows, free, this.activeByDomain, this.o.concurrencyPerDomain), now);
    for (const g of claimed) {
      if (g.length === 0) continue;
      const domain = g[0].domain;
      this.activeByDomain.set(domain, (this.activeByDomain.get(domain) ?? 0) + 1);
      const p: Promise<void> = this.o
        .run(g)
        .catch((err) => {
          this.o.log.error({ err: err.message, stack: err.stack, queueIds: g.map((r) => r.id) }, 'queue job failed; its entries are tried again later');
          this.o.release(g);
        })
        .finally(() => {
          this.active.delete(p);
          const n = (this.activeByDomain.get(domain) ?? 1) - 1;
          if (n <= 0) this.activeByDomain.delete(domain);
          else this.activeByDomain.set(domain, n);
          this.wake();
        });
      this.active.add(p);
    }
  }
}
