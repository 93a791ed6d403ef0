// Sending end to end against real components: a real `letterbox serve` (submission listeners,
// queue, Dovecot), a real DNS server (TestDns), a receiving smtp-server playing the remote MX,
// an HTTPS MTA-STS policy host, clients nodemailer / swaks / Python smtplib, python3-dkim as the
// independent DKIM verifier, and imapflow to read DSNs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { simpleParser } from 'mailparser';
import { startAppliance, applianceCert, freePort, doveadm, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { RawSmtp } from './helpers/smtp-raw.ts';

const run = promisify(execFile);
const PW = 'alice password 1234';
const BOB_PW = 'bob password 12345';
const CAROL_PW = 'carol password 1234';
const DAVE_PW = 'dave password 12345';
const ERIN_PW = 'erin password 12345';
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let sts: HttpsServer;
let cert: ReturnType<typeof testCert>;
let dkimRecords: Record<string, string> = {};
let policies: Record<string, string> = {};

before(async () => {
  cert = testCert(['mx.remote.test', 'mta-sts.sts.test', 'mta-sts.stsok.test', 'mta-sts.stsbad.test']);
  sink = await new Sink(cert).start();
  dns = await new TestDns().start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1');
  dns.add({ type: 'MX', name: 'nullmx.test', data: { preference: 0, exchange: '.' } });
  dns.mx('sts.test', 'mx.sts.test').a('mx.sts.test', '127.0.0.1').txt('_mta-sts.sts.test', 'v=STSv1; id=20261123').a('mta-sts.sts.test', '127.0.0.1');
  // stsok.test: enforce, MX listed, certificate valid for it. stsbad.test: enforce, MX listed, but
  // the MX's certificate does not name it.
  dns.mx('stsok.test', 'mx.remote.test').txt('_mta-sts.stsok.test', 'v=STSv1; id=1').a('mta-sts.stsok.test', '127.0.0.1');
  dns.mx('stsbad.test', 'mx.badcert.test').a('mx.badcert.test', '127.0.0.1').txt('_mta-sts.stsbad.test', 'v=STSv1; id=1').a('mta-sts.stsbad.test', '127.0.0.1');
  policies = { 'mta-sts.sts.test': 'mx.elsewhere.test', 'mta-sts.stsok.test': 'mx.remote.test', 'mta-sts.stsbad.test': 'mx.badcert.test' };
  const stsPort = await freePort();
  sts = createHttpsServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    const mx = policies[String(req.headers.host).replace(/:\d+$/, '')];
    if (req.url === '/.well-known/mta-sts.txt' && mx) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`version: STSv1\nmode: enforce\nmx: ${mx}\nmax_age: 86400\n`);
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => sts.listen(stsPort, '127.0.0.1', () => r()));
  app = await startAppliance({
    extraToml: `
[dns]
servers = ["${dns.server}"]
[outbound]
port = ${sink.port}
retry_schedule = ["1s"]
retry_jitter = 0
mta_sts_port = ${stsPort}
tls_ca_file = "${join(cert.dir, 'cert.pem')}"
poll_interval_ms = 200
[outbound.source_ips]
"127.0.0.5" = "out5.letterbox.test"
[outbound.domain_ips]
"other.test" = "127.0.0.5"
[submission]
auth_max_failures = 3
auth_delay_ms = 0
`,
  });
  await app.cliJson(['domain', 'add', 'example.test']);
  await app.cliJson(['mailbox', 'add', 'alice@example.test', '--password', PW]);
  await app.cliJson(['mailbox', 'add', 'bob@example.test', '--password', BOB_PW]);
  await app.cliJson(['mailbox', 'add', 'carol@example.test', '--password', CAROL_PW]);
  await app.cliJson(['mailbox', 'add', 'erin@example.test', '--password', ERIN_PW]);
  await app.cliJson(['domain', 'add', 'other.test']);
  await app.cliJson(['mailbox', 'add', 'dave@other.test', '--password', DAVE_PW]);
  await app.cliJson(['alias', 'add', 'sales@example.test', 'alice@example.test']);
  await app.cliJson(['alias', 'add', 'team@example.test', 'alice@example.test', 'bob@example.test']);
  for (const d of ['example.test', 'other.test']) {
    const recs = await app.cliJson(['dns', d]);
    for (const r of recs.records) if (r.purpose === 'dkim') dkimRecords[r.name] = r.value;
  }
  // Dovecot picks up new mailboxes within about a second: wait until it knows alice. (Asked with
  // doveadm, not by trying to log in: failed logins would count toward the login guard's limit,
  // which this file sets to 3 for the brute-force test.)
  for (let i = 0; i < 50; i++) {
    if ((await doveadm(app, ['user', 'alice@example.test'])).code === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
});

after(async () => {
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
  sts?.close();
  if (cert) Sink.cleanupCert(cert.dir);
});

function imap(user: string, pass: string) {
  return new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, tls: { ca: applianceCert(app), servername: 'localhost' }, auth: { user, pass }, logger: false });
}

