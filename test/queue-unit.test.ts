// Pure decisions of the sending path, without sockets: retry schedule, MX ordering and null MX,
// reply classification, brute-force guard, caps, sender authorization, header fix-ups, DSN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retryDelay, onTempFail, type RetryPolicy } from '../src/queue/schedule.ts';
import { orderMx, isNullMx } from '../src/queue/mx.ts';
import { outcomeOf, isHardBounce, enhancedCode } from '../src/queue/classify.ts';
import { checkMessageCap, checkRecipientCaps } from '../src/submit/caps.ts';
import { isAuthorizedSender } from '../src/submit/authorize.ts';
import { applyFixups, fromAddresses, parseHeader, splitMessage } from '../src/submit/fixups.ts';
import { buildDsn, dsnStatusFor } from '../src/mail/dsn.ts';
import { parseDuration } from '../src/config/schema.ts';

const M = 60_000;
const H = 60 * M;
const policy: RetryPolicy = { schedule: [5 * M, 10 * M, 30 * M, H, 2 * H, 4 * H, 8 * H], jitter: 0.1, maxAge: 5 * 24 * H, delayNoticeAfter: 4 * H };

test('retry schedule: 5m, 10m, 30m, 1h ... 8h repeating, with bounded jitter', () => {
  assert.equal(retryDelay(1, policy, 0.5), 5 * M);
  assert.equal(retryDelay(2, policy, 0.5), 10 * M);
  assert.equal(retryDelay(7, policy, 0.5), 8 * H);
  assert.equal(retryDelay(30, policy, 0.5), 8 * H);
  assert.equal(retryDelay(1, policy, 0), 4.5 * M);
  assert.equal(retryDelay(1, policy, 0.999999), Math.round(5 * M * 1.0999998));
});

test('temporary failure: retry, delay notice once after 4h, never past max age, expire at max age', () => {
  const t0 = 1_000_000;
  const a = onTempFail({ now: t0 + M, createdAt: t0, attempts: 1, delayNotified: false, policy, rand: 0.5 });
  assert.deepEqual(a, { action: 'retry', nextAttemptAt: t0 + M + 5 * M, delayNotice: false });
  const b = onTempFail({ now: t0 + 4 * H, createdAt: t0, attempts: 6, delayNotified: false, policy, rand: 0.5 });
  assert.equal(b.action === 'retry' && b.delayNotice, true);
  const c = onTempFail({ now: t0 + 5 * H, createdAt: t0, attempts: 7, delayNotified: true, policy, rand: 0.5 });
  assert.equal(c.action === 'retry' && c.delayNotice, false);
  const d = onTempFail({ now: t0 + policy.maxAge - H, createdAt: t0, attempts: 20, delayNotified: true, policy, rand: 0.5 });
  assert.equal(d.action === 'retry' && d.nextAttemptAt, t0 + policy.maxAge);
  assert.deepEqual(onTempFail({ now: t0 + policy.maxAge, createdAt: t0, attempts: 21, delayNotified: true, policy, rand: 0.5 }), { action: 'expire' });
});

test('MX: by preference, random among equal, duplicates dropped; null MX detected', () => {
  const recs = [
    { exchange: 'b.example', priority: 20 },
    { exchange: 'a1.example', priority: 10 },
    { exchange: 'A2.example.', priority: 10 },
    { exchange: 'a1.example', priority: 30 },
  ];
  assert.deepEqual(orderMx(recs, () => 0.1), ['a1.example', 'a2.example', 'b.example']);
  // rand() is drawn once per record, in record order: a2 drawing lower than a1 puts it first.
  const seq = (xs: number[]) => () => xs.shift()!;
  assert.deepEqual(orderMx(recs, seq([0, 0.9, 0.1, 0])), ['a2.example', 'a1.example', 'b.example']);
  assert.deepEqual(orderMx(recs, seq([0, 0.1, 0.9, 0])), ['a1.example', 'a2.example', 'b.example']);
  assert.equal(isNullMx([{ exchange: '', priority: 0 }]), true);
  assert.equal(isNullMx([{ exchange: '.', priority: 0 }]), true);
  assert.equal(isNullMx([{ exchange: 'mx.example', priority: 0 }]), false);
});

