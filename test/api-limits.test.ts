// Management API: per-key token buckets (a tiny bucket configured here), 429 with Retry-After, the
// per-IP bucket for requests without a valid key, and /healthz (healthy, then with Dovecot absent).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppliance, type Appliance } from './helpers/appliance.ts';

let app: Appliance;
let base: string;

before(async () => {
  // 3 requests at once, then one every 2 s (30 a minute); sends: 2 at once, then one every 6 s.
  app = await startAppliance({ extraToml: `[api]\nrate_per_minute = 30\nrate_burst = 3\nsend_rate_per_minute = 10\nsend_rate_burst = 2\n` });
  base = `http://127.0.0.1:${app.ports.api}`;
});
after(async () => {
  await app?.stop();
  app?.cleanup();
});

const get = (path: string, key?: string) => fetch(base + path, { headers: key ? { authorization: `Bearer ${key}` } : {} });
const rl = (r: Response) => ['limit', 'remaining', 'reset'].map((h) => r.headers.get(`x-ratelimit-${h}`));

test('per-key token bucket: X-RateLimit-* on every response, then 429 with Retry-After; other keys unaffected', async () => {
  const [a, b] = await Promise.all([app.cliJson(['key', 'create', '--name', 'a']), app.cliJson(['key', 'create', '--name', 'b', '--scopes', 'events:read'])]);
  const seen: (string | null)[][] = [];
  for (let i = 0; i < 3; i++) {
    const r = await get('/api/v1/domains', a.secret);
    assert.equal(r.status, 200);
    seen.push(rl(r));
  }
  assert.deepEqual(seen.map((x) => x.slice(0, 2)), [['3', '2'], ['3', '1'], ['3', '0']]);
  for (const x of seen) assert.ok(Number(x[2]) >= 1 && Number(x[2]) <= 6, `X-RateLimit-Reset ${x[2]} (seconds until full)`);
  const limited = await get('/api/v1/domains', a.secret);
  assert.equal(limited.status, 429);
  const body: any = await limited.json();
  assert.equal(body.error.code, 'rate_limited');
  assert.equal(body.error.requestId, limited.headers.get('x-request-id'));
  const retry = Number(limited.headers.get('retry-after'));
  assert.ok(retry >= 1 && retry <= 2, `Retry-After ${retry}`);
  assert.deepEqual(rl(limited).slice(0, 2), ['3', '0']);

  // Refusals count as requests too (403 from a key without the scope), per key.
  const other = await get('/api/v1/domains', b.secret);
  assert.equal(other.status, 403);
  assert.deepEqual(rl(other).slice(0, 2), ['3', '2'], 'another key has its own bucket');

  // After Retry-After, one more request goes through.
  await sleep(retry * 1000 + 100);
  const again = await get('/api/v1/me', a.secret);
  assert.equal(again.status, 200);
  assert.equal(again.headers.get('x-ratelimit-remaining'), '0');
});

