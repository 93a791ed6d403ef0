// The API served by worker threads (api.threads = 2): every request reaches a worker (the
// kernel spreads connections over them); read routes are answered there, the rest by the main thread
// through the private Unix socket. What must hold across threads: one rate limit per key and per
// client address, one access line and one request id per request, one set of metrics; and with
// api.threads = 0 the main thread serves the API itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { waitFor } from './helpers/mailapi.ts';

let app: Appliance;

before(async () => {
  // Six requests at once, then one a minute: nothing refills during the test.
  app = await startAppliance({ extraToml: `[api]\nthreads = 2\nrate_per_minute = 1\nrate_burst = 6\n` });
});
after(async () => {
  await app?.stop();
  app?.cleanup();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on a connection of its own (no keep-alive), so successive requests land on any thread. */
function oneShot(a: Appliance, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: a.ports.api, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const accessLines = (a: Appliance) => a.logs.filter((l) => l.includes('"api request"')).map((l) => JSON.parse(l));

/** The access lines of `keyId` once there are `n` of them (log lines reach the harness a moment after the answers). */
function linesOf(a: Appliance, keyId: string, n: number): Promise<any[]> {
  return waitFor(() => {
    const lines = accessLines(a).filter((l) => l.keyId === keyId);
    return lines.length >= n ? lines : null;
  }, `${n} access lines of ${keyId}`, 5000);
}

test('one token bucket per key across threads: 20 connections, burst 6 → exactly 6 answered, 14 refused, answered by both workers', async () => {
  const k = await app.cliJson(['key', 'create', '--name', 'spread', '--scopes', '*']);
  const answers = await Promise.all(Array.from({ length: 20 }, () => oneShot(app, 'GET', '/api/v1/domains', { authorization: `Bearer ${k.secret}` })));
  assert.deepEqual(answers.map((a) => a.status).sort(), [...Array(6).fill(200), ...Array(14).fill(429)]);
  // Whichever thread answered, the remaining counts are one sequence: 5..0 once each.
  assert.deepEqual(answers.filter((a) => a.status === 200).map((a) => a.headers['x-ratelimit-remaining']).sort(), ['0', '1', '2', '3', '4', '5']);
  const lines = await linesOf(app, k.id, 20);
  assert.equal(lines.length, 20, 'one access line per request');
  const threads = new Set(lines.map((l) => l.apiThread));
  // 20 connections all hashed to one of two listeners: probability 2^-19.
  assert.deepEqual([...threads].sort(), [0, 1], 'both workers answered some of the requests');
});

test('the client address reaches the main thread, and cannot be forged: bad keys on worker routes and on main-thread routes draw from one per-IP bucket', async () => {
  const bad = { authorization: 'Bearer lb_live_' + 'A'.repeat(43), 'content-type': 'application/json' };
  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) {
    // GET /me is answered by a worker; POST /domains by the main thread (relayed).
    // The header the workers use to pass the address on is the client's to send but never believed.
    const h = { ...bad, 'x-letterbox-client-ip': `10.9.8.${i}` };
    const r = i % 2 === 0 ? await oneShot(app, 'GET', '/api/v1/me', h) : await oneShot(app, 'POST', '/api/v1/domains', h, '{"name":"x.test"}');
    statuses.push(r.status);
  }
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401, 429, 429, 429, 429]);
});

