// The LMTP session pool against a real LMTP server (smtp-server in LMTP mode on a unix socket).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { deliverLmtp, LmtpPool } from '../src/delivery/lmtp.ts';

const dir = mkdtempSync(join(tmpdir(), 'lblmtp-'));
const socketPath = join(dir, 'lmtp');
let connections = 0;
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
  s.on('close', () => sockets.delete(s));
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
