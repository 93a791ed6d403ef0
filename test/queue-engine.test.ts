// The outbound queue in-process with an injected clock: retry schedule, delay notice, expiry,
// DSNs (never to the null sender), sandbox, and index-driven scheduling with 10,000 deferred
// entries. The remote MX is a real smtp-server on loopback found through a real DNS server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startServer } from '../src/server.ts';
import { createAppContext, type AppContext } from '../src/context.ts';
import { getVerdicts, saveVerdicts } from '../src/verdicts/store.ts';
import { loadConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/log.ts';
import { createQueueComponent, type Queue } from '../src/queue/engine.ts';
import { addDomain, setOutbound } from '../src/services/domains.ts';
import { SMTPServer } from 'smtp-server';
import { addMailbox } from '../src/services/mailboxes.ts';
import { acceptOutbound } from '../src/submit/accept.ts';
import { setLimits } from '../src/submit/caps.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { freePort } from './helpers/appliance.ts';

const M = 60_000;
const H = 60 * M;
const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
let t = T0;
const clock = { now: () => t };
let dir: string;
let app: AppContext;
let queue: Queue;
let dns: TestDns;
let sink: Sink;
let cert: ReturnType<typeof testCert>;

before(async () => {
  cert = testCert(['mx.remote.test']);
  sink = await new Sink(cert).start();
  dns = await new TestDns().start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1');
  // Dual-stack MX hosts; the sink listens on IPv4 only.
  dns.mx('remote6.test', 'mx6.remote6.test').a('mx6.remote6.test', '::1').a('mx6.remote6.test', '127.0.0.1');
  dns.mx('remote4.test', 'mx4.remote4.test').a('mx4.remote4.test', '::1').a('mx4.remote4.test', '127.0.0.1');
  // No MX at all: the domain's own address is used (RFC 5321 5.1).
  dns.a('nomx.test', '127.0.0.1');
  dir = mkdtempSync(join(tmpdir(), 'lbt-q-'));
  chmodSync(dir, 0o755);
  const p = (n: number) => `127.0.0.1:${n}`;
  writeFileSync(
    join(dir, 'letterbox.toml'),
    `hostname = "mail.letterbox.test"
data_dir = "${join(dir, 'data')}"
[listen]
mx = ["${p(await freePort())}"]
submission = []
submissions = []
imap = ["${p(await freePort())}"]
api = "${p(await freePort())}"
[tls]
cert = "${join(dir, 'cert.pem')}"
key = "${join(dir, 'key.pem')}"
[dns]
servers = ["${dns.server}"]
[dovecot]
managed = false
[outbound]
port = ${sink.port}
retry_jitter = 0
mta_sts = false
poll_interval_ms = 100
ipv4_only_domains = ["remote4.test"]
`,
  );
  const config = loadConfig({ path: join(dir, 'letterbox.toml') });
  // The queue alone, on a context built like the server's (no listeners, no other component).
  app = await createAppContext(config, { log: silentLogger(), clock });
  queue = app.queue as Queue;
  await queue.start();
});

after(async () => {
  await app?.queue.stop();
  app?.db.close();
  await sink?.stop();
  await dns?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (cert) Sink.cleanupCert(cert.dir);
});

async function until<T>(f: () => T | undefined | null | false, what: string, ms = 20000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const row = (recipient: string) => app.db.prepare('SELECT * FROM outbound_queue WHERE recipient = ? ORDER BY created_at DESC').get(recipient) as any;
const msg = (from: string, subject: string) => Buffer.from(`From: ${from}\r\nTo: someone@remote.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@remote.test>\r\n\r\nbody\r\n`);

test('retries follow the schedule (injected clock); one delay notice after 4 h; expiry at max age → failed DSN (4.4.7)', async () => {
  sink.rcpt.set('slow@remote.test', 'temp');
  await queue.enqueue({ message: msg('ext@remote.test', 'slow one'), from: 'ext@remote.test', recipients: ['slow@remote.test'], mailboxId: null, sendingDomain: null, origin: 'forward' });
  let r = await until(() => (row('slow@remote.test')?.attempts === 1 && row('slow@remote.test').status === 'queued' ? row('slow@remote.test') : null), 'first attempt');
  assert.equal(r.next_attempt_at, T0 + 5 * M, 'first retry 5 minutes later');
  assert.equal(r.last_code, 451);
  // Not due yet: nothing happens until the clock reaches it.
  queue.wake();
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(row('slow@remote.test').attempts, 1);
  t = T0 + 5 * M;
  queue.wake();
  r = await until(() => (row('slow@remote.test')?.attempts === 2 && row('slow@remote.test').status === 'queued' ? row('slow@remote.test') : null), 'second attempt');
  assert.equal(r.next_attempt_at, t + 10 * M, 'second retry 10 minutes later');
  assert.equal(r.delay_notified, 0);
  t = T0 + 4 * H + M;
  queue.wake();
  r = await until(() => (row('slow@remote.test')?.attempts === 3 && row('slow@remote.test').status === 'queued' ? row('slow@remote.test') : null), 'third attempt');
  assert.equal(r.delay_notified, 1);
  await sink.waitFor(() => sink.for('ext@remote.test').length === 1);
  const delay = sink.for('ext@remote.test')[0];
  assert.equal(delay.from, '', 'DSNs come from the null sender');
  assert.match(delay.data.toString(), /Action: delayed/);
  assert.match(delay.data.toString(), /Will-Retry-Until: /);
  t = T0 + 5 * 24 * H;
  queue.wake();
  r = await until(() => (row('slow@remote.test')?.status === 'bounced' ? row('slow@remote.test') : null), 'expiry');
  assert.equal(r.attempts, 4);
  await sink.waitFor(() => sink.for('ext@remote.test').length === 2);
  const failed = sink.for('ext@remote.test')[1].data.toString();
  assert.match(failed, /Action: failed/);
  assert.match(failed, /Status: 4\.4\.7/);
  assert.match(failed, /Subject: slow one/);
  assert.equal(sink.for('slow@remote.test').length, 0);
  const outcomes = app.db.prepare('SELECT outcome FROM outbound_attempts WHERE queue_id = ? ORDER BY id').pluck().all(r.id);
  assert.deepEqual(outcomes, ['deferred', 'deferred', 'deferred', 'bounced']);
  // The spool file is gone once no recipient is pending.
  const m = app.db.prepare('SELECT pending FROM outbound_messages WHERE id = ?').get(r.message_id) as any;
  assert.equal(m.pending, 0);
});

test('never a DSN to the null sender, nor about a DSN', async () => {
  sink.rcpt.set('dead@remote.test', 'perm');
  const dsnsBefore = app.db.prepare("SELECT count(*) FROM outbound_messages WHERE origin = 'dsn'").pluck().get() as number;
  await queue.enqueue({ message: msg('x@remote.test', 'null sender'), from: '', recipients: ['dead@remote.test'], mailboxId: null, sendingDomain: null, origin: 'forward' });
  await queue.enqueue({ message: msg('MAILER-DAEMON@x', 'a dsn'), from: '', recipients: ['dead@remote.test'], mailboxId: null, sendingDomain: null, origin: 'dsn' });
  await until(() => (app.db.prepare("SELECT count(*) FROM outbound_queue WHERE recipient = 'dead@remote.test' AND status = 'bounced'").pluck().get() as number) === 2, 'both bounced');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(app.db.prepare("SELECT count(*) FROM outbound_messages WHERE origin = 'dsn'").pluck().get(), dsnsBefore + 1, 'only the DSN enqueued by the test itself');
});

test('sandbox: accepted, signed and recorded as delivered; nothing connects anywhere', async () => {
  await addDomain(app, 'example.test');
  const { mailbox } = await addMailbox(app, { address: 'alice@example.test', password: 'alice password 1234' });
  const before = sink.received.length;
  const r = await acceptOutbound(app, {
    mailbox: { id: mailbox.id, address: mailbox.address, domain: mailbox.domain },
    message: Buffer.from('From: alice@example.test\r\nTo: sb@remote.test\r\nSubject: sandboxed\r\n\r\nhi\r\n'),
    envelope: { from: 'alice@example.test', to: ['sb@remote.test', 'alice@example.test'] },
    sandbox: true,
    origin: 'api',
  });
  assert.deepEqual(r.accepted.map((a) => [a.recipient, a.status]).sort(), [['alice@example.test', 'sandbox'], ['sb@remote.test', 'sandbox']]);
  for (const a of r.accepted) {
    const q = app.db.prepare('SELECT q.status, m.sandbox, m.spool_id FROM outbound_queue q JOIN outbound_messages m ON m.id = q.message_id WHERE q.id = ?').get(a.queueId!) as any;
    assert.deepEqual(q, { status: 'delivered', sandbox: 1, spool_id: null });
  }
  const ev = app.db.prepare("SELECT data FROM events WHERE type = 'message.delivered' AND message_id = ?").pluck().all(r.messageId) as string[];
  assert.equal(ev.length, 2);
  assert.ok(ev.every((d) => JSON.parse(d).sandbox === true));
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(sink.received.length, before);
});

test('scheduling reads due entries through an index: with 10,000 deferred entries a new message goes out at once', async () => {
  const db = app.db;
  const plan = (db.prepare("EXPLAIN QUERY PLAN SELECT id, message_id, recipient, domain, attempts, delay_notified, created_at FROM outbound_queue WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?").all(t, 100) as any[]).map((r) => r.detail).join(' | ');
  assert.match(plan, /USING INDEX outbound_queue_due/);
  assert.doesNotMatch(plan, /SCAN outbound_queue(?! USING)/);
  db.transaction(() => {
    db.prepare("INSERT INTO outbound_messages (id, spool_id, size, mail_from, origin, pending, created_at) VALUES ('msg_bulk', 'bulk', 10, 'a@b.test', 'forward', 10000, ?)").run(t);
    const ins = db.prepare("INSERT INTO outbound_queue (id, message_id, recipient, domain, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, 'msg_bulk', ?, 'deferred.test', 'queued', 3, ?, ?, ?)");
    for (let i = 0; i < 10000; i++) ins.run(`q_bulk${i}`, `u${i}@deferred.test`, t + H + i, t, t);
  })();
  await queue.enqueue({ message: msg('ext@remote.test', 'fresh'), from: 'ext@remote.test', recipients: ['fresh@remote.test'], mailboxId: null, sendingDomain: null, origin: 'forward' });
  await sink.waitFor(() => sink.for('fresh@remote.test').length === 1, 10000);
  assert.equal(db.prepare("SELECT count(*) FROM outbound_queue WHERE message_id = 'msg_bulk' AND attempts = 3").pluck().get(), 10000, 'deferred entries untouched');
  db.prepare("DELETE FROM outbound_queue WHERE message_id = 'msg_bulk'").run();
});

test('events: queued, deferred, bounced recorded for webhooks', () => {
  const id = row('slow@remote.test').message_id;
  const types = app.db.prepare("SELECT type FROM events WHERE json_extract(data, '$.id') = ? ORDER BY id").pluck().all(id);
  assert.deepEqual(types, ['message.queued', 'message.deferred', 'message.deferred', 'message.deferred', 'message.bounced']);
});

test('a domain with outbound suspended cannot send: a clear error', async () => {
  setOutbound(app, 'example.test', false);
  const mb = app.db.prepare("SELECT id FROM mailboxes WHERE address = 'alice@example.test'").pluck().get() as string;
  await assert.rejects(
    acceptOutbound(app, { mailbox: { id: mb, address: 'alice@example.test', domain: 'example.test' }, message: Buffer.from('From: alice@example.test\r\n\r\nx\r\n'), envelope: { from: 'alice@example.test', to: ['x@remote.test'] }, origin: 'api' }),
    (err: any) => err.code === 'forbidden' && /outbound mail for example\.test is suspended/.test(err.message),
  );
  setOutbound(app, 'example.test', true);
});

test('smarthost: all remote mail relayed through it with AUTH over verified STARTTLS; the transcript never holds the credentials', async () => {
  const relayed: { user: string; to: string[] }[] = [];
  let first = true;
  const relay = new SMTPServer({
    key: cert.key,
    cert: cert.cert,
    authMethods: ['PLAIN', 'LOGIN'],
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 500,
    onAuth: (a, _s, cb) => (a.username === 'relayuser' && a.password === 'relay-secret-pw' ? cb(null, { user: a.username }) : cb(Object.assign(new Error('bad'), { responseCode: 535 }))),
    onRcptTo: (_a, _s, cb) => (first ? ((first = false), cb(Object.assign(new Error('4.3.0 busy'), { responseCode: 451 }))) : cb()),
    onData: (stream, session, cb) => {
      stream.resume();
      stream.on('end', () => {
        relayed.push({ user: String(session.user), to: session.envelope.rcptTo.map((r) => r.address) });
        cb();
      });
    },
  });
  const port = await freePort();
  await new Promise<void>((r) => relay.listen(port, '127.0.0.1', () => r()));
  const d2 = mkdtempSync(join(tmpdir(), 'lbt-q2-'));
  chmodSync(d2, 0o755);
  writeFileSync(join(d2, 'pw'), 'relay-secret-pw\n');
  writeFileSync(join(d2, 'ca.pem'), cert.cert);
  const p = async () => `127.0.0.1:${await freePort()}`;
  writeFileSync(
    join(d2, 'letterbox.toml'),
    `hostname = "mail.letterbox.test"
data_dir = "${join(d2, 'data')}"
[listen]
mx = ["${await p()}"]
submission = []
submissions = []
imap = ["${await p()}"]
api = "${await p()}"
[tls]
cert = "${join(d2, 'cert.pem')}"
key = "${join(d2, 'key.pem')}"
[dns]
servers = ["${dns.server}"]
[dovecot]
managed = false
[outbound]
smarthost = "mx.remote.test:${port}"
smarthost_user = "relayuser"
smarthost_password_file = "${join(d2, 'pw')}"
tls_ca_file = "${join(d2, 'ca.pem')}"
retry_schedule = ["1s"]
retry_jitter = 0
poll_interval_ms = 100
`,
  );
  const s2 = await startServer({ config: loadConfig({ path: join(d2, 'letterbox.toml') }), log: silentLogger(), clock: { now: () => Date.now() }, components: [createQueueComponent] });
  try {
    const q2 = s2.app.queue;
    const { queueIds } = await q2.enqueue({ message: msg('ext@remote.test', 'relayed'), from: 'ext@remote.test', recipients: ['someone@nowhere.test'], mailboxId: null, sendingDomain: null, origin: 'forward' });
    await until(() => relayed.length === 1, 'relayed message');
    assert.deepEqual(relayed[0], { user: 'relayuser', to: ['someone@nowhere.test'] });
    const attempts = s2.app.db.prepare('SELECT * FROM outbound_attempts WHERE queue_id = ? ORDER BY id').all(queueIds[0]) as any[];
    await until(() => (s2.app.db.prepare('SELECT count(*) FROM outbound_attempts WHERE queue_id = ?').pluck().get(queueIds[0]) as number) === 2, 'two attempts');
    const all = s2.app.db.prepare('SELECT * FROM outbound_attempts WHERE queue_id = ? ORDER BY id').all(queueIds[0]) as any[];
    assert.deepEqual(all.map((a) => a.outcome), ['deferred', 'delivered']);
    assert.equal(all[0].mx, 'mx.remote.test');
    assert.ok(all[0].tls_version, 'TLS to the smarthost');
    const transcript = String(all[0].transcript);
    assert.match(transcript, /AUTH \[redacted\]/);
    assert.match(transcript, /RCPT TO/);
    assert.doesNotMatch(transcript, /relay-secret-pw/);
    assert.doesNotMatch(transcript, new RegExp(Buffer.from('\0relayuser\0relay-secret-pw').toString('base64').slice(0, 12)));
    assert.ok(attempts.length >= 1);
  } finally {
    await s2.stop();
    await new Promise<void>((r) => relay.close(() => r()));
    rmSync(d2, { recursive: true, force: true });
  }
});

test('routing: IPv6 first, falling back to IPv4; IPv4 only for listed domains; A record when there is no MX', async () => {
  const send = (to: string) => queue.enqueue({ message: msg('ext@remote.test', 'route ' + to), from: 'ext@remote.test', recipients: [to], mailboxId: null, sendingDomain: null, origin: 'forward' });
  await send('a@remote6.test');
  await send('b@remote4.test');
  await send('c@nomx.test');
  await sink.waitFor(() => ['a@remote6.test', 'b@remote4.test', 'c@nomx.test'].every((r) => sink.for(r).length === 1));
  const attempt = (r: string) => app.db.prepare('SELECT a.* FROM outbound_attempts a JOIN outbound_queue q ON q.id = a.queue_id WHERE q.recipient = ? ORDER BY a.id DESC').get(r) as any;
  await until(() => ['a@remote6.test', 'b@remote4.test', 'c@nomx.test'].every((r) => attempt(r)?.outcome === 'delivered'), 'delivered rows');
  assert.equal(attempt('a@remote6.test').ip, '127.0.0.1');
  assert.equal(attempt('c@nomx.test').mx, 'nomx.test');
  assert.ok(dns.queries.some((q) => q.name === 'mx6.remote6.test' && q.type === 'AAAA'), 'IPv6 looked up');
  assert.ok(!dns.queries.some((q) => q.name === 'mx4.remote4.test' && q.type === 'AAAA'), 'no IPv6 lookup for an IPv4-only domain');
});

test('retention: finished messages and their attempts are purged after outbound.retention (30 days)', () => {
  const db = app.db;
  const before = db.prepare("SELECT count(*) FROM outbound_messages WHERE pending <= 0").pluck().get() as number;
  assert.ok(before > 0);
  const waiting = db.prepare("SELECT count(*) FROM outbound_queue WHERE status IN ('queued', 'inflight')").pluck().get();
  const saved = t;
  t = T0 + 5 * 24 * H + 31 * 24 * H; // every message here was created at or before T0 + 5 days
  // The same hourly job removes the MX's stored verdicts older than smtp.verdicts_retention (365 days).
  const auth = { authservId: 'mx.test', spf: { result: 'pass', domain: null }, dkim: [], dmarc: { result: 'none', domain: null, policy: null }, arc: { result: 'none' }, header: '' };
  saveVerdicts(db, 'verdict-old', { auth, now: t - 366 * 24 * H });
  saveVerdicts(db, 'verdict-kept', { auth, now: t - 364 * 24 * H });
  try {
    assert.equal(queue.purge(), before);
  } finally {
    t = saved;
  }
  assert.equal(getVerdicts(db, 'verdict-old'), null, 'verdicts older than smtp.verdicts_retention are removed');
  assert.equal(getVerdicts(db, 'verdict-kept')?.auth.spf.result, 'pass', 'younger verdicts are kept');
  assert.equal(db.prepare('SELECT count(*) FROM outbound_messages WHERE pending <= 0').pluck().get(), 0);
  assert.equal(db.prepare("SELECT count(*) FROM outbound_queue WHERE status NOT IN ('queued', 'inflight')").pluck().get(), 0);
  assert.equal(db.prepare('SELECT count(*) FROM outbound_attempts a LEFT JOIN outbound_queue q ON q.id = a.queue_id WHERE q.id IS NULL').pluck().get(), 0);
  assert.equal(db.prepare("SELECT count(*) FROM outbound_queue WHERE status IN ('queued', 'inflight')").pluck().get(), waiting, 'waiting mail untouched');
});

test('caps hold under concurrent sends: 5 parallel sends with a cap of 2 per hour → exactly 2 accepted', async () => {
  const { mailbox } = await addMailbox(app, { address: 'bulk@example.test', password: 'bulk password 1234' });
  setLimits(app.db, `mailbox:${mailbox.id}`, { max_messages_per_hour: 2 });
  const sender = { id: mailbox.id, address: mailbox.address, domain: mailbox.domain };
  const results = await Promise.allSettled(
    [1, 2, 3, 4, 5].map((i) =>
      acceptOutbound(app, { mailbox: sender, message: Buffer.from(`From: bulk@example.test\r\nSubject: ${i}\r\n\r\nx\r\n`), envelope: { from: 'bulk@example.test', to: [`c${i}@remote.test`] }, sandbox: false, origin: 'api' }),
    ),
  );
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 2);
  for (const r of results.filter((x) => x.status === 'rejected') as PromiseRejectedResult[]) {
    assert.equal(r.reason.code, 'rate_limited');
    assert.match(r.reason.message, /max_messages_per_hour/);
  }
});

/** A stand-in for Dovecot's LMTP socket: records what it stores; `busy` recipients get 452 at RCPT. */
async function fakeLmtp(busy: Set<string>): Promise<{ stored: { to: string[]; subject: string }[]; close: () => Promise<void> }> {
  const path = app.dovecot.paths.lmtpSocket;
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true });
  const stored: { to: string[]; subject: string }[] = [];
  const lmtp = new SMTPServer({
    lmtp: true,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo: (a, _s, cb) => cb(busy.has(a.address) ? Object.assign(new Error('4.2.2 mailbox busy'), { responseCode: 452 }) : undefined),
    onData: (stream, session, cb) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        stored.push({ to: session.envelope.rcptTo.map((r) => r.address), subject: /^Subject: (.*)$/m.exec(Buffer.concat(chunks).toString())?.[1]?.trim() ?? '' });
        cb();
      });
    },
  });
  await new Promise<void>((r) => lmtp.listen(path, () => r()));
  return { stored, close: () => new Promise<void>((r) => lmtp.close(() => r())) };
}