/** Polls a mailbox's INBOX until a message matching `pred` arrives; returns its source. */
async function waitForMail(user: string, pass: string, pred: (subject: string) => boolean, timeoutMs = 30000): Promise<Buffer> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const c = imap(user, pass);
    c.on('error', () => {});
    await c.connect();
    const lock = await c.getMailboxLock('INBOX');
    try {
      for await (const m of c.fetch('1:*', { envelope: true, source: true })) {
        if (m.envelope?.subject && pred(m.envelope.subject)) return m.source!;
      }
    } catch {
      // empty mailbox: "1:*" matches nothing
    } finally {
      lock.release();
      await c.logout();
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`no matching message in ${user}'s INBOX after ${timeoutMs} ms`);
}

function transport(port: number, secure: boolean, user = 'alice@example.test', pass = PW, extra: Record<string, unknown> = {}) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure,
    requireTLS: !secure,
    auth: { user, pass },
    tls: { ca: applianceCert(app), servername: 'localhost' },
    ...extra,
  } as any);
}

async function entryFor(recipient: string, status = 'all'): Promise<any> {
  const r = await app.cliJson(['queue', 'list', '--status', status]);
  return r.data.find((e: any) => e.recipient === recipient);
}

async function waitEntry(recipient: string, pred: (e: any) => boolean, timeoutMs = 30000): Promise<any> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const e = await entryFor(recipient);
    if (e && pred(e)) return e;
    if (Date.now() > until) throw new Error(`queue entry for ${recipient} not as expected: ${JSON.stringify(e)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function dkimVerify(data: Buffer): Promise<{ a: string; d: string; s: string; h: string; ok: boolean }[]> {
  const f = join(app.dir, `verify-${Date.now()}-${Math.random()}.eml`);
  const rf = join(app.dir, 'dkim-records.json');
  writeFileSync(f, data);
  writeFileSync(rf, JSON.stringify(dkimRecords));
  const { stdout } = await run('/usr/bin/python3', [join(import.meta.dirname, 'helpers', 'dkimverify.py'), f, rf]);
  return JSON.parse(stdout);
}

/** Talks raw SMTP: sends each line after reading a reply; returns all replies. */
async function rawSmtp(port: number, lines: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    const replies: string[] = [];
    let buf = '';
    let i = 0;
    s.on('data', (d) => {
      buf += d.toString();
      // a complete reply: last line "NNN " + CRLF
      const m = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buf);
      if (!m) return;
      replies.push(buf.trim());
      buf = '';
      if (i < lines.length) s.write(lines[i++] + '\r\n');
      else s.end();
    });
    s.on('close', () => resolve(replies));
    s.on('error', reject);
  });
}

test('nodemailer on 587 (STARTTLS) and 465 (TLS): delivered to the remote MX, DKIM-signed with RSA and Ed25519 (python3-dkim verifies both)', async () => {
  const i1 = await transport(app.ports.submission, false).sendMail({ from: 'Alice <alice@example.test>', to: 'r1@remote.test', subject: 'via 587', text: 'hello over 587\n' });
  const i2 = await transport(app.ports.submissions, true).sendMail({ from: 'alice@example.test', to: 'r2@remote.test', subject: 'via 465', text: 'hello over 465\n' });
  assert.match(i1.response, /^250 /);
  assert.match(i2.response, /^250 /);
  await sink.waitFor(() => sink.for('r1@remote.test').length === 1 && sink.for('r2@remote.test').length === 1);
  for (const rcpt of ['r1@remote.test', 'r2@remote.test']) {
    const m = sink.for(rcpt)[0];
    assert.equal(m.from, 'alice@example.test');
    assert.equal(m.secure, true, 'opportunistic STARTTLS to the remote MX');
    assert.equal(m.helo, 'mail.letterbox.test');
    const sigs = await dkimVerify(m.data);
    assert.deepEqual(sigs.map((s) => s.a).sort(), ['ed25519-sha256', 'rsa-sha256']);
    for (const s of sigs) {
      assert.equal(s.ok, true, `signature ${s.a} s=${s.s} verifies`);
      assert.equal(s.d, 'example.test');
      assert.match(s.h.toLowerCase(), /from/);
    }
    const head = m.data.toString().split('\r\n\r\n')[0];
    assert.match(head, /^Received: from /m);
    assert.match(head, /with ESMTPSA/);
  }
  // The attempt is recorded: MX, addresses, TLS version and cipher, reply.
  const e = await waitEntry('r1@remote.test', (x) => x.status === 'delivered');
  const shown = await app.cliJson(['queue', 'show', e.id]);
  const a = shown.data.attemptLog.at(-1);
  assert.equal(a.outcome, 'delivered');
  assert.equal(a.mx, 'mx.remote.test');
  assert.equal(a.ip, '127.0.0.1');
  assert.equal(a.sourceIp, '127.0.0.1');
  assert.match(a.tlsVersion, /^TLSv1\.[23]$/);
  assert.ok(a.tlsCipher);
  assert.match(a.reply, /^250/);
});

test('swaks on 587 and 465: Bcc is stripped; Python smtplib (AUTH LOGIN and PLAIN): Message-ID and Date added', async () => {
  const common = ['--from', 'alice@example.test', '--auth-user', 'alice@example.test', '--auth-password', PW, '--header', 'Bcc: hidden@remote.test', '--header', 'Subject: swaks'];
  await run('swaks', ['--server', `127.0.0.1:${app.ports.submission}`, '-tls', '--auth', 'PLAIN', '--to', 's1@remote.test', ...common]);
  await run('swaks', ['--server', `127.0.0.1:${app.ports.submissions}`, '-tlsc', '--auth', 'LOGIN', '--to', 's2@remote.test', ...common]);
  const py = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1]); ctx.check_hostname = False
msg = "From: alice@example.test\\r\\nTo: p@remote.test\\r\\nSubject: smtplib\\r\\n\\r\\nno id, no date\\r\\n"
s = smtplib.SMTP("127.0.0.1", int(sys.argv[2])); s.starttls(context=ctx); s.ehlo()
s.user, s.password = "alice@example.test", sys.argv[4]
s.auth("LOGIN", s.auth_login, initial_response_ok=False)
s.sendmail("alice@example.test", ["p1@remote.test"], msg); s.quit()
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[3]), context=ctx)
s.login("alice@example.test", sys.argv[4])
s.sendmail("alice@example.test", ["p2@remote.test"], msg); s.quit()
`;
  const certFile = join(app.dir, 'certs', 'fullchain.pem');
  await run('/usr/bin/python3', ['-c', py, certFile, String(app.ports.submission), String(app.ports.submissions), PW]);
  await sink.waitFor(() => ['s1', 's2', 'p1', 'p2'].every((x) => sink.for(`${x}@remote.test`).length === 1));
  for (const x of ['s1', 's2']) {
    const head = sink.for(`${x}@remote.test`)[0].data.toString().split('\r\n\r\n')[0];
    assert.doesNotMatch(head, /^Bcc:/im, 'Bcc header removed');
  }
  for (const x of ['p1', 'p2']) {
    const m = await simpleParser(sink.for(`${x}@remote.test`)[0].data);
    assert.match(m.messageId ?? '', /@example\.test>?$/);
    assert.ok(m.date instanceof Date && !Number.isNaN(m.date.getTime()));
    const sigs = await dkimVerify(sink.for(`${x}@remote.test`)[0].data);
    assert.equal(sigs.length, 2);
    assert.ok(sigs.every((s) => s.ok));
  }
});

