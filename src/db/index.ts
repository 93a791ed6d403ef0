import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.ts';
import type { Clock } from '../clock.ts';
import type { ReadCache } from './read-cache.ts';
import type { GroupCommit } from './group-commit.ts';

/**
 * What belongs to one connection besides SQLite's own state: its prepared statements
 * (src/db/stmt.ts), its read caches and their data_version reading (src/db/read-cache.ts), and its
 * group committer (src/db/group-commit.ts). They live on the handle because they are per
 * connection by nature (a statement is compiled for one connection; a cache is only as fresh as
 * the connection it reads), and die with it: no module-level table keyed by the handle.
 */
export interface ConnectionState {
  readonly statements: Map<string, Database.Statement<unknown[], unknown>>;
  readonly readCaches: Map<string, ReadCache<unknown>>;
  /** PRAGMA data_version as read in this turn of the event loop (cleared at the next turn). */
  dataVersion: number | undefined;
  /** Created on first use (src/db/group-commit.ts). */
  groupCommit: GroupCommit | undefined;
}

/** A connection with its per-connection state (open one with openDatabase, or adopt a raw one with withState). */
export type DB = Database.Database & { readonly state: ConnectionState };

/** Gives a better-sqlite3 connection opened elsewhere (tests, read-only tools) its per-connection state. */
export function withState(raw: Database.Database): DB {
  if ('state' in raw) return raw as DB;
  const state: ConnectionState = { statements: new Map(), readCaches: new Map(), dataVersion: undefined, groupCommit: undefined };
  return Object.defineProperty(raw, 'state', { value: state, enumerable: false }) as DB;
}

const MIGRATIONS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

/**
 * Numbered migrations are SQL files `NNNN_name.sql` in src/db/migrations, applied in number order,
 * each in its own transaction, and recorded in `schema_migrations`.
 */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const out: Migration[] = [];
  for (const f of readdirSync(dir)) {
    const m = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(f);
    if (!m) continue;
    out.push({ id: Number(m[1]), name: m[2], sql: readFileSync(join(dir, f), 'utf8') });
  }
  out.sort((a, b) => a.id - b.id);
  for (let i = 1; i < out.length; i++) {
    if (out[i].id === out[i - 1].id) throw new Error(`two migrations numbered ${out[i].id}`);
  }
  return out;
}

export function dbPath(dataDir: string): string {
  return join(dataDir, 'letterbox.db');
}

export interface OpenOptions {
  log: Logger;
  clock: Clock;
  migrations?: Migration[];
}

/** Opens (creating if needed) the database with WAL, foreign keys and a busy timeout, then migrates. */
export function openDatabase(file: string, opts: OpenOptions): DB {
  mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
  const existed = existsSync(file);
  const db = withState(new Database(file));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 10000');
  migrate(db, file, existed, opts);
  return db;
}

export function pendingMigrations(db: DB, migrations: Migration[]): Migration[] {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  const done = new Set(db.prepare('SELECT id FROM schema_migrations').pluck().all() as number[]);
  return migrations.filter((m) => !done.has(m.id));
}

function migrate(db: DB, file: string, existed: boolean, opts: OpenOptions): void {
  const migrations = opts.migrations ?? loadMigrations();
  const pending = pendingMigrations(db, migrations);
  if (pending.length === 0) return;
  if (existed && db.prepare('SELECT count(*) FROM schema_migrations').pluck().get() as number > 0) {
    // A consistent copy of the database before changing its schema (VACUUM INTO works under WAL).
    const stamp = new Date(opts.clock.now()).toISOString().replace(/[:.]/g, '-');
    const backup = `${file}.before-migration-${pending[0].id}.${stamp}.bak`;
    db.exec(`VACUUM INTO '${backup.replace(/'/g, "''")}'`);
    opts.log.info({ backup, pending: pending.map((m) => m.id) }, 'database backed up before migration');
  }
  for (const m of pending) {
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)').run(m.id, m.name, new Date(opts.clock.now()).toISOString());
    }).immediate();
    opts.log.info({ migration: m.id, migrationName: m.name }, 'migration applied');
  }
}


/** Throws when the database cannot be read (a fresh statement on the migrations table: /healthz). */
export function checkReadable(db: Database.Database): void {
  db.prepare('SELECT count(*) FROM schema_migrations').get();
}

/** The ids of the migrations applied to a database (e.g. a backup's copy). */
export function appliedMigrationIds(db: Database.Database): number[] {
  return db.prepare('SELECT id FROM schema_migrations ORDER BY id').pluck().all() as number[];
}

/** Whether a table exists (doctor reads databases of any schema version). */
export function hasTable(db: Database.Database, name: string): boolean {
  return !!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name);
}
