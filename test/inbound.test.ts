// Inbound mail on the MX port against the real listener (a `letterbox serve` child), a real Dovecot,
// a real DNS server on loopback (TestDns) and, for forwards, the real outbound queue delivering to
// a local SMTP sink. One appliance for the whole file; the Dovecot-outage test runs last.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { SMTPServer } from 'smtp-server';
import Database from 'better-sqlite3';
import { authenticate, dkimSign } from 'mailauth';
import { startAppliance, applianceCert, freePort, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { RawSmtp, type Reply } from './helpers/smtp-raw.ts';
import { createResolver } from '../src/dns/resolver.ts';

const run = promisify(execFile);
const PW = 'inbound test password 123';
const HOST = 'mail.letterbox.test';
const tok = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

let app: Appliance;
let dns: TestDns;
let cert: string;
let sink: SMTPServer;
let sinkPort: number;
const sunk: { from: string; to: string[]; raw: string }[] = [];
const imaps = new Map<string, ImapFlow>();
const dkimKey = generateKeyPairSync('rsa', { modulusLength: 2048 });

before(async () => {
  dns = await new TestDns().start();
  sinkPort = await freePort();
  sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        sunk.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString() });
        cb();
      });
    },
  });
  await new Promise<void>((r) => sink.listen(sinkPort, '127.0.0.1', () => r()));
  app = await startAppliance({
    hostname: HOST,
    extraToml: `
[dns]
servers = ["${dns.server}"]
timeout_ms = 1500
[smtp]
max_message_size = "200k"
max_recipients = 5
max_connections_per_ip = 60
max_connections = 80
max_errors = 5
max_line_length = 1024
socket_timeout_ms = 5000
command_timeout_ms = 8000
data_timeout_ms = 8000
[outbound]
port = ${sinkPort}
mta_sts = false
`,
  });
  cert = applianceCert(app);
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['domain', 'add', 'catch.test']);
  for (const m of ['alice', 'bob', 'full', 'carol']) await app.cliJson(['mailbox', 'add', `${m}@ours.test`, '--password', PW]);
  await app.cliJson(['mailbox', 'add', 'tight@ours.test', '--password', PW, '--quota', '3k']);
  await app.cliJson(['mailbox', 'disable', 'carol@ours.test']);
  await app.cliJson(['alias', 'add', 'info@ours.test', 'alice@ours.test', 'bob@ours.test']);
  await app.cliJson(['alias', 'add', 'team@ours.test', 'info@ours.test', 'alice@ours.test']);
  await app.cliJson(['alias', 'add', 'loop1@ours.test', 'loop2@ours.test']);
  await app.cliJson(['alias', 'add', 'loop2@ours.test', 'loop1@ours.test']);
  await app.cliJson(['alias', 'add', '*@catch.test', 'bob@ours.test']);
  await app.cliJson(['alias', 'add', 'fwd@ours.test', 'friend@remote.test']);
  // Our own domain's records (SPF with 127.0.0.1, DKIM keys for ARC), as `letterbox dns` prints them.
  const recs = await app.cliJson(['dns', 'ours.test']);
  for (const r of recs.records ?? recs.data.records) if (r.type === 'TXT') dns.txt(r.name, r.value.replace(/"\s*"/g, '').replace(/^"|"$/g, ''));
  const p = (dkimKey.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64');
  dns
    .txt('pass.test', 'v=spf1 ip4:127.0.0.1 -all')
    .txt('_dmarc.pass.test', 'v=DMARC1; p=reject')
    .txt('fail.test', 'v=spf1 -all')
    .txt('reject.test', 'v=spf1 -all')
    .txt('_dmarc.reject.test', 'v=DMARC1; p=reject')
    .txt('quar.test', 'v=spf1 -all')
    .txt('_dmarc.quar.test', 'v=DMARC1; p=quarantine')
    .txt('dkim.test', 'v=spf1 -all')
    .txt('_dmarc.dkim.test', 'v=DMARC1; p=reject')
    .txt('sel1._domainkey.dkim.test', `v=DKIM1; k=rsa; p=${p}`)
    .mx('remote.test', 'sink.remote.test')
    .a('sink.remote.test', '127.0.0.1');
  // Dovecot re-reads its users file at most once a second.
  await sleep(1500);
});

after(async () => {
  for (const c of imaps.values()) await c.logout().catch(() => {});
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
  await new Promise<void>((r) => (sink ? sink.close(() => r()) : r()));
});

function message(o: { from: string; to?: string; subject: string; body?: string; extra?: string }): string {
  return [
    `From: ${o.from}`,
    `To: ${o.to ?? 'someone@ours.test'}`,
    `Subject: ${o.subject}`,
    `Message-ID: <${randomBytes(8).toString('hex')}@${o.from.split('@')[1]}>`,
    `Date: ${new Date().toUTCString()}`,
    ...(o.extra ? [o.extra] : []),
    '',
    o.body ?? 'Hello from the inbound tests.',
    '',
  ].join('\r\n');
}