test('dedicated IPs: a sending domain mapped to an address sends from it with that address\'s EHLO name', async () => {
  await transport(app.ports.submission, false, 'dave@other.test', DAVE_PW).sendMail({ from: 'dave@other.test', to: 'ip1@remote.test', subject: 'from other', text: 'x' });
  await sink.waitFor(() => sink.for('ip1@remote.test').length === 1);
  const m = sink.for('ip1@remote.test')[0];
  assert.equal(m.remoteAddress, '127.0.0.5');
  assert.equal(m.helo, 'out5.letterbox.test');
  const e = await waitEntry('ip1@remote.test', (x) => x.status === 'delivered');
  const shown = await app.cliJson(['queue', 'show', e.id]);
  assert.equal(shown.data.attemptLog.at(-1).sourceIp, '127.0.0.5');
  const sigs = await dkimVerify(m.data);
  assert.deepEqual(sigs.map((s) => s.d), ['other.test', 'other.test']);
});

test('AUTH before STARTTLS on 587 → 530 5.7.0; MAIL without AUTH → 530', async () => {
  const replies = await rawSmtp(app.ports.submission, ['EHLO client.test', 'AUTH PLAIN ' + Buffer.from(`\0alice@example.test\0${PW}`).toString('base64'), 'MAIL FROM:<alice@example.test>', 'QUIT']);
  assert.match(replies[2], /^530 5\.7\.0 /);
  assert.match(replies[3], /^530 5\.7\.0 Authentication required/);
});

