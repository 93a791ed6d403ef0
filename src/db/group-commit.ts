// Group commit: the write transactions that callers hand in during one turn of the event loop are
// run together in one IMMEDIATE transaction, each in its own savepoint, and committed once; 20
// sessions finishing at about the same time then pay one fsync instead of 20.
//
// The fsync is not made on the main thread: the COMMIT runs with `synchronous = NORMAL` (in WAL
// mode: the WAL is written but not synced at commit; checkpoints still sync), and the WAL file is
// then fdatasync'ed on the thread pool, so the event loop serves other requests meanwhile (a
// blocking FULL commit took ~20% of the API send path's wall time). That is what FULL does, moved
// off the loop: a caller's promise resolves only after an fdatasync of the WAL that began after
// its COMMIT returned, so nobody hears "done" (SMTP 250, API 200) before its rows are on disk.
// A caller whose function throws gets its error and only its savepoint is rolled back; the others
// are committed. If the COMMIT fails (disk full, I/O error), every caller of that batch gets the
// error and nothing of the batch is kept; if the fdatasync fails, every caller of the batch gets
// that error (the rows may be kept: a retry can duplicate, nothing is lost).
import { open } from 'node:fs/promises';
import type { DB } from './index.ts';
import { stmt } from './stmt.ts';

interface Pending {
  fn: () => unknown;
  resolve: (v: any) => void;
  reject: (e: unknown) => void;
}

export class GroupCommit {
  private db: DB;
  private batch: Pending[] = [];
  /** Batches committed and functions run so far (for tests and metrics). */
  readonly stats = { commits: 0, writes: 0 };
  /** Makes the WAL durable (the real fdatasync; tests pass their own to watch the ordering). */
  private readonly sync: (dbFile: string) => Promise<void>;
  constructor(db: DB, opts: { sync?: (dbFile: string) => Promise<void> } = {}) {
    this.db = db;
    this.sync = opts.sync ?? syncWal;
  }

  /** Runs `fn` (synchronous, database writes only) in the next group transaction; resolves with its result once committed. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.batch.push({ fn, resolve, reject });
      if (this.batch.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    const { db } = this;
    const out: ({ ok: true; v: unknown } | { ok: false; e: unknown })[] = [];
    const memory = db.memory || !db.name;
    if (!memory) stmt(db, 'PRAGMA synchronous = NORMAL').run();
    try {
      db.transaction(() => {
        for (const p of batch) {
          try {
            // A nested better-sqlite3 transaction is a savepoint: a throw undoes this caller's writes only.
            out.push({ ok: true, v: db.transaction(p.fn)() });
          } catch (e) {
            // SQLite rolled the whole transaction back (e.g. SQLITE_FULL): the batch fails as one,
            // never running the rest outside the transaction.
            if (!db.inTransaction) throw e;
            out.push({ ok: false, e });
          }
        }
      }).immediate();
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    } finally {
      if (!memory) stmt(db, 'PRAGMA synchronous = FULL').run();
    }
    this.stats.commits++;
    this.stats.writes += batch.length;
    const settle = () =>
      batch.forEach((p, i) => {
        const r = out[i];
        if (r.ok) p.resolve(r.v);
        else p.reject(r.e);
      });
    if (memory) settle();
    else
      this.sync(db.name).then(settle, (err) => {
        for (const p of batch) p.reject(err);
      });
  }
}

/** fdatasync of a database's WAL file, on the thread pool (a fresh descriptor each time: robust to the file being replaced). */
export async function syncWal(dbFile: string): Promise<void> {
  const fh = await open(`${dbFile}-wal`, 'r');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** The one group committer of a database handle (all writers of one handle share its batches; kept in the handle's state). */
export function groupCommit(db: DB): GroupCommit {
  return (db.state.groupCommit ??= new GroupCommit(db));
}

/**
 * Runs `fn` in an IMMEDIATE transaction committed without an fsync of its own (`synchronous =
 * NORMAL` for this commit only; FULL again right after). Only for writes whose loss in a power
 * failure changes nothing: the WAL is written in order and the next FULL commit's fsync makes this
 * one durable too, so it can be lost only together with everything committed after it. Example:
 * the queue's claim of due rows (in-flight rows are queued again at start anyway).
 */
export function commitWithoutFsync<T>(db: DB, fn: () => T): T {
  stmt(db, 'PRAGMA synchronous = NORMAL').run();
  try {
    return db.transaction(fn).immediate();
  } finally {
    stmt(db, 'PRAGMA synchronous = FULL').run();
  }
}
