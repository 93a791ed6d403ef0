// Unit tests of the inbound (MX) building blocks, without sockets: the policy decision, recipient
// resolution over a real SQLite database, SRS, the smuggling guard, the header filter, DSNs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decide, type Evidence } from '../src/smtp/inbound/policy.ts';
import { parseRecipient, resolveRecipient } from '../src/routing/resolve.ts';
import { srsForward, srsReverse } from '../src/mail/srs.ts';
import { HeaderFilter, LineEndingGuard, authservIdOf, decodeWords } from '../src/smtp/inbound/stream.ts';
import { buildDsn } from '../src/mail/dsn.ts';
import { receivedHeader } from '../src/mail/received.ts';
import { SmtpReply } from '../src/mail/reply.ts';
import { clientKey, closeIdleUnderStress, underStress } from '../src/smtp/inbound/server.ts';
import { isProgress } from '../src/smtp/stress.ts';
import { quotaVerdict } from '../src/smtp/inbound/quota.ts';
import { connectRefusal, dataRefusal, mailFromRefusal, quotaProbeTarget, rcptRefusal, sessionInfo, sweepEveryMs } from '../src/smtp/inbound/session.ts';
import { configSchema, type Config } from '../src/config/schema.ts';
import { openDatabase } from '../src/db/index.ts';
import { silentLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { addDomain } from '../src/services/domains.ts';
import { addMailbox, updateMailbox } from '../src/services/mailboxes.ts';
import { addAlias } from '../src/services/aliases.ts';

const strict = { dmarcReject: 'reject', spfFail: 'accept' } as const;
const ev = (o: Partial<Evidence>): Evidence => ({ spf: 'none', dmarc: null, dkim: 'none', ...o });
const dmarc = (result: any, policy: any) => ({ result, policy, domain: 'sender.test' });

test('policy: DMARC fail under p=reject is refused with 550 5.7.1', () => {
  const d = decide(ev({ spf: 'fail', dmarc: dmarc('fail', 'reject') }), strict);
  assert.equal(d.action, 'reject');
  assert.ok(d.action === 'reject' && d.code === 550 && d.enhanced === '5.7.1');
});

test('policy: dmarc_reject = "quarantine" turns a p=reject failure into Junk delivery', () => {
  assert.equal(decide(ev({ dmarc: dmarc('fail', 'reject') }), { ...strict, dmarcReject: 'quarantine' }).action, 'quarantine');
});

test('policy: DMARC fail under p=quarantine → quarantine; under p=none → accept', () => {
  assert.equal(decide(ev({ dmarc: dmarc('fail', 'quarantine') }), strict).action, 'quarantine');
  assert.equal(decide(ev({ dmarc: dmarc('fail', 'none') }), strict).action, 'accept');
});

test('policy: SPF fail alone does not reject by default, but does when configured', () => {
  assert.equal(decide(ev({ spf: 'fail' }), strict).action, 'accept');
  const d = decide(ev({ spf: 'fail' }), { ...strict, spfFail: 'reject' });
  assert.ok(d.action === 'reject' && d.code === 550 && d.enhanced === '5.7.23');
  // DMARC pass (e.g. aligned DKIM) outweighs an SPF failure even then.
  assert.equal(decide(ev({ spf: 'fail', dkim: 'pass', dmarc: dmarc('pass', 'reject') }), { ...strict, spfFail: 'reject' }).action, 'accept');
});

test('policy: a DNS failure that could change the verdict is a temporary failure', () => {
  assert.equal(decide(ev({ dmarc: dmarc('temperror', null) }), strict).action, 'tempfail');
  assert.equal(decide(ev({ spf: 'temperror', dmarc: dmarc('fail', 'reject') }), strict).action, 'tempfail');
  assert.equal(decide(ev({ spf: 'temperror' }), { ...strict, spfFail: 'reject' }).action, 'tempfail');
  // ...but not when nothing depends on it.
  assert.equal(decide(ev({ spf: 'temperror', dmarc: dmarc('none', null) }), strict).action, 'accept');
});

test('policy: passing and unauthenticated mail is accepted', () => {
  assert.equal(decide(ev({ spf: 'pass', dkim: 'pass', dmarc: dmarc('pass', 'reject') }), strict).action, 'accept');
  assert.equal(decide(ev({}), strict).action, 'accept');
});

test('parseRecipient: relay tricks are refused as relaying, never reinterpreted', () => {
  for (const trick of ['user%other.test@ours.test', 'other.test!user@ours.test', 'user@[127.0.0.1]', 'user@other.test.', 'a:b@ours.test', '"user@other"@ours.test']) {
    const r = parseRecipient(trick);
    assert.ok(r instanceof SmtpReply, trick);
    assert.equal((r as SmtpReply).responseCode, 554, trick);
    assert.equal((r as SmtpReply).enhanced, '5.7.1', trick);
  }
  const bad = parseRecipient('a..b@ours.test');
  assert.ok(bad instanceof SmtpReply && bad.responseCode === 553);
  assert.deepEqual(parseRecipient('Bob+Lists@Ours.Test'), { local: 'bob', plus: 'Lists', detail: 'Lists', domain: 'ours.test' });
  assert.deepEqual(parseRecipient('Bob+Sent@Ours.Test'), { local: 'bob', plus: 'Sent', detail: null, domain: 'ours.test' });
  assert.deepEqual(parseRecipient('bob+a=b@ours.test'), { local: 'bob', plus: 'a=b', detail: null, domain: 'ours.test' });
});

test('SRS0: round trip, forged hash and expiry', () => {
  const now = Date.UTC(2026, 10, 23);
  const srs = srsForward('Alice@Sender.test', 'ours.test', 'secret', now);
  assert.match(srs, /^SRS0=[A-Za-z0-9_-]{4}=[a-z2-7]{2}=Sender\.test=Alice@ours\.test$/);
  assert.equal(srsReverse(srs, 'secret', now)?.toLowerCase(), 'alice@sender.test');
  assert.equal(srsReverse(srs.toLowerCase(), 'secret', now)?.toLowerCase(), 'alice@sender.test');
  assert.equal(srsReverse(srs, 'other secret', now), null);
  assert.equal(srsReverse(srs.replace('=Alice@', '=Mallory@'), 'secret', now), null);
  assert.equal(srsReverse(srs, 'secret', now + 30 * 86_400_000), null);
  assert.equal(srsForward('', 'ours.test', 'secret', now), '');
});

async function run(chunks: (string | Buffer)[], t: NodeJS.ReadWriteStream & { bad?: boolean }): Promise<Buffer> {
  const out: Buffer[] = [];
  const sinkFn = async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  };
  await pipeline(Readable.from(chunks.map((c) => Buffer.from(c))), t as any, sinkFn as any);
  return Buffer.concat(out);
}