test('587: EHLO hides AUTH until STARTTLS (an early AUTH still gets 530 5.7.0); after STARTTLS it lists AUTH PLAIN LOGIN; 465 lists it at once', async () => {
  const { client } = await RawSmtp.open(app.ports.submission);
  try {
    const plain = await client.cmd('EHLO client.test');
    assert.equal(plain?.code, 250);
    assert.ok(plain!.lines.some((l) => /^250[ -]STARTTLS$/.test(l)), plain!.text);
    assert.ok(!plain!.lines.some((l) => /^250[ -]AUTH\b/.test(l)), plain!.text);
    assert.match((await client.cmd('AUTH LOGIN'))!.text, /^530 5\.7\.0 /);
    await client.starttls(applianceCert(app), 'localhost');
    const secure = await client.cmd('EHLO client.test');
    assert.ok(secure!.lines.some((l) => /^250[ -]AUTH PLAIN LOGIN$/.test(l)), secure!.text);
    assert.ok(!secure!.lines.some((l) => /^250[ -]STARTTLS$/.test(l)), secure!.text);
    const auth = await client.cmd('AUTH PLAIN ' + Buffer.from(`\0alice@example.test\0${PW}`).toString('base64'));
    assert.equal(auth?.code, 235, auth?.text);
  } finally {
    await client.close();
  }
  const tls = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect({ port: app.ports.submissions, host: '127.0.0.1', ca: applianceCert(app), servername: 'localhost' });
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      if (/^220 /m.test(buf) && !buf.includes('EHLO-SENT')) (s.write('EHLO client.test\r\n'), (buf += 'EHLO-SENT\n'));
      else if (/^250 /m.test(buf)) (s.end(), resolve(buf));
    });
    s.on('error', reject);
  });
  assert.match(tls, /^250-AUTH PLAIN LOGIN\r?$/m);
});

