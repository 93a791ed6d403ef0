// The LMTP session pool against a real LMTP server (smtp-server in LMTP mode on a unix socket).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { deliverLmtp, LmtpPool } from '../src/delivery/lmtp.ts';
import { LocalDelivery } from '../src/delivery/local.ts';
import { Slots } from '../src/util/slots.ts';

const dir = mkdtempSync(join(tmpdir(), 'lblmtp-'));
const socketPath = join(dir, 'lmtp');
let connections = 0;
let open = 0;
let maxOpen = 0;
const sockets = new Set<any>();
const received: { to: string[]; body: string }[] = [];
const server = new SMTPServer({
  lmtp: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  logger: false,
  onConnect(session, cb) {
    connections++;
    cb();
  },
  onRcptTo(addr, _s, cb) {
    if (addr.address.startsWith('nobody@')) return cb(Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }));
    cb();
  },
  onData(stream, session, cb) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      received.push({ to: session.envelope.rcptTo.map((r) => r.address), body: Buffer.concat(chunks).toString() });
      cb();
    });
  },
});
await new Promise<void>((r) => server.listen(socketPath, () => r()));
(server as any).server.on('connection', (s: any) => {
  sockets.add(s);
  maxOpen = Math.max(maxOpen, ++open);
  s.on('close', () => {
    sockets.delete(s);
    open--;
  });
});
after(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

const msg = (n: number) => Buffer.from(`Subject: ${n}\r\n\r\nbody ${n}\r\n`);

test('a pool reuses one session for consecutive messages; without a pool each message connects', async () => {
  const pool = new LmtpPool({ socketPath, lhlo: 'mx.test' });
  const before = connections;
  for (let i = 0; i < 3; i++) {
    const r = await deliverLmtp(socketPath, { from: 'a@x.test', to: ['u@y.test'] }, msg(i), { lhlo: 'mx.test', pool });
    assert.deepEqual(r.map((x) => x.status), ['delivered']);
  }
  assert.equal(connections - before, 1, 'one connection for three messages');
  const b2 = connections;
  await deliverLmtp(socketPath, { from: 'a@x.test', to: ['u@y.test'] }, msg(9), { lhlo: 'mx.test' });
  assert.equal(connections - b2, 1);
  // Every recipient refused at RCPT: the session is reset and still usable.
  const refused = await deliverLmtp(socketPath, { from: 'a@x.test', to: ['nobody@y.test'] }, msg(10), { lhlo: 'mx.test', pool });
  assert.equal(refused[0].status, 'permfail');
  assert.equal(refused[0].code, 550);
  const ok = await deliverLmtp(socketPath, { from: 'a@x.test', to: ['u@y.test'] }, msg(11), { lhlo: 'mx.test', pool });
  assert.equal(ok[0].status, 'delivered');
  pool.close();
});

test('a pooled session the server dropped is replaced; the message is delivered once', async () => {
  const pool = new LmtpPool({ socketPath, lhlo: 'mx.test' });
  await deliverLmtp(socketPath, { from: 'a@x.test', to: ['u@y.test'] }, msg(20), { lhlo: 'mx.test', pool });
  // The server side drops every open session (like a Dovecot restart).
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const n = received.length;
  const r = await deliverLmtp(socketPath, { from: 'a@x.test', to: ['u@y.test'] }, msg(21), { lhlo: 'mx.test', pool });
  assert.equal(r[0].status, 'delivered');
  assert.equal(received.length, n + 1);
  assert.equal(received.filter((m) => m.body.includes('body 21')).length, 1, 'exactly once');
  pool.close();
});

test('Slots: at most max holders, waiters served in order, a wait that times out is refused as unavailable', async () => {
  const slots = new Slots(2);
  const a = await slots.acquire(1000);
  const b = await slots.acquire(1000);
  assert.equal(slots.inUse, 2);
  const order: string[] = [];
  const c = slots.acquire(5000).then((r) => (order.push('c'), r));
  const d = slots.acquire(5000).then((r) => (order.push('d'), r));
  await assert.rejects(slots.acquire(20, 'LMTP session'), (e: any) => e.code === 'unavailable' && /all 2 LMTP sessions stayed busy/.test(e.message));
  assert.equal(slots.waiting, 2, 'the timed-out waiter left the line');
  a();
  a(); // a second release of the same slot changes nothing
  const rc = await c;
  assert.deepEqual(order, ['c']);
  assert.equal(slots.inUse, 2);
  b();
  const rd = await d;
  assert.deepEqual(order, ['c', 'd']);
  rc();
  rd();
  assert.equal(slots.inUse, 0);
  assert.throws(() => new Slots(0), (e: any) => e.code === 'validation_error');
});

test('dovecot.lmtp_sessions: 20 deliveries at once through one pooled LocalDelivery with 2 slots never hold more than 2 LMTP sessions, and all 20 arrive', async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 50));
  maxOpen = open;
  const d = new LocalDelivery({ socketPath, lhlo: 'mx.test', slots: new Slots(2), pool: new LmtpPool({ socketPath, lhlo: 'mx.test', max: 2 }) });
  const before = received.length;
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => d.deliver({ from: 'a@x.test', body: msg(100 + i) }, ['u@y.test'])));
  assert.deepEqual(new Set(results.map((r) => r[0].status)), new Set(['delivered']));
  assert.equal(received.length - before, 20);
  assert.ok(maxOpen <= 2, `at most 2 LMTP sessions open at once, saw ${maxOpen}`);
  d.close();
});

test('dovecot.lmtp_sessions: when every session stays busy past the timeout, a delivery answers 451 (nothing stored, the sender retries)', async () => {
  const slots = new Slots(1);
  const release = await slots.acquire(1000);
  const d = new LocalDelivery({ socketPath, lhlo: 'mx.test', slots, timeoutMs: 50 });
  const before = received.length;
  const r = await d.deliver({ from: 'a@x.test', body: msg(200) }, ['u@y.test', 'v@y.test']);
  assert.deepEqual(r.map((x) => [x.code, x.unavailable]), [[451, true], [451, true]]);
  assert.match(r[0].response, /^451 4\.3\.0 .*all 1 Dovecot LMTP session.* busy/);
  assert.equal(received.length, before);
  await assert.rejects(d.probe('u@y.test'), (e: any) => e.code === 'unavailable');
  release();
});