test('replies: 2xx delivered, 4xx deferred, 5xx bounced; only address failures are hard bounces', () => {
  assert.equal(outcomeOf(250), 'delivered');
  assert.equal(outcomeOf(451), 'deferred');
  assert.equal(outcomeOf(421), 'deferred');
  assert.equal(outcomeOf(550), 'bounced');
  assert.equal(enhancedCode('550 5.1.1 <x@y>: user unknown'), '5.1.1');
  assert.equal(isHardBounce(550, '550 5.1.1 user unknown'), true);
  assert.equal(isHardBounce(556, '556 5.1.10 null MX'), true);
  assert.equal(isHardBounce(550, '550 5.7.1 rejected by policy'), false);
  assert.equal(isHardBounce(552, '552 5.3.4 message too big'), false);
  assert.equal(isHardBounce(550, '550 No such user here'), true);
  assert.equal(isHardBounce(451, '451 4.1.1 try later'), false);
  assert.equal(dsnStatusFor(550, '550 5.1.1 nope', '5.0.0'), '5.1.1');
  assert.equal(dsnStatusFor(550, '550 nope', '5.0.0'), '5.0.0');
});

test('caps: messages per hour, recipients per message and per day (0 = unlimited)', () => {
  const caps = { messagesPerHour: 2, recipientsPerDay: 5, recipientsPerMessage: 3 };
  assert.equal(checkMessageCap(caps, { messagesLastHour: 1, recipientsLastDay: 0 }), null);
  assert.equal(checkMessageCap(caps, { messagesLastHour: 2, recipientsLastDay: 0 })?.cap, 'max_messages_per_hour');
  assert.equal(checkRecipientCaps(caps, { messagesLastHour: 0, recipientsLastDay: 0 }, 3), null);
  assert.equal(checkRecipientCaps(caps, { messagesLastHour: 0, recipientsLastDay: 0 }, 4)?.cap, 'max_recipients_per_message');
  assert.equal(checkRecipientCaps(caps, { messagesLastHour: 0, recipientsLastDay: 3 }, 3)?.cap, 'max_recipients_per_day');
  assert.match(checkRecipientCaps(caps, { messagesLastHour: 0, recipientsLastDay: 3 }, 3)!.message, /max_recipients_per_day/);
  assert.equal(checkMessageCap({ ...caps, messagesPerHour: 0 }, { messagesLastHour: 1e6, recipientsLastDay: 0 }), null);
});

test('sender authorization: own address, plus-addresses, aliases pointing only to it', () => {
  const owned = { mailbox: 'alice@example.com', aliases: ['sales@example.com'] };
  assert.equal(isAuthorizedSender('alice@example.com', owned), true);
  assert.equal(isAuthorizedSender('Alice@EXAMPLE.com', owned), true);
  assert.equal(isAuthorizedSender('alice+news@example.com', owned), true);
  assert.equal(isAuthorizedSender('sales@example.com', owned), true);
  assert.equal(isAuthorizedSender('bob@example.com', owned), false);
  assert.equal(isAuthorizedSender('alice@example.org', owned), false);
  assert.equal(isAuthorizedSender('not an address', owned), false);
  assert.equal(isAuthorizedSender('', owned), false);
});