/** Sends with nodemailer (STARTTLS unless tls: false); resolves the final reply or the error reply. */
async function send(from: string, to: string[], raw: string, o: { tls?: boolean; helo?: string } = {}): Promise<{ code: number; response: string }> {
  const t = nodemailer.createTransport({
    host: '127.0.0.1',
    port: app.ports.mx,
    secure: false,
    requireTLS: o.tls !== false,
    ignoreTLS: o.tls === false,
    tls: { ca: cert, servername: HOST },
    name: o.helo ?? 'client.pass.test',
  });
  try {
    const info = await t.sendMail({ envelope: { from, to }, raw });
    return { code: Number(info.response.slice(0, 3)), response: info.response };
  } catch (err: any) {
    return { code: err.responseCode ?? 0, response: String(err.response ?? err.message) };
  } finally {
    t.close();
  }
}

async function imap(user: string): Promise<ImapFlow> {
  let c = imaps.get(user);
  if (c && c.usable) return c;
  c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user, pass: PW }, logger: false, tls: { ca: cert, servername: HOST } });
  await c.connect();
  imaps.set(user, c);
  return c;
}

/** Sources of the messages in `folder` whose Subject contains `token`, read over IMAP. */
async function find(user: string, folder: string, token: string): Promise<string[]> {
  const c = await imap(user);
  const lock = await c.getMailboxLock(folder);
  try {
    await c.noop();
    const uids = await c.search({ subject: token }, { uid: true });
    if (!uids || uids.length === 0) return [];
    const out: string[] = [];
    for await (const m of c.fetch(uids, { source: true }, { uid: true })) out.push(m.source!.toString());
    return out;
  } finally {
    lock.release();
  }
}

async function raw(): Promise<RawSmtp> {
  const { client, greeting } = await RawSmtp.open(app.ports.mx);
  assert.equal(greeting?.code, 220);
  const ehlo = await client.cmd('EHLO client.pass.test');
  assert.equal(ehlo?.code, 250);
  return client;
}

const headerOf = (src: string) => src.slice(0, src.indexOf('\r\n\r\n'));

test('EHLO advertises PIPELINING, 8BITMIME, SMTPUTF8, SIZE, STARTTLS, ENHANCEDSTATUSCODES and no AUTH, before and after STARTTLS', async () => {
  const { client, greeting } = await RawSmtp.open(app.ports.mx);
  assert.match(greeting!.text, new RegExp(`^220 ${HOST.replace(/\./g, '\\.')} `));
  const ehlo = (await client.cmd('EHLO client.pass.test'))!;
  for (const ext of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'SIZE 204800', 'STARTTLS', 'ENHANCEDSTATUSCODES']) assert.ok(ehlo.lines.some((l) => l.slice(4) === ext), `${ext} in ${ehlo.text}`);
  assert.ok(!ehlo.lines.some((l) => l.slice(4).startsWith('AUTH')), 'no AUTH on the MX port');
  await client.starttls(cert, HOST);
  const ehlo2 = (await client.cmd('EHLO client.pass.test'))!;
  assert.ok(!ehlo2.lines.some((l) => l.slice(4).startsWith('AUTH')), 'no AUTH after STARTTLS either');
  assert.ok(!ehlo2.lines.some((l) => l.slice(4) === 'STARTTLS'));
  const auth = (await client.cmd('AUTH PLAIN AGFsaWNlQG91cnMudGVzdABwYXNzd29yZA=='))!;
  assert.ok(auth.code >= 500, auth.text);
  await client.close();
});

test('nodemailer over STARTTLS: delivered to INBOX (read with imapflow) with Received (TLS details) and Authentication-Results spf=pass dmarc=pass, and a message.received event', async () => {
  const subject = tok('nm');
  const r = await send('alice@pass.test', ['alice@ours.test'], message({ from: 'Alice <alice@pass.test>', subject }));
  assert.equal(r.code, 250, r.response);
  assert.match(r.response, /^250 2\.6\.0 /);
  const [src, ...more] = await find('alice@ours.test', 'INBOX', subject);
  assert.ok(src, 'delivered');
  assert.equal(more.length, 0);
  const h = headerOf(src);
  assert.match(h, new RegExp(`Received: from client\\.pass\\.test \\(.*\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby ${HOST.replace(/\./g, '\\.')} \\(Letterbox\\) with ESMTPS \\(TLSv1\\.[23] [A-Z0-9_-]+\\)`));
  assert.match(h, new RegExp(`Authentication-Results: ${HOST.replace(/\./g, '\\.')};`));
  assert.match(h, /spf=pass [^;]*smtp\.mailfrom=alice@pass\.test/);
  assert.match(h, /dmarc=pass[^;]*header\.from=pass\.test/);
  assert.match(h, /dkim=none/);
  // The checks asked the configured resolver (the test DNS server), not the system's.
  assert.ok(dns.queries.some((q) => q.name === '_dmarc.pass.test' && q.type === 'TXT'));
  assert.ok(dns.queries.some((q) => q.name === 'pass.test' && q.type === 'TXT'));
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  try {
    const rows = db.prepare("SELECT mailbox_id, domain, data FROM events WHERE type = 'message.received'").all() as { mailbox_id: string; domain: string; data: string }[];
    const ev = rows.map((x) => ({ ...x, data: JSON.parse(x.data) })).find((x) => x.data.subject === subject);
    assert.ok(ev, 'message.received recorded');
    assert.equal(ev.domain, 'ours.test');
    assert.ok(ev.mailbox_id.startsWith('mbx_'));
    assert.equal(ev.data.mailbox, 'alice@ours.test');
    assert.equal(ev.data.from, 'alice@pass.test');
    assert.equal(ev.data.headerFrom, 'Alice <alice@pass.test>');
    assert.deepEqual({ spf: ev.data.authentication.spf, dmarc: ev.data.authentication.dmarc }, { spf: 'pass', dmarc: 'pass' });
  } finally {
    db.close();
  }
});