test('LineEndingGuard reject mode: bare LF, bare CR (also across chunks) and NUL are caught; CRLF split across chunks is fine', async () => {
  const ok = new LineEndingGuard('reject');
  assert.equal((await run(['a\r', '\nb\r\n'], ok)).toString(), 'a\r\nb\r\n');
  assert.equal(ok.bad, false);
  for (const [chunks, what] of [
    [['Subject: x\r\n\r\nhi\n.\nMAIL FROM:<a@b>\r\n'], 'bareLf'],
    [['hi\r.\rmore\r\n'], 'bareCr'],
    [['hi\r', 'x\r\n'], 'bareCr'],
    [['hi\r\n', '\nx\r\n'], 'bareLf'],
    [['hi\u0000there\r\n'], 'nul'],
  ] as const) {
    const g = new LineEndingGuard('reject');
    await run([...chunks], g);
    assert.equal(g.bad, true, JSON.stringify(chunks));
    assert.equal((g as any)[what], true, what);
  }
});

test('LineEndingGuard normalize mode: "<LF>.<LF>" and "<CR>.<CR>" become ordinary CRLF lines', async () => {
  const g = new LineEndingGuard('normalize');
  const out = await run(['a\n.\nb\r.\r', 'c\r\n'], g);
  assert.equal(out.toString(), 'a\r\n.\r\nb\r\n.\r\nc\r\n');
  assert.equal(g.bad, false);
  const n = new LineEndingGuard('normalize');
  await run(['a\u0000\r\n'], n);
  assert.equal(n.bad, true, 'NUL is refused in every mode');
});

