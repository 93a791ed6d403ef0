// The pure decisions split out of the delivery paths (#13), without sockets: the queue's outcome of
// an attempt (decideOutcomes, withoutDsns, combineLocalResults), job planning, the MX's recipient
// plan and its reply once delivery was attempted, Dovecot's refusals as SMTP replies, and the
// shared mail vocabulary (DSN signing domains, header section, Received).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { combineLocalResults, decideOutcomes, withoutDsns, type QueueRow, type AttemptResult } from '../src/queue/decide.ts';
import { planJobs, MAX_RCPTS_PER_JOB } from '../src/queue/scheduler.ts';
import { outcomeOf } from '../src/queue/classify.ts';
import type { RetryPolicy } from '../src/queue/schedule.ts';
import { decideOutcome, planRecipients, type Failure } from '../src/smtp/inbound/deliver.ts';
import { refusalReply } from '../src/delivery/local.ts';
import { SmtpReply, internalFailure, reply } from '../src/mail/reply.ts';
import { dsnSigningDomains } from '../src/mail/dsn.ts';
import { headerSection, headerValue } from '../src/mail/headers.ts';
import { receivedValue } from '../src/mail/received.ts';
import type { Target } from '../src/routing/resolve.ts';

const M = 60_000;
const H = 60 * M;
const policy: RetryPolicy = { schedule: [5 * M, 10 * M], jitter: 0.1, maxAge: 5 * 24 * H, delayNoticeAfter: 4 * H };
const t0 = Date.UTC(2026, 0, 1);
const row = (recipient: string, o: Partial<QueueRow> = {}): QueueRow => ({ id: `q_${recipient}`, message_id: 'msg_1', recipient, domain: recipient.split('@')[1], attempts: 0, delay_notified: 0, created_at: t0, ...o });
const res = (recipient: string, code: number, reply = `${code} x`): AttemptResult => ({ recipient, code, reply, outcome: outcomeOf(code) });
const ctx = { mx: 'mx.remote.test', canDsn: true, suppressFor: 'ours.test' };

test('decideOutcomes: delivered, retried on the schedule (jitter from `random`), bounced with a DSN and a suppression for a hard bounce', () => {
  const rows = [row('a@r.test'), row('b@r.test'), row('c@r.test'), row('d@r.test')];
  const results = [res('a@r.test', 250), res('b@r.test', 451, '451 4.7.1 later'), res('c@r.test', 550, '550 5.1.1 no such user'), res('d@r.test', 554, '554 5.7.1 spam')];
  let calls = 0;
  const d = decideOutcomes(rows, results, policy, t0 + M, () => (calls++, 0.5), ctx);
  assert.equal(calls, 1, 'randomness only for the retry');
  assert.deepEqual(d.map((x) => x.outcome), ['delivered', 'deferred', 'bounced', 'bounced']);
  assert.equal(d[1].nextAttemptAt, t0 + M + 5 * M);
  assert.equal(d[1].dsn, null, 'no delay notice before delayNoticeAfter');
  assert.equal(d[2].dsn?.action, 'failed');
  assert.equal(d[2].dsn?.status, '5.1.1');
  assert.equal(d[2].dsn?.remoteMta, 'mx.remote.test');
  assert.equal(d[2].suppress, true, 'unknown user: suppressed');
  assert.equal(d[3].suppress, false, 'a policy rejection is not about the address');
  assert.equal(d[0].dsn, null);
});

test('decideOutcomes: one delay notice after delayNoticeAfter; expiry at max age → failed DSN 4.4.7, never suppressed; no DSN for the null sender', () => {
  const late = decideOutcomes([row('a@r.test', { attempts: 6 })], [res('a@r.test', 451, '451 4.4.1 timeout')], policy, t0 + 5 * H, () => 0.5, ctx)[0];
  assert.equal(late.outcome, 'deferred');
  assert.equal(late.dsn?.action, 'delayed');
  assert.equal(late.delayNotified, true);
  assert.equal(late.dsn?.willRetryUntil?.getTime(), t0 + policy.maxAge);
  const again = decideOutcomes([row('a@r.test', { attempts: 7, delay_notified: 1 })], [res('a@r.test', 451)], policy, t0 + 6 * H, () => 0.5, ctx)[0];
  assert.equal(again.dsn, null, 'only one delay notice');
  const expired = decideOutcomes([row('a@r.test', { attempts: 30, delay_notified: 1 })], [res('a@r.test', 451, '451 4.4.1 timeout')], policy, t0 + policy.maxAge, () => 0.5, ctx)[0];
  assert.equal(expired.outcome, 'bounced');
  assert.equal(expired.expired, true);
  assert.equal(expired.dsn?.status, '4.4.7');
  assert.equal(expired.suppress, false);
  const nullSender = decideOutcomes([row('a@r.test')], [res('a@r.test', 550, '550 5.1.1 unknown user')], policy, t0, () => 0.5, { ...ctx, canDsn: false, suppressFor: null })[0];
  assert.equal(nullSender.outcome, 'bounced');
  assert.equal(nullSender.dsn, null);
  assert.equal(nullSender.suppress, false);
});