test('swaks (plain and STARTTLS) to the MX port: delivered', async () => {
  for (const tls of [false, true]) {
    const subject = tok(tls ? 'swaks-tls' : 'swaks');
    const args = ['--server', '127.0.0.1', '--port', String(app.ports.mx), '--helo', 'client.pass.test', '--from', 'bob@pass.test', '--to', 'bob@ours.test', '--header', `Subject: ${subject}`, '--header', 'From: bob@pass.test', '--body', 'swaks body'];
    if (tls) args.push('--tls', '--tls-verify', '--tls-ca-path', join(app.dir, 'certs', 'fullchain.pem'), '--tls-sni', HOST);
    const { stdout } = await run('swaks', args);
    assert.match(stdout, /<[-~]  250 2\.6\.0 OK: message accepted/);
    const found = await find('bob@ours.test', 'INBOX', subject);
    assert.equal(found.length, 1, subject);
    assert.match(headerOf(found[0]), tls ? /with ESMTPS \(TLS/ : /with ESMTP\r\n/);
  }
});

test('Authentication-Results for SPF fail (accepted by default) and for a domain with no records (none)', async () => {
  const s1 = tok('spffail');
  assert.equal((await send('x@fail.test', ['alice@ours.test'], message({ from: 'x@fail.test', subject: s1 }))).code, 250);
  const h1 = headerOf((await find('alice@ours.test', 'INBOX', s1))[0]);
  assert.match(h1, /spf=fail [^;]*smtp\.mailfrom=x@fail\.test/);
  assert.match(h1, /dmarc=none/);
  const s2 = tok('none');
  assert.equal((await send('x@nodns.test', ['alice@ours.test'], message({ from: 'x@nodns.test', subject: s2 }))).code, 250);
  const h2 = headerOf((await find('alice@ours.test', 'INBOX', s2))[0]);
  assert.match(h2, /spf=none/);
  assert.match(h2, /dkim=none/);
  assert.match(h2, /dmarc=none/);
});

test('a message DKIM-signed (mailauth dkimSign) with a key published in the test DNS → dkim=pass, and DMARC passes through DKIM although SPF fails', async () => {
  const subject = tok('dkim');
  const msg = message({ from: 'news@dkim.test', subject });
  const signed = await dkimSign(msg, { canonicalization: 'relaxed/relaxed', signatureData: [{ signingDomain: 'dkim.test', selector: 'sel1', privateKey: dkimKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, algorithm: 'rsa-sha256' }] } as any);
  assert.equal(signed.errors.length, 0);
  const r = await send('news@dkim.test', ['alice@ours.test'], signed.signatures + msg);
  assert.equal(r.code, 250, r.response);
  const h = headerOf((await find('alice@ours.test', 'INBOX', subject))[0]);
  assert.match(h, /dkim=pass header\.i=@dkim\.test header\.s=sel1/);
  assert.match(h, /spf=fail/);
  assert.match(h, /dmarc=pass/);
  // The stored copy still verifies with an independent verifier (python3-dkim): receiving did not alter
  // what the signature covers.
  const [stored] = await find('alice@ours.test', 'INBOX', subject);
  const file = join(app.dir, `${subject}.eml`);
  const recs = join(app.dir, `${subject}.json`);
  writeFileSync(file, stored);
  writeFileSync(recs, JSON.stringify({ 'sel1._domainkey.dkim.test': `v=DKIM1; k=rsa; p=${(dkimKey.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64')}` }));
  const { stdout } = await run('/usr/bin/python3', [join(import.meta.dirname, 'helpers', 'dkimverify.py'), file, recs]);
  assert.deepEqual(JSON.parse(stdout).map((x: any) => [x.d, x.ok]), [['dkim.test', true]]);
});

test('pre-existing Authentication-Results claiming our host name are removed; others are kept', async () => {
  const subject = tok('spoofar');
  const extra = [`Authentication-Results: ${HOST}; dkim=pass header.d=bank.test; dmarc=pass header.from=bank.test`, 'Authentication-Results: other.example; spf=pass smtp.mailfrom=x@fail.test'].join('\r\n');
  assert.equal((await send('x@fail.test', ['alice@ours.test'], message({ from: 'x@fail.test', subject, extra }))).code, 250);
  const h = headerOf((await find('alice@ours.test', 'INBOX', subject))[0]);
  const ours = h.split(/\r\n(?![ \t])/).filter((f) => f.toLowerCase().startsWith(`authentication-results: ${HOST}`));
  assert.equal(ours.length, 1, 'only the one we added');
  assert.doesNotMatch(ours[0], /bank\.test/);
  assert.match(h, /Authentication-Results: other\.example; spf=pass/);
});

test('DMARC p=reject spoof → 550 5.7.1, nothing delivered', async () => {
  const subject = tok('spoof');
  const r = await send('ceo@reject.test', ['alice@ours.test'], message({ from: 'CEO <ceo@reject.test>', subject }));
  assert.equal(r.code, 550, r.response);
  assert.match(r.response, /^550 5\.7\.1 .*DMARC/);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 0);
  assert.equal((await find('alice@ours.test', 'Junk', subject)).length, 0);
});

