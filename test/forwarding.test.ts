// Forwarding per mailbox (issue #17 item 3): the settings over the API and the CLI, validation (no
// local loops, at most sieve.max_forward_targets targets), and end to end over the real MX: the
// forward leaves through the outbound queue with an SRS envelope sender and an ARC seal that
// verifies at the receiver (mailauth and, independently, dkimpy's arc_verify); keepCopy stores a
// copy that IMAP sees; a message we already forwarded for the mailbox is stored, not forwarded
// again; the mailbox's sending caps apply (over them the message is stored instead).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { authenticate } from 'mailauth';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { call, checkRepliesAgainstDoc, waitFor } from './helpers/mailapi.ts';
import { createResolver } from '../src/dns/resolver.ts';
import { readCertificate } from '../src/tls/acme.ts';
import { checkTargets } from '../src/forwarding/service.ts';
import { guardForwards } from '../src/smtp/inbound/forward-guard.ts';

const run = promisify(execFile);
const PW = 'forwarding test password 1';
const HOST = 'mail.letterbox.test';
const tok = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let cert: ReturnType<typeof testCert>;
let key: string;
const dkimRecords: Record<string, string> = {};

test('checkTargets: normalized, deduplicated, never the mailbox itself, at most N', () => {
  assert.deepEqual(checkTargets('a@ours.test', ['X@Remote.TEST', 'x@remote.test', 'b@ours.test'], 3), ['x@remote.test', 'b@ours.test']);
  assert.throws(() => checkTargets('a@ours.test', ['A@ours.test'], 3), /keepCopy/);
  assert.throws(() => checkTargets('a@ours.test', ['not an address'], 3), { code: 'validation_error' });
  assert.throws(() => checkTargets('a@ours.test', ['1@r.test', '2@r.test', '3@r.test', '4@r.test'], 3), /at most 3/);
  assert.throws(() => checkTargets('a@ours.test', [], 3), /at least one/);
});

test('guardForwards: a forward already made for the mailbox, or over its caps, is stored in the mailbox instead', () => {
  const mailbox = { id: 'mbx_1', address: 'a@ours.test', local: 'a', domain: 'ours.test', quotaBytes: 0 };
  const plan = {
    locals: [],
    forwards: [
      { target: { kind: 'forward' as const, address: 'x@remote.test', via: 'ours.test', mailbox }, originals: ['a@ours.test'] },
      { target: { kind: 'forward' as const, address: 'y@remote.test', via: 'ours.test' }, originals: ['alias@ours.test'] },
    ],
  };
  const ok = guardForwards(plan, [], () => true);
  assert.deepEqual([ok.forwards.length, ok.locals.length, ok.kept.length], [2, 0, 0]);
  const loop = guardForwards(plan, ['A@ours.test'], () => true);
  assert.deepEqual(loop.forwards.map((f) => f.target.address), ['y@remote.test'], 'alias forwards are not affected');
  assert.deepEqual(loop.locals.map((l) => l.lmtpRcpt), ['a@ours.test']);
  assert.deepEqual(loop.kept, [{ mailbox: 'a@ours.test', targets: ['x@remote.test'], reason: 'loop' }]);
  let asked = 0;
  const caps = guardForwards(plan, [], (_m, n) => (asked++, assert.equal(n, 1), false));
  assert.equal(asked, 1);
  assert.equal(caps.kept[0].reason, 'caps');
  assert.equal(caps.locals.length, 1);
});

