// Mailbox self-service on Dovecot 2.4 (issue #17): the appliance with Debian 13's Dovecot 2.4.1 and
// its managesieved serves ManageSieve (STARTTLS required before AUTHENTICATE, then PUTSCRIPT and
// SETACTIVE; the script filters delivery), and a vacation reply made by 2.4's Sieve leaves through
// Letterbox's loopback injection listener, DKIM-signed, to a remote sink. The 2.3 counterparts are
// test/sieve.test.ts and test/vacation.test.ts. Needs LETTERBOX_DOVECOT_BINARY = the wrapper written
// by `test/debian13/setup.sh --wrappers DIR` (.ci/run's Debian 13 block sets it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { TestDns } from '../helpers/dns.ts';
import { Sink, testCert } from '../helpers/sink.ts';
import { applianceCert, freePort, startAppliance, type Appliance } from '../helpers/appliance.ts';
import { call, waitFor } from '../helpers/mailapi.ts';
import { ManageSieve } from '../helpers/managesieve.ts';

const DOVECOT = process.env.LETTERBOX_DOVECOT_BINARY ?? '';
const skip = DOVECOT ? false : 'no Dovecot 2.4 here: run with LETTERBOX_DOVECOT_BINARY=<dir>/dovecot after test/debian13/setup.sh --wrappers <dir> (.ci/run does)';
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let cert: ReturnType<typeof testCert>;
let key: string;
let msPort: number;