test('withoutDsns: a bounce whose DSN cannot be written stays queued (retried later, not suppressed); a delay notice is left for later', () => {
  const rows = [row('a@r.test'), row('b@r.test', { attempts: 6 }), row('c@r.test')];
  const d = decideOutcomes(rows, [res('a@r.test', 550, '550 5.1.1 unknown user'), res('b@r.test', 451), res('c@r.test', 250)], policy, t0 + 5 * H, () => 0.5, ctx);
  const w = withoutDsns(d, t0 + 5 * H, 60_000);
  assert.equal(w[0].outcome, 'deferred');
  assert.equal(w[0].nextAttemptAt, t0 + 5 * H + 60_000);
  assert.equal(w[0].dsnFailed, true);
  assert.equal(w[0].suppress, false);
  assert.equal(w[1].outcome, 'deferred');
  assert.equal(w[1].dsn, null);
  assert.equal(w[1].delayNotified, false, 'the notice is still owed');
  assert.deepEqual(w[2], d[2]);
});

test('combineLocalResults: a temporary failure of one mailbox wins (retried), then a permanent one; only outside targets → forwarded', () => {
  const ok = { code: 250, response: '250 2.0.0 ok' };
  const temp = { code: 452, response: '452 4.2.2 full' };
  const perm = { code: 552, response: '552 5.2.2 full' };
  assert.equal(combineLocalResults('team@x', [ok, perm, temp], outcomeOf).code, 452);
  assert.equal(combineLocalResults('team@x', [ok, perm], outcomeOf).outcome, 'bounced');
  assert.equal(combineLocalResults('a@x', [ok], outcomeOf).outcome, 'delivered');
  assert.deepEqual(combineLocalResults('fwd@x', [], outcomeOf), { recipient: 'fwd@x', code: 250, reply: '250 2.1.5 forwarded', outcome: 'delivered' });
});

test('planJobs: one job per message and domain (≤ 100 recipients), at most `free` jobs, per-domain limit counting running jobs', () => {
  const rows: QueueRow[] = [];
  for (let i = 0; i < 150; i++) rows.push(row(`u${i}@a.test`));
  rows.push(row('x@b.test'), row('y@b.test', { message_id: 'msg_2' }), row('z@c.test', { message_id: 'msg_3' }));
  const jobs = planJobs(rows, 10, new Map(), 5);
  assert.deepEqual(jobs.map((j) => j.length), [MAX_RCPTS_PER_JOB, 1, 1, 1]);
  assert.equal(planJobs(rows, 2, new Map(), 5).length, 2);
  const limited = planJobs(rows, 10, new Map([['b.test', 1]]), 1);
  assert.deepEqual(limited.map((j) => j[0].domain), ['a.test', 'c.test'], 'b.test already has its one job running');
});

const local = (address: string, mailboxId: string, detail: string | null = null): Target =>
  ({ kind: 'local', mailboxId, address, local: address.split('@')[0], domain: address.split('@')[1], detail, quotaBytes: 0 }) as Target;
const forward = (address: string): Target => ({ kind: 'forward', address, via: 'ours.test', srsBounce: false }) as Target;

test('planRecipients: each mailbox (and plus folder) and each forward once, with every RCPT that led to it', () => {
  const p = planRecipients({
    mailFrom: 's@x.test',
    rcpts: [
      { address: 'team@ours.test', targets: [local('bob@ours.test', 'm1'), forward('ext@far.test')] },
      { address: 'bob@ours.test', targets: [local('bob@ours.test', 'm1')] },
      { address: 'bob+Lists@ours.test', targets: [local('bob@ours.test', 'm1', 'Lists')] },
      { address: 'alias2@ours.test', targets: [forward('ext@far.test')] },
    ],
  });
  assert.deepEqual(p.locals.map((l) => [l.lmtpRcpt, l.originals]), [['bob@ours.test', ['team@ours.test', 'bob@ours.test']], ['bob+Lists@ours.test', ['bob+Lists@ours.test']]]);
  assert.deepEqual(p.forwards.map((f) => [f.target.address, f.originals]), [['ext@far.test', ['team@ours.test', 'alias2@ours.test']]]);
});