test('fix-ups: Received on top, Message-ID and Date added when missing, Bcc (folded too) removed, body untouched', () => {
  const body = 'line 1\r\n\r\nline 3 with trailing space \r\n';
  const msg = Buffer.from(`From: "Alice" <alice@example.com>\r\nTo: bob@example.org\r\nBcc: secret@example.org,\r\n  other@example.org\r\nSubject: hi\r\n\r\n${body}`);
  const r = applyFixups({ message: msg, received: 'from x by y; now', now: new Date(Date.UTC(2026, 10, 23, 1, 2, 3)), newMessageId: () => '<id1@example.com>' });
  const out = r.message.toString();
  assert.ok(out.startsWith('Received: from x by y; now\r\nFrom: "Alice" <alice@example.com>\r\n'));
  assert.doesNotMatch(out, /Bcc|secret|other@/);
  assert.match(out, /\r\nMessage-ID: <id1@example\.com>\r\n/);
  assert.match(out, /\r\nDate: Mon, 23 Nov 2026 01:02:03 \+0000\r\n/);
  assert.ok(out.endsWith(`\r\n\r\n${body}`));
  assert.equal(r.messageId, '<id1@example.com>');
  assert.deepEqual(r.from, ['alice@example.com']);
  // existing Message-ID and Date are kept; bare LF becomes CRLF
  const r2 = applyFixups({ message: Buffer.from('From: a@b.example\nMessage-ID: <x@y>\nDate: Mon, 1 Jan 2026 00:00:00 +0000\n\nbody\n'), received: 'r', now: new Date(), newMessageId: () => '<new@z>' });
  assert.equal(r2.messageId, '<x@y>');
  assert.equal(r2.message.toString(), 'Received: r\r\nFrom: a@b.example\r\nMessage-ID: <x@y>\r\nDate: Mon, 1 Jan 2026 00:00:00 +0000\r\n\r\nbody\r\n');
  assert.deepEqual(fromAddresses(parseHeader('From: a@x.example, "B" <b@y.example>\r\n')), ['a@x.example', 'b@y.example']);
  assert.deepEqual(splitMessage(Buffer.from('A: 1\r\n\r\nB')).body.toString(), 'B');
});

test('DSN: RFC 3464 multipart/report with per-recipient fields and the original headers', () => {
  const dsn = buildDsn({
    reportingMta: 'mail.example.com',
    to: 'alice@example.com',
    originalMessageId: '<orig@example.com>',
    originalSubject: 'Hello',
    originalHeaders: 'From: alice@example.com\r\nSubject: Hello',
    arrivalDate: new Date(0),
    recipients: [{ address: 'x@remote.example', action: 'failed', status: '5.1.1', remoteMta: 'mx.remote.example', diagnostic: '550 5.1.1 unknown' }],
    now: new Date(0),
    messageId: '<dsn@mail.example.com>',
    boundary: 'BOUND',
  }).toString();
  assert.match(dsn, /^From: Mail Delivery System <MAILER-DAEMON@mail\.example\.com>\r\n/);
  assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status; boundary="BOUND"/);
  assert.match(dsn, /--BOUND\r\nContent-Description: Delivery report\r\nContent-Type: message\/delivery-status\r\n\r\nReporting-MTA: dns; mail\.example\.com\r\n/);
  assert.match(dsn, /Final-Recipient: rfc822; x@remote\.example\r\nAction: failed\r\nStatus: 5\.1\.1\r\nRemote-MTA: dns; mx\.remote\.example\r\nDiagnostic-Code: smtp; 550 5\.1\.1 unknown/);
  assert.match(dsn, /Content-Type: text\/rfc822-headers\r\n\r\nFrom: alice@example\.com\r\nSubject: Hello\r\n--BOUND--/);
  assert.match(dsn, /Auto-Submitted: auto-replied/);
});

test('durations', () => {
  assert.equal(parseDuration('5d'), 5 * 24 * H);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('10'), 10_000);
  assert.ok(Number.isNaN(parseDuration('soon')));
});

