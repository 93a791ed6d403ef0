// api.threads = "auto" (the default): worker threads only where there are cores and memory for them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { autoApiThreads, configSchema } from '../src/config/schema.ts';

const GiB = 1024 ** 3;

test('auto: 2 threads with at least 4 cores and 2 GiB, none on a small machine', () => {
  assert.equal(autoApiThreads(4, 2 * GiB), 2);
  assert.equal(autoApiThreads(16, 64 * GiB), 2);
  assert.equal(autoApiThreads(2, 24 * GiB), 0, 'two cores: SMTP, Dovecot and rspamd need them');
  assert.equal(autoApiThreads(8, 1 * GiB), 0, 'a 1 GB VPS');
  assert.equal(autoApiThreads(1, 512 * 1024 ** 2), 0);
});

test('api.threads: "auto" is the default and resolves to a number; explicit counts are kept; other values refused', () => {
  const base = { hostname: 'mail.example.test', data_dir: '/tmp/x', listen: { mx: ['127.0.0.1:25'], submission: ['127.0.0.1:587'], submissions: ['127.0.0.1:465'], imap: ['127.0.0.1:993'], api: '127.0.0.1:8080' }, tls: { cert: '/tmp/c.pem', key: '/tmp/k.pem' } };
  const auto = configSchema.safeParse(base);
  assert.ok(auto.success, JSON.stringify(auto.error?.issues));
  assert.equal(typeof auto.data.api.threads, 'number');
  const explicitAuto = configSchema.parse({ ...base, api: { threads: 'auto' } });
  assert.equal(explicitAuto.api.threads, auto.data.api.threads);
  assert.equal(configSchema.parse({ ...base, api: { threads: 0 } }).api.threads, 0);
  assert.equal(configSchema.parse({ ...base, api: { threads: 3 } }).api.threads, 3);
  assert.equal(configSchema.safeParse({ ...base, api: { threads: 'many' } }).success, false);
  assert.equal(configSchema.safeParse({ ...base, api: { threads: 65 } }).success, false);
});