test('DMARC p=quarantine failure → delivered into the Junk folder, not INBOX', async () => {
  const subject = tok('quar');
  const r = await send('x@quar.test', ['alice@ours.test', 'info@ours.test'], message({ from: 'x@quar.test', subject }));
  assert.equal(r.code, 250, r.response);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 0);
  assert.equal((await find('alice@ours.test', 'Junk', subject)).length, 1, 'once, although alice is named directly and via the alias');
  assert.equal((await find('bob@ours.test', 'Junk', subject)).length, 1);
});

test('aliases (nested, each mailbox once), catch-all, alias loops', async () => {
  const subject = tok('alias');
  const r = await send('x@pass.test', ['team@ours.test'], message({ from: 'x@pass.test', subject }));
  assert.equal(r.code, 250, r.response);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 1);
  assert.equal((await find('bob@ours.test', 'INBOX', subject)).length, 1);
  const s2 = tok('catchall');
  assert.equal((await send('x@pass.test', ['whoever@catch.test'], message({ from: 'x@pass.test', subject: s2 }))).code, 250);
  assert.equal((await find('bob@ours.test', 'INBOX', s2)).length, 1);
  const c = await raw();
  assert.equal((await c.cmd('MAIL FROM:<x@pass.test>'))?.code, 250);
  assert.match((await c.cmd('RCPT TO:<loop1@ours.test>'))!.text, /^550 5\.4\.6 /);
  await c.close();
});

test('plus addressing: user+folder files into that folder when it exists, else INBOX; never into Sent', async () => {
  const c = await imap('alice@ours.test');
  await c.mailboxCreate('Lists').catch(() => {});
  const s1 = tok('plus');
  assert.equal((await send('x@pass.test', ['alice+Lists@ours.test'], message({ from: 'x@pass.test', subject: s1 }))).code, 250);
  assert.equal((await find('alice@ours.test', 'Lists', s1)).length, 1);
  assert.equal((await find('alice@ours.test', 'INBOX', s1)).length, 0);
  const s2 = tok('plus-missing');
  assert.equal((await send('x@pass.test', ['alice+nosuchfolder@ours.test'], message({ from: 'x@pass.test', subject: s2 }))).code, 250);
  assert.equal((await find('alice@ours.test', 'INBOX', s2)).length, 1);
  // Nobody outside can file into Sent (or Drafts, Trash): alice+Sent@ goes to INBOX.
  const s3 = tok('plus-sent');
  assert.equal((await send('x@pass.test', ['alice+Sent@ours.test'], message({ from: 'x@pass.test', subject: s3 }))).code, 250);
  assert.equal((await find('alice@ours.test', 'INBOX', s3)).length, 1);
  assert.equal((await find('alice@ours.test', 'Sent', s3)).length, 0);
});

test('unknown user → 550 5.1.1, disabled mailbox → 550 5.2.1, and a valid recipient in the same transaction still gets the message', async () => {
  const c = await raw();
  assert.equal((await c.cmd('MAIL FROM:<x@pass.test>'))?.code, 250);
  assert.match((await c.cmd('RCPT TO:<nobody@ours.test>'))!.text, /^550 5\.1\.1 /);
  assert.match((await c.cmd('RCPT TO:<carol@ours.test>'))!.text, /^550 5\.2\.1 /);
  assert.match((await c.cmd('RCPT TO:<alice@ours.test>'))!.text, /^250 2\.1\.5 /);
  const subject = tok('mixed');
  assert.equal((await c.cmd('DATA'))?.code, 354);
  c.write(message({ from: 'x@pass.test', subject }) + '.\r\n');
  assert.equal((await c.read())?.code, 250);
  await c.close();
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 1);
});