test('group commit: writes handed in during one turn share one COMMIT; a throwing writer is rolled back alone; a failed COMMIT fails the whole batch', async () => {
  const Database = (await import('better-sqlite3')).default;
  const { GroupCommit } = await import('../src/db/group-commit.ts');
  const { withState } = await import('../src/db/index.ts');
  const db = withState(new Database(':memory:'));
  db.exec('CREATE TABLE t (v INTEGER NOT NULL UNIQUE)');
  const g = new GroupCommit(db);
  const ins = (v: number) => () => db.prepare('INSERT INTO t (v) VALUES (?)').run(v).changes;
  const r = await Promise.allSettled([g.run(ins(1)), g.run(ins(2)), g.run(ins(1)), g.run(() => (ins(3)(), ins(2)())), g.run(ins(4))]);
  assert.deepEqual(r.map((x) => x.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled']);
  // The fourth writer's own first insert (3) went with its savepoint.
  assert.deepEqual(db.prepare('SELECT v FROM t ORDER BY v').pluck().all(), [1, 2, 4]);
  assert.equal(g.stats.commits, 1);
  assert.equal(g.stats.writes, 5);
  // Nothing resolves before the COMMIT: a COMMIT that fails rejects every writer of the batch.
  db.exec('CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)');
  db.pragma('foreign_keys = ON');
  const r2 = await Promise.allSettled([g.run(ins(5)), g.run(() => db.prepare('INSERT INTO c (p) VALUES (42)').run())]);
  assert.deepEqual(r2.map((x) => x.status), ['rejected', 'rejected']);
  assert.deepEqual(db.prepare('SELECT v FROM t ORDER BY v').pluck().all(), [1, 2, 4]);
  db.close();
});

test('group commit on a file: committed with no fsync on the event loop, answered only after the WAL is fdatasync\'ed; a failed sync fails the batch', async () => {
  const Database = (await import('better-sqlite3')).default;
  const { GroupCommit, syncWal } = await import('../src/db/group-commit.ts');
  const { withState } = await import('../src/db/index.ts');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'lb-gc-'));
  try {
    const file = join(dir, 'g.db');
    const db = withState(new Database(file));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE t (v INTEGER NOT NULL UNIQUE)');
    const other = new Database(file); // another process's view
    const syncs: { file: string; done: () => void; fail: (e: Error) => void }[] = [];
    const g = new GroupCommit(db, { sync: (f) => new Promise<void>((done, fail) => syncs.push({ file: f, done, fail })) });
    let answered = false;
    const p = g.run(() => db.prepare('INSERT INTO t (v) VALUES (1)').run().changes).then((v) => ((answered = true), v));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    // Committed (another connection sees it), the connection is back to FULL, the sync was asked
    // for this database, and nobody has been answered yet.
    assert.deepEqual(other.prepare('SELECT v FROM t').pluck().all(), [1]);
    assert.equal(db.pragma('synchronous', { simple: true }), 2);
    assert.equal(syncs.length, 1);
    assert.equal(syncs[0].file, file);
    assert.equal(answered, false, 'not answered before the WAL is synced');
    syncs[0].done();
    assert.equal(await p, 1);
    // A failed sync: every caller of the batch hears it.
    const q = Promise.allSettled([g.run(() => db.prepare('INSERT INTO t (v) VALUES (2)').run()), g.run(() => db.prepare('INSERT INTO t (v) VALUES (3)').run())]);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    syncs[1].fail(new Error('EIO'));
    assert.deepEqual((await q).map((x) => x.status), ['rejected', 'rejected']);
    // The real fdatasync of the WAL works on this file.
    const real = new GroupCommit(db);
    assert.equal(await real.run(() => db.prepare('INSERT INTO t (v) VALUES (4)').run().changes), 1);
    await syncWal(file);
    assert.deepEqual(other.prepare('SELECT v FROM t ORDER BY v').pluck().all(), [1, 2, 3, 4]);
    other.close();
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('caps: a reserved send counts until released, so concurrent sessions cannot pass the same cap before its row is committed', async () => {
  const Database = (await import('better-sqlite3')).default;
  const { SendReservations, usageOf, recordSend } = await import('../src/submit/caps.ts');
  const { withState } = await import('../src/db/index.ts');
  const db = withState(new Database(':memory:'));
  const reserved = new SendReservations();
  db.exec('CREATE TABLE send_log (id INTEGER PRIMARY KEY, mailbox_id TEXT NOT NULL, at INTEGER NOT NULL, recipients INTEGER NOT NULL)');
  const now = 10 * H;
  const release = reserved.reserve('mb1', 3);
  assert.deepEqual(usageOf(db, reserved, 'mb1', now), { messagesLastHour: 1, recipientsLastDay: 3 });
  assert.deepEqual(usageOf(db, reserved, 'mb2', now), { messagesLastHour: 0, recipientsLastDay: 0 });
  // Unlimited caps skip the counting.
  assert.deepEqual(usageOf(db, reserved, 'mb1', now, { messages: false, recipients: false }), { messagesLastHour: 0, recipientsLastDay: 0 });
  recordSend(db, 'mb1', now, 3);
  release();
  release(); // twice is harmless
  assert.deepEqual(usageOf(db, reserved, 'mb1', now), { messagesLastHour: 1, recipientsLastDay: 3 });
  db.close();
});