test('decideOutcome (MX): someone got it → accept with a DSN line per original recipient (status made permanent); nobody → the first temporary refusal, else the first', () => {
  const full: Failure = { originals: ['team@ours.test', 'bob@ours.test'], final: 'bob@ours.test', reply: reply(452, '4.2.2', 'Mailbox full'), diagnostic: '452 4.2.2 full' };
  const gone: Failure = { originals: ['x@ours.test'], final: 'x@ours.test', reply: reply(550, '5.1.1', 'no such user'), diagnostic: '550 5.1.1 no' };
  const ok = decideOutcome({ succeeded: 1, failures: [full] });
  assert.equal(ok.action, 'accept');
  assert.deepEqual(ok.action === 'accept' && ok.dsn.map((d) => [d.original, d.address, d.status]), [['team@ours.test', 'bob@ours.test', '5.2.2'], ['bob@ours.test', 'bob@ours.test', '5.2.2']]);
  const none = decideOutcome({ succeeded: 0, failures: [gone, full] });
  assert.ok(none.action === 'refuse' && none.reply.responseCode === 452 && none.reply.enhanced === '4.2.2');
  const perm = decideOutcome({ succeeded: 0, failures: [gone] });
  assert.ok(perm.action === 'refuse' && perm.reply === gone.reply);
  const internal = internalFailure('REF1');
  const withRef = decideOutcome({ succeeded: 0, failures: [{ originals: ['a@o'], final: 'a@o', reply: internal, diagnostic: '' }] });
  assert.ok(withRef.action === 'refuse' && withRef.reply === internal, 'an internal failure keeps its reference');
  const empty = decideOutcome({ succeeded: 0, failures: [] });
  assert.ok(empty.action === 'refuse' && empty.reply instanceof SmtpReply && empty.reply.responseCode === 451);
});

test('refusalReply: Dovecot\'s enhanced code and text without addresses; an unknown mailbox (users file behind) → 451 4.3.0', () => {
  const q = refusalReply({ recipient: 'a@o', status: 'permfail', code: 552, response: '552 5.2.2 <a@o> Quota exceeded (mailbox for user is full)' });
  assert.deepEqual([q.responseCode, q.enhanced, q.text], [552, '5.2.2', 'Quota exceeded (mailbox for user is full)']);
  const u = refusalReply({ recipient: 'a@o', status: 'permfail', code: 550, response: '550 5.1.1 <a@o> User doesn\'t exist' });
  assert.deepEqual([u.responseCode, u.enhanced], [451, '4.3.0']);
  const bare = refusalReply({ recipient: 'a@o', status: 'tempfail', code: 451, response: 'weird' });
  assert.deepEqual([bare.responseCode, bare.enhanced, bare.text], [451, '4.0.0', 'weird']);
});

test('mail vocabulary: DSN signing domains, header section and values, Received without a client address', () => {
  assert.deepEqual(dsnSigningDomains('mail.ours.test', 'other.test'), ['mail.ours.test', 'ours.test', 'other.test']);
  assert.deepEqual(dsnSigningDomains('mail.ours.test', 'OURS.test'), ['mail.ours.test', 'ours.test']);
  assert.deepEqual(dsnSigningDomains('localhost', null), []);
  const msg = Buffer.from('Subject: a\r\n long one\r\nFrom: x@y\r\n\r\nSubject: not a header\r\n');
  assert.equal(headerSection(msg), 'Subject: a\r\n long one\r\nFrom: x@y');
  assert.equal(headerSection(Buffer.from('A: 1\nB: 2\n\nbody')), 'A: 1\nB: 2');
  assert.equal(headerValue(headerSection(msg), 'subject'), 'a long one');
  assert.equal(headerValue('From: x', 'Subject'), null);
  const r = receivedValue({ helo: 'api', ip: null, hostname: 'mx.test', transmissionType: 'HTTP', tls: null, id: 'abc', date: new Date(0) });
  assert.equal(r, 'from api\r\n\tby mx.test (Letterbox) with HTTP\r\n\tid abc;\r\n\tThu, 1 Jan 1970 00:00:00 +0000');
  assert.match(receivedValue({ helo: 'c\r\nX: y', ip: '192.0.2.1', hostname: 'mx.test', transmissionType: 'ESMTPSA', tls: 'TLSv1.3', id: 'i', date: new Date(0) }), /^from c\?\?X:\?y \(unknown \[192\.0\.2\.1\]\)\r\n\tby mx\.test \(Letterbox\) with ESMTPSA \(TLSv1\.3\)/);
});

test('one duration grammar: the config\'s (bare number = seconds) and, unit required, API key expiries', async () => {
  const { parseDuration, parseDurationWithUnit } = await import('../src/config/schema.ts');
  const { parseExpiry } = await import('../src/auth/apikeys.ts');
  assert.equal(parseDuration('1y'), 365 * 24 * H);
  assert.equal(parseDuration('1.5h'), 90 * M);
  assert.equal(parseDuration('2w'), 14 * 24 * H);
  assert.equal(parseDuration('10'), 10_000);
  assert.equal(parseDurationWithUnit('90d'), 90 * 24 * H);
  assert.ok(Number.isNaN(parseDurationWithUnit('90')));
  assert.equal(parseExpiry('12h', t0), new Date(t0 + 12 * H).toISOString());
  assert.throws(() => parseExpiry('90', t0), /invalid expiry/);
});