test('a bounce (null envelope sender) is delivered; SPF is then checked for the HELO name', async () => {
  const subject = tok('nullsender');
  const c = await raw();
  const r = await c.sendRaw('', ['alice@ours.test'], `From: MAILER-DAEMON@nodns.test\r\nSubject: ${subject}\r\n\r\nbounce\r\n.\r\n`);
  assert.equal(r.data?.code, 250, r.data?.text);
  await c.close();
  const [src] = await find('alice@ours.test', 'INBOX', subject);
  assert.ok(src);
  assert.match(headerOf(src), /spf=\w+ [^;]*smtp\.helo=client\.pass\.test/);
});

test('relay attempts are refused (never an open relay): other domain, quoted, percent hack, source route, bang path, trailing dot, address literal', async () => {
  const tricks: [string, RegExp][] = [
    ['alice@other.test', /^554 5\.7\.1 /],
    ['postmaster@other.test', /^554 5\.7\.1 /],
    ['"alice@other.test"@ours.test', /^5\d\d /],
    ['alice%other.test@ours.test', /^554 5\.7\.1 /],
    ['alice%other.test@catch.test', /^554 5\.7\.1 /],
    ['@ours.test:alice@other.test', /^554 5\.7\.1 /],
    ['@ours.test,@catch.test:alice@other.test', /^554 5\.7\.1 /],
    ['other.test!alice@ours.test', /^554 5\.7\.1 /],
    // smtp-server already refuses these as bad syntax (501); src/routing/resolve.ts refuses them too (unit test).
    ['alice@other.test.', /^5\d\d /],
    ['alice@ours.test.', /^5\d\d /],
    ['alice@[127.0.0.1]', /^554 5\.7\.1 /],
    ['alice@other.test@ours.test', /^5\d\d /],
  ];
  const before = sunk.length;
  for (const [rcpt, want] of tricks) {
    const c = await raw();
    try {
      assert.equal((await c.cmd('MAIL FROM:<x@pass.test>'))?.code, 250);
      const r = (await c.cmd(`RCPT TO:<${rcpt}>`))!;
      assert.match(r.text, want, `RCPT TO:<${rcpt}> → ${r.text}`);
      // Without an accepted recipient, DATA cannot carry anything anywhere.
      assert.ok(((await c.cmd('DATA'))?.code ?? 0) >= 500, rcpt);
    } finally {
      await c.close();
    }
  }
  assert.equal(sunk.length, before, 'nothing reached the outside');
});

test('more recipients than smtp.max_recipients → 452 4.5.3', async () => {
  const c = await raw();
  assert.equal((await c.cmd('MAIL FROM:<x@pass.test>'))?.code, 250);
  for (let i = 1; i <= 5; i++) assert.equal((await c.cmd(`RCPT TO:<alice+r${i}@ours.test>`))?.code, 250);
  assert.match((await c.cmd('RCPT TO:<alice+r6@ours.test>'))!.text, /^452 4\.5\.3 /);
  await c.close();
});

test('oversize: SIZE= over the limit is refused at MAIL, and a streamed message over the limit gets 552 5.3.4 and is not delivered', async () => {
  const c = await raw();
  assert.match((await c.cmd('MAIL FROM:<x@pass.test> SIZE=300000'))!.text, /^552 5\.3\.4 /);
  const subject = tok('big');
  const body = message({ from: 'x@pass.test', subject, body: ('x'.repeat(998) + '\r\n').repeat(300) });
  const r = await c.sendRaw('x@pass.test', ['alice@ours.test'], body + '.\r\n');
  assert.match(r.data!.text, /^552 5\.3\.4 /);
  assert.equal((await c.cmd('NOOP'))?.code, 250, 'the session goes on');
  await c.close();
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 0);
});