/** Makes every spool write fail (the spool's tmp folder becomes a file: even root gets ENOTDIR). */
function breakSpool(): () => void {
  const tmp = join(app.config.data_dir, 'spool', 'tmp');
  rmSync(tmp, { recursive: true, force: true });
  writeFileSync(tmp, '');
  return () => {
    rmSync(tmp, { force: true });
    mkdirSync(tmp);
  };
}

test('mixed local/remote submission: the durable enqueue comes first, so a failed enqueue (451) has delivered nothing; then local stored, remote queued, busy local retried by the queue', async () => {
  const lmtp = await fakeLmtp(new Set(['busy@mixed.test']));
  try {
    await addDomain(app, 'mixed.test');
    const pw = 'mixed password 1234';
    const { mailbox } = await addMailbox(app, { address: 'sender@mixed.test', password: pw });
    await addMailbox(app, { address: 'local@mixed.test', password: pw });
    await addMailbox(app, { address: 'busy@mixed.test', password: pw });
    const send = (subject: string, to: string[]) =>
      acceptOutbound(app, {
        mailbox: { id: mailbox.id, address: mailbox.address, domain: mailbox.domain },
        message: Buffer.from(`From: sender@mixed.test\r\nTo: ${to.join(', ')}\r\nSubject: ${subject}\r\n\r\nhi\r\n`),
        envelope: { from: 'sender@mixed.test', to },
        origin: 'submission',
      });
    const sinkBefore = sink.received.length;
    const restore = breakSpool();
    try {
      await assert.rejects(send('mixed one', ['local@mixed.test', 'far@remote.test']), (err: any) => {
        assert.equal(err.code, 'unavailable');
        assert.match(String(err.details?.smtp), /^451 4\.3\.0/);
        return true;
      });
    } finally {
      restore();
    }
    assert.equal(lmtp.stored.length, 0, 'nothing delivered locally before the queue had the message');
    assert.equal(app.db.prepare("SELECT count(*) FROM outbound_queue WHERE recipient IN ('far@remote.test', 'local@mixed.test')").pluck().get(), 0);

    // The client's retry: everything exactly once.
    const r = await send('mixed one', ['local@mixed.test', 'far@remote.test', 'busy@mixed.test']);
    assert.deepEqual(r.rejected, []);
    assert.deepEqual(r.accepted.map((a) => [a.recipient, a.status]), [['local@mixed.test', 'delivered'], ['far@remote.test', 'queued'], ['busy@mixed.test', 'queued']]);
    assert.deepEqual(lmtp.stored.map((m) => [m.subject, m.to.filter((x) => x === 'local@mixed.test').length]), [['mixed one', 1]]);
    await until(() => row('far@remote.test')?.status === 'delivered', 'remote delivered');
    assert.equal(sink.received.length - sinkBefore, 1);
    const loc = row('local@mixed.test');
    assert.equal(loc.status, 'delivered');
    assert.deepEqual(app.db.prepare('SELECT mx, outcome FROM outbound_attempts WHERE queue_id = ?').all(loc.id), [{ mx: 'lmtp', outcome: 'delivered' }]);
    const busy = row('busy@mixed.test');
    assert.equal(busy.status, 'queued', 'Dovecot could not take it now: the queue retries');
    assert.equal(busy.attempts, 1);
    assert.equal(busy.last_code, 452);
  } finally {
    await lmtp.close();
  }
});