before(async () => {
  if (skip) return;
  cert = testCert(['mx.sender.test']);
  sink = await new Sink(cert).start();
  dns = await new TestDns().start();
  dns.mx('sender.test', 'mx.sender.test');
  dns.a('mx.sender.test', '127.0.0.1');
  msPort = await freePort();
  const inject = await freePort();
  app = await startAppliance({
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\n[outbound]\nport = ${sink.port}\nretry_schedule = ["1s"]\nretry_jitter = 0\ntls_ca_file = "${join(cert.dir, 'cert.pem')}"\npoll_interval_ms = 200\n[sieve]\nmax_scripts = 3\nmax_script_size = "4k"\n`,
    env: { LETTERBOX_DOVECOT_BINARY: DOVECOT, LETTERBOX_LISTEN_MANAGESIEVE: `127.0.0.1:${msPort}`, LETTERBOX_LISTEN_INJECT: `127.0.0.1:${inject}` },
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', 'alice password 12345']);
  await app.cliJson(['mailbox', 'add', 'bob@ours.test', '--password', 'bob password 123456']);
  key = (await app.cliJson(['key', 'create', '--name', 'ss24', '--scopes', 'mailboxes:*,messages:read'])).secret;
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/bob@ours.test/sieve/scripts')).status === 200, 'Dovecot to know the new mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
  if (cert) Sink.cleanupCert(cert.dir);
});

async function mx(from: string, to: string, subject: string) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'client.sender.test' } as any);
  await t.sendMail({ envelope: { from, to }, from, to, subject, text: `${subject}\n` });
}

async function subjects(address: string, folder: string): Promise<string[]> {
  const r = await call(app, key, 'GET', `/mailboxes/${address}/messages?folder=${encodeURIComponent(folder)}`);
  return r.status === 200 ? r.json.data.messages.map((m: any) => m.subject) : [];
}

test('the appliance runs Dovecot 2.4 with ManageSieve and the injection listener written', { skip }, () => {
  const conf = readFileSync(join(app.dataDir, 'dovecot', 'dovecot.conf'), 'utf8');
  assert.match(conf, /^dovecot_config_version = 2\.4\.0$/m);
  assert.match(conf, /^service managesieve-login \{/m);
  assert.match(conf, /^submission_host = 127\.0\.0\.1:\d+$/m);
});

test('ManageSieve on Dovecot 2.4: no AUTHENTICATE before STARTTLS, then PUTSCRIPT (a broken script refused with its line) + SETACTIVE; the limits hold; the script filters delivery', { skip }, async () => {
  // From another loopback address: Dovecot counts a client whose address equals its own as secure.
  const open = async () => {
    const sock = connect({ host: '127.0.0.1', port: msPort, localAddress: '127.0.0.2' });
    await new Promise<void>((res, rej) => (sock.once('connect', () => res()), sock.once('error', rej)));
    const ms = new ManageSieve(sock);
    return { ms, greet: await ms.response() };
  };
  const plain = Buffer.from(`\0bob@ours.test\0bob password 123456`).toString('base64');
  {
    const { ms, greet } = await open();
    assert.equal(greet.status, 'OK');
    assert.ok(greet.lines.includes('"IMPLEMENTATION" "Letterbox"'), greet.lines.join('\n'));
    assert.ok(greet.lines.includes('"STARTTLS"'), greet.lines.join('\n'));
    assert.ok(greet.lines.includes('"SASL" ""'), 'no SASL mechanism offered before STARTTLS');
    assert.ok(greet.lines.some((l) => /^"SIEVE" ".*\bvacation\b.*"$/.test(l)), 'vacation available (there is an injection listener)');
    assert.ok(!greet.lines.some((l) => /vnd\.dovecot\.(pipe|execute|filter)/.test(l)), 'no extprograms for users');
    const early = await ms.cmd(`AUTHENTICATE "PLAIN" "${plain}"`);
    assert.equal(early.status, 'NO', `AUTHENTICATE before STARTTLS must fail: ${early.text}`);
    ms.sock.destroy();
  }
  const { ms } = await open();
  const caps = await ms.starttls(applianceCert(app), app.hostname);
  assert.ok(caps.lines.some((l) => /^"SASL" ".*PLAIN/.test(l)), caps.lines.join('\n'));
  const auth = await ms.cmd(`AUTHENTICATE "PLAIN" "${plain}"`);
  assert.equal(auth.status, 'OK', auth.text);
  const bad = 'require "fileinto";\nfileintoo "x";\n';
  const badPut = await ms.cmd(`PUTSCRIPT "broken" {${Buffer.byteLength(bad)}+}\r\n${bad}`);
  assert.equal(badPut.status, 'NO');
  assert.match(badPut.lines.join('\n'), /line 2/);
  // [sieve] max_script_size = 4k: Dovecot 2.4 enforces sieve_max_script_size.
  const big = '#'.repeat(5000) + '\nkeep;\n';
  const bigPut = await ms.cmd(`PUTSCRIPT "big" {${Buffer.byteLength(big)}+}\r\n${big}`);
  assert.equal(bigPut.status, 'NO', bigPut.text);
  assert.match(bigPut.text, /QUOTA|too large/i);
  const script = 'require ["fileinto", "mailbox"];\nif address :is "from" "boss@sender.test" {\n  fileinto :create "Boss";\n}\n';
  const put = await ms.cmd(`PUTSCRIPT "boss" {${Buffer.byteLength(script)}+}\r\n${script}`);
  assert.equal(put.status, 'OK', put.text);
  assert.equal((await ms.cmd('SETACTIVE "boss"')).status, 'OK');
  // [sieve] max_scripts = 3: sieve_quota_script_count.
  for (const n of ['two', 'three']) assert.equal((await ms.cmd(`PUTSCRIPT "${n}" {6+}\r\nkeep;\n`)).status, 'OK');
  const fourth = await ms.cmd('PUTSCRIPT "four" {6+}\r\nkeep;\n');
  assert.equal(fourth.status, 'NO', fourth.text);
  assert.match(fourth.text, /QUOTA/);
  const list = await ms.cmd('LISTSCRIPTS');
  assert.ok(list.lines.includes('"boss" ACTIVE'), list.lines.join('\n'));
  await ms.cmd('LOGOUT');
  ms.sock.destroy();
  assert.deepEqual((await call(app, key, 'GET', '/mailboxes/bob@ours.test/sieve/scripts')).json.data.find((s: any) => s.active), { name: 'boss', active: true });
  await mx('boss@sender.test', 'bob@ours.test', 'From the boss');
  await waitFor(async () => (await subjects('bob@ours.test', 'Boss')).includes('From the boss'), 'the message in Boss');
});

test('vacation on Dovecot 2.4: the reply made by Sieve leaves through the injection listener, DKIM-signed, once per sender', { skip, timeout: 150000 }, async () => {
  const r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/vacation', { subject: 'Out of office', text: 'I am away until Monday.\nAlice', days: 1 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.data.active, true);
  await mx('someone@sender.test', 'alice@ours.test', 'Question 1');
  await sink.waitFor(() => sink.received.some((m) => m.to.includes('someone@sender.test')), 60000);
  const reply = sink.received.find((m) => m.to.includes('someone@sender.test'))!;
  const head = reply.data.toString('utf8').split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');
  assert.equal(reply.from, '', 'a vacation reply has the null envelope sender');
  assert.match(head, /^Subject: Out of office$/m);
  assert.match(head, /^From: .*alice@ours\.test/m);
  assert.match(head, /^Auto-Submitted: auto-replied/m);
  assert.match(head, /^DKIM-Signature: .*\bd=ours\.test\b/m);
  assert.ok(app.logs.some((l) => l.includes('"Sieve mail accepted"') && l.includes('"kind":"vacation"')), 'it came through the injection listener');
  // A second message from the same sender inside the interval: stored, no second reply.
  await mx('someone@sender.test', 'alice@ours.test', 'Question 2');
  await waitFor(async () => (await subjects('alice@ours.test', 'INBOX')).includes('Question 2'), 'Question 2 stored');
  const queued = (await app.cliJson(['queue', 'list', '--status', 'all', '--limit', '500'])).data.filter((e: any) => e.from === '');
  assert.deepEqual(queued.map((e: any) => e.recipient), ['someone@sender.test'], 'one reply per sender per interval');
});