test('the send bucket (api.send_rate_*): 429 with Retry-After once it is empty, nothing sent; other routes draw from their own bucket', async () => {
  await app.cliJson(['domain', 'add', 'limits.test']);
  await app.cliJson(['mailbox', 'add', 'alice@limits.test', '--password', 'correct horse battery staple']);
  const k = await app.cliJson(['key', 'create', '--name', 'sender', '--scopes', 'send:write,messages:read']);
  const send = (subject: string) =>
    fetch(`${base}/api/v1/mailboxes/alice@limits.test/send`, {
      method: 'POST',
      headers: { authorization: `Bearer ${k.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: ['alice@limits.test'], subject, text: 'x' }),
    });
  const statuses = [];
  for (const s of ['bucket 1', 'bucket 2', 'bucket 3']) statuses.push((await send(s)).status);
  assert.deepEqual(statuses.slice(0, 2), [200, 200]);
  assert.equal(statuses[2], 429, 'the third send within the burst of 2 is refused');
  const limited = await send('bucket 4');
  assert.equal(limited.status, 429);
  assert.equal(((await limited.json()) as any).error.code, 'rate_limited');
  const retry = Number(limited.headers.get('retry-after'));
  assert.ok(retry >= 1 && retry <= 6, `Retry-After ${retry} (one send every 6 s)`);
  assert.equal(limited.headers.get('x-ratelimit-limit'), '2');
  // Reading is another bucket: still allowed.
  const read = await get('/api/v1/mailboxes/alice@limits.test/messages?folder=INBOX', k.secret);
  assert.equal(read.status, 200);
  const subjects = ((await read.json()) as any).data.messages.map((m: any) => m.subject).sort();
  assert.deepEqual(subjects, ['bucket 1', 'bucket 2'], 'the refused sends were not sent');
});

test('unknown paths (404) and wrong methods (405) with a key are authenticated and counted like any request', async () => {
  const k = await app.cliJson(['key', 'create', '--name', 'unrouted']);
  const call = (method: string, path: string) => fetch(base + path, { method, headers: { authorization: `Bearer ${k.secret}` } });
  const r404 = await call('GET', '/api/v1/no-such-thing');
  assert.equal(r404.status, 404);
  assert.deepEqual(rl(r404).slice(0, 2), ['3', '2']);
  const r405 = await call('PUT', '/api/v1/domains');
  assert.equal(r405.status, 405);
  assert.equal(((await r405.json()) as any).error.code, 'method_not_allowed');
  assert.deepEqual(rl(r405).slice(0, 2), ['3', '1']);
  assert.equal((await call('GET', '/api/v1/me')).status, 200);
  const limited = await call('GET', '/api/v1/no-such-thing');
  assert.equal(limited.status, 429, 'the bucket is shared with routed requests');
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
});

test('requests without a valid key are limited per client IP (key guessing); public routes are not limited', async () => {
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await get('/api/v1/me', 'lb_live_' + String(i).repeat(43));
    codes.push(r.status);
    assert.ok(r.headers.get('x-ratelimit-limit'), 'rate headers on 401/429 too');
    if (r.status === 401) assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="letterbox"');
  }
  assert.deepEqual(codes, [401, 401, 401, 429, 429]);
  // A valid key still works: its own bucket, not the IP's.
  const k = await app.cliJson(['key', 'create', '--name', 'c']);
  assert.equal((await get('/api/v1/me', k.secret)).status, 200);
  for (let i = 0; i < 5; i++) assert.equal((await get('/api/v1/openapi.json')).status, 200);
});

test('/healthz: 200 with every check ok, no authentication', async () => {
  const r = await get('/healthz');
  const h: any = await r.json();
  assert.equal(r.status, 200, JSON.stringify(h.problems));
  assert.equal(h.status, 'ok');
  assert.deepEqual(h.problems, []);
  assert.equal(h.checks.database.ok, true);
  assert.equal(h.checks.dovecot.ok, true);
  assert.equal(h.checks.dovecot.running, true);
  assert.deepEqual(h.checks.listeners.map((l: any) => l.name).sort(), ['api', 'imap', 'mx', 'submission', 'submissions']);
  for (const l of h.checks.listeners) assert.equal(l.ok, true, l.name);
  assert.ok(r.headers.get('x-request-id'));
});

test('/healthz: 503 naming what is wrong when Dovecot is not there', async () => {
  await app.stop();
  // The same appliance, but Dovecot not managed by Letterbox and not running: IMAP is down.
  const down = await startAppliance({ extraToml: `[dovecot]\nmanaged = false\n` });
  try {
    const r = await fetch(`http://127.0.0.1:${down.ports.api}/healthz`);
    const h: any = await r.json();
    assert.equal(r.status, 503);
    assert.equal(h.status, 'unavailable');
    assert.equal(h.checks.dovecot.ok, false);
    assert.equal(h.checks.dovecot.managed, false);
    assert.match(h.problems.join('\n'), new RegExp(`dovecot: not accepting IMAP connections on 127\\.0\\.0\\.1:${down.ports.imap}`));
    assert.equal(h.checks.database.ok, true);
    assert.equal(h.checks.listeners.find((l: any) => l.name === 'mx').ok, true);
    // Quota figures need Dovecot: 503, not a page of blanks.
    const k = await down.cliJson(['key', 'create', '--name', 'k']);
    await down.cliJson(['domain', 'add', 'down.test']);
    await down.cli(['mailbox', 'add', 'x@down.test', '--password', 'a long password here']);
    const q = await fetch(`http://127.0.0.1:${down.ports.api}/api/v1/mailboxes/quota-status`, { headers: { authorization: `Bearer ${k.secret}` } });
    const qb: any = await q.json();
    assert.equal(q.status, 503, JSON.stringify(qb));
    assert.equal(qb.error.code, 'unavailable');
    assert.match(qb.error.message, /could not read quota usage from Dovecot: .*auth-userdb/);
  } finally {
    await down.stop();
    down.cleanup();
  }
});
