import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, envOverrides, developmentDefaults } from '../src/config/load.ts';
import { parseSize } from '../src/config/schema.ts';
import { LetterboxError } from '../src/errors.ts';
import { runCli } from './helpers/appliance.ts';

const dir = mkdtempSync(join(tmpdir(), 'lbcfg-'));
const file = (name: string, body: string) => {
  const p = join(dir, name);
  writeFileSync(p, body);
  return p;
};
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

test('development defaults: 127.0.0.1 at 10000 + the standard port, data in the checkout', () => {
  const c = loadConfig({ env: {}, cwd: dir, appDir: '/srv/app' });
  assert.equal(c.source, 'development defaults');
  assert.equal(c.data_dir, '/srv/app/data');
  assert.deepEqual(c.listen.mx, ['127.0.0.1:10025']);
  assert.deepEqual(c.listen.submission, ['127.0.0.1:10587']);
  assert.deepEqual(c.listen.submissions, ['127.0.0.1:10465']);
  assert.deepEqual(c.listen.imap, ['127.0.0.1:10993']);
  assert.equal(c.listen.api, '127.0.0.1:10080');
  assert.equal(c.smtp.max_message_size, 50 * 1024 * 1024);
  assert.ok(developmentDefaults('/x'));
});

test('a config file: relative paths resolve against its folder; defaults fill the rest', () => {
  const c = loadConfig({ path: file('ok.toml', MIN), env: {} });
  assert.equal(c.data_dir, join(dir, 'state'));
  assert.equal(c.hostname, 'mail.example.com');
  assert.equal(c.outbound.port, 25);
  assert.equal(c.dovecot.managed, true);
});

test('LETTERBOX_<SECTION>_<KEY> overrides single keys, with lists, numbers and sizes', () => {
  const env = { LETTERBOX_LISTEN_MX: '127.0.0.1:2525,[::1]:2525', LETTERBOX_OUTBOUND_PORT: '2526', LETTERBOX_SMTP_MAX_MESSAGE_SIZE: '10M', LETTERBOX_HOSTNAME: 'mx.example.org', LETTERBOX_DATA_DIR: '/var/tmp/lb' };
  const c = loadConfig({ path: file('ok2.toml', MIN), env });
  assert.deepEqual(c.listen.mx, ['127.0.0.1:2525', '[::1]:2525']);
  assert.equal(c.outbound.port, 2526);
  assert.equal(c.smtp.max_message_size, 10 * 1024 * 1024);
  assert.equal(c.hostname, 'mx.example.org');
  assert.equal(c.data_dir, '/var/tmp/lb');
  assert.deepEqual(envOverrides({ LETTERBOX_CONFIG: '/x', LETTERBOX_DNS_SERVERS: '1.1.1.1' }), { dns: { servers: '1.1.1.1' } });
  // [log] level follows the same rule (LETTERBOX_LOG_LEVEL=debug letterbox serve).
  assert.deepEqual(envOverrides({ LETTERBOX_LOG_LEVEL: 'debug' }), { log: { level: 'debug' } });
});

test('every problem is reported at once, each naming its key', () => {
  const bad = MIN.replace('api = "127.0.0.1:8025"', 'api = "nowhere"').replace('hostname = "mail.example.com"', 'hostname = "bad host!"') + '\n[outbound]\nport = 70000\ncolour = "blue"\n';
  assert.throws(
    () => loadConfig({ path: file('bad.toml', bad), env: {} }),
    (err: unknown) => {
      assert.ok(err instanceof LetterboxError);
      assert.equal(err.code, 'config_error');
      for (const key of ['hostname', 'listen.api', 'outbound.port', 'outbound.colour']) assert.match(err.message, new RegExp(`${key.replace('.', '\\.')}:`), `names ${key}`);
      return true;
    },
  );
});

test('durations and sizes are parsed at load: milliseconds and bytes in the typed config', () => {
  const c = loadConfig({ path: file('durations.toml', MIN + '\n[outbound]\nmax_age = "2d"\nretry_schedule = ["90s", "1.5h", "500ms"]\n[sieve]\nmax_script_size = "32k"\n'), env: { LETTERBOX_SUBMISSION_AUTH_WINDOW: '10m' } });
  assert.equal(c.outbound.max_age, 2 * 86_400_000);
  assert.deepEqual(c.outbound.retry_schedule, [90_000, 5_400_000, 500]);
  assert.equal(c.submission.auth_window, 600_000);
  assert.equal(c.sieve.max_script_size, 32 * 1024);
  // Defaults go through the same grammar.
  assert.equal(c.outbound.delay_notice_after, 4 * 3_600_000);
  assert.deepEqual(c.webhooks.retry_schedule.slice(0, 2), [30_000, 120_000]);
});

test('a bad duration or size names its key and the expected form', () => {
  const bad = MIN + '\n[outbound]\nmax_age = "soon"\nretry_schedule = ["5m", "later"]\n[smtp]\nmax_message_size = "lots"\n';
  assert.throws(
    () => loadConfig({ path: file('bad-duration.toml', bad), env: {} }),
    (err: unknown) => {
      assert.ok(err instanceof LetterboxError);
      assert.match(err.message, /outbound\.max_age: expected a duration such as "30s"/);
      assert.match(err.message, /outbound\.retry_schedule\.1: expected a duration/);
      assert.match(err.message, /smtp\.max_message_size: expected a size such as "512k"/);
      return true;
    },
  );
});

test('TOML syntax errors give the line', () => {
  assert.throws(() => loadConfig({ path: file('syntax.toml', 'hostname = "x\n'), env: {} }), /invalid TOML .*line 1/);
});

test('a missing config file named explicitly is an error, not a silent fallback', () => {
  assert.throws(() => loadConfig({ path: join(dir, 'missing.toml'), env: {} }), /cannot read config file/);
});

test('sizes', () => {
  assert.equal(parseSize('50M'), 52428800);
  assert.equal(parseSize('1G'), 1073741824);
  assert.equal(parseSize('512k'), 524288);
  assert.equal(parseSize('1048576'), 1048576);
  assert.ok(Number.isNaN(parseSize('lots')));
});

test('the CLI exits 78 on a config error and names the key', async () => {
  const p = file('cli-bad.toml', MIN.replace('mx = ["0.0.0.0:25"]', 'mx = ["0.0.0.0:99999"]'));
  const r = await runCli(p, ['domain', 'list']);
  assert.equal(r.code, 78);
  assert.match(r.stderr, /listen\.mx\.0:/);
  const serve = await runCli(p, ['serve']);
  assert.equal(serve.code, 78);
  assert.match(serve.stderr, /listen\.mx/);
});