test('SMTP smuggling: <LF>.<LF>, <CR>.<CR>, <CRLF>.<LF>, bare LF/CR and NUL never end DATA early nor smuggle a second message', async () => {
  const cases: [string, (s: string) => string][] = [
    ['lf', (s) => `Subject: ${s}\r\n\r\nhello\n.\nMAIL FROM:<ceo@reject.test>\nRCPT TO:<alice@ours.test>\nDATA\nSubject: smuggled-${s}\n\nspoof\n.\n\r\n.\r\n`],
    ['cr', (s) => `Subject: ${s}\r\n\r\nhello\r.\rMAIL FROM:<ceo@reject.test>\rRCPT TO:<alice@ours.test>\rDATA\rSubject: smuggled-${s}\r\rspoof\r.\r\r\n.\r\n`],
    ['crlf-lf', (s) => `Subject: ${s}\r\n\r\nhello\r\n.\nMAIL FROM:<ceo@reject.test>\r\nRCPT TO:<alice@ours.test>\r\nDATA\r\nSubject: smuggled-${s}\r\n\r\nspoof\r\n.\r\n`],
    ['bare-lf-only', (s) => `Subject: ${s}\r\n\r\nline one\nline two\r\n.\r\n`],
    ['nul', (s) => `Subject: ${s}\r\n\r\nnul \u0000 here\r\n.\r\n`],
  ];
  for (const [name, body] of cases) {
    const subject = tok(`smuggle-${name}`);
    const c = await raw();
    const r = await c.sendRaw('x@pass.test', ['alice@ours.test'], body(subject));
    assert.match(r.data!.text, /^554 5\.6\.0 /, `${name}: ${r.data?.text}`);
    // Exactly one reply for the whole DATA: the next reply is the NOOP's, so nothing was run as commands.
    const noop = await c.cmd('NOOP');
    assert.equal(noop?.code, 250, `${name}: ${noop?.text}`);
    assert.equal(c.unread, 0, name);
    await c.close();
    assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 0, name);
    assert.equal((await find('alice@ours.test', 'INBOX', `smuggled-${subject}`)).length, 0, name);
  }
  // A dot-stuffed line is ordinary content.
  const subject = tok('dots');
  const c = await raw();
  const r = await c.sendRaw('x@pass.test', ['alice@ours.test'], `Subject: ${subject}\r\nFrom: x@pass.test\r\n\r\n..leading dot\r\n.\r\n`);
  assert.equal(r.data?.code, 250, r.data?.text);
  await c.close();
  assert.match((await find('alice@ours.test', 'INBOX', subject))[0], /\r\n\r\n\.leading dot\r\n/);
});

test('quota: a mailbox already over quota is refused at RCPT with 452 4.2.2; partial failure at DATA → 250 and a DSN to the sender', async () => {
  // Fill `full`, then give it a quota below what it holds.
  const s0 = tok('fill');
  assert.equal((await send('x@pass.test', ['full@ours.test'], message({ from: 'x@pass.test', subject: s0, body: 'y'.repeat(5000) }))).code, 250);
  await app.cliJson(['mailbox', 'set', 'full@ours.test', '--quota', '1k']);
  let last: Reply | null = null;
  for (let i = 0; i < 40; i++) {
    const c = await raw();
    await c.cmd('MAIL FROM:<x@pass.test>');
    last = await c.cmd('RCPT TO:<full@ours.test>');
    await c.close();
    if (last?.code !== 250) break;
    await sleep(250); // Dovecot sees the new quota within about a second
  }
  assert.match(last!.text, /^452 4\.2\.2 /);

  // `tight` (3k quota, empty) passes the RCPT check but cannot take a 6k message; alice can.
  const subject = tok('partial');
  const r = await send('bob@ours.test', ['alice@ours.test', 'tight@ours.test'], message({ from: 'bob@ours.test', subject, body: 'z'.repeat(6000) }), { tls: false });
  assert.equal(r.code, 250, r.response);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 1);
  assert.equal((await find('tight@ours.test', 'INBOX', subject)).length, 0);
  const dsn = await find('bob@ours.test', 'INBOX', 'Undelivered Mail Returned to Sender');
  const mine = dsn.filter((d) => d.includes(subject));
  assert.equal(mine.length, 1, 'one DSN to the (local) sender');
  assert.match(mine[0], /Content-Type: multipart\/report; report-type=delivery-status/);
  assert.match(mine[0], /Final-Recipient: rfc822; ?tight@ours\.test\r\nAction: failed\r\nStatus: 5\.2\.2/);
  assert.doesNotMatch(mine[0], /Final-Recipient: rfc822; ?alice@ours\.test/);
  // The DSN is DKIM-signed like any other outgoing message (the failed recipient's domain, ours) and
  // verifies with an independent verifier (python3-dkim).
  const keys: Record<string, string> = {};
  for (const x of (await app.cliJson(['dns', 'ours.test'])).records) if (x.purpose === 'dkim') keys[x.name] = x.value;
  const file = join(app.dir, `${subject}-dsn.eml`);
  const recs = join(app.dir, `${subject}-dsn.json`);
  writeFileSync(file, mine[0]);
  writeFileSync(recs, JSON.stringify(keys));
  const { stdout } = await run('/usr/bin/python3', [join(import.meta.dirname, 'helpers', 'dkimverify.py'), file, recs]);
  const sigs = JSON.parse(stdout);
  assert.ok(sigs.length >= 1, 'the DSN carries a DKIM signature');
  assert.ok(sigs.every((x: any) => x.ok && x.d === 'ours.test'), stdout);
});

