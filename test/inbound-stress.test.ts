// MX stress mode against a real `letterbox serve`: idle sessions from several loopback addresses fill
// the connection slots; above smtp.stress_threshold those without a transaction are closed after
// smtp.stress_idle_timeout_ms (421 4.4.2) so a real sender still gets in; below it they are left alone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { RawSmtp, type Reply } from './helpers/smtp-raw.ts';

const PW = 'stress test password 123';
let app: Appliance;
let dns: TestDns;

before(async () => {
  dns = await new TestDns().start();
  app = await startAppliance({
    extraToml: `
[dns]
servers = ["${dns.server}"]
timeout_ms = 1000
[smtp]
max_connections = 8
max_connections_per_ip = 3
stress_threshold = 0.75
stress_idle_timeout_ms = 1000
socket_timeout_ms = 120000
command_timeout_ms = 120000
`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', PW]);
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

const open = async (n: number, addrs: string[]): Promise<RawSmtp[]> => {
  const out: RawSmtp[] = [];
  for (let i = 0; i < n; i++) {
    const { client, greeting } = await RawSmtp.open(app.ports.mx, '127.0.0.1', addrs[i % addrs.length]);
    assert.equal(greeting?.code, 220, `session ${i}: ${greeting?.text}`);
    out.push(client);
  }
  return out;
};

/** Waits (generously) until the server has seen the closes: a probe session is accepted again. */
const settle = async () => {
  for (let i = 0; i < 100; i++) {
    const { client, greeting } = await RawSmtp.open(app.ports.mx, '127.0.0.1', '127.0.0.9');
    await client.close();
    if (greeting?.code === 220) return;
    await sleep(200);
  }
  throw new Error('MX never accepted a session again');
};

test('below the threshold idle sessions keep the normal timeouts', async () => {
  // 6 of 8 open = exactly 75 %: not above the threshold.
  const idle = await open(6, ['127.0.0.2', '127.0.0.3']);
  for (const c of idle.slice(0, 3)) assert.equal((await c.cmd('EHLO idle.example'))?.code, 250);
  await sleep(3500); // 3.5 × stress_idle_timeout_ms
  for (const [i, c] of idle.entries()) {
    assert.equal(c.closed, false, `session ${i} was closed`);
    assert.equal(c.unread, 0, `session ${i} got an unexpected reply`);
    assert.equal((await c.cmd('NOOP'))?.code, 250, `session ${i} still served`);
  }
  for (const c of idle) await c.close();
  await settle();
});

test('above the threshold idle sessions without a transaction get 421 4.4.2 and a real sender is served', async () => {
  // Every slot taken: 7 idle sessions (some after EHLO) and 1 that has started a transaction.
  const idle = await open(7, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
  for (const c of idle.slice(0, 2)) assert.equal((await c.cmd('EHLO idle.example'))?.code, 250);
  const [busy] = await open(1, ['127.0.0.4']);
  assert.equal((await busy.cmd('EHLO busy.example'))?.code, 250);
  assert.equal((await busy.cmd('MAIL FROM:<sender@remote.test>'))?.code, 250);

  // All slots are in use right now: a new sender is turned away (the exhaustion the fix is about)...
  const { client: early, greeting: refused } = await RawSmtp.open(app.ports.mx, '127.0.0.1', '127.0.0.5');
  assert.match(refused?.text ?? '', /^421 /); // smtp-server's own per-listener cap or ours (4.7.0)
  await early.close();

  // ...but the idle ones are dropped, so it gets in within a generous bound and is served.
  let sender: RawSmtp | null = null;
  for (let i = 0; i < 100 && !sender; i++) {
    const { client, greeting } = await RawSmtp.open(app.ports.mx, '127.0.0.1', '127.0.0.5');
    if (greeting?.code === 220) sender = client;
    else {
      await client.close();
      await sleep(200);
    }
  }
  assert.ok(sender, 'a legitimate sender was never accepted');
  assert.equal((await sender.cmd('EHLO sender.example'))?.code, 250);
  const sent = await sender.sendRaw('someone@remote.test', ['alice@ours.test'], 'From: someone@remote.test\r\nTo: alice@ours.test\r\nSubject: under load\r\n\r\nhello\r\n.\r\n');
  assert.equal(sent.rcpt[0]?.code, 250, sent.rcpt[0]?.text);
  assert.equal(sent.data?.code, 250, sent.data?.text);
  await sender.close();

  // Idle sessions were closed (told why) until no longer above the threshold; the rest are untouched.
  await sleep(2500);
  let dropped = 0;
  for (const [i, c] of idle.entries()) {
    if (c.unread === 0 && !c.closed) {
      assert.equal((await c.cmd('NOOP'))?.code, 250, `session ${i} left open is still served`);
      await c.close();
      continue;
    }
    const r: Reply | null = await c.read(20000);
    assert.match(r?.text ?? 'closed without a reply', /^421 4\.4\.2 \S+ idle timeout under load$/, `session ${i}`);
    assert.equal(await c.read(20000), null, `session ${i} closed after the 421`);
    dropped++;
  }
  assert.ok(dropped >= 1, 'idle sessions were dropped');
  // The session with a transaction was left alone: closing the idle ones brought the load below the
  // threshold before it had been idle for stress_idle_timeout_ms (under stress it would be closed too).
  assert.equal(busy.closed, false);
  assert.equal((await busy.cmd('RCPT TO:<alice@ours.test>'))?.code, 250);
  await busy.close();
  await settle();
  assert.ok(app.logs.some((l) => l.includes('under load: closed idle sessions')), 'stress closes are logged');
});

test('above the threshold a session that gave MAIL FROM and only sends NOOP is closed too; one actively sending DATA is kept', async () => {
  // 7 of 8 slots: above the threshold (6). Five sessions keep making progress (EHLO), so the load stays.
  const idle = await open(5, ['127.0.0.2', '127.0.0.3']);
  const [noop, data] = await open(2, ['127.0.0.4']);
  for (const c of [noop, data]) {
    assert.equal((await c.cmd('EHLO tx.example'))?.code, 250);
    assert.equal((await c.cmd('MAIL FROM:<sender@remote.test>'))?.code, 250);
    assert.equal((await c.cmd('RCPT TO:<alice@ours.test>'))?.code, 250);
  }
  assert.equal((await data.cmd('DATA'))?.code, 354);
  data.write('From: sender@remote.test\r\nTo: alice@ours.test\r\nSubject: slow but steady\r\n\r\n');
  // The transaction holder keeps sending NOOP (not progress); the DATA sender keeps sending lines.
  const deadline = Date.now() + 20000;
  while (!noop.closed && Date.now() < deadline) {
    noop.write('NOOP\r\n');
    data.write(`line ${Date.now()}\r\n`);
    for (const c of idle) c.write('EHLO busy.example\r\n');
    await sleep(250);
  }
  assert.ok(noop.closed, 'a transaction kept alive only by NOOP was closed under stress');
  assert.equal(data.closed, false, 'the session sending its message is kept');
  assert.ok(idle.every((c) => !c.closed), 'sessions making progress are kept');
  data.write('.\r\n');
  let r: Reply | null;
  do r = await data.read(20000);
  while (r && r.code !== 250 && r.code < 400);
  assert.equal(r?.code, 250, r?.text);
  for (const c of [...idle, data]) await c.close();
  await settle();
});
