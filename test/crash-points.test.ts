// Zero loss at every step where durability changes hands, deterministically: the appliance runs with
// its test-only crash points armed (LB_TEST_CRASH_FILE, src/util/crash-points.ts); for each point the
// test writes its name into the file, drives one message through that step, sees the process die
// there (SIGKILL, no reply), restarts it and retries as a real client would. Exact counts: a message
// answered 250 (or 200) is delivered; nothing is delivered more often than README promises (at most
// one extra copy per recipient per crash); no Idempotency-Key is left in progress.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { ImapFlow } from 'imapflow';
import Database from 'better-sqlite3';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { mxTransaction, submitTransaction } from './helpers/proof-smtp.ts';
import { waitFor } from './helpers/mailapi.ts';

const PW = 'crash points password 1';
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let hooks: Server;
const hookBodies: string[] = [];
let key: string;
let crashFile: string;

before(async () => {
  dns = await new TestDns().start();
  const cert = testCert(['mx.remote.test']);
  sink = await new Sink(cert).start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1');
  hooks = createServer((req, res) => {
    let b = '';
    req.on('data', (c) => (b += c)).on('end', () => {
      hookBodies.push(b);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', () => r()));
  const dir = `/tmp/lb-crash-${process.pid}`;
  crashFile = `${dir}-point`;
  app = await startAppliance({
    env: { LB_TEST_CRASH_FILE: crashFile },
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[outbound]\nport = ${sink.port}\nipv4_only = true\nretry_schedule = ["1s"]\ntls_ca_file = "${join(cert.dir, 'cert.pem')}"\n[webhooks]\nallow_loopback = true\nretry_schedule = ["1s"]\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\nsend_rate_burst = 100000\nsend_rate_per_minute = 100000\n`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', PW]);
  key = (await app.cliJson(['key', 'create', '--name', 'crash', '--scopes', '*'])).secret;
  await waitFor(async () => (await api('GET', '/mailboxes/alice@ours.test/folders')).status === 200, 'Dovecot to know alice');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
  await sink?.stop?.();
  hooks?.close();
});

async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}), ...headers }, body: body ? JSON.stringify(body) : undefined });
  return { status: r.status, json: await r.json().catch(() => null) };
}

/** Arms one crash point, runs `act` (which must see the process die), then restarts the appliance. */
async function crashAt(point: string, act: () => Promise<void>): Promise<void> {
  writeFileSync(crashFile, point);
  const died = new Promise<void>((r) => app.process.once('exit', () => r()));
  await act();
  await died;
  assert.equal(app.process.signalCode, 'SIGKILL', `${point}: the process was killed at the crash point`);
  await app.restart();
}

/** How many messages in alice's INBOX carry `subject`. */
async function copies(subject: string): Promise<number> {
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, tls: { ca: applianceCert(app), servername: app.hostname }, auth: { user: 'alice@ours.test', pass: PW }, logger: false });
  c.on('error', () => {});
  await c.connect();
  try {
    const lock = await c.getMailboxLock('INBOX');
    try {
      if ((c.mailbox as any).exists === 0) return 0;
      let n = 0;
      for await (const m of c.fetch('1:*', { envelope: true })) if (m.envelope?.subject === subject) n++;
      return n;
    } finally {
      lock.release();
    }
  } finally {
    await c.logout().catch(() => {});
  }
}

const remoteCopies = (subject: string) => sink.received.filter((r) => r.data.toString().includes(`Subject: ${subject}`)).length;

/** One MX transaction to alice; the DATA reply code, or 0 when the connection died first. */
const mx = (subject: string) => mxTransaction(app.ports.mx, { to: 'alice@ours.test', subject });

/** One submission (465) transaction to a remote recipient; the DATA reply code, or 0. */
const submit = (subject: string) => submitTransaction(app.ports.submissions, { ca: applianceCert(app), user: 'alice@ours.test', pass: PW, to: 'bob@remote.test', subject });

// ---- inbound (MX → Dovecot) ----

test('mx.after-spool: killed before Dovecot has it → no reply; the retry delivers exactly one copy', async () => {
  await crashAt('mx.after-spool', async () => assert.equal(await mx('crash after spool'), 0));
  assert.equal(await mx('crash after spool'), 250);
  assert.equal(await copies('crash after spool'), 1);
});

for (const point of ['mx.after-lmtp', 'mx.before-reply']) {
  test(`${point}: stored by Dovecot, killed before the 250 → the retry makes exactly one extra copy, never a loss`, async () => {
    const subject = `crash ${point}`;
    await crashAt(point, async () => assert.equal(await mx(subject), 0));
    assert.equal(await mx(subject), 250);
    assert.equal(await copies(subject), 2, 'the copy stored before the crash and the retried one');
  });
}

// ---- submission → queue → remote ----

test('submit.after-queue-commit: queued, killed before the 250 → the queue delivers it after the restart, the retry once more: exactly 2', async () => {
  const subject = 'crash after queue commit';
  await crashAt('submit.after-queue-commit', async () => assert.equal(await submit(subject), 0));
  assert.equal(await submit(subject), 250);
  await waitFor(() => remoteCopies(subject) >= 2, 'both copies at the remote MX', 30000);
  assert.equal(remoteCopies(subject), 2);
});

test('submit.before-reply: same: exactly 2 at the remote MX, none lost', async () => {
  const subject = 'crash before submission reply';
  await crashAt('submit.before-reply', async () => assert.equal(await submit(subject), 0));
  assert.equal(await submit(subject), 250);
  await waitFor(() => remoteCopies(subject) >= 2, 'both copies at the remote MX', 30000);
  assert.equal(remoteCopies(subject), 2);
});

test('queue.after-remote-accept: the remote MX said 250, killed before it was recorded → sent once more after the restart: exactly 2', async () => {
  const subject = 'crash after remote accept';
  await crashAt('queue.after-remote-accept', async () => assert.equal(await submit(subject), 250));
  await waitFor(() => remoteCopies(subject) >= 2, 'the second copy after the restart', 30000);
  assert.equal(remoteCopies(subject), 2);
  // Recorded as delivered this time: nothing more comes.
  await waitFor(async () => (await api('GET', '/queue?state=delivered&limit=100')).json?.data?.some((e: any) => e.recipient === 'bob@remote.test'), 'the entry recorded as delivered');
});

// ---- API send with an Idempotency-Key ----

test('api.after-idempotency-claim: killed after claiming the key, before anything was queued → the claim is released at the restart; the retry sends exactly once', async () => {
  const subject = 'crash after idempotency claim';
  const h = { 'Idempotency-Key': 'crash-claim-1' };
  await crashAt('api.after-idempotency-claim', async () => {
    await assert.rejects(api('POST', '/mailboxes/alice@ours.test/send', { to: ['alice@ours.test'], subject, text: 'x' }, h));
  });
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  try {
    assert.equal((db.prepare('SELECT COUNT(*) AS n FROM api_idempotency WHERE status IS NULL').get() as any).n, 0, 'no Idempotency-Key left in progress');
  } finally {
    db.close();
  }
  const r = await api('POST', '/mailboxes/alice@ours.test/send', { to: ['alice@ours.test'], subject, text: 'x' }, h);
  assert.equal(r.status, 200);
  await waitFor(async () => (await copies(subject)) >= 1, 'the message in the mailbox');
  assert.equal(await copies(subject), 1);
});

// ---- webhooks ----

test('webhook.after-send: the endpoint got the event, killed before it was recorded → delivered again after the restart (at least once, exactly twice)', async () => {
  const hook = await api('POST', '/webhooks', { url: `http://127.0.0.1:${(hooks.address() as any).port}/h`, events: ['message.received'] });
  assert.equal(hook.status, 201, JSON.stringify(hook.json));
  const subject = 'webhook crash';
  await crashAt('webhook.after-send', async () => assert.equal(await mx(subject), 250));
  const mine = () => hookBodies.filter((b) => b.includes(subject));
  await waitFor(() => mine().length >= 2, 'the event delivered again after the restart', 30000);
  const ids = mine().map((b) => JSON.parse(b).id);
  assert.equal(ids.length, 2);
  assert.equal(ids[0], ids[1], 'the same event (same id: receivers deduplicate on it)');
});
