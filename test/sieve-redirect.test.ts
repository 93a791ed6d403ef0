// Sieve `redirect` to an external target (issue #17 item 1): over the real MX, real Dovecot (Sieve
// in LMTP) and Letterbox's loopback injection listener, the redirected copy reaches the remote
// sink with the ORIGINAL envelope sender rewritten with SRS in the mailbox's domain, DKIM-signed
// and ARC-sealed by that domain (ARC verified by mailauth and, independently, dkimpy); a bounce to
// the SRS address goes back to the original sender; the redirect is attributed to the mailbox
// whose script ran (a forged X-Sieve-Redirected-From changes nothing), counts against that
// mailbox's sending caps (over them the message is kept in the mailbox), and a message that
// already went through the mailbox is not redirected again (kept instead).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { authenticate } from 'mailauth';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { call, waitFor } from './helpers/mailapi.ts';
import { RawSmtp } from './helpers/smtp-raw.ts';
import { createResolver } from '../src/dns/resolver.ts';
import { parseHeader } from '../src/submit/fixups.ts';
import { redirectedFrom, redirectLoops, sealInput } from '../src/smtp/inject/redirect.ts';

const run = promisify(execFile);
const PW = 'redirect test password 1';
const HOST = 'mail.letterbox.test';
const tok = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;
const fields = (h: string) => parseHeader(h.replace(/\n/g, '\r\n'));
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let cert: ReturnType<typeof testCert>;
let key: string;
let injectPort: number;
const dkimRecords: Record<string, string> = {};

test('redirectedFrom: only X-Sieve then X-Sieve-Redirected-From as the first two fields; a later copy never decides', () => {
  const ok = 'X-Sieve: Pigeonhole Sieve 0.5.19\nX-Sieve-Redirected-From: redir@ours.test\nDelivered-To: redir@ours.test\nSubject: x\n';
  assert.equal(redirectedFrom(fields(ok)), 'redir@ours.test');
  assert.equal(redirectedFrom(fields(ok.replace('redir@ours.test', '<redir@ours.test>'))), 'redir@ours.test');
  // Anything else is not a redirect (attributed by the envelope sender, or the From of a vacation reply).
  assert.equal(redirectedFrom(fields('Subject: x\nX-Sieve: Pigeonhole\nX-Sieve-Redirected-From: victim@ours.test\n')), null, 'not first');
  assert.equal(redirectedFrom(fields('X-Sieve: Pigeonhole\nMessage-ID: <1@x>\nX-Sieve-Redirected-From: victim@ours.test\n')), null, 'a notify mailto: header (third)');
  assert.equal(redirectedFrom(fields(ok + 'X-Sieve-Redirected-From: victim@ours.test\n')), 'redir@ours.test', "a sender's own copy, below Dovecot's");
  assert.equal(redirectedFrom(fields('X-Sieve: Pigeonhole\nX-Sieve-Redirected-From: not an address\n')), null);
  assert.equal(redirectedFrom(fields('X-Sieve-Redirected-From: victim@ours.test\nX-Sieve: Pigeonhole\n')), null, 'order');
});

test('redirectLoops: a Delivered-To naming the mailbox (or its plus-address) below the first Received is an earlier hop', () => {
  const top = 'X-Sieve: P\nX-Sieve-Redirected-From: redir@ours.test\nDelivered-To: redir@ours.test\nReceived: from mail by mail with LMTP\n';
  assert.equal(redirectLoops(fields(top + 'Received: from x by y\nSubject: s\n'), 'redir@ours.test'), false, "Dovecot's own Delivered-To of this delivery");
  assert.equal(redirectLoops(fields(top + 'Received: from x by y\nDelivered-To: Redir@ours.test\n'), 'redir@ours.test'), true);
  assert.equal(redirectLoops(fields(top + 'Delivered-To: redir+lists@ours.test\n'), 'redir@ours.test'), true);
  assert.equal(redirectLoops(fields(top + 'Delivered-To: other@ours.test\nDelivered-To: redirx@ours.test\n'), 'redir@ours.test'), false);
});

test('sealInput: only the MX verdicts of a message it delivered to this mailbox, never a failed chain', () => {
  const v = (arc: string, ids = ['mbx_1']) => ({ mailboxIds: ids, auth: { header: 'mail.test; spf=pass smtp.mailfrom=a@b.test', arc: { result: arc } } });
  assert.deepEqual(sealInput(v('none'), 'mbx_1'), { authResults: 'mail.test; spf=pass smtp.mailfrom=a@b.test', cv: 'none' });
  assert.deepEqual(sealInput(v('pass'), 'mbx_1'), { authResults: 'mail.test; spf=pass smtp.mailfrom=a@b.test', cv: 'pass' });
  assert.ok('skip' in sealInput(v('fail'), 'mbx_1'));
  assert.ok('skip' in sealInput(v('none', ['mbx_2']), 'mbx_1'));
  assert.ok('skip' in sealInput(null, 'mbx_1'));
});