test('forged sender: MAIL FROM or header From not owned → 553 5.7.1; an alias pointing only to the mailbox is allowed', async () => {
  const t = transport(app.ports.submission, false);
  await assert.rejects(t.sendMail({ envelope: { from: 'bob@example.test', to: ['f1@remote.test'] }, from: 'alice@example.test', to: 'f1@remote.test', subject: 'x', text: 'x' }), (err: any) => {
    assert.equal(err.responseCode, 553);
    assert.match(err.response, /5\.7\.1/);
    return true;
  });
  await assert.rejects(t.sendMail({ envelope: { from: 'alice@example.test', to: ['f2@remote.test'] }, from: 'ceo@example.test', to: 'f2@remote.test', subject: 'x', text: 'x' }), (err: any) => {
    assert.equal(err.responseCode, 553);
    return true;
  });
  // team@ points to alice and bob: not alice's alone.
  await assert.rejects(t.sendMail({ from: 'team@example.test', to: 'f3@remote.test', subject: 'x', text: 'x' }), (err: any) => err.responseCode === 553);
  const ok = await t.sendMail({ from: 'sales@example.test', to: 'f4@remote.test', subject: 'as alias', text: 'x' });
  assert.match(ok.response, /^250/);
  await sink.waitFor(() => sink.for('f4@remote.test').length === 1);
  assert.equal(sink.for('f1@remote.test').length + sink.for('f2@remote.test').length + sink.for('f3@remote.test').length, 0);
});

test('brute force: failures per IP and account lock out even the right password (except on the owner\'s known network); unknown user and wrong password answer alike', async () => {
  const attempt = async (user: string, pass: string, localAddress: string) => {
    const t = transport(app.ports.submission, false, user, pass, { localAddress });
    try {
      await t.verify();
      return '235';
    } catch (err: any) {
      return String(err.response);
    }
  };
  // carol's own device logs in from 127.0.0.1 first: that network stays usable through her lockout.
  assert.equal(await attempt('carol@example.test', CAROL_PW, '127.0.0.1'), '235');
  const unknown = await attempt('nobody@example.test', 'whatever password', '127.0.0.3');
  const wrong = await attempt('carol@example.test', 'wrong password 1', '127.0.0.2');
  assert.match(unknown, /^535 5\.7\.8 /);
  assert.equal(unknown, wrong, 'same answer for unknown user and wrong password');
  assert.match(await attempt('carol@example.test', 'wrong password 2', '127.0.0.2'), /^535 /);
  assert.match(await attempt('carol@example.test', 'wrong password 3', '127.0.0.2'), /^535 /);
  // Locked: the right password is refused now, from this IP and for this account from elsewhere.
  assert.match(await attempt('carol@example.test', CAROL_PW, '127.0.0.2'), /^454 4\.7\.0 /);
  assert.match(await attempt('carol@example.test', CAROL_PW, '127.0.0.4'), /^454 4\.7\.0 /);
  assert.match(await attempt('bob@example.test', BOB_PW, '127.0.0.2'), /^454 4\.7\.0 /);
  // Others are not affected, nor is carol's known network (README "Login protection").
  assert.equal(await attempt('bob@example.test', BOB_PW, '127.0.0.1'), '235');
  assert.equal(await attempt('carol@example.test', CAROL_PW, '127.0.0.1'), '235');
});

test('a disabled mailbox cannot authenticate (535); a suspended domain cannot send (550 5.7.1, says so)', async () => {
  await app.cliJson(['mailbox', 'disable', 'erin@example.test']);
  await assert.rejects(transport(app.ports.submission, false, 'erin@example.test', ERIN_PW, { localAddress: '127.0.0.6' }).verify(), (err: any) => /^535 /.test(String(err.response)));
  await app.cliJson(['outbound', 'suspend', 'other.test']);
  await assert.rejects(transport(app.ports.submission, false, 'dave@other.test', DAVE_PW).sendMail({ from: 'dave@other.test', to: 'sus@remote.test', subject: 'x', text: 'x' }), (err: any) => {
    assert.equal(err.responseCode, 550);
    assert.match(err.response, /5\.7\.1 outbound mail for other\.test is suspended/);
    return true;
  });
  await app.cliJson(['outbound', 'resume', 'other.test']);
});

