// Read-only figures about the outbound queue for the metrics and `letterbox doctor` (the queue's
// tables are written by src/queue/store.ts and the queue engine only).
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';

/** Entries waiting ('queued') and being delivered ('inflight'). */
export function queueStateCounts(db: DB): { queued: number; inflight: number } {
  const queued = stmt(db, "SELECT count(*) FROM outbound_queue WHERE status = 'queued'", { pluck: true }).get() as number;
  const inflight = stmt(db, "SELECT count(*) FROM outbound_queue WHERE status = 'inflight'", { pluck: true }).get() as number;
  return { queued, inflight };
}

/** When the oldest entry still waiting or in flight was created (ms), or null when there is none. */
export function oldestWaitingAt(db: DB): number | null {
  return stmt(db, "SELECT min(created_at) FROM outbound_queue WHERE status IN ('queued', 'inflight')", { pluck: true }).get() as number | null;
}

/** When a queue entry was created (ms), if it still exists. */
export function queueEntryCreatedAt(db: DB, id: string): number | undefined {
  return stmt(db, 'SELECT created_at FROM outbound_queue WHERE id = ?', { pluck: true }).get(id) as number | undefined;
}

/** Entries waiting or in flight, the oldest's creation time, and how many were deferred at least once. */
export function queueBacklog(db: DB): { n: number; oldest: number | null; deferred: number | null } {
  return db.prepare("SELECT count(*) AS n, min(created_at) AS oldest, sum(attempts > 0) AS deferred FROM outbound_queue WHERE status IN ('queued', 'inflight')").get() as { n: number; oldest: number | null; deferred: number | null };
}