test('alias forwarding to an external address: queued with an SRS envelope sender and an ARC seal that verifies at the receiver', async () => {
  const subject = tok('fwd');
  const r = await send('alice@pass.test', ['fwd@ours.test'], message({ from: 'alice@pass.test', subject }));
  assert.equal(r.code, 250, r.response);
  let got: (typeof sunk)[number] | undefined;
  for (let i = 0; i < 150 && !got; i++) {
    got = sunk.find((m) => m.raw.includes(subject));
    if (!got) await sleep(200);
  }
  assert.ok(got, 'the queue delivered the forward to the remote MX');
  assert.deepEqual(got.to, ['friend@remote.test']);
  assert.match(got.from, /^SRS0=[A-Za-z0-9_-]{4}=[a-z2-7]{2}=pass\.test=alice@ours\.test$/);
  assert.match(got.raw, /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none; d=ours\.test;/m);
  assert.match(got.raw, /^ARC-Authentication-Results: i=1; mail\.letterbox\.test;/m);
  // The receiver's view: SPF for the SRS sender passes (our domain, our IP) and the ARC chain is valid.
  const resolver = createResolver({ servers: [dns.server], timeoutMs: 2000, clock: { now: () => Date.now() } });
  const res = await authenticate(Buffer.from(got.raw), { ip: '127.0.0.1', helo: HOST, sender: got.from, mta: 'receiver.test', resolver: resolver.resolve, disableBimi: true });
  assert.equal((res.arc as any).status.result, 'pass', JSON.stringify((res.arc as any).status));
  assert.equal((res.spf as any).status.result, 'pass');
  // Bounces to that SRS address are accepted (and go back to the original sender); forged ones are not.
  const c = await raw();
  assert.equal((await c.cmd('MAIL FROM:<>'))?.code, 250);
  assert.equal((await c.cmd(`RCPT TO:<${got.from}>`))?.code, 250);
  assert.match((await c.cmd(`RCPT TO:<${got.from.replace(/^SRS0=..../, 'SRS0=AAAA')}>`))!.text, /^550 5\.1\.1 /);
  await c.cmd('RSET');
  await c.close();
});

test('connection limits: per-IP and global caps → 421; too many errors → 421 and disconnect; idle timeout; command and data deadlines; over-long command line', async () => {
  const open: RawSmtp[] = [];
  try {
    const opened = await Promise.all(Array.from({ length: 60 }, () => RawSmtp.open(app.ports.mx)));
    for (const o of opened) {
      assert.equal(o.greeting?.code, 220, o.greeting?.text);
      open.push(o.client);
    }
    const extra = await RawSmtp.open(app.ports.mx);
    assert.match(extra.greeting!.text, /^421 4\.7\.0 /);
    assert.equal(await extra.client.read(), null, 'then closed');
  } finally {
    await Promise.all(open.map((c) => c.close()));
  }
  await sleep(300); // let the server see those connections close
  // The global cap, with clients on other loopback addresses so that no per-address cap applies.
  const many: RawSmtp[] = [];
  try {
    const opened = await Promise.all(Array.from({ length: 80 }, (_, i) => RawSmtp.open(app.ports.mx, '127.0.0.1', `127.0.0.${2 + (i % 2)}`)));
    for (const o of opened) {
      many.push(o.client);
      assert.equal(o.greeting?.code, 220, o.greeting?.text);
    }
    const extra = await RawSmtp.open(app.ports.mx, '127.0.0.1', '127.0.0.4');
    assert.match(extra.greeting!.text, /^421 /);
    assert.equal(await extra.client.read(), null, 'then closed');
  } finally {
    await Promise.all(many.map((c) => c.close()));
  }
  await sleep(200); // let the server see those connections close
  const c = await raw();
  const replies: (Reply | null)[] = [];
  for (let i = 0; i < 5; i++) replies.push(await c.cmd('RCPT TO:<a@ours.test>'));
  assert.ok(replies.every((x) => x && x.code >= 500), replies.map((x) => x?.text).join(' | '));
  assert.match((await c.read())!.text, /^421 .*Too many errors/);
  assert.equal(await c.read(), null, 'closed after too many errors');

  const idle = await raw();
  const t = await idle.read(15000);
  assert.match(t!.text, /^421 /, 'idle connections are told and closed');
  assert.equal(await idle.read(), null);

  // Trickling one byte a second keeps the idle timer alive but not the command or data deadline.
  const drip = async (prepare: (c: RawSmtp) => Promise<void>): Promise<Reply | null> => {
    const c = await raw();
    await prepare(c);
    const reply = c.read(20000);
    const timer = setInterval(() => c.write('x'), 1000);
    try {
      return await reply;
    } finally {
      clearInterval(timer);
      await c.close();
    }
  };
  const [cmdDrip, dataDrip] = await Promise.all([
    drip(async () => {}),
    drip(async (c) => {
      await c.cmd('MAIL FROM:<x@pass.test>');
      await c.cmd('RCPT TO:<alice@ours.test>');
      assert.equal((await c.cmd('DATA'))?.code, 354);
    }),
  ]);
  assert.match(cmdDrip!.text, /^421 .*command timeout/);
  assert.match(dataDrip!.text, /^421 .*data timeout/);

  const long = await raw();
  const lr = await long.cmd('NOOP ' + 'x'.repeat(2000));
  assert.ok(lr === null || lr.code === 421 || lr.code >= 500, `over-long line: ${lr?.text}`);
  await long.close();
});

