// The IMAP APPEND sessions (src/imap/append.ts) against a real appliance's supervised Dovecot:
// ImapAppender logs in as the master user over TLS (certificate verified) and pipelines APPENDs on
// one connection per mailbox; every outcome is read back with imapflow as the mailbox's own user.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { ImapAppender, parseTagged, uidSet, type AppenderOptions } from '../src/imap/append.ts';
import { LetterboxError } from '../src/errors.ts';
import { startAppliance, applianceCert, applianceImapLogin, doveadm as doveadmOf, type Appliance } from './helpers/appliance.ts';
import { doveadmBinary } from '../src/services/quota.ts';
import { waitFor } from './helpers/mailapi.ts';

const PW = 'a password 123456';
// Few mailboxes (each CLI call costs time); tests keep apart by folder. dan has a 1K quota.
//   alice: Sent (concurrency), INBOX (odd bytes), Drafts (close), Trash (server-side kills); dan: INBOX, Drafts (quota)
//   bob, carol: INBOX (interleaving), Drafts (connection limit), Trash and carol's Junk, carol's Sent (sessions per mailbox),
//   bob's Sent (wrong master password)
const USERS = ['alice', 'bob', 'carol', 'dan'].map((u) => `${u}@ours.test`);
let app: Appliance;
let dovecotConf: string;
const appenders: ImapAppender[] = [];

const doveadm = (args: string[]) => doveadmOf(app, args);

before(async () => {
  app = await startAppliance();
  dovecotConf = join(app.dataDir, 'dovecot', 'dovecot.conf');
  await app.cliJson(['domain', 'add', 'ours.test']);
  await Promise.all(USERS.map((u) => app.cliJson(['mailbox', 'add', u, '--password', PW, ...(u.startsWith('dan@') ? ['--quota', '1K'] : [])])));
  // Dovecot re-reads its users file within about a second. Ask doveadm (no login, so no failed-login
  // penalty that would slow every later login from 127.0.0.1).
  await waitFor(async () => {
    for (const u of USERS) if ((await doveadm(['user', '-f', 'uid', u])).code !== 0) return false;
    return true;
  }, 'Dovecot to know every mailbox');
});

after(async () => {
  await Promise.all(appenders.map((a) => a.close()));
  await app?.stop();
  app?.cleanup();
});

// One session per mailbox unless a test asks for more: login counts below then say exactly what happened.
function appender(o: Partial<AppenderOptions> = {}): ImapAppender {
  const a = new ImapAppender({ ...applianceImapLogin(app), maxPerMailbox: 1, ...o });
  appenders.push(a);
  return a;
}

/** Runs `fn` with imapflow logged in as the mailbox's own user (TLS, the appliance's certificate trusted). */
async function asUser<T>(address: string, fn: (c: ImapFlow) => Promise<T>): Promise<T> {
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: address, pass: PW }, logger: false, tls: { ca: [applianceCert(app)], servername: app.hostname } } as any);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.logout();
  }
}

interface Stored {
  uid: number;
  flags: string[];
  source: Buffer;
}

/** Every message of a folder as the user sees it: UID, flags (but \Recent) and the exact stored bytes. */
async function folder(address: string, name: string): Promise<{ uidValidity: number; messages: Stored[] }> {
  return asUser(address, async (c) => {
    const box = await c.mailboxOpen(name, { readOnly: true });
    const messages: Stored[] = [];
    if (box.exists > 0) for (const m of await c.fetchAll('1:*', { uid: true, flags: true, source: true })) messages.push({ uid: m.uid, flags: [...(m.flags ?? [])].filter((f) => f !== '\\Recent').sort(), source: m.source! });
    return { uidValidity: Number(box.uidValidity), messages: messages.sort((a, b) => a.uid - b.uid) };
  });
}

function message(from: string, subject: string, body = `Body of ${subject}.\r\n${randomBytes(24).toString('hex')}\r\n`): Buffer {
  return Buffer.from(`From: ${from}\r\nTo: someone@remote.test\r\nSubject: ${subject}\r\nMessage-ID: <${randomBytes(8).toString('hex')}@ours.test>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}`, 'utf8');
}