test('HeaderFilter removes Authentication-Results claiming our host name and notes From/Subject/Message-ID', async () => {
  const f = new HeaderFilter('mail.ours.test');
  const msg = [
    'Authentication-Results: MAIL.ours.test; dkim=pass header.d=bank.test',
    'Authentication-Results: (comment) mail.ours.test;',
    '\tspf=pass',
    'Authentication-Results: other.example; spf=fail',
    'From: Bank <ceo@bank.test>',
    'Subject: =?UTF-8?B?SGVsbG8g8J+Ygw==?=',
    'Message-ID: <m1@bank.test>',
    '',
    'Authentication-Results: mail.ours.test; body text stays',
    '',
  ].join('\r\n');
  // Chunked in small pieces to cross the header/body boundary.
  const chunks: string[] = [];
  for (let i = 0; i < msg.length; i += 7) chunks.push(msg.slice(i, i + 7));
  const out = (await run(chunks, f)).toString();
  assert.equal(f.info.removedAuthResults, 2);
  const head = out.slice(0, out.indexOf('\r\n\r\n'));
  assert.ok(!/^Authentication-Results: MAIL\.ours\.test/im.test(head));
  assert.ok(!head.includes('(comment) mail.ours.test'));
  assert.match(out, /^Authentication-Results: other\.example; spf=fail\r$/m);
  assert.match(out, /\r\n\r\nAuthentication-Results: mail\.ours\.test; body text stays\r\n$/);
  assert.equal(f.info.from, 'Bank <ceo@bank.test>');
  assert.equal(f.info.subject, 'Hello 😃');
  assert.equal(f.info.messageId, '<m1@bank.test>');
  assert.equal(authservIdOf(' "mx.Example";\r\n spf=pass'), 'mx.example');
  assert.equal(decodeWords('=?iso-8859-1?Q?Gr=FC=DFe?='), 'Grüße');
});

test('HeaderFilter flags a header section over its limit', async () => {
  const f = new HeaderFilter('mx.test', 100);
  await run(['X-Long: ' + 'a'.repeat(200) + '\r\n', 'more\r\n'], f);
  assert.equal(f.tooLarge, true);
});

