// Vacation replies: the structured object through the API and the CLI, the generated Sieve (checked
// with Pigeonhole's own compiler), and end to end: mail received over the real MX, Dovecot's Sieve
// vacation handing the reply to Letterbox's loopback injection listener, the reply DKIM-signed
// (verified by dkimpy) and delivered through the outbound queue to a remote sink; one reply per
// sender per interval; none for list mail or the null sender; the user's own script still runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { call, waitFor } from './helpers/mailapi.ts';
import { checkVacation, sieveString, vacationScript } from '../src/sieve/vacation.ts';
import { RawSmtp } from './helpers/smtp-raw.ts';

const run = promisify(execFile);
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let cert: ReturnType<typeof testCert>;
let key: string;
const dkimRecords: Record<string, string> = {};
let injectPort: number;

const base = { mailbox: 'alice@ours.test', owned: (a: string) => a === 'alice@ours.test' || a === 'info@ours.test', maxText: 1000, minDays: 1, defaultDays: 7 };

test('vacation object: validated and normalized (dates to UTC, From among own addresses, limits)', () => {
  const v = checkVacation({ enabled: true, subject: 'Away', text: 'Back soon', start: '2026-12-20', end: '2026-12-31T18:00:00+01:00' }, base);
  assert.deepEqual([v.start, v.end, v.from, v.days, v.html], ['2026-12-20T00:00:00Z', '2026-12-31T17:00:00Z', 'alice@ours.test', 7, null]);
  assert.equal(checkVacation({ enabled: true, subject: 'x', text: 'y', from: 'Info@ours.test' }, base).from, 'info@ours.test');
  assert.throws(() => checkVacation({ enabled: true, subject: 'x', text: 'y', from: 'ceo@ours.test' }, base), { code: 'validation_error' });
  assert.throws(() => checkVacation({ enabled: true, subject: 'x', text: 'y'.repeat(1001) }, base), /sieve\.vacation_max_text/);
  assert.throws(() => checkVacation({ enabled: true, subject: 'x', text: 'y', start: '2026-12-20', end: '2026-12-19' }, base), /after/);
  assert.throws(() => checkVacation({ enabled: true, subject: 'x', text: 'y', days: 0 }, { ...base, minDays: 1 }), /at least 1/);
  assert.equal(sieveString('a "b" \\ c\nd'), '"a \\"b\\" \\\\ c\r\nd"');
});