test('caps: recipients per message and messages per hour → 451 4.7.1 naming the cap', async () => {
  await app.cliJson(['limits', 'bob@example.test', '--messages-per-hour', '2', '--recipients-per-message', '2']);
  const t = transport(app.ports.submission, false, 'bob@example.test', BOB_PW);
  const i1 = await t.sendMail({ from: 'bob@example.test', to: ['c1@remote.test', 'c2@remote.test', 'c3@remote.test'], subject: 'caps 1', text: 'x' });
  assert.deepEqual(i1.accepted.sort(), ['c1@remote.test', 'c2@remote.test']);
  assert.deepEqual(i1.rejected, ['c3@remote.test']);
  assert.match(String((i1 as any).rejectedErrors[0].response), /^451 4\.7\.1 .*max_recipients_per_message/);
  await t.sendMail({ from: 'bob@example.test', to: 'c4@remote.test', subject: 'caps 2', text: 'x' });
  await assert.rejects(t.sendMail({ from: 'bob@example.test', to: 'c5@remote.test', subject: 'caps 3', text: 'x' }), (err: any) => {
    assert.equal(err.responseCode, 451);
    assert.match(err.response, /4\.7\.1 .*max_messages_per_hour/);
    return true;
  });
});

test('local recipients are delivered over LMTP at once (alias expanded), DKIM-signed', async () => {
  const info = await transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'team@example.test', subject: 'local team mail', text: 'hi team' });
  assert.match(info.response, /^250/);
  const src = await waitForMail('bob@example.test', BOB_PW, (s) => s === 'local team mail');
  const sigs = await dkimVerify(src);
  assert.equal(sigs.length, 2);
  assert.ok(sigs.every((s) => s.ok), JSON.stringify(sigs));
  await waitForMail('alice@example.test', PW, (s) => s === 'local team mail');
});

test('local routing is the MX\'s: bob+Lists@ lands in bob\'s existing "Lists" folder (case kept); an alias loop is refused 550 5.4.6 at RCPT', async () => {
  await app.cliJson(['alias', 'add', 'loopa@example.test', 'loopb@example.test']);
  await app.cliJson(['alias', 'add', 'loopb@example.test', 'loopa@example.test']);
  const bob = imap('bob@example.test', BOB_PW);
  await bob.connect();
  try {
    await bob.mailboxCreate('Lists');
    await bob.mailboxCreate('lists'); // a differently-cased folder that must stay empty
  } finally {
    await bob.logout();
  }
  const info = await transport(app.ports.submissions, true).sendMail({ from: 'alice@example.test', to: 'bob+Lists@example.test', subject: 'to the Lists folder', text: 'filed' });
  assert.match(info.response, /^250/);
  const c = imap('bob@example.test', BOB_PW);
  await c.connect();
  try {
    const st = await c.status('Lists', { messages: true });
    assert.equal(st && st.messages, 1, 'delivered into "Lists"');
    const lower = await c.status('lists', { messages: true });
    assert.equal(lower && lower.messages, 0, 'not into "lists"');
    const lock = await c.getMailboxLock('Lists');
    try {
      const m = await c.fetchOne('1', { envelope: true });
      assert.equal(m && m.envelope?.subject, 'to the Lists folder');
    } finally {
      lock.release();
    }
  } finally {
    await c.logout();
  }

  await assert.rejects(transport(app.ports.submissions, true).sendMail({ from: 'alice@example.test', to: 'loopa@example.test', subject: 'loop', text: 'x' }), (err: any) => {
    const e = err.rejectedErrors?.[0] ?? err;
    assert.equal(e.responseCode, 550, err.message);
    assert.match(e.response, /^550 5\.4\.6 .*[Ll]oop/, e.response);
    return true;
  });
  // The same answer for an alias loop next to a good recipient: the good one is delivered.
  const mixed = await transport(app.ports.submissions, true).sendMail({ from: 'alice@example.test', to: ['loopb@example.test', 'carol@example.test'], subject: 'loop and carol', text: 'x' });
  assert.deepEqual(mixed.rejected, ['loopb@example.test']);
  assert.deepEqual(mixed.accepted, ['carol@example.test']);
  await waitForMail('carol@example.test', CAROL_PW, (s) => s === 'loop and carol');
});