before(async () => {
  cert = testCert(['mx.remote.test']);
  sink = await new Sink(cert).start();
  dns = await new TestDns().start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1').txt('pass.test', 'v=spf1 ip4:127.0.0.1 -all').txt('_dmarc.pass.test', 'v=DMARC1; p=reject');
  app = await startAppliance({
    hostname: HOST,
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\n[outbound]\nport = ${sink.port}\nretry_schedule = ["1s"]\nretry_jitter = 0\ntls_ca_file = "${join(cert.dir, 'cert.pem')}"\npoll_interval_ms = 200\n[sieve]\nmax_forward_targets = 3\n`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  for (const m of ['keep', 'nocopy', 'ping', 'pong', 'capped', 'cli']) await app.cliJson(['mailbox', 'add', `${m}@ours.test`, '--password', PW]);
  await app.cliJson(['alias', 'add', 'team@ours.test', 'ping@ours.test']);
  // Our domain's records as `letterbox dns` prints them (SPF for the SRS sender, DKIM keys for ARC).
  for (const r of (await app.cliJson(['dns', 'ours.test'])).records) {
    if (r.type !== 'TXT') continue;
    const v = r.value.replace(/"\s*"/g, '').replace(/^"|"$/g, '');
    dns.txt(r.name, v);
    if (r.purpose === 'dkim') dkimRecords[r.name] = v;
  }
  key = (await app.cliJson(['key', 'create', '--name', 'fwd', '--scopes', 'mailboxes:*'])).secret;
  // Dovecot re-reads its users file at most once a second: wait until it knows the mailboxes.
  await waitFor(async () => {
    const c = imapClient('keep@ours.test');
    try {
      await c.connect();
      await c.logout();
      return true;
    } catch {
      return false;
    }
  }, 'Dovecot to know the mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
  if (cert) Sink.cleanupCert(cert.dir);
});

function imapClient(user: string): ImapFlow {
  return new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user, pass: PW }, logger: false, tls: { ca: applianceCert(app), servername: HOST } });
}

/** Subjects of the INBOX messages of `user` that contain `token`, over IMAP. */
async function inbox(user: string, token: string): Promise<string[]> {
  const c = imapClient(user);
  await c.connect();
  try {
    const lock = await c.getMailboxLock('INBOX');
    try {
      const uids = (await c.search({ subject: token }, { uid: true })) || [];
      const out: string[] = [];
      if (uids.length) for await (const m of c.fetch(uids, { envelope: true }, { uid: true })) out.push(m.envelope!.subject!);
      return out;
    } finally {
      lock.release();
    }
  } finally {
    await c.logout();
  }
}

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
const queuedTo = async (rcpt: string) => (await app.cliJson(['queue', 'list', '--status', 'all', '--limit', '500'])).data.filter((e: any) => e.recipient === rcpt).length;

test('API: set, read, validate (targets, loops, limit) and remove the forwarding', async () => {
  const path = '/mailboxes/ping@ours.test/forwarding';
  assert.equal((await call(app, key, 'GET', path)).status, 404);
  for (const [body, why] of [
    [{ targets: [] }, 'no target'],
    [{ targets: ['ping@ours.test'] }, 'itself'],
    [{ targets: ['a@r.test', 'b@r.test', 'c@r.test', 'd@r.test'] }, 'over sieve.max_forward_targets'],
    [{ targets: ['nobody@ours.test'] }, 'unknown local target'],
    [{ targets: ['x@remote.test'], keepCopy: 'yes' }, 'keepCopy not a boolean'],
    [{ targets: ['not an address'] }, 'bad address'],
  ] as const) {
    const r = await call(app, key, 'PUT', path, body);
    assert.equal(r.status, 400, `${why}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error.code, 'validation_error');
  }
  let r = await call(app, key, 'PUT', path, { targets: ['pong@ours.test', 'Friend@Remote.test'], keepCopy: false });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.deepEqual([r.json.data.targets, r.json.data.keepCopy], [['pong@ours.test', 'friend@remote.test'], false]);
  // pong → ping would be a loop (ping already forwards to pong), also through the alias team@ → ping@.
  for (const t of ['ping@ours.test', 'team@ours.test']) {
    r = await call(app, key, 'PUT', '/mailboxes/pong@ours.test/forwarding', { targets: [t] });
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.match(r.json.error.message, /loop|Alias loop/);
  }
  assert.equal((await call(app, key, 'GET', '/mailboxes/pong@ours.test/forwarding')).status, 404, 'a refused setting is not stored');
  r = await call(app, key, 'GET', path);
  assert.deepEqual(r.json.data.targets, ['pong@ours.test', 'friend@remote.test']);
  // Routing sees it: the mailbox resolves to pong (local) and the external target.
  r = await call(app, key, 'GET', '/mailboxes/resolve?address=ping@ours.test');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(JSON.stringify(r.json.data).includes('friend@remote.test'), JSON.stringify(r.json.data));
  assert.equal((await call(app, key, 'DELETE', path)).status, 200);
  assert.equal((await call(app, key, 'GET', path)).status, 404);
  assert.equal((await call(app, key, 'DELETE', path)).status, 404);
  // Scopes: a read-only key cannot change it.
  const ro = (await app.cliJson(['key', 'create', '--name', 'ro', '--scopes', 'mailboxes:read'])).secret;
  assert.equal((await call(app, ro, 'PUT', path, { targets: ['x@remote.test'] })).status, 403);
});

test('CLI: forward ADDR --to X --to Y --no-copy, forward show, forward rm', async () => {
  let r = await app.cli(['forward', 'cli@ours.test', '--to', 'one@remote.test', '--to', 'two@remote.test', '--no-copy']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /one@remote\.test, two@remote\.test \(no copy kept\)/);
  const shown = JSON.parse((await app.cli(['--json', 'forward', 'show', 'cli@ours.test'])).stdout);
  assert.deepEqual([shown.targets, shown.keepCopy], [['one@remote.test', 'two@remote.test'], false]);
  r = await app.cli(['forward', 'cli@ours.test', '--to', 'cli@ours.test']);
  assert.equal(r.code, 2, 'itself: refused with exit 2');
  assert.equal((await app.cli(['forward', 'cli@ours.test'])).code, 2, 'no --to');
  assert.equal((await app.cli(['forward', 'nobody@ours.test', '--to', 'x@remote.test'])).code, 2);
  assert.equal((await app.cli(['forward', 'rm', 'cli@ours.test'])).code, 0);
  assert.equal((await app.cli(['forward', 'show', 'cli@ours.test'])).code, 2);
});