test('the generated script compiles with Pigeonhole (sievec), with and without HTML and dates', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lbvac-'));
  try {
    const conf = join(dir, 'dovecot.conf');
    writeFileSync(conf, `mail_uid = ${process.getuid?.() === 0 ? 65534 : process.getuid?.()}\nmail_gid = ${process.getgid?.() === 0 ? 65534 : process.getgid?.()}\nmail_home = ${dir}\n`);
    for (const v of [
      checkVacation({ enabled: true, subject: 'Away "now"', text: 'Back on Monday.\nRegards\\A' }, base),
      checkVacation({ enabled: true, subject: 'Away', text: 'Back soon', html: '<p>Back <b>soon</b></p>', start: '2026-12-20', end: '2027-01-02', days: 3 }, base),
    ]) {
      const f = join(dir, 'v.sieve');
      writeFileSync(f, vacationScript(v, ['alice@ours.test', 'info@ours.test']));
      execFileSync('sievec', ['-c', conf, f, join(dir, 'v.svbin')], { stdio: 'pipe' });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

before(async () => {
  cert = testCert(['mx.sender.test']);
  sink = await new Sink(cert).start();
  dns = await new TestDns().start();
  for (const d of ['sender.test', 'lists.test', 'other.test']) dns.mx(d, 'mx.sender.test');
  dns.a('mx.sender.test', '127.0.0.1');
  const inject = (injectPort = await freePort());
  app = await startAppliance({
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\n[outbound]\nport = ${sink.port}\nretry_schedule = ["1s"]\nretry_jitter = 0\ntls_ca_file = "${join(cert.dir, 'cert.pem')}"\npoll_interval_ms = 200\n`,
    env: { LETTERBOX_LISTEN_INJECT: `127.0.0.1:${inject}` },
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', 'alice password 12345']);
  await app.cliJson(['mailbox', 'add', 'bob@ours.test', '--password', 'bob password 123456']);
  await app.cliJson(['alias', 'add', 'info@ours.test', 'alice@ours.test']);
  for (const r of (await app.cliJson(['dns', 'ours.test'])).records) if (r.purpose === 'dkim') dkimRecords[r.name] = r.value;
  key = (await app.cliJson(['key', 'create', '--name', 'vac', '--scopes', 'mailboxes:*,messages:read'])).secret;
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/alice@ours.test/sieve/scripts')).status === 200, 'Dovecot to know the mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
  if (cert) Sink.cleanupCert(cert.dir);
});

async function mx(from: string, to: string, subject: string, headers: Record<string, string> = {}) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'client.sender.test' } as any);
  await t.sendMail({ envelope: { from, to }, from: from || 'mailer-daemon@sender.test', to, subject, text: `${subject}\n`, headers });
}

async function dkim(data: Buffer): Promise<{ ok: boolean; d: string }[]> {
  const f = join(app.dir, `reply-${Math.random()}.eml`);
  const rf = join(app.dir, 'dkim-records.json');
  writeFileSync(f, data);
  writeFileSync(rf, JSON.stringify(dkimRecords));
  const { stdout } = await run('/usr/bin/python3', [join(import.meta.dirname, 'helpers', 'dkimverify.py'), f, rf]);
  return JSON.parse(stdout);
}

const repliesTo = (addr: string) => sink.received.filter((r) => r.to.includes(addr));
const hdr = (data: Buffer, name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(data.toString('utf8').split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' '))?.[1] ?? null;

test('API: set, read, validate and remove the vacation object', async () => {
  let r = await call(app, key, 'GET', '/mailboxes/alice@ours.test/vacation');
  assert.equal(r.status, 404);
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/vacation', { subject: 'x', text: 'y', from: 'bob@ours.test' });
  assert.equal(r.status, 400, JSON.stringify(r.json));
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/vacation', { subject: 'bad\nsubject', text: 'y' });
  assert.equal(r.status, 400);
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/vacation', { subject: 'x', text: 'y', start: 'tomorrow' });
  assert.equal(r.status, 400);
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/vacation', { subject: 'Later', text: 'Not yet', start: '2999-01-01' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.data.active, false, 'not active before its start');
  assert.equal(r.json.data.start, '2999-01-01T00:00:00Z');
  r = await call(app, key, 'DELETE', '/mailboxes/alice@ours.test/vacation');
  assert.equal(r.status, 200);
  assert.equal((await call(app, key, 'GET', '/mailboxes/alice@ours.test/vacation')).status, 404);
  assert.equal((await call(app, key, 'DELETE', '/mailboxes/alice@ours.test/vacation')).status, 404);
});

test('end to end: one DKIM-signed reply per sender per interval, none to lists or the null sender; the user script still runs', { timeout: 150000 }, async () => {
  // The user's own script files mail from sender.test into a folder: it must still run.
  let r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/mine', { script: 'require ["fileinto", "mailbox"];\nif address :domain "from" "sender.test" { fileinto :create "FromSender"; }\n', activate: true });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/vacation', { subject: 'Out of office', text: 'I am away until Monday.\nAlice', html: '<p>I am away until <b>Monday</b>.</p>', days: 1 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.data.active, true);

  await mx('someone@sender.test', 'alice@ours.test', 'Question 1');
  await sink.waitFor(() => repliesTo('someone@sender.test').length >= 1, 60000);
  const reply = repliesTo('someone@sender.test')[0];
  assert.equal(reply.from, '', 'a vacation reply has the null envelope sender (RFC 5230 §5.6)');
  assert.equal(hdr(reply.data, 'Subject'), 'Out of office');
  assert.match(hdr(reply.data, 'From') ?? '', /alice@ours\.test/);
  assert.match(hdr(reply.data, 'Auto-Submitted') ?? '', /^auto-replied/);
  assert.match(hdr(reply.data, 'In-Reply-To') ?? '', /^<.+>$/);
  assert.match(hdr(reply.data, 'Content-Type') ?? '', /multipart\/alternative/);
  const sigs = await dkim(reply.data);
  assert.ok(sigs.length >= 1 && sigs.every((s) => s.ok && s.d === 'ours.test'), JSON.stringify(sigs));
  // The user's script ran too: the message is in its folder.
  await waitFor(async () => {
    const l = await call(app, key, 'GET', '/mailboxes/alice@ours.test/messages?folder=FromSender');
    return l.status === 200 && l.json.data.messages.some((m: any) => m.subject === 'Question 1');
  }, 'Question 1 filed by the user script');

  // Within the interval: no second reply to the same sender. A list message, a bulk one, an
  // auto-submitted one and a bounce (null sender) get none at all. Then a message from a new sender
  // (the barrier): when its reply is in, the earlier ones have been handled.
  await mx('someone@sender.test', 'alice@ours.test', 'Question 2');
  await mx('news@lists.test', 'alice@ours.test', 'Newsletter', { 'List-Id': '<news.lists.test>', 'List-Unsubscribe': '<mailto:unsub@lists.test>' });
  await mx('promo@lists.test', 'alice@ours.test', 'Promo', { Precedence: 'bulk' });
  await mx('robot@other.test', 'alice@ours.test', 'Automatic notice', { 'Auto-Submitted': 'auto-generated' });
  {
    const { client } = await RawSmtp.open(app.ports.mx);
    await client.cmd('EHLO mx.sender.test');
    const r = await client.sendRaw('', ['alice@ours.test'], 'From: Mail Delivery System <mailer-daemon@sender.test>\r\nTo: alice@ours.test\r\nSubject: Delivery Status Notification\r\nMessage-ID: <dsn1@sender.test>\r\n\r\nundeliverable\r\n.\r\n');
    assert.equal(r.data?.code, 250, r.data?.text);
    await client.close();
  }
  await mx('alice@ours.test', 'alice@ours.test', 'From herself');
  await mx('third@other.test', 'info@ours.test', 'Via the alias');
  await sink.waitFor(() => repliesTo('third@other.test').length >= 1, 60000);
  // Every message is stored (each MX transaction above ended with 250 after Dovecot took it, so
  // their vacation decisions are made): 3 filed by the user's script, 5 in INBOX.
  const count = async (folder: string) => {
    const l = await call(app, key, 'GET', `/mailboxes/alice@ours.test/messages?folder=${folder}&limit=50`);
    return l.status === 200 ? l.json.data.messages.length : -1;
  };
  assert.deepEqual([await count('FromSender'), await count('INBOX')], [3, 5]);
  // Deterministic as well: a reply is queued before Dovecot answers LMTP, and the MX answered 250
  // only after that, so the queue holds every reply there will be.
  const queued = (await app.cliJson(['queue', 'list', '--status', 'all', '--limit', '500'])).data.filter((e: any) => e.from === '');
  assert.deepEqual(queued.map((e: any) => e.recipient).sort(), ['someone@sender.test', 'third@other.test']);
  assert.equal(repliesTo('someone@sender.test').length, 1, 'one reply per sender per interval');
  for (const a of ['news@lists.test', 'promo@lists.test', 'robot@other.test', 'mailer-daemon@sender.test', 'alice@ours.test']) assert.equal(repliesTo(a).length, 0, `no reply to ${a}`);
  assert.equal(sink.received.filter((x) => x.to.length === 0 || x.from === '' && !x.to.some((t) => ['someone@sender.test', 'third@other.test'].includes(t))).length, 0);
  // Nothing went out without a signature, and the queue counted the replies against alice's caps.
  assert.ok(app.logs.some((l) => l.includes('"Sieve mail accepted"') && l.includes('"kind":"vacation"')));
});

test('CLI: vacation set/show/rm; the inject listener takes nothing for strangers', async () => {
  const cli = (args: string[]) => app.cli(args, { env: { LETTERBOX_LISTEN_INJECT: `127.0.0.1:${injectPort}` } });
  let r = await cli(['vacation', 'set', 'bob@ours.test', '--subject', 'Away', '--text', 'Back in January', '--end', '2999-01-31']);
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse((await cli(['--json', 'vacation', 'show', 'bob@ours.test'])).stdout);
  assert.deepEqual([v.subject, v.end, v.active], ['Away', '2999-01-31T23:59:59Z', true]);
  assert.equal((await cli(['vacation', 'set', 'bob@ours.test', '--subject', 'Away'])).code, 2, 'no text');
  assert.equal((await cli(['vacation', 'set', 'bob@ours.test', '--subject', 'Away', '--text', 'x', '--days', 'zero'])).code, 2);
  r = await app.cli(['vacation', 'set', 'bob@ours.test', '--subject', 'Away', '--text', 'x']);
  assert.equal(r.code, 2, 'refused without listen.inject');
  assert.match(r.stderr, /listen\.inject/);
  assert.equal((await cli(['vacation', 'rm', 'bob@ours.test'])).code, 0);
  assert.equal((await cli(['vacation', 'show', 'bob@ours.test'])).code, 2);
  // The injection listener refuses mail that is not for one of our mailboxes.
  const { client } = await RawSmtp.open(injectPort);
  await client.cmd('EHLO localhost');
  await client.cmd('MAIL FROM:<>');
  await client.cmd('RCPT TO:<victim@elsewhere.test>');
  await client.cmd('DATA');
  const end = await client.cmd('From: ceo@bank.test\r\nSubject: hi\r\n\r\nx\r\n.');
  assert.equal(end?.code, 550, end?.text);
  client.close();
});