test('DSN durability: a bounce is recorded only together with its DSN (same transaction, spool fsynced first); if the DSN cannot be written the recipient stays queued and is tried again', async () => {
  sink.rcpt.set('gone@remote.test', 'perm');
  await queue.enqueue({ message: msg('owner@remote.test', 'durable dsn'), from: 'owner@remote.test', recipients: ['gone@remote.test'], mailboxId: null, sendingDomain: null, origin: 'forward' });
  // Before the queue's first tick (a timer; this runs first): the DSN will not be writable.
  const restore = breakSpool();
  let first: any;
  try {
    first = await until(() => (row('gone@remote.test')?.attempts === 1 && row('gone@remote.test').status !== 'inflight' ? row('gone@remote.test') : null), 'first attempt');
  } finally {
    restore();
  }
  assert.equal(first.status, 'queued', 'not bounced without its DSN');
  assert.equal(first.last_code, 550);
  assert.equal(first.next_attempt_at, t + 60_000);
  assert.equal(app.db.prepare("SELECT count(*) FROM outbound_queue WHERE recipient = 'owner@remote.test'").pluck().get(), 0);

  t += 2 * M;
  queue.wake();
  const bounced = await until(() => (row('gone@remote.test')?.status === 'bounced' ? row('gone@remote.test') : null), 'bounced');
  const dsn = app.db
    .prepare("SELECT m.created_at, m.origin, m.mail_from, q.status FROM outbound_queue q JOIN outbound_messages m ON m.id = q.message_id WHERE q.recipient = 'owner@remote.test'")
    .get() as any;
  assert.ok(dsn, 'the DSN exists');
  assert.equal(dsn.origin, 'dsn');
  assert.equal(dsn.mail_from, '');
  assert.equal(dsn.created_at, bounced.updated_at, 'written by the same transaction as the bounce');
  await sink.waitFor(() => sink.for('owner@remote.test').length === 1);
  assert.match(sink.for('owner@remote.test')[0].data.toString(), /Status: 5\.1\.1/);
  // The invariant over the whole store: no bounce of a message with a sender lacks a DSN to that sender.
  const orphans = app.db
    .prepare(
      `SELECT count(*) FROM outbound_queue q JOIN outbound_messages m ON m.id = q.message_id
       WHERE q.status = 'bounced' AND m.mail_from <> '' AND m.origin <> 'dsn' AND m.sandbox = 0
         AND NOT EXISTS (SELECT 1 FROM outbound_messages d JOIN outbound_queue dq ON dq.message_id = d.id WHERE d.origin = 'dsn' AND dq.recipient = m.mail_from AND d.created_at = q.updated_at)`,
    )
    .pluck()
    .get();
  assert.equal(orphans, 0);
});
