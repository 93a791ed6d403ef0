// LETTERBOX_* environment variables: every one the product documents (README, install.sh, the
// systemd units) is either a config override naming a real key, or one the loader leaves alone.
// Before: LETTERBOX_PORT25_PROBE (install.sh's outbound probe) was read as the config key
// 'port25_probe' and 'letterbox init' failed with "unknown key".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { envOverrides, loadConfig, RESERVED_ENV } from '../src/config/load.ts';
import { configSchema } from '../src/config/schema.ts';

const ROOT = resolve(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'lbenv-'));
const MIN = `hostname = "mail.example.com"
data_dir = "state"
[listen]
mx = ["0.0.0.0:25"]
submission = ["0.0.0.0:587"]
submissions = ["0.0.0.0:465"]
imap = ["0.0.0.0:993"]
api = "127.0.0.1:8025"
[tls]
cert = "/etc/letterbox/certs/fullchain.pem"
key = "/etc/letterbox/certs/privkey.pem"
`;
const configFile = join(dir, 'letterbox.toml');
writeFileSync(configFile, MIN);

function documentedNames(): string[] {
  const files = [join(ROOT, 'README.md'), join(ROOT, 'install.sh'), ...readdirSync(join(ROOT, 'systemd')).map((f) => join(ROOT, 'systemd', f))];
  const names = new Set<string>();
  for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/\bLETTERBOX_[A-Z0-9_]*[A-Z0-9]\b/g)) names.add(m[0]);
  // README's placeholders (LETTERBOX_<SECTION>_<KEY>) end at the '<' and are not names.
  names.delete('LETTERBOX_');
  return [...names].sort();
}

/** Whether a path of keys names a key of the config schema. */
function schemaHas(path: string[]): boolean {
  let node: any = configSchema;
  for (const key of path) {
    while (node && ['default', 'prefault', 'optional', 'pipe'].includes(node.def?.type)) node = node.def.innerType ?? node.def.in;
    const shape = node?.def?.type === 'object' ? node.shape : undefined;
    if (!shape || !(key in shape)) return false;
    node = shape[key];
  }
  return true;
}

function leafPaths(o: Record<string, unknown>, prefix: string[] = []): string[][] {
  return Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? leafPaths(v as Record<string, unknown>, [...prefix, k]) : [[...prefix, k]]));
}

test('the documents name several LETTERBOX_ variables (the scan finds them)', () => {
  const names = documentedNames();
  for (const n of ['LETTERBOX_CONFIG', 'LETTERBOX_AS_ROOT', 'LETTERBOX_PORT25_PROBE', 'LETTERBOX_LISTEN_MX', 'LETTERBOX_LOG_LEVEL']) assert.ok(names.includes(n), n);
});

test('every documented LETTERBOX_ variable is reserved or overrides a real config key', () => {
  for (const name of documentedNames()) {
    const over = envOverrides({ [name]: 'x' });
    if (RESERVED_ENV.includes(name)) {
      assert.deepEqual(over, {}, `${name} is reserved and must not become a config key`);
      continue;
    }
    const paths = leafPaths(over);
    assert.equal(paths.length, 1, `${name} maps to one key`);
    assert.ok(schemaHas(paths[0]), `${name} → ${paths[0].join('.')}: not a config key; reserve it in RESERVED_ENV (src/config/load.ts) or fix the name`);
  }
});

test('reserved variables set in the environment do not break loading the config', () => {
  const env = Object.fromEntries(RESERVED_ENV.map((n) => [n, n === 'LETTERBOX_CONFIG' ? configFile : '1']));
  env.LETTERBOX_PORT25_PROBE = 'smtp.example.net';
  const c = loadConfig({ env, cwd: dir });
  assert.equal(c.hostname, 'mail.example.com');
});

test('an override of a section key the loader did not list by hand works (every section of the schema)', () => {
  const c = loadConfig({ path: configFile, env: { LETTERBOX_WEBHOOKS_ALLOW_LOOPBACK: 'true', LETTERBOX_ACME_RENEW_DAYS_BEFORE: '20' } });
  assert.equal(c.webhooks.allow_loopback, true);
  assert.equal(c.acme.renew_days_before, 20);
});

test('an unknown LETTERBOX_ variable is still reported as an unknown key (typos are not ignored)', () => {
  assert.throws(() => loadConfig({ path: configFile, env: { LETTERBOX_LISTEN_MXX: '0.0.0.0:25' } }), /listen\.mxx: unknown key/);
});
