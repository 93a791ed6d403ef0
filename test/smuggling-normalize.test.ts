// SMTP smuggling, the other mode and the other direction (test/inbound.test.ts covers the default
// smtp.bare_newline = "reject"): with "normalize", "<LF>.<LF>" and friends become ordinary CRLF lines
// of ONE message, stored and forwarded with CRLF only, and never a second message; and whatever
// comes in on submission or the API leaves for a remote MX with CRLF line ends only, so no
// receiver down the line can read a bare LF as the end of DATA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { RawSmtp, authPlain } from './helpers/proof-smtp.ts';
import { createKey, call, waitFor } from './helpers/mailapi.ts';

const PW = 'smuggling password 1';
let app: Appliance;
let dns: TestDns;
let sink: Sink;

/** A bare LF (not after CR) or a bare CR (not before LF). */
const BARE = /(?<!\r)\n|\r(?!\n)/;

before(async () => {
  dns = await new TestDns().start();
  const cert = testCert(['mx.remote.test']);
  sink = await new Sink(cert).start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1');
  app = await startAppliance({
    extraToml: `[smtp]\nbare_newline = "normalize"\n[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[outbound]\nport = ${sink.port}\nipv4_only = true\ntls_ca_file = "${join(cert.dir, 'cert.pem')}"\n`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', PW]);
  // An alias that also forwards to a remote address: the normalized message leaves again.
  await app.cliJson(['alias', 'add', 'fwd@ours.test', 'alice@ours.test', 'far@remote.test']);
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
  await sink?.stop();
});

async function inbox(): Promise<Buffer[]> {
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, tls: { ca: applianceCert(app), servername: app.hostname }, auth: { user: 'alice@ours.test', pass: PW }, logger: false });
  c.on('error', () => {});
  await c.connect();
  try {
    const lock = await c.getMailboxLock('INBOX');
    try {
      const out: Buffer[] = [];
      if ((c.mailbox as any).exists > 0) for await (const m of c.fetch('1:*', { source: true })) out.push(m.source!);
      return out;
    } finally {
      lock.release();
    }
  } finally {
    await c.logout().catch(() => {});
  }
}

test('normalize: "<LF>.<LF>" with a smuggled second transaction is one message, stored and forwarded with CRLF only', async () => {
  const c = await RawSmtp.connect(app.ports.mx);
  await c.read(10000);
  await c.cmd('EHLO sender.example');
  assert.equal((await c.cmd('MAIL FROM:<x@sender.example>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<fwd@ours.test>')).code, 250);
  const body = 'Subject: normalize-one\r\nFrom: x@sender.example\r\n\r\nhello\n.\nMAIL FROM:<ceo@ours.test>\nRCPT TO:<alice@ours.test>\nDATA\nSubject: smuggled-two\n\nspoof\n.\nlast\rline\r\n';
  const r = await c.data(body, { raw: false });
  assert.equal(r.code, 250, r.text);
  // Exactly one reply for the whole DATA: nothing ran as commands.
  assert.equal((await c.cmd('NOOP')).code, 250);
  c.close();
  const stored = await waitFor(async () => (await inbox()).find((m) => m.includes('Subject: normalize-one')), 'the message in the mailbox');
  assert.doesNotMatch(stored.toString('latin1'), BARE, 'stored with CRLF only');
  assert.match(stored.toString('latin1'), /\r\nMAIL FROM:<ceo@ours\.test>\r\nRCPT TO:<alice@ours\.test>\r\nDATA\r\nSubject: smuggled-two\r\n/, 'the smuggled lines are ordinary content');
  assert.equal((await inbox()).filter((m) => m.includes('spoof') && !m.includes('normalize-one')).length, 0, 'no second message');
  const out = await waitFor(() => sink.received.find((x) => x.data.includes('Subject: normalize-one')), 'the forwarded copy at the remote MX', 30000);
  assert.doesNotMatch(out.data.toString('latin1'), BARE, 'forwarded with CRLF only');
  assert.equal(sink.received.filter((x) => x.data.includes('Subject: smuggled-two') && !x.data.includes('normalize-one')).length, 0);
});

test('outbound: a submission with bare line ends and an API message reach the remote MX with CRLF only (or the submission is refused)', async () => {
  const c = await RawSmtp.connect(app.ports.submissions, { tls: true, ca: applianceCert(app) });
  await c.read(10000);
  await c.cmd('EHLO client.example');
  assert.equal((await c.cmd(authPlain('alice@ours.test', PW))).code, 235);
  assert.equal((await c.cmd('MAIL FROM:<alice@ours.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<bob@remote.test>')).code, 250);
  const r = await c.data('From: alice@ours.test\r\nTo: bob@remote.test\r\nSubject: bare-out\r\n\r\none\ntwo\rthree\n.\nMAIL FROM:<x@y>\r\n', { raw: false });
  c.close();
  assert.match(String(r.code), /^(250|554)$/, `${r.code} ${r.text}`);
  const key = await createKey(app, 'send:write');
  const api = await call(app, key, 'POST', '/mailboxes/alice@ours.test/send', { to: ['bob@remote.test'], subject: 'api-out', text: 'one\ntwo\rthree\n.\nMAIL FROM:<x@y>\n' });
  assert.equal(api.status, 200, JSON.stringify(api.json));
  const wanted = r.code === 250 ? ['bare-out', 'api-out'] : ['api-out'];
  for (const s of wanted) {
    const got = await waitFor(() => sink.received.find((x) => x.data.includes(`Subject: ${s}`)), `${s} at the remote MX`, 30000);
    assert.doesNotMatch(got.data.toString('latin1'), BARE, `${s}: CRLF only on the wire`);
  }
});
