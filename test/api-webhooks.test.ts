// API part 2, webhooks: a real HTTP receiver on loopback verifies every signature (HMAC-SHA256 over
// "<t>.<body>", computed here independently), sees retries after failures, the rotation grace
// period, test and replay deliveries, automatic disabling, and delivery after a SIGKILL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type IncomingMessage } from 'node:http';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { call, checkRepliesAgainstDoc, createKey, waitFor } from './helpers/mailapi.ts';

interface Hit {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  status: number;
}

/** A webhook receiver: per-path scripted statuses ('hang' never answers); records every request. */
class Receiver {
  hits: Hit[] = [];
  script = new Map<string, (number | 'hang')[]>();
  hanging: (() => void)[] = [];
  server!: Server;
  port = 0;
  async start() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '/';
        const next = this.script.get(path)?.shift() ?? 200;
        const body = Buffer.concat(chunks).toString('utf8');
        if (next === 'hang') {
          this.hits.push({ path, headers: req.headers, body, status: 0 });
          this.hanging.push(() => res.destroy());
          return;
        }
        this.hits.push({ path, headers: req.headers, body, status: next });
        // A 3xx points somewhere this receiver records too: a followed redirect would show there.
        res.writeHead(next, { 'Content-Type': 'text/plain', ...(next >= 300 && next < 400 ? { Location: '/redirected' } : {}) }).end(next === 200 ? 'ok' : 'nope');
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as any).port;
    return this;
  }
  url(path: string) {
    return `http://127.0.0.1:${this.port}${path}`;
  }
  on(path: string) {
    return this.hits.filter((h) => h.path === path);
  }
  async stop() {
    for (const h of this.hanging) h();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** The receiver-side check, written independently of the server's code. Returns the secrets' indexes that match. */
function verify(h: Hit, secrets: string[]): number[] {
  const header = String(h.headers['letterbox-signature'] ?? '');
  const parts = header.split(',').map((p) => p.split('='));
  const t = parts.find(([k]) => k === 't')?.[1];
  assert.ok(t && /^\d+$/.test(t), `timestamp in ${header}`);
  assert.ok(Math.abs(Date.now() / 1000 - Number(t)) < 300, 'timestamp is recent');
  const v1 = parts.filter(([k]) => k === 'v1').map(([, v]) => Buffer.from(v, 'hex'));
  const matched: number[] = [];
  secrets.forEach((s, i) => {
    const expected = createHmac('sha256', s).update(`${t}.${h.body}`).digest();
    if (v1.some((v) => v.length === expected.length && timingSafeEqual(v, expected))) matched.push(i);
  });
  return matched;
}

let app: Appliance;
let rx: Receiver;
let key: string;
let sandboxKey: string;

before(async () => {
  rx = await new Receiver().start();
  app = await startAppliance({
    extraToml: `[webhooks]
allow_loopback = true
poll_interval_ms = 100
timeout_ms = 3000
retry_schedule = ["200ms", "200ms", "200ms", "1s", "1s", "1s", "1s"]
disable_after = "3s"
[api]
rate_burst = 100000
rate_per_minute = 100000
send_rate_burst = 100000
send_rate_per_minute = 100000
`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', 'alice password 12345']);
  key = await createKey(app, '*');
  sandboxKey = await createKey(app, 'send:write', { test: true });
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await rx?.stop();
});

/** A sandbox send: records message.queued and message.delivered events, delivers nothing. */
async function makeEvents(subject: string): Promise<string> {
  const r = await call(app, sandboxKey, 'POST', '/mailboxes/alice@ours.test/send', { to: 'someone@remote.test', subject, text: 'x' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.data.messageId;
}

async function createHook(path: string, events: string[]) {
  const r = await call(app, key, 'POST', '/webhooks', { url: rx.url(path), events, description: path });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.match(r.json.data.secret, /^whsec_[A-Za-z0-9_-]{43}$/);
  return r.json.data as { id: string; secret: string };
}

test('target URLs are validated (SSRF guard)', async () => {
  for (const url of [
    'ftp://127.0.0.1/x',
    'file:///etc/passwd',
    'http://169.254.169.254/latest/meta-data/',
    'http://[::ffff:169.254.169.254]/x',
    'http://[fe80::1]/x',
    'http://10.1.2.3/x',
    'http://192.168.1.1/x',
    'http://0.0.0.0/x',
    'http://user:pw@127.0.0.1/x',
    'http://intranet/x',
    'not a url',
  ]) {
    const r = await call(app, key, 'POST', '/webhooks', { url, events: ['*'] });
    assert.equal(r.status, 400, `${url}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error.code, 'validation_error');
  }
  assert.equal((await call(app, key, 'POST', '/webhooks', { url: rx.url('/x'), events: ['nope.event'] })).status, 400);
  assert.equal((await call(app, key, 'POST', '/webhooks', { url: rx.url('/x'), events: [] })).status, 400);
});

test('events are delivered signed: Letterbox-Signature verifies, body is { id, type, createdAt, data }', async () => {
  const hook = await createHook('/main', ['message.queued', 'message.delivered']);
  const got = await call(app, key, 'GET', `/webhooks/${hook.id}`);
  assert.equal(got.json.data.secret, undefined, 'the secret is shown only at creation');
  assert.equal(got.json.data.enabled, true);
  const mid = await makeEvents('webhook one');
  const hits = await waitFor(() => {
    const h = rx.on('/main').filter((x) => JSON.parse(x.body).data.messageId === mid);
    return h.length >= 2 ? h : null;
  }, 'two deliveries');
  const types = hits.map((h) => JSON.parse(h.body).type).sort();
  assert.deepEqual(types, ['message.delivered', 'message.queued']);
  for (const h of hits) {
    assert.deepEqual(verify(h, [hook.secret]), [0], 'signature verifies with the secret');
    assert.deepEqual(verify(h, ['whsec_wrong']), [], 'and not with another');
    const body = JSON.parse(h.body);
    assert.deepEqual(Object.keys(body).sort(), ['createdAt', 'data', 'id', 'type']);
    assert.equal(h.headers['letterbox-event-id'], body.id);
    assert.equal(h.headers['content-type'], 'application/json');
    assert.equal(body.data.sandbox, true);
  }
  // The same ids as the tracking log.
  const ev = await call(app, key, 'GET', '/events?type=message.queued&limit=5');
  assert.ok(ev.json.data.some((e: any) => hits.some((h) => JSON.parse(h.body).id === e.id)));
  const del = await call(app, key, 'GET', `/webhooks/${hook.id}/deliveries?status=succeeded`);
  assert.ok(del.json.data.length >= 2);
  assert.ok(del.json.data.every((d: any) => d.status === 'succeeded' && d.lastStatusCode === 200 && d.attemptLog.length === 1));
  await call(app, key, 'DELETE', `/webhooks/${hook.id}`);
});

test('failed deliveries (HTTP 500) are retried until they succeed, with the same event id', async () => {
  rx.script.set('/flaky', [500, 500]);
  const hook = await createHook('/flaky', ['message.queued']);
  const mid = await makeEvents('webhook flaky');
  const hits = await waitFor(() => {
    const h = rx.on('/flaky').filter((x) => JSON.parse(x.body).data.messageId === mid);
    return h.some((x) => x.status === 200) ? h : null;
  }, 'a successful retry');
  assert.deepEqual(hits.map((h) => h.status), [500, 500, 200]);
  assert.equal(new Set(hits.map((h) => h.headers['letterbox-event-id'])).size, 1);
  for (const h of hits) assert.deepEqual(verify(h, [hook.secret]), [0]);
  const d = await waitFor(async () => {
    const r = await call(app, key, 'GET', `/webhooks/${hook.id}/deliveries`);
    return r.json.data.find((x: any) => x.status === 'succeeded');
  }, 'the delivery log');
  assert.equal(d.attempts, 3);
  assert.deepEqual(d.attemptLog.map((a: any) => a.statusCode), [500, 500, 200]);
  assert.ok(d.attemptLog.every((a: any) => typeof a.durationMs === 'number'));
  const w = await call(app, key, 'GET', `/webhooks/${hook.id}`);
  assert.equal(w.json.data.failingSince, null, 'a success clears the failure clock');
  await call(app, key, 'DELETE', `/webhooks/${hook.id}`);
});

test('bounded: a redirect is a failed attempt and is not followed; an answer slower than webhooks.timeout_ms is a failed attempt; both retried', async () => {
  // An appliance of its own: the shared one disables an endpoint failing for 3 s, which a timeout
  // followed by a retry would reach.
  const other = await startAppliance({
    extraToml: `[webhooks]\nallow_loopback = true\npoll_interval_ms = 100\ntimeout_ms = 500\nretry_schedule = ["200ms", "200ms", "200ms"]\n`,
  });
  try {
    await other.cliJson(['domain', 'add', 'ours.test']);
    await other.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', 'alice password 12345']);
    const admin = await createKey(other, '*');
    const sandbox = await createKey(other, 'send:write', { test: true });
    rx.script.set('/bounded', [302, 'hang', 200]);
    const hook = await call(other, admin, 'POST', '/webhooks', { url: rx.url('/bounded'), events: ['message.queued'] });
    assert.equal(hook.status, 201, JSON.stringify(hook.json));
    const sent = await call(other, sandbox, 'POST', '/mailboxes/alice@ours.test/send', { to: 'someone@remote.test', subject: 'webhook bounded', text: 'x' });
    assert.equal(sent.status, 200, JSON.stringify(sent.json));
    const d = await waitFor(async () => {
      const r = await call(other, admin, 'GET', `/webhooks/${hook.json.data.id}/deliveries`);
      return r.json.data.find((x: any) => x.status === 'succeeded');
    }, 'the delivery after a redirect and a timeout');
    assert.equal(JSON.parse(rx.on('/bounded').at(-1)!.body).data.messageId, sent.json.data.messageId);
    assert.deepEqual(d.attemptLog.map((a: any) => a.statusCode), [302, null, 200]);
    assert.match(d.attemptLog[0].error, /redirect to \/redirected not followed/);
    assert.match(d.attemptLog[1].error, /timed out after 500 ms/);
    assert.ok(d.attemptLog[1].durationMs >= 450 && d.attemptLog[1].durationMs < 5000, `the unanswered attempt gave up at the timeout (${d.attemptLog[1].durationMs} ms)`);
    assert.deepEqual(rx.on('/redirected'), [], 'the redirect was not followed');
  } finally {
    for (const h of rx.hanging.splice(0)) h();
    await other.stop();
    other.cleanup();
  }
});

test('rotate-secret: both signatures during the grace period, then only the new one', async () => {
  const hook = await createHook('/rotate', ['message.queued']);
  const rot = await call(app, key, 'POST', `/webhooks/${hook.id}/rotate-secret`);
  assert.equal(rot.status, 200);
  const secret2 = rot.json.data.secret;
  assert.notEqual(secret2, hook.secret);
  assert.ok(rot.json.data.secretRotatedGraceUntil);
  const mid = await makeEvents('webhook rotate');
  const h = await waitFor(() => rx.on('/rotate').find((x) => JSON.parse(x.body).data.messageId === mid), 'a delivery after rotation');
  assert.deepEqual(verify(h, [secret2, hook.secret]), [0, 1], 'valid with the new and the old secret');
  // A rotation without grace: only the newest secret signs.
  const rot2 = await call(app, key, 'POST', `/webhooks/${hook.id}/rotate-secret`, { graceSeconds: 0 });
  const secret3 = rot2.json.data.secret;
  assert.equal(rot2.json.data.secretRotatedGraceUntil, null);
  const mid2 = await makeEvents('webhook rotate 2');
  const h2 = await waitFor(() => rx.on('/rotate').find((x) => JSON.parse(x.body).data.messageId === mid2), 'a delivery after the second rotation');
  assert.deepEqual(verify(h2, [secret3, secret2, hook.secret]), [0]);
  assert.equal(String(h2.headers['letterbox-signature']).match(/v1=/g)?.length, 1);
  await call(app, key, 'DELETE', `/webhooks/${hook.id}`);
});

test('test endpoint and replay', async () => {
  const hook = await createHook('/tr', ['message.delivered']);
  const t = await call(app, key, 'POST', `/webhooks/${hook.id}/test`);
  assert.equal(t.status, 200, JSON.stringify(t.json));
  assert.equal(t.json.data.status, 'succeeded');
  assert.equal(t.json.data.lastStatusCode, 200);
  assert.equal(t.json.data.eventType, 'webhook.test');
  const th = rx.on('/tr').find((x) => JSON.parse(x.body).type === 'webhook.test');
  assert.ok(th);
  assert.deepEqual(verify(th, [hook.secret]), [0]);
  // A failing test is reported, not retried.
  rx.script.set('/tr', [503]);
  const t2 = await call(app, key, 'POST', `/webhooks/${hook.id}/test`);
  assert.equal(t2.json.data.status, 'failed');
  assert.equal(t2.json.data.lastStatusCode, 503);

  const mid = await makeEvents('webhook replay');
  const first = await waitFor(() => rx.on('/tr').find((x) => JSON.parse(x.body).data?.messageId === mid), 'the original delivery');
  const deliveryId = String(first.headers['letterbox-delivery-id']);
  const rep = await call(app, key, 'POST', `/webhooks/${hook.id}/deliveries/${deliveryId}/replay`);
  assert.equal(rep.status, 201, JSON.stringify(rep.json));
  assert.equal(rep.json.data.replayOf, deliveryId);
  assert.equal(rep.json.data.status, 'succeeded');
  assert.equal(rep.json.data.eventId, first.headers['letterbox-event-id']);
  const again = rx.on('/tr').filter((x) => x.headers['letterbox-event-id'] === first.headers['letterbox-event-id']);
  assert.equal(again.length, 2);
  assert.equal(again[1].body, first.body, 'the same body');
  assert.deepEqual(verify(again[1], [hook.secret]), [0]);
  assert.equal((await call(app, key, 'POST', `/webhooks/${hook.id}/deliveries/whd_nope/replay`)).status, 404);
  const one = await call(app, key, 'GET', `/webhooks/${hook.id}/deliveries/${deliveryId}`);
  assert.equal(one.json.data.id, deliveryId);
  await call(app, key, 'DELETE', `/webhooks/${hook.id}`);
  assert.equal((await call(app, key, 'GET', `/webhooks/${hook.id}`)).status, 404);
  assert.equal((await call(app, key, 'GET', `/webhooks/${hook.id}/deliveries`)).status, 404);
});

test('an endpoint failing for webhooks.disable_after is disabled with a reason, and can be re-enabled', async () => {
  rx.script.set('/down', Array(50).fill(500));
  const hook = await createHook('/down', ['message.queued']);
  await makeEvents('webhook down');
  const w = await waitFor(async () => {
    const r = await call(app, key, 'GET', `/webhooks/${hook.id}`);
    return r.json.data.enabled ? null : r.json.data;
  }, 'the endpoint to be disabled', 30000);
  assert.match(w.disabledReason, /failed since/);
  assert.ok(w.failingSince);
  const list = await call(app, key, 'GET', '/webhooks');
  assert.ok(list.json.data.some((x: any) => x.id === hook.id && x.enabled === false));
  rx.script.set('/down', []);
  const en = await call(app, key, 'PATCH', `/webhooks/${hook.id}`, { enabled: true });
  assert.equal(en.json.data.enabled, true);
  assert.equal(en.json.data.disabledReason, null);
  assert.equal(en.json.data.failingSince, null);
  await call(app, key, 'DELETE', `/webhooks/${hook.id}`);
});

test('metrics count webhook deliveries by outcome', async () => {
  const text = (await call(app, key, 'GET', '/metrics')).body.toString();
  assert.ok(Number(/^letterbox_webhook_deliveries_total\{outcome="success"\} (\d+)/m.exec(text)?.[1]) > 0, text);
  assert.ok(Number(/^letterbox_webhook_deliveries_total\{outcome="http_error"\} (\d+)/m.exec(text)?.[1]) > 0);
});

test('every JSON reply of this file matches the schema openapi.json documents for it', async () => {
  const r = await checkRepliesAgainstDoc(app);
  assert.ok(r.checked > 20, `checked ${r.checked}`);
  assert.deepEqual(r.problems, []);
});

test('SIGKILL while a delivery is in flight: delivered after restart (durable outbox)', async () => {
  rx.script.set('/durable', ['hang']);
  const hook = await createHook('/durable', ['message.queued']);
  const mid = await makeEvents('webhook durable');
  const first = await waitFor(() => rx.on('/durable').find((x) => JSON.parse(x.body).data.messageId === mid), 'the first (unanswered) attempt');
  await app.kill('SIGKILL');
  for (const h of rx.hanging.splice(0)) h();
  await app.restart();
  const done = await waitFor(() => rx.on('/durable').find((x) => x.status === 200 && x.headers['letterbox-event-id'] === first.headers['letterbox-event-id']), 'the delivery after restart');
  assert.equal(done.body, first.body);
  assert.deepEqual(verify(done, [hook.secret]), [0]);
  const d = await call(app, key, 'GET', `/webhooks/${hook.id}/deliveries`);
  assert.equal(d.json.data.length, 1);
  assert.equal(d.json.data[0].status, 'succeeded');
});

test('SIGKILL after an event is committed but before the dispatcher saw it: delivered after restart', async () => {
  const { readFileSync, writeFileSync } = await import('node:fs');
  const original = readFileSync(app.configPath, 'utf8');
  // Restart with a dispatcher that looks for new events only at start, then every 10 minutes.
  await app.kill('SIGKILL');
  writeFileSync(app.configPath, original.replace('poll_interval_ms = 100', 'poll_interval_ms = 600000'));
  try {
    await app.restart();
    const hook = await createHook('/late', ['message.queued']);
    await new Promise((r) => setTimeout(r, 500)); // the start-up pass is long done
    const mid = await makeEvents('webhook late');
    const ev = await call(app, key, 'GET', '/events?type=message.queued&limit=5');
    const event = ev.json.data.find((e: any) => e.messageId === mid);
    assert.ok(event, 'the event is committed');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(rx.on('/late').length, 0, 'not dispatched yet');
    await app.kill('SIGKILL');
    writeFileSync(app.configPath, original);
    await app.restart();
    const h = await waitFor(() => rx.on('/late').find((x) => x.headers['letterbox-event-id'] === event.id), 'the delivery after restart');
    assert.equal(JSON.parse(h.body).data.messageId, mid);
    assert.deepEqual(verify(h, [hook.secret]), [0]);
  } finally {
    writeFileSync(app.configPath, original);
  }
});
