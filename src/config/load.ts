import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml, TomlError } from 'smol-toml';
import { configSchema, type Config } from './schema.ts';
import { LetterboxError } from '../errors.ts';

/** The checkout (or /opt/letterbox) this code runs from. */
export const APP_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const SYSTEM_CONFIG = '/etc/letterbox/letterbox.toml';
export const DEV_SOURCE = 'development defaults';

type Env = Record<string, string | undefined>;

/**
 * Which config file applies: --config, then $LETTERBOX_CONFIG, then /etc/letterbox/letterbox.toml,
 * then ./letterbox.toml; null means the development defaults.
 */
export function resolveConfigPath(flag: string | undefined, env: Env, cwd: string = process.cwd()): string | null {
  if (flag) return resolve(cwd, flag);
  if (env.LETTERBOX_CONFIG) return resolve(cwd, env.LETTERBOX_CONFIG);
  if (existsSync(SYSTEM_CONFIG)) return SYSTEM_CONFIG;
  const local = resolve(cwd, 'letterbox.toml');
  if (existsSync(local)) return local;
  return null;
}

/** Development defaults: everything on 127.0.0.1 at 10000 + the standard port, state inside the checkout. */
export function developmentDefaults(appDir: string = APP_DIR): Record<string, unknown> {
  return {
    hostname: 'localhost',
    data_dir: resolve(appDir, 'data'),
    ips: ['127.0.0.1'],
    listen: {
      mx: ['127.0.0.1:10025'],
      submission: ['127.0.0.1:10587'],
      submissions: ['127.0.0.1:10465'],
      imap: ['127.0.0.1:10993'],
      api: '127.0.0.1:10080',
      managesieve: ['127.0.0.1:14190'],
      inject: '127.0.0.1:10026',
    },
    tls: { cert: resolve(appDir, 'certs', 'fullchain.pem'), key: resolve(appDir, 'certs', 'privkey.pem') },
  };
}

/**
 * LETTERBOX_* variables that are not config overrides: the loader leaves them alone. Each is used
 * by the program or its installer (test/config-env.test.ts checks that every LETTERBOX_ name in
 * README.md, install.sh and systemd/ is either listed here or names a real config key).
 */
export const RESERVED_ENV: readonly string[] = [
  'LETTERBOX_CONFIG', // the config file's path, not a key in it
  'LETTERBOX_AS_ROOT', // the installed CLI wrapper: stay root instead of dropping to the service user
  'LETTERBOX_PORT25_PROBE', // install.sh: the host its outbound port-25 preflight connects to
  'LETTERBOX_OS_RELEASE', // install.sh: an os-release file to read instead of /etc/os-release (its tests)
  'LETTERBOX_NODE_FLAGS', // src/bin/letterbox: the Node flags for serve (replaces the measured defaults)
];

/** The config's sections (its keys that hold a table), from the schema: [listen], [smtp], [webhooks]... */
function schemaSections(): string[] {
  const unwrap = (t: any): any => (t && ['default', 'prefault', 'optional'].includes(t.def?.type) ? unwrap(t.def.innerType) : t);
  return Object.entries(configSchema.shape)
    .filter(([, t]) => unwrap(t)?.def?.type === 'object')
    .map(([k]) => k)
    .sort((a, b) => b.length - a.length); // the longest first, should one section's name prefix another's
}
const SECTIONS = schemaSections();

/** LETTERBOX_<SECTION>_<KEY>=value (or LETTERBOX_<KEY> for top-level keys) → nested overrides. */
export function envOverrides(env: Env): Record<string, unknown> {
  const out: Record<string, any> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('LETTERBOX_') || value === undefined || RESERVED_ENV.includes(name)) continue;
    const rest = name.slice('LETTERBOX_'.length).toLowerCase();
    const section = SECTIONS.find((s) => rest.startsWith(s + '_'));
    if (section) {
      out[section] ??= {};
      out[section][rest.slice(section.length + 1)] = value;
    } else {
      out[rest] = value;
    }
  }
  return out;
}

function merge(base: Record<string, any>, over: Record<string, any>): Record<string, any> {
  const out: Record<string, any> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' && !Array.isArray(out[k]) ? merge(out[k], v) : v;
  }
  return out;
}

/** Formats every schema problem at once, each naming its key. */
function describeIssues(issues: { path: PropertyKey[]; message: string; code: string; keys?: string[] }[]): string[] {
  return issues.map((i) => {
    const key = i.path.map(String).join('.');
    if (i.code === 'unrecognized_keys' && i.keys) {
      return i.keys.map((k) => `${key ? key + '.' : ''}${k}: unknown key (check the spelling; see README "Configuration")`).join('\n');
    }
    return `${key || '(top level)'}: ${i.message}`;
  });
}

export function parseConfig(raw: Record<string, unknown>, source: string, baseDir: string): Config {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const lines = describeIssues(result.error.issues as any);
    throw new LetterboxError('config_error', `invalid configuration (${source}):\n  ${lines.join('\n  ')}`, { problems: lines });
  }
  const c = result.data;
  // Relative paths are relative to the config file's folder.
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  return { ...c, data_dir: abs(c.data_dir), tls: { cert: abs(c.tls.cert), key: abs(c.tls.key) }, source };
}

export function loadConfig(opts: { path?: string; env?: Env; cwd?: string; appDir?: string } = {}): Config {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const path = resolveConfigPath(opts.path, env, cwd);
  let raw: Record<string, unknown>;
  let baseDir: string;
  if (path === null) {
    raw = developmentDefaults(opts.appDir);
    baseDir = cwd;
  } else {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err: any) {
      throw new LetterboxError('config_error', `cannot read config file ${path}: ${err.code ?? err.message}; create it with 'letterbox init' or pass --config`);
    }
    try {
      raw = parseToml(text) as Record<string, unknown>;
    } catch (err) {
      const msg = err instanceof TomlError ? `line ${err.line}, column ${err.column}: ${err.message.split('\n')[0]}` : String(err);
      throw new LetterboxError('config_error', `invalid TOML in ${path}: ${msg}`);
    }
    baseDir = dirname(path);
  }
  return parseConfig(merge(raw, envOverrides(env)), path ?? DEV_SOURCE, baseDir);
}