test('end to end: SRS envelope sender, an ARC seal that verifies at the receiver, a copy in INBOX over IMAP', { timeout: 120000 }, async () => {
  const r = await call(app, key, 'PUT', '/mailboxes/keep@ours.test/forwarding', { targets: ['friend@remote.test'], keepCopy: true });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const subject = tok('keep');
  assert.equal(await mx('keep@ours.test', subject), 250);
  await sink.waitFor(() => received(subject).length >= 1, 60000);
  const got = received(subject)[0];
  assert.deepEqual(got.to, ['friend@remote.test']);
  assert.match(got.from, /^SRS0=[A-Za-z0-9_-]{4}=[a-z2-7]{2}=pass\.test=alice@ours\.test$/);
  const raw = got.data.toString('utf8');
  assert.match(raw, /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none; d=ours\.test;/m);
  assert.match(raw, /^Delivered-To: keep@ours\.test\r?$/m);
  // The receiver's view (mailauth): SPF for the SRS sender passes, the ARC chain is valid.
  const resolver = createResolver({ servers: [dns.server], timeoutMs: 2000, clock: { now: () => Date.now() } });
  const res = await authenticate(got.data, { ip: '127.0.0.1', helo: HOST, sender: got.from, mta: 'receiver.test', resolver: resolver.resolve, disableBimi: true });
  assert.equal((res.arc as any).status.result, 'pass', JSON.stringify((res.arc as any).status));
  assert.equal((res.spf as any).status.result, 'pass');
  // An independent verifier (dkimpy) agrees.
  const f = join(app.dir, `${subject}.eml`);
  const rf = join(app.dir, 'dkim-records.json');
  writeFileSync(f, got.data);
  writeFileSync(rf, JSON.stringify(dkimRecords));
  const { stdout } = await run('/usr/bin/python3', [join(import.meta.dirname, 'helpers', 'arcverify.py'), f, rf]);
  assert.equal(JSON.parse(stdout).cv, 'pass', stdout);
  // keepCopy: the mailbox has it too (stored before the MX answered 250).
  assert.deepEqual(await inbox('keep@ours.test', subject), [subject]);
});

test('keepCopy false: forwarded, no copy; a message that comes back already forwarded for the mailbox is stored, not forwarded again', { timeout: 120000 }, async () => {
  const r = await call(app, key, 'PUT', '/mailboxes/nocopy@ours.test/forwarding', { targets: ['away@remote.test'], keepCopy: false });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const subject = tok('nocopy');
  assert.equal(await mx('nocopy@ours.test', subject), 250);
  await sink.waitFor(() => received(subject).length >= 1, 60000);
  assert.deepEqual(await inbox('nocopy@ours.test', subject), [], 'no copy kept');
  // The remote side forwards it back to us (our Delivered-To is in it): stored in the mailbox, no new forward.
  const before = await queuedTo('away@remote.test');
  const back = tok('back');
  assert.equal(await mx('nocopy@ours.test', back, { 'Delivered-To': 'nocopy@ours.test' }), 250);
  assert.deepEqual(await inbox('nocopy@ours.test', back), [back], 'stored instead of forwarded');
  assert.equal(await queuedTo('away@remote.test'), before, 'not queued again (forwards are queued before the 250)');
  assert.ok(app.logs.some((l) => l.includes('forwarding loop')), 'logged');
});

test("the mailbox's sending caps: over them the message is stored in the mailbox instead of forwarded", { timeout: 120000 }, async () => {
  assert.equal((await app.cli(['limits', 'capped@ours.test', '--messages-per-hour', '1'])).code, 0);
  const r = await call(app, key, 'PUT', '/mailboxes/capped@ours.test/forwarding', { targets: ['capped-target@remote.test'], keepCopy: false });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const first = tok('cap1');
  const second = tok('cap2');
  assert.equal(await mx('capped@ours.test', first), 250);
  assert.equal(await mx('capped@ours.test', second), 250);
  assert.equal(await queuedTo('capped-target@remote.test'), 1, 'only the first is forwarded');
  assert.deepEqual(await inbox('capped@ours.test', first), []);
  assert.deepEqual(await inbox('capped@ours.test', second), [second], 'the second is kept in the mailbox');
});

test('the replies match the OpenAPI document', async () => {
  const { checked, problems } = await checkRepliesAgainstDoc(app);
  assert.ok(checked > 0);
  assert.deepEqual(problems, []);
});

test('without ACME the certificate names no autoconfig./autodiscover. hosts (they join only the ACME certificate; test/acme.test.ts)', () => {
  const names = readCertificate(join(app.dir, 'certs', 'fullchain.pem'))!.names;
  assert.ok(names.includes(HOST), names.join(','));
  assert.ok(!names.some((n) => /^(autoconfig|autodiscover)\./.test(n)), names.join(','));
});
