import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createResolver } from '../src/dns/resolver.ts';
import { TestDns } from './helpers/dns.ts';

let dns: TestDns;
let now = 1_000_000;
const clock = { now: () => now };
before(async () => {
  dns = await new TestDns().start();
});
after(() => dns.stop());

test('answers are cached no longer than their TTL (A) or 60 s (TXT); definite negatives briefly; failures not at all', async () => {
  dns.add({ type: 'A', name: 'short.test', data: '192.0.2.1', ttl: 5 }).txt('txt.test', 'v=spf1 -all');
  const r = createResolver({ servers: [dns.server], timeoutMs: 500, clock });
  const count = (name: string) => dns.queries.filter((q) => q.name === name).length;
  assert.deepEqual(await r.resolve('short.test', 'A'), ['192.0.2.1']);
  await r.resolve('short.test', 'A');
  assert.equal(count('short.test'), 1, 'second lookup from cache');
  now += 6000; // past the 5 s TTL
  await r.resolve('short.test', 'A');
  assert.equal(count('short.test'), 2);
  assert.deepEqual(await r.resolve('txt.test', 'TXT'), [['v=spf1 -all']]);
  now += 59_000;
  await r.resolve('txt.test', 'TXT');
  assert.equal(count('txt.test'), 1);
  now += 2000;
  await r.resolve('txt.test', 'TXT');
  assert.equal(count('txt.test'), 2);
  await assert.rejects(r.resolve('missing.test', 'A'), { code: 'ENOTFOUND' });
  await assert.rejects(r.resolve('missing.test', 'A'), { code: 'ENOTFOUND' });
  assert.equal(count('missing.test'), 1, 'NXDOMAIN cached briefly');
  dns.silent = true;
  await assert.rejects(r.resolve('down.test', 'TXT'), { code: 'ETIMEOUT' });
  dns.silent = false;
  dns.txt('down.test', 'back');
  assert.deepEqual(await r.resolve('down.test', 'TXT'), [['back']], 'a timeout is not cached');
});