/** Resolves to the error a promise rejects with (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<LetterboxError> {
  try {
    await p;
  } catch (err: any) {
    return err;
  }
  assert.fail('expected a rejection');
}

test('parseTagged: tagged OK/NO/BAD with and without a response code; garbage is null', () => {
  assert.deepEqual(parseTagged('L3 OK [APPENDUID 1762077600 42] Append completed (0.002 + 0.000 secs).'), {
    tag: 'L3',
    status: 'OK',
    code: 'APPENDUID 1762077600 42',
    text: 'Append completed (0.002 + 0.000 secs).',
  });
  assert.deepEqual(parseTagged('L7 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)'), { tag: 'L7', status: 'NO', code: 'OVERQUOTA', text: 'Quota exceeded (mailbox for user is full)' });
  assert.deepEqual(parseTagged('L9 BAD Error in IMAP command APPEND: Invalid arguments.'), { tag: 'L9', status: 'BAD', code: '', text: 'Error in IMAP command APPEND: Invalid arguments.' });
  assert.deepEqual(parseTagged('l2 ok done'), { tag: 'l2', status: 'OK', code: '', text: 'done' });
  assert.deepEqual(parseTagged('L1 OK'), { tag: 'L1', status: 'OK', code: '', text: '' });
  assert.deepEqual(parseTagged('L1 OK [unterminated code'), { tag: 'L1', status: 'OK', code: '', text: '[unterminated code' });
  for (const garbage of ['', 'garbage', 'L1', 'L1 MAYBE so', 'L1  OK double space', ' L1 OK leading space', '+ ', '+ go ahead', 'Dovecot ready.'])
    assert.equal(parseTagged(garbage), null, JSON.stringify(garbage));
});

test('parseTagged: untagged lines and words merely starting with OK/NO are not tagged completions', () => {
  assert.equal(parseTagged('* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot ready.'), null);
  assert.equal(parseTagged('* BYE Server shutting down.'), null);
  assert.equal(parseTagged('L1 OKAY'), null);
  assert.equal(parseTagged('L1 NOPE'), null);
});

test('uidSet: APPENDUID uid-sets of one UID, a range (either way round) and a list; malformed is null', () => {
  assert.deepEqual(uidSet('7'), [7]);
  assert.deepEqual(uidSet('7:9'), [7, 8, 9]);
  assert.deepEqual(uidSet('9:7'), [7, 8, 9]);
  assert.deepEqual(uidSet('3,7:8,12'), [3, 7, 8, 12]);
  for (const bad of ['', 'x', '7:', ':7', '7,,8', '7 8', '1:999999999']) assert.equal(uidSet(bad), null, bad);
});

test('30 concurrent APPENDs to one Sent folder: one login, batched (MULTIAPPEND), distinct UIDs, \\Seen, byte-exact', async () => {
  const a = appender();
  const address = 'alice@ours.test';
  const msgs = Array.from({ length: 30 }, (_, i) => message(address, `concurrent ${i}`, `Message ${i}.\r\n${randomBytes(200 + i * 37).toString('base64')}\r\n`));
  const results = await Promise.all(msgs.map((m) => a.append(address, 'Sent', m, ['\\Seen'])));
  assert.equal(a.logins, 1, 'one session carried all 30 APPENDs');
  // The first message goes out as soon as the login is done; the 29 queued behind it go together.
  assert.equal(a.appendCommands, 2, 'one APPEND for the first message, one MULTIAPPEND for the other 29');
  const uids = results.map((r) => r.uid);
  assert.ok(uids.every((u) => typeof u === 'number' && u > 0), JSON.stringify(results));
  assert.equal(new Set(uids).size, 30, 'distinct UIDs');
  const stored = await folder(address, 'Sent');
  assert.ok(results.every((r) => r.uidValidity === stored.uidValidity), 'UIDVALIDITY as IMAP shows it');
  assert.deepEqual([...uids].sort((x, y) => x! - y!), stored.messages.map((m) => m.uid), 'the UIDs IMAP shows, and no others');
  const byUid = new Map(stored.messages.map((m) => [m.uid, m]));
  results.forEach((r, i) => {
    const m = byUid.get(r.uid!)!;
    assert.deepEqual(m.flags, ['\\Seen'], `flags of message ${i}`);
    assert.ok(m.source.equals(msgs[i]), `bytes of message ${i} (UID ${r.uid})`);
  });
});

test('several sessions per mailbox: 30 concurrent APPENDs spread over maxPerMailbox logins, all stored once', async () => {
  const a = appender({ maxPerMailbox: 3 });
  const address = 'carol@ours.test';
  const msgs = Array.from({ length: 30 }, (_, i) => message(address, `spread ${i}`));
  const results = await Promise.all(msgs.map((m) => a.append(address, 'Sent', m, ['\\Seen'])));
  assert.equal(a.logins, 3, 'a second and third session were opened while the first was busy, no more');
  assert.equal(a.size, 3);
  assert.equal(new Set(results.map((r) => r.uid)).size, 30, 'distinct UIDs across sessions');
  const stored = await folder(address, 'Sent');
  for (let i = 0; i < 30; i++) assert.equal(stored.messages.filter((m) => m.source.includes(`Body of spread ${i}.`)).length, 1, `spread ${i} stored once`);
  // Idle again: one more APPEND reuses a session instead of opening a fourth.
  await a.append(address, 'Sent', message(address, 'after'));
  assert.equal(a.logins, 3);
});

test('APPENDs for two mailboxes interleaved: each lands in its own mailbox', async () => {
  const a = appender();
  const who = ['bob@ours.test', 'carol@ours.test'];
  const jobs = Array.from({ length: 12 }, (_, i) => {
    const address = who[i % 2];
    const m = message(address, `interleaved ${i} for ${address}`);
    return { address, m, p: a.append(address, 'INBOX', m) };
  });
  const results = await Promise.all(jobs.map((j) => j.p));
  assert.equal(a.logins, 2, 'one session per mailbox');
  for (const address of who) {
    const mine = jobs.map((j, i) => ({ ...j, r: results[i] })).filter((j) => j.address === address);
    const stored = await folder(address, 'INBOX');
    assert.equal(stored.messages.length, 6, `${address} holds its 6 messages only`);
    for (const j of mine) {
      const m = stored.messages.find((s) => s.uid === j.r.uid);
      assert.ok(m && m.source.equals(j.m), `${address}: UID ${j.r.uid} holds its own message`);
      assert.deepEqual(m.flags, [], 'no flags asked, none set');
    }
  }
});

test('a message with lines that look like IMAP responses and literals, and 8-bit UTF-8, is stored byte-exact', async () => {
  const a = appender();
  const address = 'alice@ours.test';
  const body = [
    'L2 OK done',
    'L1 NO [OVERQUOTA] not really',
    'L3 BAD nonsense',
    '* BYE Server shutting down.',
    '* OK [ALERT] hello',
    '+ go ahead',
    '{5}',
    'ends in a literal {12+}',
    'L4 APPEND INBOX (\\Seen) {3}',
    'abc)',
    ')',
    '.',
    '',
    'Grüße aus Köln — ✓ 日本語 😀',
    'a lone \\ backslash and "quotes" and (parens',
    '',
  ].join('\r\n');
  const subject = 'Ünïcödé {5} * BYE';
  const msgs = [message(address, subject, body), message(address, 'second {0}', 'L5 OK\r\n{0}\r\n'), message(address, 'third', 'no final line break {3}')];
  const results = await Promise.all(msgs.map((m) => a.append(address, 'INBOX', m, ['\\Flagged'])));
  assert.equal(a.logins, 1);
  const stored = await folder(address, 'INBOX');
  assert.equal(stored.messages.length, 3);
  results.forEach((r, i) => {
    const m = stored.messages.find((s) => s.uid === r.uid);
    assert.ok(m, `UID ${r.uid} exists`);
    assert.ok(m.source.equals(msgs[i]), `message ${i} byte-exact:\n${m.source.toString('utf8')}`);
    assert.deepEqual(m.flags, ['\\Flagged']);
  });
  // The session is still in step after all that: a plain message and a refused one both answer.
  const plain = await a.append(address, 'INBOX', message(address, 'after'));
  assert.ok(plain.uid! > Math.max(...results.map((r) => r.uid!)));
  const err = await rejection(a.append(address, 'No Such Folder', message(address, 'nowhere')));
  assert.ok(err instanceof LetterboxError);
  assert.equal(err.code, 'imap_error');
  assert.match(err.message, /TRYCREATE/, err.message);
  assert.equal(a.logins, 1);
});

test('over quota: APPEND rejects with imap_error naming the quota; the same session then stores a small message', async (t) => {
  const a = appender();
  const address = 'dan@ours.test'; // quota 1K
  const big = message(address, 'too big', `${'x'.repeat(76)}\r\n`.repeat(40));
  const err = await rejection(a.append(address, 'INBOX', big));
  assert.ok(err instanceof LetterboxError, String(err));
  assert.equal(err.code, 'imap_error');
  assert.equal(err.status, 502);
  assert.match(err.message, /OVERQUOTA/, err.message);
  assert.match(err.message, /quota/i);
  t.diagnostic(err.message);
  const small = message(address, 'small');
  assert.ok(small.length < 1024);
  const r = await a.append(address, 'INBOX', small);
  assert.ok(r.uid! > 0);
  assert.equal(a.logins, 1, 'the refused APPEND left the session usable');
  const stored = await folder(address, 'INBOX');
  assert.deepEqual(stored.messages.map((m) => m.uid), [r.uid]);
  assert.ok(stored.messages[0].source.equals(small));
});

test('a batch with one message over quota: MULTIAPPEND stores none, so each is tried alone; the others are stored once, in order', async () => {
  const a = appender();
  const address = 'dan@ours.test'; // quota 1K, of which the previous test used about 350 bytes
  const tiny = (n: number) => Buffer.from(`From: ${address}\r\nSubject: tiny ${n}\r\n\r\nx${n}\r\n`);
  const first = await a.append(address, 'Drafts', tiny(0)); // alone: nothing else was waiting
  assert.equal(a.appendCommands, 1);
  const big = message(address, 'too big for the batch', `${'y'.repeat(76)}\r\n`.repeat(20));
  // Asked while the first one's command is still being wound up, the four wait and then go as one
  // MULTIAPPEND, which Dovecot refuses as a whole; then each of the four alone.
  const jobs = [tiny(1), tiny(2), big, tiny(3)].map((m) => a.append(address, 'Drafts', m).then((r) => ({ r }), (err) => ({ err })));
  const out = await Promise.all(jobs);
  assert.ok('r' in out[0] && 'r' in out[1] && 'r' in out[3], JSON.stringify(out));
  assert.ok('err' in out[2], 'the big message is refused');
  const err = (out[2] as { err: LetterboxError }).err;
  assert.ok(err instanceof LetterboxError, String(err));
  assert.equal(err.code, 'imap_error');
  assert.match(err.message, /OVERQUOTA/, err.message);
  assert.equal(a.appendCommands, 1 + 1 + 4, 'the first, the refused batch of four, then each of the four');
  assert.equal(a.logins, 1);
  const stored = await folder(address, 'Drafts');
  const uids = [first, ...[0, 1, 3].map((i) => (out[i] as { r: { uid: number | null } }).r)].map((r) => r.uid);
  assert.deepEqual(stored.messages.map((m) => m.uid), uids, 'exactly the four small ones, UIDs in the order they were asked');
  assert.deepEqual(stored.messages.map((m) => m.source.toString()), [0, 1, 2, 3].map((n) => tiny(n).toString()));
});

test('maxConnections 1: A, then B, then A all succeed (the idle session is closed to make room)', async () => {
  const a = appender({ maxConnections: 1 });
  const [A, B] = ['bob@ours.test', 'carol@ours.test'];
  const mA1 = message(A, 'A1');
  const mB = message(B, 'B');
  const mA2 = message(A, 'A2');
  const r1 = await a.append(A, 'Drafts', mA1);
  const r2 = await a.append(B, 'Drafts', mB);
  const r3 = await a.append(A, 'Drafts', mA2);
  assert.equal(a.logins, 3, 'each switch closed the idle session and opened another');
  const sa = await folder(A, 'Drafts');
  assert.deepEqual(sa.messages.map((m) => m.uid), [r1.uid, r3.uid]);
  assert.ok(sa.messages[0].source.equals(mA1) && sa.messages[1].source.equals(mA2));
  const sb = await folder(B, 'Drafts');
  assert.deepEqual(sb.messages.map((m) => m.uid), [r2.uid]);
  assert.ok(sb.messages[0].source.equals(mB));
});

test('maxConnections 1: concurrent APPENDs for two mailboxes both succeed', async () => {
  const a = appender({ maxConnections: 1, acquireTimeoutMs: 3000 });
  const [A, B] = ['bob@ours.test', 'carol@ours.test'];
  const results = await Promise.allSettled([a.append(A, 'Trash', message(A, 'concurrent A')), a.append(B, 'Trash', message(B, 'concurrent B'))]);
  assert.deepEqual(
    results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as Error).message)),
    ['ok', 'ok'],
  );
});

test('maxConnections 1: a caller waiting for a slot gets it when the busy session becomes idle', async () => {
  const a = appender({ maxConnections: 1, acquireTimeoutMs: 1500 });
  const [A, B] = ['bob@ours.test', 'carol@ours.test'];
  await a.append(A, 'Trash', message(A, 'warm-up')); // A's session is logged in and idle
  const pA = a.append(A, 'Trash', message(A, 'busy A'));
  await new Promise((r) => setImmediate(r)); // A's APPEND is on the wire: A's session is busy
  const pB = a.append(B, 'Trash', message(B, 'waits for a slot'));
  const [rA, rB] = await Promise.allSettled([pA, pB]);
  assert.equal(rA.status, 'fulfilled');
  assert.equal(rB.status, 'fulfilled', rB.status === 'rejected' ? (rB.reason as Error).message : '');
});

test('isUp false: rejects at once with unavailable, without connecting', async () => {
  const a = appender({ isUp: () => false });
  const t0 = Date.now();
  const err = await rejection(a.append('alice@ours.test', 'Sent', message('alice@ours.test', 'never')));
  assert.ok(Date.now() - t0 < 100, `took ${Date.now() - t0} ms`);
  assert.ok(err instanceof LetterboxError);
  assert.equal(err.code, 'unavailable');
  assert.equal(err.status, 503);
  assert.equal(a.logins, 0);
});

test('close(): APPENDs after close are refused as unavailable (503), nothing is stored for them', async () => {
  const a = appender();
  const address = 'alice@ours.test';
  const first = await a.append(address, 'Drafts', message(address, 'before close'));
  assert.ok(first.uid! > 0);
  await a.close();
  const late = await rejection(a.append(address, 'Drafts', message(address, 'after close')));
  assert.ok(late instanceof LetterboxError);
  assert.equal(late.code, 'unavailable');
  assert.equal(late.status, 503);
  assert.match(late.message, /closed/);
  assert.equal(a.logins, 1);
  const stored = await folder(address, 'Drafts');
  assert.ok(stored.messages.some((m) => m.uid === first.uid));
  assert.ok(!stored.messages.some((m) => m.source.includes('after close')));
});

test('close() right after append() (session still logging in): the append is still made, nothing hangs', async () => {
  const a = appender();
  const address = 'alice@ours.test';
  const t0 = Date.now();
  const p = a.append(address, 'Drafts', message(address, 'racing close'));
  const closed = a.close();
  const r = await p;
  await closed;
  assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  assert.ok(r.uid! > 0);
  const stored = await folder(address, 'Drafts');
  assert.ok(stored.messages.some((m) => m.uid === r.uid && m.source.includes('racing close')));
});

test('close() lets APPENDs in flight finish (Dovecot may have stored them: failing them would invite duplicate retries)', async () => {
  const a = appender();
  const address = 'carol@ours.test';
  await a.append(address, 'Junk', message(address, 'warm-up'));
  const msgs = Array.from({ length: 5 }, (_, i) => message(address, `finish ${i}`));
  const inflight = msgs.map((m) => a.append(address, 'Junk', m));
  await new Promise((r) => setImmediate(r));
  const closed = a.close();
  const results = await Promise.allSettled(inflight);
  await closed;
  assert.deepEqual(results.map((r) => r.status), Array(5).fill('fulfilled'), results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok')).join('; '));
  const stored = await folder(address, 'Junk');
  for (let i = 0; i < 5; i++) assert.ok(stored.messages.some((m) => m.source.includes(`finish ${i}`)), `finish ${i} stored`);
});

test('flags cannot smuggle IMAP syntax (the message would then run as commands in the user\'s session)', async () => {
  const a = appender();
  const address = 'carol@ours.test';
  const evil = message(address, 'evil', 'Z1 CREATE Injected\r\n');
  await rejection(a.append(address, 'Junk', evil, ['\\Seen) {0}']));
  await new Promise((r) => setTimeout(r, 200));
  const names = await asUser(address, async (c) => (await c.list()).map((b) => b.path));
  assert.ok(!names.includes('Injected'), `folders: ${names.join(', ')}`);
});

// A Dovecot restart is not used here: SIGTERM or SIGKILL to Dovecot's master (the supervisor then
// starts a new one) leaves the already-running imap process serving its connection (Dovecot 2.3.19
// orphans it; the old session kept appending after the restart), so it kills no session. Killing the
// session's own imap process, gently (doveadm kick: BYE) or not (SIGKILL: no BYE), is the server-side kill.
test('a session killed from the server side (doveadm kick; imap process SIGKILLed): the next APPEND opens a new session', async () => {
  const a = appender();
  const address = 'alice@ours.test';
  const sessions = () => (a as any).sessions.size as number; // private: how many sessions are open
  const r1 = await a.append(address, 'Trash', message(address, 'before kick'));
  assert.equal(a.logins, 1);

  // 1. doveadm kick: Dovecot's imap process says "* BYE Server shutting down." and closes.
  const kick = await doveadm(['kick', address]);
  assert.equal(kick.code, 0, kick.stderr);
  await waitFor(() => sessions() === 0, 'the kicked session to be dropped', 5000);
  const r2 = await a.append(address, 'Trash', message(address, 'after kick'));
  assert.equal(a.logins, 2, 'a new session was opened');

  // 2. The same, but the APPEND is issued before Node has read the BYE: the event loop stays blocked
  // while doveadm kicks the session and until its imap process has exited (so the BYE and the close
  // are already waiting in the socket), then the APPEND goes out on the dying session and fails,
  // with no retry; the next one works. (Waiting for the exit matters: doveadm kick returns before
  // the imap process has acted on it, and an APPEND that got there first would simply succeed.)
  const imapPid = async (): Promise<number> => {
    const who = await doveadm(['-f', 'tab', 'who', '-1', address]);
    const pids = who.stdout.trim().split('\n').slice(1).map((l) => Number(l.split('\t')[2]));
    assert.equal(pids.length, 1, who.stdout);
    assert.ok(pids[0] > 0, who.stdout);
    return pids[0];
  };
  const dying = await imapPid();
  execFileSync('/bin/sh', ['-c', '"$4" -c "$1" kick "$2" >/dev/null && for i in $(seq 500); do grep -qs "^State:[[:space:]]*[^ZX]" /proc/$3/status || exit 0; sleep 0.01; done; echo "imap process $3 still running" >&2; exit 1', 'sh', dovecotConf, address, String(dying), doveadmBinary(process.env.LETTERBOX_DOVECOT_BINARY || '/usr/sbin/dovecot')]);
  const raced = await rejection(a.append(address, 'Trash', message(address, 'raced the BYE')));
  assert.ok(raced instanceof LetterboxError, String(raced));
  assert.equal(raced.code, 'imap_error');
  assert.match(raced.message, /closed the session|connection closed/, raced.message);
  const r3 = await a.append(address, 'Trash', message(address, 'after the raced kick'));
  assert.equal(a.logins, 3);

  // 3. The imap process SIGKILLed: the connection just closes, no BYE.
  process.kill(await imapPid(), 'SIGKILL');
  await waitFor(() => sessions() === 0, 'the killed session to be dropped', 5000);
  const r4 = await a.append(address, 'Trash', message(address, 'after SIGKILL'));
  assert.equal(a.logins, 4);

  const stored = await folder(address, 'Trash');
  assert.deepEqual(stored.messages.map((m) => m.uid), [r1.uid, r2.uid, r3.uid, r4.uid]);
  assert.ok(!stored.messages.some((m) => m.source.includes('raced the BYE')));
});

// Last: a failed login makes Dovecot delay later logins from 127.0.0.1.
test('wrong master password: rejects with imap_error naming the login, promptly', { timeout: 15000 }, async (t) => {
  const a = appender({ masterPassword: 'not the master password' });
  const t0 = Date.now();
  const errs = await Promise.all([1, 2].map((i) => rejection(a.append('bob@ours.test', 'Sent', message('bob@ours.test', `wrong password ${i}`)))));
  const took = Date.now() - t0;
  for (const err of errs) {
    assert.ok(err instanceof LetterboxError, String(err));
    assert.equal(err.code, 'imap_error');
    assert.equal(err.status, 502);
    assert.match(err.message, /login refused/i, err.message);
  }
  t.diagnostic(errs[0].message);
  assert.equal(a.logins, 1, 'both waited on the one failed login');
  assert.ok(took < 5000, `took ${took} ms`);
  t.diagnostic(`refused after ${took} ms (Dovecot's auth_failure_delay)`);
  const stored = await folder('bob@ours.test', 'Sent');
  assert.equal(stored.messages.length, 0);
});