test('Received header carries TLS details and one recipient only', () => {
  const h = receivedHeader({ helo: 'client.test', clientHostname: null, ip: '192.0.2.1', hostname: 'mx.ours.test', transmissionType: 'ESMTPS', tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' }, id: 'abc', recipient: 'a@ours.test', date: new Date(0) });
  assert.match(h, /^Received: from client\.test \(unknown \[192\.0\.2\.1\]\)\r\n\tby mx\.ours\.test \(Letterbox\) with ESMTPS \(TLSv1\.3 TLS_AES_256_GCM_SHA384\)\r\n\tid abc\r\n\tfor <a@ours\.test>;\r\n\tThu, 1 Jan 1970 00:00:00 \+0000\r\n$/);
  assert.doesNotMatch(receivedHeader({ helo: 'x\r\nInjected: yes', clientHostname: null, ip: '192.0.2.1', hostname: 'mx', transmissionType: 'ESMTP', tls: null, id: 'i', recipient: null, date: new Date(0) }), /\r\nInjected/);
});

test('DSN is an RFC 3464 multipart/report naming each failed recipient', () => {
  const dsn = buildDsn({
    reportingMta: 'mx.ours.test',
    to: 'sender@x.test',
    originalMessageId: null,
    originalSubject: 'hi',
    recipients: [{ original: 'team@ours.test', address: 'bob@ours.test', action: 'failed', status: '5.2.2', diagnostic: '552 5.2.2 Quota exceeded' }],
    arrivalDate: new Date(0),
    originalHeaders: 'Subject: hi\r\n',
    now: new Date(0),
    messageId: '<dsn@mx.ours.test>',
    boundary: 'BOUND',
  }).toString();
  assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/);
  assert.match(dsn, /Content-Type: message\/delivery-status\r\n\r\nReporting-MTA: dns; mx\.ours\.test/);
  assert.match(dsn, /Original-Recipient: rfc822; ?team@ours\.test\r\nFinal-Recipient: rfc822; ?bob@ours\.test\r\nAction: failed\r\nStatus: 5\.2\.2/);
  assert.match(dsn, /Content-Type: text\/rfc822-headers\r\n\r\nSubject: hi\r\n/);
});

test('resolveRecipient over a real database: mailboxes, plus, aliases (nested, loops, external), catch-all, disabled, unknown, relay', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lb-inb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'dovecot'), { recursive: true });
  const config = {
    ...configSchema.parse({
      hostname: 'mx.ours.test',
      data_dir: dir,
      listen: { mx: [], submission: [], submissions: [], imap: [], api: '127.0.0.1:1' },
      tls: { cert: join(dir, 'c.pem'), key: join(dir, 'k.pem') },
    }),
    source: 'test',
  } as Config;
  const db = openDatabase(join(dir, 'letterbox.db'), { log: silentLogger(), clock: systemClock });
  t.after(() => db.close());
  const ctx = { db, config, log: silentLogger(), clock: systemClock };
  await addDomain(ctx, 'ours.test');
  await addDomain(ctx, 'catch.test');
  const pw = 'a long password 1234';
  const alice = (await addMailbox(ctx, { address: 'alice@ours.test', password: pw })).mailbox;
  const bob = (await addMailbox(ctx, { address: 'bob@ours.test', password: pw, quota: '1M' })).mailbox;
  await addMailbox(ctx, { address: 'carol@ours.test', password: pw });
  await updateMailbox(ctx, 'carol@ours.test', { disabled: true });
  addAlias(ctx, 'info@ours.test', ['alice@ours.test', 'bob@ours.test']);
  addAlias(ctx, 'team@ours.test', ['info@ours.test', 'alice@ours.test', 'friend@remote.test']);
  addAlias(ctx, 'loop1@ours.test', ['loop2@ours.test']);
  addAlias(ctx, 'loop2@ours.test', ['loop1@ours.test']);
  addAlias(ctx, 'old@ours.test', ['carol@ours.test']);
  addAlias(ctx, '*@catch.test', ['alice@ours.test']);
  addAlias(ctx, 'info+sales@ours.test', ['bob@ours.test']);
  addAlias(ctx, 'postmaster@ours.test', ['alice@ours.test']);
  const opts = { srsSecret: 's', now: Date.now() };
  const r = (a: string) => resolveRecipient(db, a, opts);
  const targets = (a: string) => {
    const x = r(a);
    assert.ok(x.ok, `${a}: ${!x.ok && x.reply.message}`);
    return x.targets.map((t) => (t.kind === 'local' ? `L:${t.address}${t.detail ? '+' + t.detail : ''}` : `F:${t.address}`)).sort();
  };
  const refused = (a: string) => {
    const x = r(a);
    assert.ok(!x.ok, `${a} should be refused`);
    return `${x.reply.responseCode} ${x.reply.enhanced}`;
  };
  assert.deepEqual(targets('Alice@OURS.test'), ['L:alice@ours.test']);
  const a = r('alice@ours.test');
  assert.ok(a.ok && a.targets[0].kind === 'local' && a.targets[0].mailboxId === alice.id);
  assert.deepEqual(targets('alice+Lists@ours.test'), ['L:alice@ours.test+Lists']);
  // Owner-only folders are never filed into from outside: alice+Sent@ is alice@ (INBOX).
  for (const f of ['Sent', 'sent', 'DRAFTS', 'Trash']) assert.deepEqual(targets(`alice+${f}@ours.test`), ['L:alice@ours.test'], f);
  assert.deepEqual(targets('alice+Junk@ours.test'), ['L:alice@ours.test+Junk']);
  const b = r('bob@ours.test');
  assert.ok(b.ok && b.targets[0].kind === 'local' && b.targets[0].mailboxId === bob.id && b.targets[0].quotaBytes === 1024 * 1024);
  assert.deepEqual(targets('info@ours.test'), ['L:alice@ours.test', 'L:bob@ours.test']);
  assert.deepEqual(targets('team@ours.test'), ['F:friend@remote.test', 'L:alice@ours.test', 'L:bob@ours.test'], 'nested aliases, each mailbox once');
  assert.deepEqual(targets('info+sales@ours.test'), ['L:bob@ours.test'], 'an alias containing + wins over plus-addressing');
  assert.deepEqual(targets('info+other@ours.test'), ['L:alice@ours.test', 'L:bob@ours.test']);
  assert.deepEqual(targets('alice+a=b@ours.test'), ['L:alice@ours.test'], 'a detail unusable as a folder name goes to INBOX');
  const pm = resolveRecipient(db, 'Postmaster', { ...opts, hostname: 'mx.ours.test' });
  assert.ok(pm.ok && pm.targets[0].kind === 'local' && pm.targets[0].address === 'alice@ours.test', 'bare RCPT TO:<postmaster>');
  assert.ok(!resolveRecipient(db, 'postmaster', { ...opts, hostname: 'mx.elsewhere.test' }).ok);
  assert.deepEqual(targets('anything@catch.test'), ['L:alice@ours.test']);
  assert.deepEqual(targets('x+y@catch.test'), ['L:alice@ours.test']);
  assert.equal(refused('loop1@ours.test'), '550 5.4.6');
  assert.equal(refused('carol@ours.test'), '550 5.2.1');
  assert.equal(refused('old@ours.test'), '550 5.2.1');
  assert.equal(refused('nobody@ours.test'), '550 5.1.1');
  assert.equal(refused('alice@elsewhere.test'), '554 5.7.1');
  assert.equal(refused('alice%elsewhere.test@catch.test'), '554 5.7.1', 'the catch-all does not swallow a percent-hack relay attempt');
  // SRS bounces: a valid SRS0 address of ours forwards back to the original sender.
  const srs = srsForward('orig@sender.test', 'ours.test', 's', Date.now());
  assert.deepEqual(targets(srs), ['F:orig@sender.test']);
  assert.equal(refused(srsForward('orig@sender.test', 'ours.test', 'wrong', Date.now())), '550 5.1.1');
});