test('4xx then 2xx → delivered exactly once after the scheduled retry', async () => {
  sink.rcpt.set('flaky@remote.test', 'temp-once');
  await transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'flaky@remote.test', subject: 'flaky', text: 'x' });
  await sink.waitFor(() => sink.for('flaky@remote.test').length === 1);
  const e = await waitEntry('flaky@remote.test', (x) => x.status === 'delivered');
  assert.equal(e.attempts, 2);
  const shown = await app.cliJson(['queue', 'show', e.id]);
  assert.deepEqual(shown.data.attemptLog.map((a: any) => a.outcome), ['deferred', 'delivered']);
  assert.match(shown.data.attemptLog[0].reply, /^451/);
  assert.match(shown.data.attemptLog[0].transcript, /RCPT TO/);
  assert.equal(sink.for('flaky@remote.test').length, 1);
});

test('5xx → bounced, DSN (multipart/report) in the sender INBOX, recipient suppressed and refused later with 550', async () => {
  sink.rcpt.set('gone@remote.test', 'perm');
  await transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'gone@remote.test', subject: 'to a gone address', text: 'x' });
  const e = await waitEntry('gone@remote.test', (x) => x.status === 'bounced');
  assert.equal(e.lastCode, 550);
  const dsn = await waitForMail('alice@example.test', PW, (s) => s.startsWith('Undelivered Mail Returned to Sender') && s.includes('to a gone address'));
  const text = dsn.toString();
  assert.match(text, /^Return-Path: <>/m, 'DSN sent from the null sender');
  assert.match(text, /Content-Type: multipart\/report; report-type=delivery-status/);
  assert.match(text, /Final-Recipient: rfc822; gone@remote\.test/);
  assert.match(text, /Action: failed/);
  assert.match(text, /Status: 5\.1\.1/);
  assert.match(text, /Content-Type: text\/rfc822-headers[\s\S]*Subject: to a gone address/);
  // The DSN is DKIM-signed like any other outgoing message and verifies with python3-dkim.
  const sigs = await dkimVerify(dsn);
  assert.ok(sigs.length >= 1, 'the DSN carries a DKIM signature');
  assert.ok(sigs.every((x) => x.ok && x.d === 'example.test'), JSON.stringify(sigs));
  const sup = await app.cliJson(['suppression', 'list', 'example.test']);
  assert.ok(sup.data.some((s: any) => s.address === 'gone@remote.test'));
  await assert.rejects(transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'gone@remote.test', subject: 'again', text: 'x' }), (err: any) => {
    assert.match(String(err.rejectedErrors?.[0]?.response ?? err.response), /^550 5\.7\.1 .*suppression/);
    return true;
  });
  await app.cliJson(['suppression', 'rm', 'example.test', 'gone@remote.test']);
});

test('null MX (RFC 7505) → permanent failure at once, no connection attempt', async () => {
  const before = sink.received.length;
  await transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'x@nullmx.test', subject: 'null mx', text: 'x' });
  const e = await waitEntry('x@nullmx.test', (x) => x.status === 'bounced');
  assert.equal(e.attempts, 1);
  assert.match(e.lastReply, /^556 5\.1\.10 /);
  await waitForMail('alice@example.test', PW, (s) => s.includes('null mx'));
  assert.equal(sink.received.filter((r) => r.to.includes('x@nullmx.test')).length, 0);
  assert.ok(sink.received.length >= before);
});

test('MTA-STS enforce with no matching MX → deferred (never sent in the clear or to an unlisted MX)', async () => {
  await transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'y@sts.test', subject: 'sts', text: 'x' });
  const e = await waitEntry('y@sts.test', (x) => x.attempts >= 1);
  assert.equal(e.status === 'queued' || e.status === 'inflight', true);
  assert.match(e.lastReply, /^451 4\.7\.5 MTA-STS/);
  assert.equal(sink.for('y@sts.test').length, 0);
  const rm = await app.cliJson(['queue', 'rm', e.id]).catch(async () => {
    // it may be in flight at this instant: retry once after it settles
    await waitEntry('y@sts.test', (x) => x.status === 'queued');
    return app.cliJson(['queue', 'rm', e.id]);
  });
  assert.equal(rm.data.status, 'cancelled');
});