before(async () => {
  cert = testCert(['mx.remote.test']);
  sink = await new Sink(cert).start();
  dns = await new TestDns().start();
  dns.mx('remote.test', 'mx.remote.test').mx('pass.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1').txt('pass.test', 'v=spf1 ip4:127.0.0.1 -all').txt('_dmarc.pass.test', 'v=DMARC1; p=reject');
  injectPort = await freePort();
  app = await startAppliance({
    hostname: HOST,
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\n[outbound]\nport = ${sink.port}\nretry_schedule = ["1s"]\nretry_jitter = 0\ntls_ca_file = "${join(cert.dir, 'cert.pem')}"\npoll_interval_ms = 200\n`,
    env: { LETTERBOX_LISTEN_INJECT: `127.0.0.1:${injectPort}` },
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  for (const m of ['redir', 'capped', 'victim']) await app.cliJson(['mailbox', 'add', `${m}@ours.test`, '--password', PW]);
  for (const r of (await app.cliJson(['dns', 'ours.test'])).records) {
    if (r.type !== 'TXT') continue;
    const v = r.value.replace(/"\s*"/g, '').replace(/^"|"$/g, '');
    dns.txt(r.name, v);
    if (r.purpose === 'dkim') dkimRecords[r.name] = v;
  }
  key = (await app.cliJson(['key', 'create', '--name', 'redir', '--scopes', 'mailboxes:*,messages:read'])).secret;
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/capped@ours.test/sieve/scripts')).status === 200, 'Dovecot to know the mailboxes');
  for (const [m, target] of [['redir', 'someone@remote.test'], ['capped', 'capped-target@remote.test']]) {
    const r = await call(app, key, 'PUT', `/mailboxes/${m}@ours.test/sieve/scripts/out`, { script: `redirect "${target}";\n`, activate: true });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
  if (cert) Sink.cleanupCert(cert.dir);
});

/** Sends over the MX from alice@pass.test (SPF and DMARC pass); resolves the reply code. */
async function mx(to: string, subject: string, extra: Record<string, string> = {}): Promise<number> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'client.pass.test' } as any);
  try {
    const info = await t.sendMail({ envelope: { from: 'alice@pass.test', to: [to] }, from: 'Alice <alice@pass.test>', to, subject, text: `${subject}\n`, headers: extra, messageId: `<${randomBytes(8).toString('hex')}@pass.test>` });
    return Number(info.response.slice(0, 3));
  } catch (err: any) {
    return err.responseCode ?? 0;
  } finally {
    t.close();
  }
}

const received = (subject: string) => sink.received.filter((r) => r.data.toString('utf8').includes(subject));
const queuedTo = async (rcpt: string) => (await app.cliJson(['queue', 'list', '--status', 'all', '--limit', '500'])).data.filter((e: any) => e.recipient === rcpt);
const inbox = async (mailbox: string, subject: string) => {
  const l = await call(app, key, 'GET', `/mailboxes/${mailbox}/messages?folder=INBOX&limit=100`);
  assert.equal(l.status, 200, JSON.stringify(l.json));
  return l.json.data.messages.filter((m: any) => m.subject === subject).length;
};

test('end to end: the redirect leaves with an SRS envelope sender, DKIM-signed and ARC-sealed by the mailbox domain; a forged X-Sieve-Redirected-From changes nothing', { timeout: 120000 }, async () => {
  const subject = tok('redirect');
  assert.equal(await mx('redir@ours.test', subject, { 'X-Sieve-Redirected-From': 'victim@ours.test' }), 250);
  await sink.waitFor(() => received(subject).length >= 1, 60000);
  const got = received(subject)[0];
  assert.deepEqual(got.to, ['someone@remote.test']);
  assert.match(got.from, /^SRS0=[A-Za-z0-9_-]{4}=[a-z2-7]{2}=pass\.test=alice@ours\.test$/);
  const raw = got.data.toString('utf8');
  const head = raw.split('\r\n\r\n')[0];
  assert.match(raw, /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none; d=ours\.test;/m);
  assert.match(raw, /^ARC-Authentication-Results: i=1; mail\.letterbox\.test;/m, 'the results our MX recorded');
  assert.match(raw, /^From: Alice <alice@pass\.test>\r?$/m, "the author's From is kept");
  // Attributed to the mailbox whose script ran (Dovecot's field, second from the top); the
  // sender's own copy (Pigeonhole 2.3 leaves it in place) decided nothing.
  assert.match(head, /^X-Sieve: Pigeonhole[^\r\n]*\r\nX-Sieve-Redirected-From: redir@ours\.test\r\n/m);
  assert.ok(app.logs.some((l) => l.includes('"Sieve mail accepted"') && l.includes('"kind":"redirect"') && l.includes('redir@ours.test')), 'logged as a redirect of redir@');
  assert.ok(!app.logs.some((l) => l.includes('"Sieve mail accepted"') && l.includes('victim@ours.test')), 'nothing attributed to victim@');
  // The receiver's view (mailauth): SPF for the SRS sender passes, the ARC chain is valid, DKIM d=ours.test passes.
  const resolver = createResolver({ servers: [dns.server], timeoutMs: 2000, clock: { now: () => Date.now() } });
  const res = await authenticate(got.data, { ip: '127.0.0.1', helo: HOST, sender: got.from, mta: 'receiver.test', resolver: resolver.resolve, disableBimi: true });
  assert.equal((res.arc as any).status.result, 'pass', JSON.stringify((res.arc as any).status));
  assert.equal((res.spf as any).status.result, 'pass');
  assert.ok((res.dkim as any).results.some((r: any) => r.signingDomain === 'ours.test' && r.status.result === 'pass'), JSON.stringify((res.dkim as any).results.map((r: any) => r.status)));
  // An independent verifier (dkimpy) agrees.
  const f = join(app.dir, `${subject}.eml`);
  const rf = join(app.dir, 'dkim-records.json');
  writeFileSync(f, got.data);
  writeFileSync(rf, JSON.stringify(dkimRecords));
  const { stdout } = await run('/usr/bin/python3', [join(import.meta.dirname, 'helpers', 'arcverify.py'), f, rf]);
  assert.equal(JSON.parse(stdout).cv, 'pass', stdout);
  // Redirected, not kept (redirect cancels the implicit keep).
  assert.equal(await inbox('redir@ours.test', subject), 0);

  // The SRS bounce path: a DSN to the SRS address goes back to the original sender.
  const { client } = await RawSmtp.open(app.ports.mx);
  await client.cmd('EHLO mx.remote.test');
  const bounce = tok('bounce');
  const r = await client.sendRaw('', [got.from], `From: Mail Delivery System <mailer-daemon@remote.test>\r\nTo: ${got.from}\r\nSubject: ${bounce}\r\nMessage-ID: <${bounce}@remote.test>\r\n\r\nundeliverable: someone@remote.test\r\n.\r\n`);
  assert.equal(r.data?.code, 250, r.data?.text);
  await client.close();
  await sink.waitFor(() => received(bounce).length >= 1, 60000);
  assert.deepEqual([received(bounce)[0].from, received(bounce)[0].to], ['', ['alice@pass.test']]);
});

test('a bounce (null sender) is redirected with the null sender (RFC 5228 §4.2), attributed by the field all the same', { timeout: 120000 }, async () => {
  const subject = tok('nullsender');
  const { client } = await RawSmtp.open(app.ports.mx);
  await client.cmd('EHLO mx.remote.test');
  const r = await client.sendRaw('', ['redir@ours.test'], `From: Mail Delivery System <mailer-daemon@remote.test>\r\nTo: redir@ours.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@remote.test>\r\n\r\nundeliverable\r\n.\r\n`);
  assert.equal(r.data?.code, 250, r.data?.text);
  await client.close();
  await sink.waitFor(() => received(subject).length >= 1, 60000);
  assert.deepEqual([received(subject)[0].from, received(subject)[0].to], ['', ['someone@remote.test']]);
  assert.match(received(subject)[0].data.toString('utf8'), /^ARC-Seal: i=1;/m);
});

test("the mailbox's sending caps: over them the redirect is not made and the message is kept in the mailbox", { timeout: 120000 }, async () => {
  assert.equal((await app.cli(['limits', 'capped@ours.test', '--messages-per-hour', '1'])).code, 0);
  const first = tok('cap1');
  const second = tok('cap2');
  assert.equal(await mx('capped@ours.test', first), 250);
  assert.equal(await mx('capped@ours.test', second), 250);
  // Both MX transactions ended after Dovecot ran the script (and the listener queued or refused).
  const q = await queuedTo('capped-target@remote.test');
  assert.equal(q.length, 1, 'only the first is redirected');
  assert.equal(await inbox('capped@ours.test', first), 0);
  assert.equal(await inbox('capped@ours.test', second), 1, 'the second is kept in the mailbox');
});

test('loop guard: a message that already went through the mailbox (its Delivered-To below our Received) is kept, not redirected again', { timeout: 120000 }, async () => {
  const subject = tok('loop');
  const before = (await queuedTo('someone@remote.test')).length;
  assert.equal(await mx('redir@ours.test', subject, { 'Delivered-To': 'redir@ours.test' }), 250);
  assert.equal(await inbox('redir@ours.test', subject), 1, 'kept in the mailbox');
  assert.equal((await queuedTo('someone@remote.test')).length, before, 'not queued');
  assert.ok(app.logs.some((l) => l.includes('redirect loop')), 'logged');
});

test('the injection listener does not take a third-position X-Sieve-Redirected-From as a redirect', async () => {
  const { client } = await RawSmtp.open(injectPort);
  await client.cmd('EHLO localhost');
  await client.cmd('MAIL FROM:<stranger@elsewhere.test>');
  await client.cmd('RCPT TO:<x@remote.test>');
  await client.cmd('DATA');
  const end = await client.cmd('X-Sieve: Pigeonhole\r\nMessage-ID: <a@b>\r\nX-Sieve-Redirected-From: victim@ours.test\r\nFrom: stranger@elsewhere.test\r\nSubject: hi\r\n\r\nx\r\n.');
  assert.equal(end?.code, 550, end?.text);
  assert.match(end?.text ?? '', /stranger@elsewhere\.test/);
  client.close();
});