test('per-address connection cap counts IPv4 addresses and IPv6 /64 networks', () => {
  assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:0db8:0001:0002:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(clientKey('::1'), '0:0:0:0::/64');
});

test('RCPT-time quota verdict: a full mailbox is 452 4.2.2, or 552 5.2.2 when configured; other refusals are internal (451)', () => {
  assert.equal(quotaVerdict({ code: 250, enhanced: '2.1.5', text: 'OK' }, '452'), null);
  for (const answer of [{ code: 452, enhanced: '4.2.2', text: 'Mailbox is full' }, { code: 552, enhanced: '5.2.2', text: 'Quota exceeded' }]) {
    const t = quotaVerdict(answer, '452');
    assert.ok(t instanceof SmtpReply && t.responseCode === 452 && t.enhanced === '4.2.2');
    const p = quotaVerdict(answer, '552');
    assert.ok(p instanceof SmtpReply && p.responseCode === 552 && p.enhanced === '5.2.2');
  }
  const unknown = quotaVerdict({ code: 550, enhanced: '5.1.1', text: 'User does not exist' }, '452');
  assert.ok(unknown instanceof Error && !(unknown instanceof SmtpReply));
});

test('stress mode: every session without progress is closed early only above the threshold (a transaction too); NOOP is no progress', () => {
  const base = { open: 800, maxConnections: 1000, stressThreshold: 0.75, waitingForUs: false, idleMs: 10_000, stressIdleMs: 10_000 };
  assert.equal(underStress(750, 1000, 0.75), false, 'at the threshold: normal timeouts');
  assert.equal(underStress(751, 1000, 0.75), true);
  assert.equal(underStress(7, 8, 0.75), true);
  assert.equal(underStress(6, 8, 0.75), false);
  assert.equal(closeIdleUnderStress(base), true, 'above the threshold, idle, no MAIL FROM');
  assert.equal(closeIdleUnderStress({ ...base, idleMs: 9_999 }), false, 'not idle long enough');
  assert.equal(closeIdleUnderStress({ ...base, open: 750 }), false, 'not under stress');
  assert.equal(closeIdleUnderStress({ ...base, idleMs: 60_000 }), true, 'an idle session with a transaction (MAIL FROM given) is closed too');
  for (const c of ['NOOP', 'noop', 'RSET', 'HELP', 'VRFY x', 'EXPN x']) assert.equal(isProgress(c), false, c);
  for (const c of ['EHLO x', 'MAIL FROM:<a@b>', 'RCPT TO:<a@b>', 'DATA', 'STARTTLS', 'AUTH PLAIN x', 'NOOPX']) assert.equal(isProgress(c), true, c);
  assert.equal(closeIdleUnderStress({ ...base, waitingForUs: true, idleMs: 60_000 }), false, 'the client waits for our reply');
  assert.equal(closeIdleUnderStress({ ...base, stressThreshold: 0, open: 1 }), true, 'threshold 0: always in stress mode');
  assert.equal(closeIdleUnderStress({ ...base, stressThreshold: 1, open: 1000 }), false, 'threshold 1: never');
});

