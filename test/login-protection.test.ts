// Login protection and SMTP hardening against a real `letterbox serve` (issue #16): parallel AUTH
// attempts are counted before the password check, an AUTH authzid is refused, IMAP logins (real
// Dovecot, through its auth policy requests) share the submission guard, the owner's known network
// keeps working, per-client connection cap and stress mode on submission, MAIL FROM without
// SMTPUTF8, ambiguous From/Sender headers, and Dovecot's auth-userdb socket permissions.
// Several clients are simulated with loopback source addresses (all of 127/8 is loopback).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { RawSmtp } from './helpers/smtp-raw.ts';
import { imapLogin as imapLoginAs, parallelWrongLogins, plainToken, smtpAuthToken, type LoginTarget } from './helpers/login-attempts.ts';
import { call } from './helpers/mailapi.ts';

const PW: Record<string, string> = {
  alice: 'alice password 12345',
  carol: 'carol password 12345',
  dave: 'dave password 123456',
  erin: 'erin password 123456',
  frank: 'frank password 12345',
};
const D = 'guard.test';
let app: Appliance;
let dns: TestDns;
let ca: string;
let apiKey = '';

before(async () => {
  dns = await new TestDns().start();
  app = await startAppliance({
    extraToml: `
[dns]
servers = ["${dns.server}"]
timeout_ms = 1000
[outbound]
port = 9
[submission]
auth_max_failures = 5
auth_delay_ms = 0
max_connections = 40
max_connections_per_ip = 4
stress_threshold = 0.75
stress_idle_timeout_ms = 1000
`,
  });
  ca = applianceCert(app);
  await app.cliJson(['domain', 'add', D]);
  for (const [u, pw] of Object.entries(PW)) await app.cliJson(['mailbox', 'add', `${u}@${D}`, '--password', pw]);
  const k = await app.cliJson(['key', 'create', '--name', 'guard', '--scopes', '*']);
  apiKey = k.secret ?? k.data?.secret;
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

// Submission AUTH (a raw token, or as a user without authzid) and IMAP LOGIN from a loopback address.
const target = (): LoginTarget => ({ app, ca });
const smtpAuth = (localAddress: string, token: string) => smtpAuthToken(target(), token, localAddress);
const plain = plainToken;
const auth = (local: string, user: string, pw: string) => smtpAuth(local, plain('', user, pw));
const imapLogin = (localAddress: string, user: string, pw: string) => imapLoginAs(target(), user, pw, localAddress);

test('submission AUTH: 20 parallel wrong attempts are counted before the password check (at most auth_max_failures are checked); the locked account refuses the right password from a new network, the owner\'s known network still gets in', async () => {
  // The owner has logged in from 127.0.10.1 before: that network is known for the account.
  assert.match(await auth('127.0.10.1', `carol@${D}`, PW.carol), /^235 /);
  const answers = await parallelWrongLogins(20, '127.0.11.', (local, pw) => auth(local, `carol@${D}`, pw));
  const checked = answers.filter((a) => a.startsWith('535 ')).length;
  const refused = answers.filter((a) => /^454 4\.7\.0 /.test(a)).length;
  assert.equal(checked + refused, 20, answers.join(' | '));
  assert.ok(checked <= 5, `only auth_max_failures (5) attempts were checked, not ${checked}: ${answers.join(' | ')}`);
  assert.match(await auth('127.0.11.50', `carol@${D}`, PW.carol), /^454 4\.7\.0 /, 'a stranger\'s network is refused while locked');
  assert.match(await auth('127.0.10.1', `carol@${D}`, PW.carol), /^235 /, 'the owner\'s known network still works');
  assert.ok(app.logs.some((l) => l.includes('login locked out') && l.includes(`carol@${D}`)), 'the lockout is logged as an event');
});

test('AUTH PLAIN: an authorization identity (authzid) different from the login name is refused with 535 saying why; the same identity or none is fine', async () => {
  const r = await smtpAuth('127.0.12.1', plain(`alice@${D}`, `frank@${D}`, PW.frank));
  assert.match(r, /^535 5\.7\.8 .*authzid/);
  assert.match(await smtpAuth('127.0.12.1', plain(`frank@${D}`, `frank@${D}`, PW.frank)), /^235 /);
  assert.match(await smtpAuth('127.0.12.1', plain(`frank@${D}`, '', PW.frank)), /^235 /, 'clients that put the name in the authzid field only');
});

test("IMAP (Dovecot): 20 parallel wrong logins lock the account, the right password is then refused from a new network; the owner's known network still works", async () => {
  assert.match(await imapLogin('127.0.20.1', `dave@${D}`, PW.dave), /^a1 OK/);
  const answers = await parallelWrongLogins(20, '127.0.21.', (local, pw) => imapLogin(local, `dave@${D}`, pw));
  assert.ok(answers.every((a) => /^a1 NO/.test(a)), answers.join(' | '));
  assert.match(await imapLogin('127.0.21.99', `dave@${D}`, PW.dave), /^a1 NO/, 'locked: the right password is refused from a stranger\'s network');
  assert.match(await imapLogin('127.0.20.1', `dave@${D}`, PW.dave), /^a1 OK/, 'the owner\'s known network still works');
  // The same lock on submission: one policy for both protocols.
  assert.match(await auth('127.0.21.98', `dave@${D}`, PW.dave), /^454 4\.7\.0 /);
});

test('submission and IMAP failures count together toward one limit', async () => {
  for (let i = 1; i <= 3; i++) assert.match(await auth(`127.0.30.${i}`, `erin@${D}`, 'wrong'), /^535 /);
  for (let i = 4; i <= 5; i++) assert.match(await imapLogin(`127.0.30.${i}`, `erin@${D}`, 'wrong'), /^a1 NO/);
  assert.match(await imapLogin('127.0.30.6', `erin@${D}`, PW.erin), /^a1 NO/, '5 failures over both protocols lock IMAP');
  assert.match(await auth('127.0.30.7', `erin@${D}`, PW.erin), /^454 4\.7\.0 /, '...and submission');
});

test('submission: at most max_connections_per_ip sessions per client (421 4.7.0); other clients are served', async () => {
  const held: RawSmtp[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      const { client, greeting } = await RawSmtp.open(app.ports.submission, '127.0.0.1', '127.0.40.1');
      held.push(client);
      assert.equal(greeting?.code, 220, `session ${i}`);
    }
    for (const port of [app.ports.submission]) {
      const { client, greeting } = await RawSmtp.open(port, '127.0.0.1', '127.0.40.1');
      held.push(client);
      assert.match(greeting?.text ?? 'closed', /^421 4\.7\.0 .*Too many connections from your address/);
    }
    const other = await RawSmtp.open(app.ports.submission, '127.0.0.1', '127.0.40.2');
    held.push(other.client);
    assert.equal(other.greeting?.code, 220);
  } finally {
    for (const c of held) await c.close();
  }
});

test('submission stress mode: above the threshold idle sessions (a transaction too, NOOP does not count) get 421 4.4.2', async () => {
  const held: RawSmtp[] = [];
  try {
    // 32 of 40 sessions: above 0.75 × 40 = 30.
    for (let n = 0; n < 8; n++) {
      for (let i = 0; i < 4; i++) {
        const { client, greeting } = await RawSmtp.open(app.ports.submission, '127.0.0.1', `127.0.41.${n + 1}`);
        assert.equal(greeting?.code, 220);
        held.push(client);
      }
    }
    const noop = held[0];
    const deadline = Date.now() + 20000;
    while (!noop.closed && Date.now() < deadline) {
      await noop.cmd('NOOP').catch(() => null);
      await sleep(300);
    }
    assert.ok(noop.closed, 'a session sending only NOOP was closed');
    for (const c of held.slice(1, 5)) {
      const r = await c.read(20000);
      assert.match(r?.text ?? 'closed without a reply', /^421 4\.4\.2 \S+ idle timeout under load$/);
    }
  } finally {
    for (const c of held) await c.close();
  }
  // Below the threshold again: a new session is served normally.
  await sleep(500);
  const { client, greeting } = await RawSmtp.open(app.ports.submission, '127.0.0.1', '127.0.41.99');
  assert.equal(greeting?.code, 220);
  await client.close();
});

test('MAIL FROM with a non-ASCII address and no SMTPUTF8 → 553 5.6.7 on the MX and on submission; with SMTPUTF8 it is accepted', async () => {
  const { client } = await RawSmtp.open(app.ports.mx, '127.0.0.1', '127.0.50.1');
  assert.equal((await client.cmd('EHLO sender.example'))?.code, 250);
  assert.match((await client.cmd('MAIL FROM:<jörg@sender.example>'))?.text ?? '', /^553 5\.6\.7 /);
  assert.match((await client.cmd('MAIL FROM:<jörg@sender.example> SMTPUTF8'))?.text ?? '', /^250 /);
  await client.close();
  const s = await RawSmtp.open(app.ports.submission, '127.0.0.1', '127.0.50.1');
  await s.client.cmd('EHLO sender.example');
  await s.client.starttls(ca, app.hostname);
  await s.client.cmd('EHLO sender.example');
  assert.match((await s.client.cmd(`AUTH PLAIN ${plain('', `alice@${D}`, PW.alice)}`))?.text ?? '', /^235 /);
  assert.match((await s.client.cmd(`MAIL FROM:<alïce@${D}>`))?.text ?? '', /^553 5\.6\.7 /);
  await s.client.close();
});

test('From/Sender that a strict RFC 5322 parser reads as two addresses, a group, or not at all → 550 5.6.0 on submission and 400 validation_error on API send', async () => {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.submissions, secure: true, auth: { user: `alice@${D}`, pass: PW.alice }, tls: { ca, servername: app.hostname }, localAddress: '127.0.51.1' } as any);
  const send = (headers: string) =>
    t.sendMail({ envelope: { from: `alice@${D}`, to: [`frank@${D}`] }, raw: `${headers}\r\nTo: frank@${D}\r\nSubject: x\r\n\r\nbody\r\n` }).then(
      (r) => String(r.response),
      (err: any) => String(err.response),
    );
  const bad = [
    `From: mallory@evil.test <alice@${D}>`, // an address as display name, then ours
    `From: alice@${D} mallory@evil.test`,
    `From: <alice@${D}> <mallory@evil.test>`,
    `From: alice@${D}, alice+x@${D}`,
    `From: friends: alice@${D};`,
    `From: Alice <alice@${D}`,
    `From: alice@${D}\r\nFrom: alice@${D}`,
    `From: alice@${D}\r\nSender: alice@${D}, mallory@evil.test`,
    `From: alice@${D}\r\nSender: not an address`,
  ];
  for (const h of bad) assert.match(await send(h), /^550 5\.6\.0 the (From|Sender) header /, h);
  for (const h of [`From: Alice <alice@${D}>`, `From: "mallory@evil.test" <alice@${D}>`, `From: alice@${D} (Alice)`, `From: =?utf-8?q?Al=C3=AFce?= <alice@${D}>\r\nSender: <alice@${D}>`]) {
    assert.match(await send(h), /^250 /, h);
  }
  t.close();
  const r = await call(app, apiKey, 'POST', `/mailboxes/${encodeURIComponent(`alice@${D}`)}/send`, { to: [`frank@${D}`], subject: 'x', text: 'x', headers: { Sender: `alice@${D}, mallory@evil.test` } });
  assert.equal(r.status, 400, JSON.stringify(r.json));
  assert.equal(r.json?.error?.code ?? r.json?.code, 'validation_error');
});

test("Dovecot's auth-userdb socket is not world-connectable: another uid gets EACCES", async () => {
  const sock = join(app.dataDir, 'dovecot', 'run', 'auth-userdb');
  assert.equal(statSync(sock).mode & 0o777, 0o600);
  // Let `nobody` traverse to the socket (the test's temporary folders may be private), so that a
  // refusal can only come from the socket's own permissions.
  for (let d = dirname(sock); d !== '/' && d.length > 1; d = dirname(d)) chmodSync(d, statSync(d).mode | 0o011);
  const py = `import socket,os,sys\nos.stat(sys.argv[1])\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect(sys.argv[1]); print("connected")\nexcept PermissionError: print("EACCES")\n`;
  const out = await new Promise<string>((res) =>
    execFile('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/python3', '-c', py, sock], (err, stdout, stderr) => res(String(stdout).trim() || String(stderr) || String(err))),
  );
  assert.equal(out, 'EACCES');
});
