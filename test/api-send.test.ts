// API part 2, sending: POST /mailboxes/:id/send over real HTTP against a real appliance (real
// Dovecot, real queue) delivering to a receiving SMTP server on loopback; plus queue,
// suppressions, events and metrics routes, and scope checks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import Database from 'better-sqlite3';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { call, checkRepliesAgainstDoc, createKey, waitFor } from './helpers/mailapi.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let certDir: string;
let live: string;
let sandboxKey: string;
let alice: { id: string };
const BOB_PW = 'bob password 12345';
const dkimRecords: Record<string, string> = {};

before(async () => {
  dns = await new TestDns().start();
  const cert = testCert(['mx.remote.test']);
  certDir = cert.dir;
  sink = await new Sink(cert).start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1');
  app = await startAppliance({
    extraToml: `[dns]
servers = ["${dns.server}"]
timeout_ms = 1000
[outbound]
port = ${sink.port}
ipv4_only = true
retry_schedule = ["1h"]
tls_ca_file = "${join(certDir, 'cert.pem')}"
[api]
rate_burst = 100000
rate_per_minute = 100000
send_rate_burst = 100000
send_rate_per_minute = 100000
[submission]
max_message_size = "200k"
`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  const d = await app.cliJson(['dns', 'ours.test']);
  for (const r of d.records) if (r.purpose === 'dkim') dkimRecords[r.name] = r.value;
  alice = (await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', 'alice password 12345'])).mailbox ?? (await app.cliJson(['mailbox', 'show', 'alice@ours.test']));
  await app.cliJson(['mailbox', 'add', 'bob@ours.test', '--password', BOB_PW]);
  live = await createKey(app, '*');
  sandboxKey = await createKey(app, '*', { test: true });
  // Dovecot re-reads its users file within about a second.
  await waitFor(async () => (await call(app, live, 'GET', '/mailboxes/bob@ours.test/folders')).status === 200, 'Dovecot to know the new mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

async function inbox(address: string, folder = 'INBOX') {
  const r = await call(app, live, 'GET', `/mailboxes/${address}/messages?folder=${encodeURIComponent(folder)}&limit=200`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.data as { total: number; messages: any[] };
}

async function findBySubject(address: string, subject: string, folder = 'INBOX') {
  return waitFor(async () => (await inbox(address, folder)).messages.find((m) => m.subject === subject), `"${subject}" in ${address}/${folder}`);
}

test('send to a local mailbox: delivered now, readable through the API and through IMAP, copy in Sent', async () => {
  const r = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: 'Bob <bob@ours.test>', subject: 'Hello Bob', text: 'Plain body ✓', html: '<p>Plain body ✓</p>', fromName: 'Alice A.' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const res = r.json.data;
  assert.equal(res.sandbox, false);
  assert.deepEqual(res.rejected, []);
  assert.deepEqual(res.accepted.map((a: any) => [a.recipient, a.status]), [['bob@ours.test', 'delivered']]);
  assert.match(res.messageId, /^<[0-9a-f]+@ours\.test>$/);
  assert.ok(res.sentCopy && res.sentCopy.folder === 'Sent' && res.sentCopy.uid > 0);

  const summary = await findBySubject('bob@ours.test', 'Hello Bob');
  assert.equal(summary.messageId, res.messageId);
  assert.deepEqual(summary.from, [{ name: 'Alice A.', address: 'alice@ours.test' }]);
  assert.equal(summary.seen, false);
  const full = await call(app, live, 'GET', `/mailboxes/bob@ours.test/messages/${summary.uid}`);
  assert.equal(full.status, 200);
  assert.equal(full.json.data.text.trim(), 'Plain body ✓');
  assert.match(full.json.data.html, /<p>Plain body ✓<\/p>/);
  assert.ok(full.json.data.headers.some((h: any) => h.name.toLowerCase() === 'dkim-signature'), 'DKIM-signed');

  // What a real IMAP client sees (bob's own login): the same message and UID.
  const client = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: 'bob@ours.test', pass: BOB_PW }, logger: false, tls: { ca: [applianceCert(app)], servername: 'mail.letterbox.test' } } as any);
  await client.connect();
  try {
    await client.mailboxOpen('INBOX');
    const m = await client.fetchOne(String(summary.uid), { envelope: true, uid: true }, { uid: true });
    assert.ok(m);
    assert.equal(m.envelope?.subject, 'Hello Bob');
    assert.equal(m.envelope?.messageId, res.messageId);
  } finally {
    await client.logout();
  }

  const sent = await findBySubject('alice@ours.test', 'Hello Bob', 'Sent');
  assert.equal(sent.uid, res.sentCopy.uid);
  assert.equal(sent.seen, true);
});

test('the submission caps hold for API sends (same path as SMTP): over max_messages_per_hour → 429, nothing delivered, no copy left in Sent', async () => {
  await app.cliJson(['mailbox', 'add', 'capped@ours.test', '--password', 'capped password 12345']);
  await app.cliJson(['limits', 'capped@ours.test', '--messages-per-hour', '2']);
  await waitFor(async () => (await call(app, live, 'GET', '/mailboxes/capped@ours.test/folders')).status === 200, 'Dovecot to know capped@');
  const statuses: number[] = [];
  let refused: any = null;
  for (let i = 1; i <= 3; i++) {
    const r = await call(app, live, 'POST', '/mailboxes/capped@ours.test/send', { to: 'bob@ours.test', subject: `capped ${i}`, text: 'x' });
    statuses.push(r.status);
    if (r.status !== 200) refused = r.json;
  }
  assert.deepEqual(statuses, [200, 200, 429]);
  assert.equal(refused.error.code, 'rate_limited');
  assert.match(refused.error.message, /max_messages_per_hour/);
  await findBySubject('bob@ours.test', 'capped 2');
  assert.equal((await inbox('bob@ours.test')).messages.filter((m) => m.subject === 'capped 3').length, 0, 'the refused send delivered nothing');
  assert.deepEqual((await inbox('capped@ours.test', 'Sent')).messages.map((m) => m.subject).sort(), ['capped 1', 'capped 2'], 'the copy of the refused send was removed again');
});

function dkimVerify(message: Buffer): { ok: boolean; d: string }[] {
  const dir = mkdtempSync(join(tmpdir(), 'lbt-dkim-'));
  try {
    writeFileSync(join(dir, 'msg.eml'), message);
    writeFileSync(join(dir, 'records.json'), JSON.stringify(dkimRecords));
    return JSON.parse(execFileSync('/usr/bin/python3', [join(HERE, 'helpers', 'dkimverify.py'), join(dir, 'msg.eml'), join(dir, 'records.json')], { encoding: 'utf8' }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('send to a remote domain: queued, arrives at the remote MX DKIM-signed (independent verifier), Bcc hidden', async () => {
  const r = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', {
    to: ['carol@remote.test'],
    bcc: 'dave@remote.test',
    subject: 'Remote hello',
    text: 'to the world',
    headers: { 'X-Campaign': 'c42', 'List-Unsubscribe': '<mailto:unsub@ours.test>' },
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const res = r.json.data;
  assert.deepEqual(res.accepted.map((a: any) => a.status), ['queued', 'queued']);
  assert.equal(res.queueIds.length, 2);
  await sink.waitFor((rs) => rs.filter((x) => x.data.includes(res.messageId)).length >= 1 && rs.some((x) => x.to.includes('dave@remote.test')));
  const got = sink.received.filter((x) => x.data.toString().includes(res.messageId));
  assert.ok(got.length >= 1);
  for (const g of got) {
    const text = g.data.toString();
    assert.equal(g.from, 'alice@ours.test');
    assert.doesNotMatch(text, /^bcc:/im, 'Bcc header removed before sending');
    assert.match(text, /^X-Campaign: c42\r?$/m);
    assert.match(text, /^List-Unsubscribe: <mailto:unsub@ours\.test>\r?$/m);
    const v = dkimVerify(g.data);
    assert.ok(v.length >= 1 && v.every((s) => s.ok && s.d === 'ours.test'), JSON.stringify(v));
  }
  // The Sent copy keeps the Bcc line (as mail clients do).
  const sent = await findBySubject('alice@ours.test', 'Remote hello', 'Sent');
  const raw = await call(app, live, 'GET', `/mailboxes/alice@ours.test/messages/${sent.uid}/raw?folder=Sent`);
  assert.equal(raw.status, 200);
  assert.match(raw.headers.get('content-type') ?? '', /^message\/rfc822/);
  assert.match(raw.body.toString(), /^Bcc: dave@remote\.test\r?$/m);

  // Queue routes: the entries, with their attempt log.
  const entry = await waitFor(async () => {
    const e = await call(app, live, 'GET', `/queue/${res.queueIds[0]}`);
    return e.json?.data?.status === 'delivered' ? e.json.data : null;
  }, 'the queue entry to be delivered');
  assert.equal(entry.recipient, 'carol@remote.test');
  assert.ok(entry.attemptLog.length >= 1 && entry.attemptLog.at(-1).outcome === 'delivered');
  const list = await call(app, live, 'GET', '/queue?state=delivered&mailbox=alice@ours.test&limit=1');
  assert.equal(list.status, 200);
  assert.equal(list.json.data.length, 1);
  assert.ok(list.json.nextCursor, 'more than one delivered entry: a next page');
  const page2 = await call(app, live, 'GET', `/queue?state=delivered&mailbox=alice@ours.test&limit=1&cursor=${encodeURIComponent(list.json.nextCursor)}`);
  assert.equal(page2.status, 200);
  assert.notEqual(page2.json.data[0].id, list.json.data[0].id);
  // A delivered entry cannot be retried or removed.
  assert.equal((await call(app, live, 'POST', `/queue/${res.queueIds[0]}/retry`)).status, 409);
  assert.equal((await call(app, live, 'DELETE', `/queue/${res.queueIds[0]}`)).status, 409);
  assert.equal((await call(app, live, 'GET', '/queue/q_nosuchentry')).status, 404);
});

test('queue: a deferred entry can be listed, retried and removed', async () => {
  sink.rcpt.set('slow@remote.test', 'temp');
  const r = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: 'slow@remote.test', subject: 'Deferred', text: 'x' });
  assert.equal(r.status, 200);
  const id = r.json.data.queueIds[0];
  const e = await waitFor(async () => {
    const x = await call(app, live, 'GET', `/queue/${id}`);
    return x.json.data.attempts >= 1 && x.json.data.status === 'queued' ? x.json.data : null;
  }, 'a deferral');
  assert.equal(e.lastCode, 451);
  assert.ok(e.attemptLog[0].transcript, 'failed attempts keep their transcript');
  const listed = async (query: string) => ((await call(app, live, 'GET', `/queue?${query}`)).json.data as any[]).some((x) => x.id === id);
  assert.ok(await listed('domain=remote.test'));
  assert.equal(await listed('domain=elsewhere.test'), false, 'domain filter');
  assert.ok(await listed('mailbox=alice@ours.test&state=queued'));
  assert.equal(await listed('mailbox=bob@ours.test'), false, 'mailbox filter');
  assert.equal(await listed('state=delivered'), false, 'state filter');
  const retried = await call(app, live, 'POST', `/queue/${id}/retry`);
  assert.equal(retried.status, 200);
  await waitFor(async () => (await call(app, live, 'GET', `/queue/${id}`)).json.data.attempts >= 2, 'the retry');
  await waitFor(async () => (await call(app, live, 'GET', `/queue/${id}`)).json.data.status === 'queued', 'the retry to finish');
  const del = await call(app, live, 'DELETE', `/queue/${id}`);
  assert.equal(del.status, 200);
  assert.equal(del.json.data.status, 'cancelled');
});

test('sandbox (test key): recorded, never delivered, no Sent copy', async () => {
  const before = sink.received.length;
  const r = await call(app, sandboxKey, 'POST', '/mailboxes/alice@ours.test/send', { to: ['erin@remote.test', 'bob@ours.test'], subject: 'Sandboxed', text: 'never leaves' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.sandbox, true);
  assert.equal(r.json.data.sandbox, true);
  assert.deepEqual(r.json.data.accepted.map((a: any) => a.status).sort(), ['sandbox', 'sandbox']);
  assert.equal(r.json.data.sentCopy, null);
  // Recorded: queue entries (sandbox, delivered) and events.
  for (const id of r.json.data.queueIds) {
    const e = await call(app, live, 'GET', `/queue/${id}`);
    assert.equal(e.json.data.sandbox, true);
    assert.equal(e.json.data.status, 'delivered');
    assert.equal(e.json.data.attemptLog[0].mx, 'sandbox');
  }
  // A live send after it arrives; the sandboxed one never does, anywhere.
  const l = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: ['erin@remote.test', 'bob@ours.test'], subject: 'After sandbox', text: 'live' });
  await sink.waitFor((rs) => rs.some((x) => x.data.includes(l.json.data.messageId)));
  await findBySubject('bob@ours.test', 'After sandbox');
  assert.ok(!sink.received.slice(before).some((x) => x.data.toString().includes('Sandboxed')));
  assert.ok(!(await inbox('bob@ours.test')).messages.some((m) => m.subject === 'Sandboxed'));
  assert.ok(!(await inbox('alice@ours.test', 'Sent')).messages.some((m) => m.subject === 'Sandboxed'));
});

test('Idempotency-Key: same body replays the first response and sends nothing; a different body is a 409', async () => {
  const body = { to: 'bob@ours.test', subject: 'Idempotent once', text: 'only once' };
  const h = { 'Idempotency-Key': 'order-1234' };
  const a = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', body, h);
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('idempotent-replayed'), null);
  // Same body, keys in another order: same request.
  const b = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { text: 'only once', subject: 'Idempotent once', to: 'bob@ours.test' }, h);
  assert.equal(b.status, 200);
  assert.equal(b.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(b.json.data, a.json.data);
  const c = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { ...body, text: 'something else' }, h);
  assert.equal(c.status, 409);
  assert.equal(c.json.error.code, 'conflict');
  await findBySubject('bob@ours.test', 'Idempotent once');
  const all = (await inbox('bob@ours.test')).messages.filter((m) => m.subject === 'Idempotent once');
  assert.equal(all.length, 1, 'delivered exactly once');
});

test('Idempotency-Key under concurrency: 10 simultaneous sends → one message; another API key has its own namespace; a claim older than 24 hours no longer replays', async () => {
  const body = { to: 'bob@ours.test', subject: 'Idempotent race', text: 'once' };
  const h = { 'Idempotency-Key': 'race-1' };
  const rs = await Promise.all(Array.from({ length: 10 }, () => call(app, live, 'POST', '/mailboxes/alice@ours.test/send', body, h)));
  const first = rs.filter((r) => r.status === 200 && r.headers.get('idempotent-replayed') === null);
  assert.equal(first.length, 1, `exactly one request sends: ${rs.map((r) => r.status).join(',')}`);
  for (const r of rs) {
    if (r === first[0]) continue;
    // Either the replay of the first response, or "still in progress" (409) while it runs.
    if (r.status === 200) assert.deepEqual(r.json.data, first[0].json.data);
    else assert.equal(r.status, 409, JSON.stringify(r.json));
  }
  // The same Idempotency-Key under another API key is another request: it sends.
  const other = await createKey(app, 'send:write');
  const o = await call(app, other, 'POST', '/mailboxes/alice@ours.test/send', body, h);
  assert.equal(o.status, 200);
  assert.equal(o.headers.get('idempotent-replayed'), null);
  assert.notEqual(o.json.data.messageId, first[0].json.data.messageId);
  // Claims are kept 24 hours: make this key's claim 25 hours old; the same request then sends again.
  const db = new Database(join(app.dataDir, 'letterbox.db'));
  try {
    const moved = db.prepare("UPDATE api_idempotency SET created_at = created_at - 25 * 3600 * 1000 WHERE idem_key = 'race-1' AND key_id = (SELECT key_id FROM api_idempotency WHERE idem_key = 'race-1' ORDER BY created_at LIMIT 1)").run();
    assert.equal(moved.changes, 1);
  } finally {
    db.close();
  }
  const late = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', body, h);
  assert.equal(late.status, 200);
  assert.equal(late.headers.get('idempotent-replayed'), null, 'an expired claim does not replay');
  await waitFor(async () => (await inbox('bob@ours.test')).messages.filter((m) => m.subject === 'Idempotent race').length >= 3, 'three copies (first, other key, after expiry)');
  assert.equal((await inbox('bob@ours.test')).messages.filter((m) => m.subject === 'Idempotent race').length, 3, 'and no more: the 9 concurrent duplicates sent nothing');
});

test('header injection attempts are refused and send nothing', async () => {
  const base = { to: 'bob@ours.test', subject: 'ok', text: 'x' };
  const attempts: [string, Record<string, unknown>][] = [
    ['subject CRLF', { ...base, subject: 'hi\r\nBcc: victim@remote.test' }],
    ['subject LF', { ...base, subject: 'hi\nBcc: victim@remote.test' }],
    ['to CRLF', { ...base, to: 'bob@ours.test\r\nBcc: victim@remote.test' }],
    ['cc array CRLF', { ...base, cc: ['bob@ours.test', 'x@y.test\nBcc: victim@remote.test'] }],
    ['fromName CR', { ...base, fromName: 'Alice\rBcc: victim@remote.test' }],
    ['replyTo LF', { ...base, replyTo: 'a@b.test\nX-Evil: 1' }],
    ['header value CRLF', { ...base, headers: { 'X-Tag': 'a\r\nBcc: victim@remote.test' } }],
    ['header name Bcc', { ...base, headers: { Bcc: 'victim@remote.test' } }],
    ['header name From', { ...base, headers: { From: 'ceo@ours.test' } }],
    ['header name with colon', { ...base, headers: { 'X-A: b\r\nBcc': 'victim@remote.test' } }],
    ['header name Content-Type', { ...base, headers: { 'Content-Type': 'text/html' } }],
    ['attachment filename CRLF', { ...base, attachments: [{ filename: 'a.txt"\r\nBcc: victim@remote.test', content: 'aGk=' }] }],
    ['attachment contentType params', { ...base, attachments: [{ filename: 'a.txt', contentType: 'text/plain; x="\r\n"', content: 'aGk=' }] }],
    ['bad base64', { ...base, attachments: [{ filename: 'a.txt', content: 'not base64!' }] }],
    ['no body', { to: 'bob@ours.test', subject: 'nothing' }],
    ['unknown field', { ...base, bcc2: 'x@y.test' }],
  ];
  for (const [what, body] of attempts) {
    const r = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', body);
    assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error.code, 'validation_error', what);
  }
  // Sending as someone else is refused by the submission path.
  const spoof = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { ...base, from: 'bob@ours.test' });
  assert.equal(spoof.status, 403);
  const ev = await call(app, live, 'GET', '/events?type=message.queued&limit=500');
  assert.ok(!JSON.stringify(ev.json.data).includes('victim@remote.test'));
  assert.ok(!sink.received.some((x) => x.to.includes('victim@remote.test')));
});

test('attachments: size limit, and byte-exact round trip through raw and attachment download', async () => {
  const bin = Buffer.alloc(70_000);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919 + (i >> 5)) & 255;
  const csv = Buffer.from('a,b\r\n1,2\r\nünïcödé,3\r\n', 'utf8');
  const r = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', {
    to: 'bob@ours.test',
    subject: 'With attachments',
    text: 'see attached',
    attachments: [
      { filename: 'blob.bin', contentType: 'application/octet-stream', content: bin.toString('base64') },
      { filename: 'données.csv', contentType: 'text/csv', content: csv.toString('base64') },
    ],
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const s = await findBySubject('bob@ours.test', 'With attachments');
  assert.equal(s.hasAttachments, true);
  const m = (await call(app, live, 'GET', `/mailboxes/bob@ours.test/messages/${s.uid}`)).json.data;
  assert.deepEqual(m.attachments.map((a: any) => [a.index, a.filename, a.contentType, a.size]), [
    [0, 'blob.bin', 'application/octet-stream', bin.length],
    [1, 'données.csv', 'text/csv', csv.length],
  ]);
  const a0 = await call(app, live, 'GET', `/mailboxes/bob@ours.test/messages/${s.uid}/attachments/0`);
  assert.equal(a0.status, 200);
  assert.equal(a0.headers.get('content-type'), 'application/octet-stream');
  assert.ok(a0.body.equals(bin), 'binary attachment byte-exact');
  const a1 = await call(app, live, 'GET', `/mailboxes/bob@ours.test/messages/${s.uid}/attachments/1`);
  assert.ok(a1.body.equals(csv), 'text attachment byte-exact');
  assert.match(a1.headers.get('content-disposition') ?? '', /filename\*=UTF-8''donn%C3%A9es\.csv/);
  assert.equal((await call(app, live, 'GET', `/mailboxes/bob@ours.test/messages/${s.uid}/attachments/2`)).status, 404);
  // Raw is the stored message byte for byte (what IMAP returns).
  const raw = await call(app, live, 'GET', `/mailboxes/bob@ours.test/messages/${s.uid}/raw`);
  const client = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: 'bob@ours.test', pass: BOB_PW }, logger: false, tls: { ca: [applianceCert(app)], servername: 'mail.letterbox.test' } } as any);
  await client.connect();
  try {
    await client.mailboxOpen('INBOX');
    const src = await client.fetchOne(String(s.uid), { source: true }, { uid: true });
    assert.ok(src && src.source && raw.body.equals(src.source));
  } finally {
    await client.logout();
  }
  const small = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: 'bob@ours.test', subject: 'small enough', text: 'x', attachments: [{ filename: 'small.bin', content: Buffer.alloc(1024).toString('base64') }] });
  assert.equal(small.status, 200, 'small attachments are fine');
  // Over submission.max_message_size (200k here), under api.max_body_size: 413 naming the limit,
  // whether the attachments alone are over it (250 KB) or only the encoded message is (160 KB of
  // attachment is ~216 KB once base64-encoded in the message).
  for (const [what, bytes] of [['attachments over the limit', 250 * 1024], ['encoded message over the limit', 160 * 1024]] as const) {
    const big = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: 'bob@ours.test', subject: `too big: ${what}`, text: 'x', attachments: [{ filename: 'big.bin', content: Buffer.alloc(bytes, 7).toString('base64') }] });
    assert.equal(big.status, 413, `${what}: ${JSON.stringify(big.json)}`);
    assert.equal(big.json.error.code, 'payload_too_large');
    assert.match(big.json.error.message, /submission\.max_message_size/);
  }
  await findBySubject('bob@ours.test', 'small enough');
  assert.ok(!(await inbox('bob@ours.test')).messages.some((m) => m.subject.startsWith('too big')), 'nothing over the limit was delivered');
  assert.ok(!(await inbox('alice@ours.test', 'Sent')).messages.some((m) => m.subject.startsWith('too big')), 'and no Sent copy was kept');
});