test('a relayed request: the main thread answers it with its own request id, logs it once, and the worker adds nothing', async () => {
  const k = await app.cliJson(['key', 'create', '--name', 'relay', '--scopes', '*']);
  const r = await oneShot(app, 'POST', '/api/v1/domains', { authorization: `Bearer ${k.secret}`, 'content-type': 'application/json' }, JSON.stringify({ name: 'relayed.test' }));
  assert.equal(r.status, 201, r.body);
  assert.equal(JSON.parse(r.body).data.name, 'relayed.test');
  const id = r.headers['x-request-id'];
  assert.match(String(id), /^req_/);
  await linesOf(app, k.id, 1);
  const lines = accessLines(app).filter((l) => l.requestId === id);
  assert.equal(lines.length, 1, 'one access line for the request');
  assert.equal(lines[0].apiThread, undefined, 'written by the main thread');
  assert.equal(lines[0].status, 201);
  assert.equal(accessLines(app).filter((l) => l.keyId === k.id).length, 1, 'the worker that relayed it logged nothing of its own');

  // A chunked body (no Content-Length) is relayed whole.
  const chunked = await new Promise<Answer>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: app.ports.api, method: 'POST', path: '/api/v1/domains', agent: false, headers: { authorization: `Bearer ${k.secret}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.write('{"name":');
    setTimeout(() => req.end('"chunked.test"}'), 50);
  });
  assert.equal(chunked.status, 201, chunked.body);
  assert.equal(JSON.parse(chunked.body).data.name, 'chunked.test');
});

test('/metrics adds up the requests every thread answered', async () => {
  const k = await app.cliJson(['key', 'create', '--name', 'metrics', '--scopes', '*']);
  const count = async () => {
    const r = await oneShot(app, 'GET', '/metrics', { authorization: `Bearer ${k.secret}` });
    assert.equal(r.status, 200);
    const line = r.body.split('\n').find((l) => l.startsWith('letterbox_api_requests_total{method="GET",route="/api/v1/events",status="200"}'));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const n0 = await count();
  const answers = await Promise.all(Array.from({ length: 4 }, () => oneShot(app, 'GET', '/api/v1/events', { authorization: `Bearer ${k.secret}` })));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200]);
  assert.equal(await count(), n0 + 4);
});

test("the main thread's socket is private (0600) and removed when the appliance stops", async () => {
  const sock = join(app.dataDir, 'api.sock');
  const st = statSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  const other = await startAppliance({ extraToml: `[api]\nthreads = 2\n` });
  try {
    assert.ok(existsSync(join(other.dataDir, 'api.sock')));
    assert.equal(await other.stop(), 0);
    assert.equal(existsSync(join(other.dataDir, 'api.sock')), false);
  } finally {
    other.cleanup();
  }
});

test('api.threads = 0: the main thread serves the API itself (read and write routes, limits, metrics)', async () => {
  const solo = await startAppliance({ extraToml: `[api]\nthreads = 0\nrate_per_minute = 1\nrate_burst = 3\n` });
  try {
    assert.equal(existsSync(join(solo.dataDir, 'api.sock')), false, 'no private socket without workers');
    const k = await solo.cliJson(['key', 'create', '--name', 'solo', '--scopes', '*']);
    const auth = { authorization: `Bearer ${k.secret}`, 'content-type': 'application/json' };
    const created = await oneShot(solo, 'POST', '/api/v1/domains', auth, JSON.stringify({ name: 'solo.test' }));
    assert.equal(created.status, 201, created.body);
    const listed = await oneShot(solo, 'GET', '/api/v1/domains', auth);
    assert.equal(listed.status, 200);
    assert.deepEqual(JSON.parse(listed.body).data.map((d: any) => d.name), ['solo.test']);
    assert.equal(listed.headers['x-ratelimit-remaining'], '1');
    const metrics = await oneShot(solo, 'GET', '/metrics', auth);
    assert.match(metrics.body, /letterbox_api_requests_total\{method="POST",route="\/api\/v1\/domains",status="201"\} 1/);
    assert.equal((await oneShot(solo, 'GET', '/api/v1/me', auth)).status, 429);
    const lines = await linesOf(solo, k.id, 4);
    assert.equal(lines.length, 4);
    assert.ok(lines.every((l) => l.apiThread === undefined), 'every request answered by the main thread');
  } finally {
    await solo.stop();
    solo.cleanup();
  }
});

test('a body the main thread refuses unread (413) closes the client connection too', async () => {
  const k = await app.cliJson(['key', 'create', '--name', 'big', '--scopes', '*']);
  // Declared far over api.max_body_size: refused at once, before any of it is sent.
  const reply = await new Promise<string>((resolve, reject) => {
    const s = connect(app.ports.api, '127.0.0.1', () => {
      s.write(`POST /api/v1/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${k.secret}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"name":`);
    });
    let text = '';
    s.on('data', (c) => (text += c));
    s.on('close', () => resolve(text)); // the server closed it: we never finished the body
    s.on('error', reject);
    setTimeout(() => {
      s.destroy();
      reject(new Error(`connection still open after 10 s; got: ${text.slice(0, 200)}`));
    }, 10_000).unref();
  });
  assert.match(reply, /^HTTP\/1\.1 413 /);
  assert.match(reply, /\r\nconnection: close\r\n/i);
  assert.match(reply, /"payload_too_large"/);
});

test('a second appliance given the same listen.api is refused (address in use), though the workers listen with SO_REUSEPORT', async () => {
  let second: Appliance | null = null;
  try {
    second = await startAppliance({ ports: { api: app.ports.api } });
  } catch (err: any) {
    assert.match(err.message, /cannot listen on 127\.0\.0\.1:\d+ for the API \(listen\.api\): address in use/);
  }
  if (second) {
    await second.stop();
    second.cleanup();
    assert.fail('the second appliance started and shares the API port');
  }
  const r = await oneShot(app, 'GET', '/healthz');
  assert.equal(r.status, 200, 'the first one still answers');
});