test('MTA-STS enforce with a listed MX: delivered over verified TLS; a listed MX whose certificate does not match → deferred', async () => {
  const t = transport(app.ports.submission, false);
  await t.sendMail({ from: 'alice@example.test', to: 'z@stsok.test', subject: 'sts ok', text: 'x' });
  await t.sendMail({ from: 'alice@example.test', to: 'z@stsbad.test', subject: 'sts bad cert', text: 'x' });
  await sink.waitFor(() => sink.for('z@stsok.test').length === 1);
  assert.equal(sink.for('z@stsok.test')[0].secure, true);
  const bad = await waitEntry('z@stsbad.test', (x) => x.attempts >= 1 && x.status === 'queued');
  assert.match(bad.lastReply, /^4/);
  const shown = await app.cliJson(['queue', 'show', bad.id]);
  assert.match(shown.data.attemptLog[0].transcript, /certificate|altnames|ERR_TLS|ETLS/i);
  assert.equal(sink.for('z@stsbad.test').length, 0, 'nothing sent to an MX that failed certificate validation');
  await app.cliJson(['queue', 'rm', bad.id]).catch(() => {});
});

test('a connection to an MX is reused for the next message', async () => {
  const t = transport(app.ports.submission, false);
  await t.sendMail({ from: 'alice@example.test', to: 'reuse1@remote.test', subject: 'reuse 1', text: 'x' });
  await sink.waitFor(() => sink.for('reuse1@remote.test').length === 1);
  await t.sendMail({ from: 'alice@example.test', to: 'reuse2@remote.test', subject: 'reuse 2', text: 'x' });
  await sink.waitFor(() => sink.for('reuse2@remote.test').length === 1);
  assert.equal(sink.for('reuse2@remote.test')[0].session, sink.for('reuse1@remote.test')[0].session);
});

test('queue CLI: retry --all / --domain / ID, and errors that say what to do', async () => {
  const r1 = await app.cli(['queue', 'show', 'q_nope']);
  assert.equal(r1.code, 2);
  assert.match(r1.stderr, /queue list/);
  const r2 = await app.cli(['queue', 'retry']);
  assert.notEqual(r2.code, 0);
  const all = await app.cliJson(['queue', 'retry', '--all']);
  assert.equal(typeof all.data.retried, 'number');
  const dom = await app.cliJson(['queue', 'retry', '--domain', 'remote.test']);
  assert.equal(typeof dom.data.retried, 'number');
});

test('SIGKILL during delivery, then restart → delivered; at most one extra copy (the one in flight at the crash)', async () => {
  sink.hangOnce.add('crash@remote.test');
  const hung = new Promise<void>((r) => (sink.onHang = r));
  await transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'crash@remote.test', subject: 'crash', text: 'x' });
  await hung; // the remote has the whole message but has not answered DATA
  await app.kill('SIGKILL');
  await app.restart();
  await sink.waitFor(() => sink.for('crash@remote.test').length === 1);
  const e = await waitEntry('crash@remote.test', (x) => x.status === 'delivered');
  assert.equal(e.attempts, 1, 'the interrupted attempt was never recorded; the reclaimed one delivered');
  const transmissions = sink.unanswered.filter((r) => r.to.includes('crash@remote.test')).length + sink.for('crash@remote.test').length;
  assert.ok(transmissions <= 2, `at most one extra transmission (got ${transmissions})`);
  assert.equal(sink.for('crash@remote.test').length, 1, 'accepted exactly once by the remote');
  assert.equal(sink.for('flaky@remote.test').length, 1, 'nothing delivered earlier was sent again');
});

test('MTA-STS policies survive a restart: with its DNS record and policy file gone, sts.test is still enforced', async () => {
  // The appliance was restarted by the previous test; its memory is fresh.
  dns.remove('_mta-sts.sts.test', 'TXT');
  delete policies['mta-sts.sts.test'];
  await transport(app.ports.submission, false).sendMail({ from: 'alice@example.test', to: 'y2@sts.test', subject: 'sts after restart', text: 'x' });
  const e = await waitEntry('y2@sts.test', (x) => x.attempts >= 1);
  assert.match(e.lastReply, /^451 4\.7\.5 MTA-STS/);
  assert.equal(sink.for('y2@sts.test').length, 0);
});

test('SIGTERM: graceful stop, exit code 0', async () => {
  assert.equal(await app.stop(), 0);
});