test('suppressions: add, list, sends refused per recipient, remove', async () => {
  const add = await call(app, live, 'POST', '/suppressions', { domain: 'ours.test', address: 'Gone@Remote.test', reason: 'asked us to stop' });
  assert.equal(add.status, 201, JSON.stringify(add.json));
  assert.equal(add.json.data.address, 'gone@remote.test');
  assert.equal((await call(app, live, 'POST', '/suppressions', { domain: 'ours.test', address: 'gone@remote.test' })).status, 409);
  const list = await call(app, live, 'GET', '/suppressions?domain=ours.test');
  assert.ok(list.json.data.some((s: any) => s.address === 'gone@remote.test' && s.reason === 'asked us to stop'));
  const only = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: 'gone@remote.test', subject: 'every recipient refused', text: 'x' });
  assert.equal(only.status, 400);
  assert.match(only.json.error.message, /suppress/);
  const mixed = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: ['gone@remote.test', 'bob@ours.test'], subject: 'mixed', text: 'x' });
  assert.equal(mixed.status, 200);
  assert.deepEqual(mixed.json.data.rejected.map((x: any) => [x.recipient, x.code]), [['gone@remote.test', 550]]);
  // The Sent copy is stored while the submission runs: kept when something was sent, removed again
  // when nothing was.
  assert.equal((await findBySubject('alice@ours.test', 'mixed', 'Sent')).uid, mixed.json.data.sentCopy.uid);
  assert.ok(!(await inbox('alice@ours.test', 'Sent')).messages.some((m) => m.subject === 'every recipient refused'), 'no Sent copy of a message that was not sent');
  const del = await call(app, live, 'DELETE', '/suppressions/gone@remote.test?domain=ours.test');
  assert.equal(del.status, 200);
  assert.equal((await call(app, live, 'DELETE', '/suppressions/gone@remote.test')).status, 404);
});