test('config: smtp defaults for connections and stress mode', () => {
  const c = configSchema.parse({
    hostname: 'mx.example.test',
    data_dir: '/tmp/x',
    listen: { mx: [], submission: [], submissions: [], imap: [], api: '127.0.0.1:1' },
    tls: { cert: 'c', key: 'k' },
  });
  assert.equal(c.smtp.max_connections, 1000);
  assert.equal(c.smtp.stress_threshold, 0.75);
  assert.equal(c.smtp.stress_idle_timeout_ms, 10000);
});

test('MX session decisions: connect caps, MAIL FROM, RCPT without MAIL, DATA without recipients', () => {
  assert.equal(connectRefusal(null, 'mx.test'), null);
  const total = connectRefusal('total', 'mx.test');
  assert.ok(total instanceof SmtpReply && total.responseCode === 421 && /^4\.7\.0 mx\.test Too many connections, try/.test(total.message));
  const client = connectRefusal('client', 'mx.test');
  assert.ok(client instanceof SmtpReply && client.responseCode === 421 && /from your address/.test(client.message));

  assert.equal(mailFromRefusal('a@b.test', {}), null);
  assert.equal(mailFromRefusal('', {}), null, 'the null sender');
  assert.equal(mailFromRefusal('ü@b.test', { smtpUtf8: true }), null);
  const utf8 = mailFromRefusal('ü@b.test', {});
  assert.ok(utf8 instanceof SmtpReply && utf8.responseCode === 553 && utf8.message.startsWith('5.6.7 '));

  const tx = { mailFrom: 'a@b.test', rcpts: [] };
  assert.equal(rcptRefusal(tx), null);
  assert.equal(rcptRefusal(undefined)?.responseCode, 503);
  assert.equal(dataRefusal(undefined)?.responseCode, 503);
  assert.equal(dataRefusal(tx)?.responseCode, 503, 'no accepted recipient');
  assert.equal(dataRefusal({ ...tx, rcpts: [{ address: 'x@y.test', targets: [] }] }), null);
});

test('MX session decisions: which recipient needs a quota probe', () => {
  const local = (quotaBytes: number) => ({ kind: 'local' as const, mailboxId: 'm', address: 'bob@y.test', local: 'bob', domain: 'y.test', detail: null, quotaBytes });
  const fwd = { kind: 'forward' as const, address: 'x@elsewhere.test', via: 'y.test' };
  assert.equal(quotaProbeTarget([local(1024)])?.address, 'bob@y.test');
  assert.equal(quotaProbeTarget([local(0)]), null, 'unlimited mailboxes are never full');
  assert.equal(quotaProbeTarget([fwd]), null);
  assert.equal(quotaProbeTarget([local(1024), local(1024)]), null, 'an alias to several targets is accepted as resolved');
  assert.equal(quotaProbeTarget([]), null);
});

test('MX session decisions: session info for Received, and the stress sweep interval', () => {
  const base = { id: 's1', remoteAddress: '192.0.2.1', hostNameAppearsAs: 'client.test', clientHostname: '[192.0.2.1]', transmissionType: 'ESMTPS', secure: true, tlsOptions: { version: 'TLSv1.3', name: 'TLS_AES_256_GCM_SHA384' } } as any;
  assert.deepEqual(sessionInfo(base), { id: 's1', remoteAddress: '192.0.2.1', helo: 'client.test', clientHostname: null, transmissionType: 'ESMTPS', tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' } });
  const plain = sessionInfo({ ...base, secure: false, hostNameAppearsAs: '', clientHostname: 'ptr.client.test', transmissionType: '' });
  assert.equal(plain.tls, null);
  assert.equal(plain.helo, '192.0.2.1', 'no HELO: the address');
  assert.equal(plain.clientHostname, 'ptr.client.test');
  assert.equal(plain.transmissionType, 'ESMTP');
  assert.equal(sweepEveryMs(10_000), 1000);
  assert.equal(sweepEveryMs(2000), 500);
  assert.equal(sweepEveryMs(100), 250);
});
