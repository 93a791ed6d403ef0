// Caches of rows read from SQLite that are exactly as fresh as the database.
//
// A cache entry is trusted only while the database is provably unchanged since it was read:
// `PRAGMA data_version` moves when any other connection (the CLI, another process) commits, and
// `total_changes()` moves when this connection inserts, updates or deletes anything. Reading them
// (~2 µs) is far cheaper than the lookups they spare on the API's read paths (an indexed join, a
// key lookup). Any write anywhere empties every cache of that handle, so a change
// is visible to the very next request; under write-heavy load the caches simply stay cold.
import type { DB } from './index.ts';
import { stmt } from './stmt.ts';
import { BoundedMap } from '../util/bounded-map.ts';

// data_version is read at most once per turn of the event loop (it takes a read transaction, the
// costlier half): a commit by another process that lands during a turn is seen from the next turn
// on, as if the turn's requests had run just before it. This connection's own changes are seen at
// once (total_changes() is read every time).
/** A value that differs whenever the database may have changed since it was last read. */
export function dbGeneration(db: DB): string {
  const state = db.state;
  let v = state.dataVersion;
  if (v === undefined) {
    v = state.dataVersion = stmt(db, 'PRAGMA data_version', { pluck: true }).get() as number;
    setImmediate(() => (state.dataVersion = undefined));
  }
  return `${v}:${stmt(db, 'SELECT total_changes()', { pluck: true }).get() as number}`;
}

/** Rows keyed by a string, valid for one database generation; at most `max` entries (BoundedMap). */
export class ReadCache<V> {
  private readonly db: DB;
  private generation = '';
  private readonly entries: BoundedMap<string, V>;

  constructor(db: DB, max = 10_000) {
    this.db = db;
    this.entries = new BoundedMap(max);
  }

  /** The cached value of `key`, or `load()`'s (cached when not undefined). */
  get(key: string, load: () => V | undefined): V | undefined {
    const g = dbGeneration(this.db);
    if (g !== this.generation) {
      this.entries.clear();
      this.generation = g;
    }
    const hit = this.entries.get(key);
    if (hit !== undefined) return hit;
    const v = load();
    if (v !== undefined) this.entries.set(key, v);
    return v;
  }
}

/** The named cache of a database handle (created on first use, kept in the handle's state). */
export function readCache<V>(db: DB, name: string, max?: number): ReadCache<V> {
  const m = db.state.readCaches;
  let c = m.get(name);
  if (!c) m.set(name, (c = new ReadCache<unknown>(db, max)));
  return c as ReadCache<V>;
}