test('events: the tracking log with type, mailbox and since filters, paginated', async () => {
  const since = new Date(Date.now() - 1000).toISOString();
  const r = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: 'frank@remote.test', subject: 'evented', text: 'x' });
  const mid = r.json.data.messageId;
  const ev = await waitFor(async () => {
    const x = await call(app, live, 'GET', `/events?mailbox=alice@ours.test&since=${encodeURIComponent(since)}&order=asc`);
    const mine = x.json.data.filter((e: any) => e.messageId === mid);
    return mine.some((e: any) => e.type === 'message.delivered') ? mine : null;
  }, 'queued and delivered events');
  assert.deepEqual(ev.map((e: any) => e.type), ['message.queued', 'message.delivered']);
  assert.match(ev[0].id, /^evt_\d+$/);
  assert.equal(ev[0].mailboxId, alice.id ?? ev[0].mailboxId);
  const typed = await call(app, live, 'GET', '/events?type=message.delivered&type=message.queued&limit=2');
  assert.equal(typed.json.data.length, 2);
  assert.ok(typed.json.data.every((e: any) => ['message.delivered', 'message.queued'].includes(e.type)));
  const next = await call(app, live, 'GET', `/events?type=message.delivered&type=message.queued&limit=2&cursor=${encodeURIComponent(typed.json.nextCursor)}`);
  assert.equal(next.status, 200);
  assert.ok(Number(next.json.data[0].id.slice(4)) < Number(typed.json.data[1].id.slice(4)), 'next page is older');
  assert.equal((await call(app, live, 'GET', '/events?type=nope')).status, 400);
  assert.equal((await call(app, live, 'GET', '/events?since=yesterday')).status, 400);
});

