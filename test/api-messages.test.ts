// API part 2, reading mail: folders, lists with pagination, parsed messages (mail received over
// the real MX, multipart with attachments), raw, attachments, flags, moves and deletion, all
// through Dovecot over IMAP as the master user.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { ImapPool } from '../src/imap/pool.ts';
import { startAppliance, applianceCert, applianceImapLogin, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { call, checkRepliesAgainstDoc, createKey, waitFor } from './helpers/mailapi.ts';

let app: Appliance;
let dns: TestDns;
let key: string;
const CAROL_PW = 'carol password 12345';

before(async () => {
  dns = await new TestDns().start();
  app = await startAppliance({ extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\nsend_rate_burst = 100000\nsend_rate_per_minute = 100000\n` });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'carol@ours.test', '--password', CAROL_PW]);
  await app.cliJson(['mailbox', 'add', 'dan@ours.test', '--password', 'dan password 123456']);
  key = await createKey(app, '*');
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/dan@ours.test/folders')).status === 200, 'Dovecot to know the new mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function list(address: string, query = '') {
  const r = await call(app, key, 'GET', `/mailboxes/${address}/messages${query}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.data;
}

test('folders: the special-use folders with counts', async () => {
  const r = await call(app, key, 'GET', '/mailboxes/carol@ours.test/folders');
  assert.equal(r.status, 200);
  const byPath = new Map(r.json.data.map((f: any) => [f.path, f]));
  for (const p of ['INBOX', 'Sent', 'Drafts', 'Junk', 'Trash']) assert.ok(byPath.has(p), `${p} listed`);
  assert.equal((byPath.get('Trash') as any).specialUse, '\\Trash');
  assert.equal((byPath.get('INBOX') as any).messages, 0);
  assert.equal((await call(app, key, 'GET', '/mailboxes/nobody@ours.test/folders')).status, 404);
});

test('a multipart message received over the MX: parsed text, html, attachments (byte-exact), Authentication-Results verdicts', async () => {
  const png = Buffer.alloc(3000);
  for (let i = 0; i < png.length; i++) png[i] = (i * 31 + 7) & 255;
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(20_000, 0xa5), Buffer.from('\n%%EOF\n')]);
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'client.sender.test' } as any);
  const info = await t.sendMail({
    from: 'Sender <someone@sender.test>',
    to: 'carol@ours.test',
    subject: 'Report Q3 — résumé',
    text: 'Hello Carol,\nthe report is attached.\n',
    html: '<p>Hello Carol,</p><p>the report is attached. <img src="cid:logo@x"></p>',
    headers: { 'Authentication-Results': 'evil.example; spf=pass smtp.mailfrom=someone@sender.test; dkim=pass; dmarc=pass' },
    attachments: [
      { filename: 'report.pdf', content: pdf, contentType: 'application/pdf' },
      { filename: 'logo.png', content: png, contentType: 'image/png', cid: 'logo@x' },
    ],
  });
  t.close();
  const s = await waitFor(async () => (await list('carol@ours.test')).messages.find((m: any) => m.subject === 'Report Q3 — résumé'), 'the message in INBOX');
  assert.equal(s.hasAttachments, true);
  assert.equal(s.seen, false);
  assert.deepEqual(s.from, [{ name: 'Sender', address: 'someone@sender.test' }]);
  assert.equal(s.messageId, info.messageId);

  const r = await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}`);
  assert.equal(r.status, 200);
  const m = r.json.data;
  assert.equal(m.text.trim(), 'Hello Carol,\nthe report is attached.');
  assert.match(m.html, /<p>Hello Carol,<\/p>/);
  assert.equal(m.attachments.length, 2);
  const a0 = m.attachments.find((a: any) => a.filename === 'report.pdf');
  const a1 = m.attachments.find((a: any) => a.filename === 'logo.png');
  assert.deepEqual([a0.contentType, a0.size, a0.disposition], ['application/pdf', pdf.length, 'attachment']);
  assert.deepEqual([a1.contentType, a1.size, a1.contentId, a1.disposition], ['image/png', png.length, 'logo@x', 'inline']);
  // Only our own Authentication-Results are reported (the forged one from "evil.example" is not).
  assert.equal(m.authentication.length, 1);
  assert.equal(m.authentication[0].authservId, 'mail.letterbox.test');
  assert.ok(['none', 'neutral', 'fail', 'softfail', 'temperror', 'permerror'].includes(m.authentication[0].spf), m.authentication[0].raw);
  assert.notEqual(m.authentication[0].dmarc, 'pass');
  assert.ok(m.headers.some((h: any) => h.name === 'Received'));
  // Reading did not mark it seen; markSeen=1 does.
  assert.equal(m.seen, false);
  const seen = await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}?markSeen=1`);
  assert.equal(seen.json.data.seen, true);
  assert.equal((await list('carol@ours.test')).messages.find((x: any) => x.uid === s.uid).seen, true);

  const d0 = await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}/attachments/${a0.index}`);
  assert.equal(d0.headers.get('content-type'), 'application/pdf');
  assert.equal(sha(d0.body), sha(pdf));
  const d1 = await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}/attachments/${a1.index}`);
  assert.equal(d1.headers.get('content-type'), 'image/png');
  assert.equal(sha(d1.body), sha(png));

  // Raw = what a mail client downloads over IMAP with its own login.
  const raw = await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}/raw`);
  assert.match(raw.headers.get('content-type') ?? '', /^message\/rfc822/);
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: 'carol@ours.test', pass: CAROL_PW }, logger: false, tls: { ca: [applianceCert(app)], servername: 'mail.letterbox.test' } } as any);
  await c.connect();
  try {
    await c.mailboxOpen('INBOX', { readOnly: true });
    const src = await c.fetchOne(String(s.uid), { source: true }, { uid: true });
    assert.ok(src && src.source);
    assert.equal(sha(raw.body), sha(src.source));
  } finally {
    await c.logout();
  }
});

test('lists: newest first, paginated with before/nextBefore, unseen filter', async () => {
  for (let i = 1; i <= 7; i++) {
    const r = await call(app, key, 'POST', '/mailboxes/carol@ours.test/send', { to: 'dan@ours.test', subject: `page test ${i}`, text: `n${i}` });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  const p1 = await list('dan@ours.test', '?limit=3');
  assert.equal(p1.total, 7);
  assert.deepEqual(p1.messages.map((m: any) => m.subject), ['page test 7', 'page test 6', 'page test 5']);
  assert.ok(p1.nextBefore);
  const p2 = await list('dan@ours.test', `?limit=3&before=${p1.nextBefore}`);
  assert.deepEqual(p2.messages.map((m: any) => m.subject), ['page test 4', 'page test 3', 'page test 2']);
  const p3 = await list('dan@ours.test', `?limit=3&before=${p2.nextBefore}`);
  assert.deepEqual(p3.messages.map((m: any) => m.subject), ['page test 1']);
  assert.equal(p3.nextBefore, null);
  // Mark two seen; unseen=1 lists the other five.
  for (const m of p1.messages.slice(0, 2)) {
    const r = await call(app, key, 'PATCH', `/mailboxes/dan@ours.test/messages/${m.uid}`, { seen: true });
    assert.equal(r.status, 200);
    assert.ok(r.json.data.flags.includes('\\Seen'));
  }
  const unseen = await list('dan@ours.test', '?unseen=1&limit=10');
  assert.deepEqual(unseen.messages.map((m: any) => m.subject), ['page test 5', 'page test 4', 'page test 3', 'page test 2', 'page test 1']);
  const u2 = await list('dan@ours.test', '?unseen=1&limit=2');
  const u3 = await list('dan@ours.test', `?unseen=1&limit=10&before=${u2.nextBefore}`);
  assert.deepEqual(u3.messages.map((m: any) => m.subject), ['page test 3', 'page test 2', 'page test 1']);
  assert.equal((await call(app, key, 'GET', '/mailboxes/dan@ours.test/messages?folder=NoSuchFolder')).status, 404);
  assert.equal((await call(app, key, 'GET', '/mailboxes/dan@ours.test/messages?limit=0')).status, 400);
});

test('lists on a bigger folder (UID gaps, unseen sparse at the top and dense below): every page, with and without unseen=1, is exactly what a full IMAP search shows', async () => {
  // Filled and thinned out with carol's own login; the reference comes from the same login.
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: 'carol@ours.test', pass: CAROL_PW }, logger: false, tls: { ca: [applianceCert(app)], servername: 'mail.letterbox.test' } } as any);
  await c.connect();
  let reference: { uid: number; seen: boolean }[];
  try {
    await c.mailboxCreate('Archive');
    const N = 300;
    for (let i = 1; i <= N; i++) {
      // The newest 150: one in 40 unseen (the search windows must widen); the older: every other one.
      const unseen = i > N - 150 ? i % 40 === 0 : i % 2 === 0;
      await c.append('Archive', `From: x@remote.test\r\nTo: carol@ours.test\r\nSubject: archive ${i}\r\nMessage-ID: <archive${i}@remote.test>\r\n\r\nbody ${i}\r\n`, unseen ? [] : ['\\Seen']);
    }
    await c.mailboxOpen('Archive');
    const uids = (await c.search({ all: true }, { uid: true })) as number[];
    await c.messageDelete(uids.filter((u) => u % 7 === 3).join(','), { uid: true }); // UID gaps: sequence numbers no longer match UIDs
    reference = (await c.fetchAll('1:*', { uid: true, flags: true })).map((m) => ({ uid: m.uid, seen: m.flags?.has('\\Seen') ?? false })).sort((a, b) => b.uid - a.uid);
  } finally {
    await c.logout();
  }
  const walk = async (query: string) => {
    const seen: number[] = [];
    let before: number | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const page = await list('carol@ours.test', `?folder=Archive&limit=25${query}${before ? `&before=${before}` : ''}`);
      assert.equal(page.total, reference.length);
      assert.ok(page.messages.length <= 25);
      seen.push(...page.messages.map((m: any) => m.uid));
      before = page.nextBefore;
      if (before === null) return seen;
      assert.equal(before, page.messages.at(-1).uid, 'nextBefore is the last UID of the page');
    }
    assert.fail('pagination did not end');
  };
  assert.deepEqual(await walk(''), reference.map((m) => m.uid), 'every message, newest first, each once');
  const unseen = reference.filter((m) => !m.seen).map((m) => m.uid);
  assert.ok(unseen.length > 60, `${unseen.length} unseen`);
  assert.deepEqual(await walk('&unseen=1'), unseen, 'every unseen message, newest first, each once');
  // A deep page straight away, and a bound that is not a UID of the folder.
  const mid = reference[Math.floor(reference.length / 2)].uid;
  const deep = await list('carol@ours.test', `?folder=Archive&limit=10&unseen=1&before=${mid}`);
  assert.deepEqual(deep.messages.map((m: any) => m.uid), unseen.filter((u) => u < mid).slice(0, 10));
  const gap = reference.find((m, i) => i > 0 && reference[i - 1].uid - m.uid > 1)!;
  const afterGap = await list('carol@ours.test', `?folder=Archive&limit=5&before=${gap.uid + 1}`);
  assert.deepEqual(afterGap.messages.map((m: any) => m.uid), reference.filter((m) => m.uid <= gap.uid).slice(0, 5).map((m) => m.uid));
  const beyond = await list('carol@ours.test', `?folder=Archive&limit=5&before=${reference[0].uid + 1000}`);
  assert.deepEqual(beyond.messages.map((m: any) => m.uid), reference.slice(0, 5).map((m) => m.uid), 'a bound above every UID lists the newest');
});

test('flags, move, delete to Trash, permanent delete; 404 for a missing UID', async () => {
  const msgs = (await list('dan@ours.test', '?limit=50')).messages;
  const target = msgs.find((m: any) => m.subject === 'page test 3');
  // Flags: system flags and keywords.
  let r = await call(app, key, 'PATCH', `/mailboxes/dan@ours.test/messages/${target.uid}`, { flagged: true, addFlags: ['$Important'] });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(r.json.data.flags.includes('\\Flagged') && r.json.data.flags.includes('$Important'));
  r = await call(app, key, 'PATCH', `/mailboxes/dan@ours.test/messages/${target.uid}`, { flagged: false, removeFlags: ['$Important'] });
  assert.ok(!r.json.data.flags.includes('\\Flagged') && !r.json.data.flags.includes('$Important'));
  assert.equal((await call(app, key, 'PATCH', `/mailboxes/dan@ours.test/messages/${target.uid}`, { addFlags: ['bad flag'] })).status, 400);
  // Move to Junk: a new UID there, gone from INBOX.
  r = await call(app, key, 'PATCH', `/mailboxes/dan@ours.test/messages/${target.uid}`, { folder: 'Junk', seen: true });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.data.folder, 'Junk');
  const junkUid = r.json.data.uid;
  assert.ok(junkUid > 0);
  assert.ok(r.json.data.flags.includes('\\Seen'));
  assert.equal((await call(app, key, 'GET', `/mailboxes/dan@ours.test/messages/${target.uid}`)).status, 404);
  const inJunk = await call(app, key, 'GET', `/mailboxes/dan@ours.test/messages/${junkUid}?folder=Junk`);
  assert.equal(inJunk.json.data.subject, 'page test 3');
  assert.equal((await call(app, key, 'PATCH', `/mailboxes/dan@ours.test/messages/${junkUid}?folder=Junk`, { folder: 'Nope' })).status, 404);
  // Delete: to Trash first, then for good from Trash.
  r = await call(app, key, 'DELETE', `/mailboxes/dan@ours.test/messages/${junkUid}?folder=Junk`);
  assert.equal(r.status, 200);
  assert.equal(r.json.data.deleted, false);
  assert.equal(r.json.data.movedTo.folder, 'Trash');
  const trashUid = r.json.data.movedTo.uid;
  r = await call(app, key, 'DELETE', `/mailboxes/dan@ours.test/messages/${trashUid}?folder=Trash`);
  assert.equal(r.json.data.deleted, true);
  assert.equal((await list('dan@ours.test', '?folder=Trash')).total, 0);
  // permanent=1 expunges straight from INBOX.
  const other = msgs.find((m: any) => m.subject === 'page test 1');
  r = await call(app, key, 'DELETE', `/mailboxes/dan@ours.test/messages/${other.uid}?permanent=1`);
  assert.equal(r.json.data.deleted, true);
  assert.equal((await list('dan@ours.test', '?folder=Trash')).total, 0);
  assert.equal((await list('dan@ours.test')).total, 5);
  // Missing UIDs: 404 everywhere.
  for (const [method, path, body] of [
    ['GET', '/mailboxes/dan@ours.test/messages/99999'],
    ['GET', '/mailboxes/dan@ours.test/messages/99999/raw'],
    ['GET', '/mailboxes/dan@ours.test/messages/99999/attachments/0'],
    ['PATCH', '/mailboxes/dan@ours.test/messages/99999', { seen: true }],
    ['DELETE', '/mailboxes/dan@ours.test/messages/99999'],
  ] as [string, string, unknown?][]) {
    const x = await call(app, key, method, path, body);
    assert.equal(x.status, 404, `${method} ${path}`);
    assert.equal(x.json.error.code, 'not_found');
  }
  assert.equal((await call(app, key, 'GET', '/mailboxes/dan@ours.test/messages/abc')).status, 400);
});

test('domain-restricted keys see only their domains\' mailboxes', async () => {
  await app.cliJson(['domain', 'add', 'other.test']);
  const k = await createKey(app, '*', { domains: 'other.test' });
  const r = await call(app, k, 'GET', '/mailboxes/dan@ours.test/messages');
  assert.equal(r.status, 404);
  assert.equal((await call(app, k, 'POST', '/mailboxes/dan@ours.test/send', { to: 'carol@ours.test', subject: 'x', text: 'x' })).status, 404);
});

test('metrics: the IMAP pool holds reused connections', async () => {
  const m = await call(app, key, 'GET', '/metrics');
  const text = m.body.toString();
  const idle = Number(/^letterbox_imap_pool_connections\{state="idle"\} (\d+)/m.exec(text)?.[1]);
  const busy = Number(/^letterbox_imap_pool_connections\{state="busy"\} (\d+)/m.exec(text)?.[1]);
  assert.ok(idle >= 1, text);
  assert.equal(busy, 0);
  // The MX message of the multipart test was counted, by port.
  const port = app.ports.mx;
  assert.ok(Number(new RegExp(`^letterbox_smtp_sessions_total\\{service="mx",port="${port}",outcome="accepted"\\} (\\d+)`, 'm').exec(text)?.[1]) >= 1, text);
  assert.ok(Number(new RegExp(`^letterbox_smtp_messages_total\\{service="mx",port="${port}",outcome="accepted"\\} (\\d+)`, 'm').exec(text)?.[1]) >= 1);
  assert.match(text, /^letterbox_dovecot_restarts_total 0$/m);
  // The MX's verdicts on that message (no SPF record for sender.test, no DKIM signature).
  assert.ok(Number(/^letterbox_inbound_auth_results_total\{method="spf",result="[a-z]+"\} (\d+)/m.exec(text)?.[1]) >= 1, text);
  assert.ok(Number(/^letterbox_inbound_auth_results_total\{method="dkim",result="none"\} (\d+)/m.exec(text)?.[1]) >= 1, text);
  assert.match(text, /^letterbox_dovecot_up 1$/m);
});

test('IMAP failures answer 502 imap_error (a mailbox whose storage Dovecot cannot open)', async () => {
  await app.cliJson(['mailbox', 'add', 'erin@ours.test', '--password', 'erin password 123456']);
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/erin@ours.test/folders')).status === 200, 'erin known to Dovecot');
  const home = join(app.dataDir, 'mail', 'ours.test', 'erin');
  chmodSync(home, 0o000);
  try {
    // The pooled session may still be logged in: selecting a folder fails; a new login fails too.
    const r = await call(app, key, 'GET', '/mailboxes/erin@ours.test/messages');
    assert.equal(r.status, 502, JSON.stringify(r.json));
    assert.equal(r.json.error.code, 'imap_error');
    assert.ok(r.json.error.requestId);
  } finally {
    chmodSync(home, 0o700);
  }
});

test('the IMAP pool: reuse, per-mailbox limit with acquire timeout (503), idle timeout', async () => {
  const pool = new ImapPool({ ...applianceImapLogin(app), maxPerMailbox: 1, maxTotal: 2, acquireTimeoutMs: 300, idleTimeoutMs: 300 });
  try {
    const n1 = await pool.with('carol@ours.test', async (c) => (await c.status('INBOX', { messages: true }) as any).messages);
    const n2 = await pool.with('carol@ours.test', async (c) => (await c.status('INBOX', { messages: true }) as any).messages);
    assert.equal(n1, n2);
    assert.equal(pool.logins, 1, 'the second request reused the session');
    // One connection per mailbox: a second concurrent user waits, then gets 503.
    let release!: () => void;
    const held = pool.with('carol@ours.test', () => new Promise<void>((r) => (release = r)));
    await waitFor(() => release !== undefined && pool.stats().busy === 1, 'the held connection');
    await assert.rejects(pool.with('carol@ours.test', async () => 1), (err: any) => err.code === 'unavailable');
    // Another mailbox still gets one (total limit 2).
    assert.equal(await pool.with('dan@ours.test', async () => 'ok'), 'ok');
    release();
    await held;
    // A waiter is served as soon as the connection is released.
    let release2!: () => void;
    const held2 = pool.with('carol@ours.test', () => new Promise<void>((r) => (release2 = r)));
    await waitFor(() => release2 !== undefined, 'held again');
    const waiting = pool.with('carol@ours.test', async () => 'served');
    release2();
    assert.equal(await waiting, 'served');
    await held2;
    // Idle connections close after idleTimeoutMs.
    await waitFor(() => pool.stats().open === 0, 'idle connections to close', 5000);
    // Wrong master password: imap_error (502), never a hang.
    const bad = new ImapPool({ ...applianceImapLogin(app), masterPassword: 'wrong' });
    await assert.rejects(bad.with('carol@ours.test', async () => 1), (err: any) => err.code === 'imap_error' && err.status === 502);
    await bad.close();
  } finally {
    await pool.close();
  }
});

test('every JSON reply of this file matches the schema openapi.json documents for it', async () => {
  const r = await checkRepliesAgainstDoc(app);
  assert.ok(r.checked > 20, `checked ${r.checked}`);
  assert.deepEqual(r.problems, []);
});
