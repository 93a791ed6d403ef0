// Prepared statements cached per database handle (in the handle's own state, src/db/index.ts). `db.prepare` compiles the SQL every time it is
// called (~0.05–0.1 ms each, several per message on the mail paths); hot paths take their
// statements from here instead. A statement is keyed by its SQL text and its mode (plain or
// plucked), so two callers of the same SQL never change each other's mode.
import type Database from 'better-sqlite3';
import type { DB } from './index.ts';

type Statement = Database.Statement<unknown[], unknown>;

/** The prepared statement for `sql` on `db`, compiled once per handle. */
export function stmt(db: DB, sql: string, opts?: { pluck?: boolean }): Statement {
  const m = db.state.statements;
  const key = opts?.pluck ? `p\u0000${sql}` : sql;
  let s = m.get(key);
  if (!s) {
    s = db.prepare(sql);
    if (opts?.pluck) s.pluck();
    m.set(key, s);
  }
  return s;
}