function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) {
      if (line) assert.match(line, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* /, `comment line: ${line}`);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})?) (-?(?:[0-9.e+-]+|NaN|\+Inf|-Inf))$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

test('metrics: Prometheus text, protected by the metrics:read scope, and moving when mail flows', async () => {
  const noScope = await createKey(app, 'queue:read');
  assert.equal((await call(app, noScope, 'GET', '/metrics')).status, 403);
  assert.equal((await call(app, null, 'GET', '/metrics')).status, 401);
  const mkey = await createKey(app, 'metrics:read');
  const m1 = await call(app, mkey, 'GET', '/metrics');
  assert.equal(m1.status, 200);
  assert.match(m1.headers.get('content-type') ?? '', /^text\/plain/);
  const a = parseProm(m1.body.toString());
  const queued0 = a.get('letterbox_messages_total{event="queued"}') ?? 0;
  assert.ok(queued0 >= 1);
  assert.ok(a.has('letterbox_queue_entries{state="queued"}'));
  assert.ok(a.has('letterbox_queue_oldest_age_seconds'));
  assert.ok([...a.keys()].some((k) => k.startsWith('letterbox_api_requests_total{') && k.includes('route="/api/v1/mailboxes/:id/send"') && k.includes('status="200"')));
  assert.ok([...a.keys()].some((k) => k.startsWith('letterbox_imap_pool_connections{')));
  assert.ok([...a.keys()].some((k) => k.startsWith('letterbox_delivery_latency_seconds_bucket{')));
  const r = await call(app, live, 'POST', '/mailboxes/alice@ours.test/send', { to: 'gina@remote.test', subject: 'metric mover', text: 'x' });
  await sink.waitFor((rs) => rs.some((x) => x.data.includes(r.json.data.messageId)));
  const b = await waitFor(async () => {
    const x = parseProm((await call(app, mkey, 'GET', '/metrics')).body.toString());
    return (x.get('letterbox_messages_total{event="delivered"}') ?? 0) > (a.get('letterbox_messages_total{event="delivered"}') ?? 0) ? x : null;
  }, 'the delivered counter to move');
  assert.ok((b.get('letterbox_messages_total{event="queued"}') ?? 0) > queued0);
  // SMTP submission: AUTH results and messages by port.
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.submissions, secure: true, auth: { user: 'alice@ours.test', pass: 'alice password 12345' }, tls: { ca: [applianceCert(app)], servername: 'mail.letterbox.test' } } as any);
  await t.sendMail({ from: 'alice@ours.test', to: 'bob@ours.test', subject: 'via submission', text: 'x' });
  t.close();
  const c = parseProm((await call(app, mkey, 'GET', '/metrics')).body.toString());
  assert.ok((c.get('letterbox_smtp_auth_total{service="submission",result="success"}') ?? 0) >= 1);
  assert.ok((c.get(`letterbox_smtp_sessions_total{service="submission",port="${app.ports.submissions}",outcome="accepted"}`) ?? 0) >= 1);
  assert.ok((c.get(`letterbox_smtp_messages_total{service="submission",port="${app.ports.submissions}",outcome="accepted"}`) ?? 0) >= 1);
  assert.ok((b.get('letterbox_api_sends_total{outcome="accepted",sandbox="false"}') ?? 0) > (a.get('letterbox_api_sends_total{outcome="accepted",sandbox="false"}') ?? 0));
});