test('a DNS lookup that times out → 451 4.3.0 with a reference id that is in the log', async () => {
  dns.silent = true;
  try {
    const r = await send('x@slow.test', ['alice@ours.test'], message({ from: 'x@slow.test', subject: tok('slowdns') }), { tls: false });
    assert.equal(r.code, 451, r.response);
    const ref = /^451 4\.3\.0 .*\(ref ([0-9A-F]+)\)/.exec(r.response)?.[1];
    assert.ok(ref, r.response);
    await sleep(200);
    assert.ok(app.logs.some((l) => l.includes(`"ref":"${ref}"`)), 'the reference is in the log');
  } finally {
    dns.silent = false;
  }
});

test('50 parallel senders: every message delivered exactly once', async () => {
  const base = tok('par');
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => send(`p${i}@pass.test`, ['alice@ours.test'], message({ from: `p${i}@pass.test`, subject: `${base}-n${i}-` }), { tls: i % 2 === 0 })));
  assert.deepEqual(results.map((r) => r.code), Array(50).fill(250), results.filter((r) => r.code !== 250).map((r) => r.response).join('\n'));
  const found = await find('alice@ours.test', 'INBOX', base);
  assert.equal(found.length, 50);
  const seen = found.map((s) => /Subject: \S+-n(\d+)-/.exec(s)![1]).sort((a, b) => Number(a) - Number(b));
  assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => String(i)));
});

test('bare RCPT TO:<postmaster> (RFC 5321 4.5.1): the unknown-user reply until the host\'s domain is ours, then delivered to its postmaster', async () => {
  // mail.letterbox.test: neither it nor letterbox.test is one of our domains yet.
  const c1 = await raw();
  assert.equal((await c1.cmd('MAIL FROM:<someone@remote.test>'))?.code, 250);
  const unknown = await c1.cmd('RCPT TO:<nobody-here@ours.test>');
  const bare = await c1.cmd('RCPT TO:<postmaster>');
  assert.match(bare!.text, /^550 5\.1\.1 /);
  assert.equal(bare!.text, unknown!.text, 'same reply as any unknown recipient');
  await c1.close();

  await app.cliJson(['domain', 'add', 'letterbox.test']);
  await app.cliJson(['alias', 'add', 'postmaster@letterbox.test', 'alice@ours.test']);
  const subject = tok('bare-postmaster');
  const c2 = await raw();
  const r = await c2.sendRaw('someone@remote.test', ['Postmaster'], `From: someone@remote.test\r\nTo: postmaster\r\nSubject: ${subject}\r\n\r\nfor the postmaster\r\n.\r\n`);
  assert.equal(r.rcpt[0]?.code, 250, r.rcpt[0]?.text);
  assert.equal(r.data?.code, 250, r.data?.text);
  await c2.close();
  const got = await find('alice@ours.test', 'INBOX', subject);
  assert.equal(got.length, 1);
});

test('Dovecot stopped → 451 4.3.0 with a reference; delivered exactly once after it is back and the client retries', async () => {
  for (const c of imaps.values()) await c.logout().catch(() => {});
  imaps.clear();
  const pid = Number(readFileSync(join(app.dataDir, 'dovecot', 'run', 'master.pid'), 'utf8').trim());
  process.kill(pid, 'SIGKILL');
  // The supervisor restarts Dovecot after about a second; meanwhile LMTP is unreachable. (Dovecot's
  // child processes may take a moment to notice their master is gone: until the first 451, every
  // message must still be accepted normally.)
  let subject = '';
  let msg = '';
  let first = { code: 0, response: '' };
  const acceptedMeanwhile: string[] = [];
  for (let i = 0; i < 40; i++) {
    subject = tok('outage');
    msg = message({ from: 'x@pass.test', subject });
    first = await send('x@pass.test', ['alice@ours.test'], msg, { tls: false });
    if (first.code !== 250) break;
    acceptedMeanwhile.push(subject);
    await sleep(25);
  }
  assert.equal(first.code, 451, `while Dovecot is down: ${first.response}`);
  const ref = /\(ref ([0-9A-F]+)\)/.exec(first.response)?.[1];
  assert.ok(ref && /^451 4\.3\.0 /.test(first.response), first.response);
  // The child's log is read asynchronously: the line written before the reply may arrive just after it.
  for (let i = 0; i < 100 && !app.logs.some((l) => l.includes(`"ref":"${ref}"`)); i++) await sleep(50);
  assert.ok(app.logs.some((l) => l.includes(`"ref":"${ref}"`)));
  let attempts = 1;
  while (first.code !== 250 && attempts < 120) {
    await sleep(250);
    first = await send('x@pass.test', ['alice@ours.test'], msg, { tls: false });
    attempts++;
    assert.ok(first.code === 250 || first.code === 451, first.response);
  }
  assert.equal(first.code, 250, `after ${attempts} attempts: ${first.response}`);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 1, 'exactly once');
  for (const s of acceptedMeanwhile) assert.equal((await find('alice@ours.test', 'INBOX', s)).length, 1, s);
});
