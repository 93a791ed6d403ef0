// What every CLI command module shares: global options, output (text or --json), tables, and the
// one-shot context (config, stderr logger, database). Command modules import this, never src/cli.ts
// (which only composes them), so the CLI has no import cycle.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../config/load.ts';
import { LetterboxError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { systemClock } from '../clock.ts';
import { openDatabase, dbPath } from '../db/index.ts';
import type { ServiceContext } from '../services/context.ts';

export const EXIT_CONFIG = 78;

export interface Globals {
  config?: string;
  json?: boolean;
}

export interface CliIO {
  out: (s: string) => void;
  err: (s: string) => void;
}

export interface CliHelpers {
  /** Prints `json` with --json, else `text`. */
  print(cmd: Command, json: unknown, text: string): void;
  io: CliIO;
}

/** A module's commands: each adds its subcommands to the program (src/cli.ts lists them). */
export type CommandModule = (program: Command, h: CliHelpers) => void;

export function cliHelpers(io: CliIO): CliHelpers {
  return {
    io,
    print: (cmd, json, text) => io.out((cmd.optsWithGlobals() as Globals).json ? JSON.stringify(json, null, 2) + '\n' : text),
  };
}

/** Opens the config, a stderr logger and the database for a one-shot command. */
export function openContext(g: Globals): ServiceContext & { close(): void } {
  const config = loadConfig({ path: g.config });
  const log = createLogger({ level: process.env.LETTERBOX_LOG_LEVEL ?? 'warn', destination: process.stderr as any });
  const db = openDatabase(dbPath(config.data_dir), { log, clock: systemClock });
  return { db, config, log, clock: systemClock, close: () => db.close() };
}

export function withContext<T>(cmd: Command, fn: (ctx: ServiceContext, g: Globals) => Promise<T> | T): Promise<T> {
  const g = cmd.optsWithGlobals() as Globals;
  const ctx = openContext(g);
  return Promise.resolve()
    .then(() => fn(ctx, g))
    .finally(() => ctx.close());
}

export function table(rows: object[], cols: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell((r as any)[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...rows.map((r) => line(cols.map((c) => cell((r as any)[c]))))].join('\n') + '\n';
}

export function fmtSize(n: number): string {
  if (!n) return 'unlimited';
  for (const [u, m] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) if (n >= m && n % m === 0) return `${n / m}${u}`;
  return `${n}B`;
}

export function readPasswordStdin(): string {
  const s = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  if (!s) throw new LetterboxError('validation_error', 'no password on standard input');
  return s;
}