test('scopes: every new route answers 403 without its scope', async () => {
  const weak = await createKey(app, 'domains:read,mailboxes:read');
  const routes: [string, string, unknown?][] = [
    ['POST', '/mailboxes/alice@ours.test/send', { to: 'bob@ours.test', subject: 'x', text: 'x' }],
    ['GET', '/mailboxes/alice@ours.test/folders'],
    ['GET', '/mailboxes/alice@ours.test/messages'],
    ['GET', '/mailboxes/alice@ours.test/messages/1'],
    ['GET', '/mailboxes/alice@ours.test/messages/1/raw'],
    ['GET', '/mailboxes/alice@ours.test/messages/1/attachments/0'],
    ['PATCH', '/mailboxes/alice@ours.test/messages/1', { seen: true }],
    ['DELETE', '/mailboxes/alice@ours.test/messages/1'],
    ['GET', '/queue'],
    ['GET', '/queue/q_x'],
    ['POST', '/queue/q_x/retry'],
    ['DELETE', '/queue/q_x'],
    ['GET', '/suppressions'],
    ['POST', '/suppressions', { domain: 'ours.test', address: 'a@b.test' }],
    ['DELETE', '/suppressions/a@b.test'],
    ['GET', '/events'],
    ['GET', '/webhooks'],
    ['POST', '/webhooks', { url: 'http://127.0.0.1:9/x', events: ['*'] }],
    ['GET', '/webhooks/wh_x'],
    ['PATCH', '/webhooks/wh_x', { description: 'x' }],
    ['DELETE', '/webhooks/wh_x'],
    ['POST', '/webhooks/wh_x/rotate-secret'],
    ['POST', '/webhooks/wh_x/test'],
    ['GET', '/webhooks/wh_x/deliveries'],
    ['GET', '/webhooks/wh_x/deliveries/whd_x'],
    ['POST', '/webhooks/wh_x/deliveries/whd_x/replay'],
    ['GET', '/metrics'],
  ];
  for (const [method, path, body] of routes) {
    const r = await call(app, weak, method, path, body);
    assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error.code, 'forbidden');
  }
  // Read scope does not grant write.
  const reader = await createKey(app, 'messages:read,queue:read');
  assert.equal((await call(app, reader, 'PATCH', '/mailboxes/alice@ours.test/messages/1', { seen: true })).status, 403);
  assert.equal((await call(app, reader, 'POST', '/queue/q_x/retry')).status, 403);
  // The OpenAPI document lists the new routes.
  const doc = await call(app, null, 'GET', '/openapi.json');
  for (const p of ['/api/v1/mailboxes/{id}/send', '/api/v1/mailboxes/{id}/messages/{uid}/attachments/{index}', '/api/v1/webhooks/{id}/deliveries/{deliveryId}/replay', '/api/v1/events', '/metrics']) {
    assert.ok(doc.json.paths[p], `${p} in openapi.json`);
  }
});

test('a disabled mailbox cannot send (403, not a 401 that would blame the key); unknown mailbox 404', async () => {
  await app.cliJson(['mailbox', 'add', 'zed@ours.test', '--password', 'zed password 123456']);
  await app.cliJson(['mailbox', 'disable', 'zed@ours.test']);
  const r = await call(app, live, 'POST', '/mailboxes/zed@ours.test/send', { to: 'bob@ours.test', subject: 'x', text: 'x' });
  assert.equal(r.status, 403, JSON.stringify(r.json));
  assert.equal(r.headers.get('www-authenticate'), null);
  assert.equal((await call(app, live, 'POST', '/mailboxes/nobody@ours.test/send', { to: 'bob@ours.test', subject: 'x', text: 'x' })).status, 404);
});

test('every JSON reply of this file matches the schema openapi.json documents for it', async () => {
  const r = await checkRepliesAgainstDoc(app);
  assert.ok(r.checked > 20, `checked ${r.checked}`);
  assert.deepEqual(r.problems, []);
});
