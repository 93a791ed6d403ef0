// The decisions split out of long functions (#13: gather → decide → act), without sockets: the
// certificate's names (ACME), the queue CLI's filters, rendering and cap changes, domain
// verification's judgement of each record, the OpenAPI error responses, the API's body and
// envelope rules, and the Dovecot policy endpoint's action per request.
import { reportGate, publishedPolicy } from '../src/reports/send-out.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certificateNames, servedNames } from '../src/tls/acme-component.ts';
import { capsChange, queueEntryText, queueStatuses } from '../src/queue/cli.ts';
import { judgeDkim, judgeDmarc, judgeMx, judgeSpfRecords, judgeSrv, spfJudged, verificationOf } from '../src/services/verify.ts';
import { errorCodes } from '../src/api/openapi.ts';
import { bodylessAccepts, envelope } from '../src/api/app.ts';
import { policyAction, type PolicyRequest } from '../src/auth/dovecot-policy.ts';
import type { DnsRecord } from '../src/dns/records.ts';

test('ACME: the hostname always; a served name only when it points at one of our addresses', () => {
  assert.deepEqual(servedNames(['a.test', 'b.test']), ['mta-sts.a.test', 'autoconfig.a.test', 'autodiscover.a.test', 'mta-sts.b.test', 'autoconfig.b.test', 'autodiscover.b.test']);
  const ours = new Set(['192.0.2.10', '2001:db8::10']);
  const r = certificateNames('Mail.Example.TEST', ours, [
    { name: 'mta-sts.a.test', addrs: ['192.0.2.10'] },
    { name: 'autoconfig.a.test', addrs: ['198.51.100.1'] },
    { name: 'autodiscover.a.test', addrs: [] },
    { name: 'mta-sts.b.test', addrs: ['198.51.100.1', '2001:db8::10'] },
  ]);
  assert.deepEqual(r, { names: ['mail.example.test', 'mta-sts.a.test', 'mta-sts.b.test'], leftOut: ['autoconfig.a.test', 'autodiscover.a.test'] });
});

test('queue CLI: statuses (all expands, unknown refused), the entry as text, cap changes', () => {
  assert.equal(queueStatuses(undefined), undefined);
  assert.deepEqual(queueStatuses(['all']), ['queued', 'inflight', 'delivered', 'bounced', 'cancelled']);
  assert.deepEqual(queueStatuses(['queued', 'bounced']), ['queued', 'bounced']);
  assert.throws(() => queueStatuses(['lost']), /unknown status "lost"/);
  const text = queueEntryText({
    id: 'q1', status: 'queued', from: '', recipient: 'bob@example.net', messageIdHeader: null, origin: 'submission', sandbox: true, size: 123,
    createdAt: '2026-12-07T10:00:00.000Z', attempts: 1, nextAttemptAt: null, lastReply: '451 4.4.1 no MX host could be reached',
    attemptLog: [{ at: '2026-12-07T10:00:01.000Z', outcome: 'deferred', mx: 'mx.example.net', ip: '192.0.2.1', sourceIp: null, tlsVersion: null, tlsCipher: null, reply: '451 4.4.1 x', transcript: 'a\nb' }],
  } as any);
  assert.match(text, /^id: {10}q1\nstatus: {6}queued\nfrom: {8}<>\n/);
  assert.match(text, /origin: {6}submission \(sandbox\)\n/);
  assert.match(text, /next: {8}-\n/);
  assert.match(text, /2026-12-07T10:00:01.000Z {2}deferred {2}mx=mx\.example\.net ip=192\.0\.2\.1 source=- tls=none \n {2}451 4\.4\.1 x\n {4}a\n {4}b\n$/);
  assert.deepEqual(capsChange({}), {});
  assert.deepEqual(capsChange({ messagesPerHour: '0', recipientsPerDay: 'default', recipientsPerMessage: '50' }), { max_messages_per_hour: 0, max_recipients_per_day: null, max_recipients_per_message: 50 });
  assert.throws(() => capsChange({ messagesPerHour: '-1' }), /invalid cap "-1"/);
  assert.throws(() => capsChange({ recipientsPerDay: 'lots' }), /invalid cap "lots"/);
});

test('domain verification: each record judged from its lookup; SRV records are not required', () => {
  const rec = (o: Partial<DnsRecord>): DnsRecord => ({ purpose: 'mx', type: 'MX', name: 'example.test', value: '', ttl: 3600, ...o });
  const ok = (values: any[]) => ({ values, error: null });
  const mxWant = rec({ value: 'mail.example.test', priority: 10 });
  assert.equal(judgeMx(ok([{ priority: 10, exchange: 'Mail.Example.test.' }]), 'example.test', 'mail.example.test', mxWant).ok, true);
  assert.equal(judgeMx(ok([{ priority: 10, exchange: 'mx.other.test' }]), 'example.test', 'mail.example.test', mxWant).problem, 'no MX record points to mail.example.test');
  assert.equal(judgeMx(ok([]), 'example.test', 'mail.example.test', mxWant).problem, 'no MX record published');
  assert.equal(judgeMx({ values: [], error: 'DNS lookup failed' }, 'example.test', 'mail.example.test', mxWant).problem, 'DNS lookup failed');

  const spfWant = rec({ purpose: 'spf', type: 'TXT', value: 'v=spf1 mx -all' });
  assert.match(judgeSpfRecords(ok([]), 'example.test', spfWant).failed!.problem!, /no SPF record/);
  assert.match(judgeSpfRecords(ok([['v=spf1 -all'], ['v=spf1 mx -all']]), 'example.test', spfWant).failed!.problem!, /more than one SPF record/);
  const one = judgeSpfRecords(ok([['v=spf1 mx ', '-all'], ['google-site-verification=x']]), 'example.test', spfWant);
  assert.equal(one.failed, null);
  assert.deepEqual(one.base.found, ['v=spf1 mx -all']);
  assert.equal(spfJudged(one.base, []).ok, true);
  assert.equal(spfJudged(one.base, [{ ip: '192.0.2.10', result: 'softfail' }]).problem, 'the SPF record does not authorize 192.0.2.10 (softfail)');

  const key = { selector: 's1', algorithm: 'ed25519' as const, publicKey: 'AAAA' };
  assert.equal(judgeDkim(ok([['v=DKIM1; k=ed25519; p=AA', 'AA']]), 'example.test', key).ok, true);
  assert.equal(judgeDkim(ok([['v=DKIM1; k=rsa; p=AAAA']]), 'example.test', key).problem, 'the published key does not match selector s1 (ed25519)');
  assert.equal(judgeDkim(ok([]), 'example.test', key).name, 's1._domainkey.example.test');

  const dmarcWant = rec({ purpose: 'dmarc', type: 'TXT', name: '_dmarc.example.test', value: 'v=DMARC1; p=quarantine' });
  assert.equal(judgeDmarc(ok([['v=DMARC1; p=reject']]), dmarcWant).ok, true);
  assert.equal(judgeDmarc(ok([['v=DMARC1; rua=mailto:x@y']]), dmarcWant).problem, 'the DMARC record has no valid policy (p=none, quarantine or reject)');

  const srvWant = rec({ purpose: 'srv', type: 'SRV', name: '_submissions._tcp.example.test', value: 'mail.example.test', priority: 0, weight: 1, port: 465 });
  assert.equal(judgeSrv(ok([{ priority: 0, weight: 1, port: 465, name: 'mail.example.test' }]), srvWant).ok, true);
  const wrongPort = judgeSrv(ok([{ priority: 0, weight: 1, port: 587, name: 'mail.example.test' }]), srvWant);
  assert.deepEqual([wrongPort.ok, wrongPort.required, wrongPort.problem], [false, false, 'should point at mail.example.test port 465']);

  const v = verificationOf({ name: 'example.test', lastVerifiedAt: '2026-01-01T00:00:00.000Z' }, [judgeMx(ok([{ priority: 10, exchange: 'mail.example.test' }]), 'example.test', 'mail.example.test', mxWant), wrongPort], '2026-12-07T00:00:00.000Z');
  assert.equal(v.ok, true, 'a wrong SRV record does not fail the verification');
  assert.equal(v.lastVerifiedAt, '2026-12-07T00:00:00.000Z');
  assert.equal(v.records[0].required, true);
  const bad = verificationOf({ name: 'example.test', lastVerifiedAt: null }, [judgeMx(ok([]), 'example.test', 'mail.example.test', mxWant)], '2026-12-07T00:00:00.000Z');
  assert.deepEqual([bad.ok, bad.lastVerifiedAt], [false, null]);
});

test('OpenAPI: the error responses a route documents', () => {
  assert.deepEqual(errorCodes({ auth: 'public' } as any), [500]);
  assert.deepEqual(errorCodes({ scope: 'domains:read' } as any), [400, 401, 403, 429, 500]);
  assert.deepEqual(errorCodes({ scope: 'x', params: {}, body: {}, errors: [409] } as any), [400, 401, 403, 404, 409, 413, 415, 429, 500]);
  assert.deepEqual(errorCodes({ scope: 'x', errors: [503], altStatus: [503] } as any), [400, 401, 403, 429, 500]);
});

test('API: a bodyless route takes nothing or {}; the success envelope', () => {
  for (const raw of [undefined, {}]) assert.equal(bodylessAccepts(raw), true);
  for (const raw of [null, [], { a: 1 }, 'x', 0]) assert.equal(bodylessAccepts(raw), false, JSON.stringify(raw));
  assert.deepEqual(envelope({}, { data: { id: 1 } }, false), { data: { id: 1 } });
  assert.deepEqual(envelope({ list: true }, { data: [] }, true), { data: [], nextCursor: null, sandbox: true });
  assert.deepEqual(envelope({ list: true }, { data: [1], nextCursor: 'c2' }, false), { data: [1], nextCursor: 'c2' });
});

test('Dovecot policy: pass for local sockets, reserve on allow unless the session holds an attempt, settle on report', () => {
  const req = (o: Partial<PolicyRequest>): PolicyRequest => ({ command: 'allow', login: 'a@b', remote: '192.0.2.1', protocol: 'imap', session: 's1', success: null, ...o });
  const ticket = (settled: boolean) => ({ account: 'a@b', network: '192.0.2.1', protocol: 'imap', at: 0, settled });
  assert.deepEqual(policyAction(req({ remote: '' }), undefined), { kind: 'pass' });
  assert.deepEqual(policyAction(req({}), undefined), { kind: 'reserve' });
  assert.deepEqual(policyAction(req({}), ticket(false)), { kind: 'pass' }, 'the check after the password is already counted');
  assert.deepEqual(policyAction(req({}), ticket(true)), { kind: 'reserve' });
  const t = ticket(false);
  assert.deepEqual(policyAction(req({ command: 'report', success: true }), t), { kind: 'settle', ticket: t, success: true });
  assert.deepEqual(policyAction(req({ command: 'report', success: null }), t), { kind: 'settle', ticket: t, success: false });
  assert.deepEqual(policyAction(req({ command: 'report', success: false }), undefined), { kind: 'pass' });
  assert.deepEqual(policyAction(req({ command: 'other' }), undefined), { kind: 'pass' });
});

test('outbound SMTP: TLS per target (opportunistic, MTA-STS enforced, smarthost modes), and what failures mean per recipient', async () => {
  const { connectionOptions, connectFailure, sendFailure, sentResults } = await import('../src/queue/smtp-client.ts');
  const t = { mx: 'mx.example.net', ip: '192.0.2.25', port: 25, ehlo: 'mail.example.test', localAddress: null, enforce: false };
  const o = { ca: undefined, connectTimeoutMs: 1000, socketTimeoutMs: 2000 };
  const mx = connectionOptions(t, null, o) as any;
  assert.deepEqual([mx.secure, mx.requireTLS, mx.opportunisticTLS, mx.ignoreTLS, mx.tls.rejectUnauthorized, mx.servername, mx.name], [false, false, true, false, false, 'mx.example.net', 'mail.example.test']);
  const sts = connectionOptions({ ...t, enforce: true }, null, o) as any;
  assert.deepEqual([sts.requireTLS, sts.opportunisticTLS, sts.tls.rejectUnauthorized], [true, false, true]);
  assert.equal((connectionOptions({ ...t, mx: '192.0.2.25' }, null, o) as any).servername, undefined, 'no SNI for an address');
  const implicit = connectionOptions(t, { tls: 'tls' }, o) as any;
  assert.deepEqual([implicit.secure, implicit.requireTLS, implicit.opportunisticTLS, implicit.tls.rejectUnauthorized], [true, false, false, true]);
  assert.deepEqual([(connectionOptions(t, { tls: 'starttls' }, o) as any).requireTLS, (connectionOptions(t, { tls: 'none' }, o) as any).ignoreTLS], [true, true]);

  assert.deepEqual(connectFailure({ code: 'ECONNREFUSED', message: 'refused' }, 'mx.example.net', '192.0.2.25'), { code: 451, reply: '451 4.4.1 connection to mx.example.net [192.0.2.25] failed: ECONNREFUSED refused' });
  assert.deepEqual(connectFailure({ responseCode: 554, response: '554 5.7.1 go away', message: 'x' }, 'mx', '192.0.2.25'), { code: 451, reply: '554 5.7.1 go away' }, 'a 5xx greeting: try the next MX');
  assert.deepEqual(connectFailure({ responseCode: 421, response: '421 busy', message: 'x' }, 'mx', '192.0.2.25'), { code: 421, reply: '421 busy' });

  const rcpts = ['a@example.net', 'b@example.net'];
  const refused = sendFailure({ code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 no', rejectedErrors: [{ recipient: 'a@example.net', responseCode: 550, response: '550 5.1.1 <a@example.net> unknown' }] }, rcpts, 'mx', '192.0.2.25');
  assert.deepEqual(refused, { kind: 'done', results: [
    { recipient: 'a@example.net', code: 550, reply: '550 5.1.1 <a@example.net> unknown', outcome: 'bounced' },
    { recipient: 'b@example.net', code: 550, reply: '550 5.1.1 no', outcome: 'bounced' },
  ] });
  const data = sendFailure({ code: 'EMESSAGE', responseCode: 452, response: '452 4.3.1 full' }, rcpts, 'mx', '192.0.2.25') as any;
  assert.deepEqual(data.results.map((r: any) => [r.code, r.outcome]), [[452, 'deferred'], [452, 'deferred']]);
  assert.deepEqual(sendFailure({ code: 'ECONNECTION', message: 'socket hang up' }, rcpts, 'mx.example.net', '192.0.2.25'), { kind: 'next', code: 451, reply: '451 4.4.2 connection to mx.example.net [192.0.2.25] lost: socket hang up' });

  assert.deepEqual(sentResults({ response: '250 2.0.0 queued as X', rejectedErrors: [{ recipient: 'b@example.net', responseCode: 452, response: '452 4.2.2 over quota' }] }, rcpts), [
    { recipient: 'a@example.net', code: 250, reply: '250 2.0.0 queued as X', outcome: 'delivered' },
    { recipient: 'b@example.net', code: 452, reply: '452 4.2.2 over quota', outcome: 'deferred' },
  ]);
  assert.equal(sentResults({}, ['a@example.net'])[0].reply, '250 OK');
});

test('vacation CLI: the options validated by the API schema (a problem names its option), and the reply as text', async () => {
  const { vacationFromOptions, vacationText } = await import('../src/sieve/cli.ts');
  assert.deepEqual(vacationFromOptions({ subject: 'Away', days: '3' }, 'Back Monday.', undefined), { enabled: true, subject: 'Away', text: 'Back Monday.', days: 3 });
  assert.deepEqual(vacationFromOptions({ subject: 'Away', disabled: true, from: 'me@example.test' }, 'x', '<p>x</p>'), { enabled: false, subject: 'Away', text: 'x', html: '<p>x</p>', from: 'me@example.test' });
  assert.throws(() => vacationFromOptions({ subject: 'Away' }, undefined, undefined), /give the reply with --text or --text-file/);
  assert.throws(() => vacationFromOptions({ subject: 'Away', days: '400' }, 'x', undefined), /^LetterboxError: --days: /);
  const v = { enabled: true, active: false, subject: 'Away', from: 'me@example.test', days: 7, start: '2026-12-24', end: null, text: 'Back soon.', html: null, updatedAt: '' } as any;
  assert.equal(vacationText(v), 'enabled, outside its dates: "Away" from me@example.test, at most one reply per sender every 7 day(s), from 2026-12-24\n\nBack soon.\n');
  assert.match(vacationText({ ...v, active: true, start: null, text: 'x\n' }), /^ACTIVE: .* day\(s\)\n\nx\n$/);
});

test('MX receive: scan only what authentication let through, refusals by policy, Junk per recipient, the trace header order', async () => {
  const { wantsSpamScan, policyRefusal, junkFlags, receivedFields, tracePrefix, verdictsOf } = await import('../src/smtp/inbound/deliver.ts');
  assert.deepEqual(['accept', 'quarantine', 'reject', 'tempfail'].map((a) => wantsSpamScan(1, a as any)), [true, true, false, false]);
  assert.equal(wantsSpamScan(0, 'accept'), false, 'forwards only: no scan');

  assert.equal(policyRefusal({ action: 'accept', reason: 'x' }, 'R1'), null);
  assert.equal(policyRefusal({ action: 'quarantine', reason: 'x' }, 'R1'), null);
  const rej = policyRefusal({ action: 'reject', code: 550, enhanced: '5.7.1', text: 'Message rejected: DMARC', reason: 'x' }, 'R1')!;
  assert.deepEqual([rej.responseCode, rej.enhanced, rej.text, rej.temporary, rej.ref ?? null], [550, '5.7.1', 'Message rejected: DMARC', false, null]);
  const temp = policyRefusal({ action: 'tempfail', reason: 'x' }, 'R1')!;
  assert.deepEqual([temp.responseCode, temp.enhanced, temp.temporary, temp.ref], [451, '4.3.0', true, 'R1']);

  assert.deepEqual(junkFlags('accept', undefined, 2), [false, false]);
  assert.deepEqual(junkFlags('quarantine', undefined, 2), [true, true]);
  assert.deepEqual(junkFlags('accept', ['ham', 'junk', 'reject', 'off'], 4), [false, true, true, false]);

  const session = { id: 's', remoteAddress: '192.0.2.1', helo: 'client.test', clientHostname: null, transmissionType: 'ESMTPS', tls: null };
  const arrival = new Date('2026-12-07T10:00:00Z');
  const one = receivedFields(session, 'mx.example.test', 'Q1', { mailFrom: 'a@b.test', rcpts: [{ address: 'x@example.test', targets: [] }] }, arrival);
  assert.deepEqual([one.recipient, one.hostname, one.id, one.ip, one.date], ['x@example.test', 'mx.example.test', 'Q1', '192.0.2.1', arrival]);
  const two = receivedFields(session, 'mx.example.test', 'Q1', { mailFrom: '', rcpts: [{ address: 'x@example.test', targets: [] }, { address: 'y@example.test', targets: [] }] }, arrival);
  assert.equal(two.recipient, null, 'several recipients: none named');
  const { VERDICT_ID_HEADER } = await import('../src/verdicts/store.ts');
  assert.equal(tracePrefix('Q1', 'X-Spam: yes\r\n', 'Authentication-Results: a\r\n', 'Received: r\r\n').toString(), `${VERDICT_ID_HEADER}: Q1\r\nX-Spam: yes\r\nAuthentication-Results: a\r\nReceived: r\r\n`);

  const locals = [{ lmtpRcpt: 'x@example.test', originals: ['x@example.test'], target: { kind: 'local', mailboxId: 'm1', address: 'x@example.test' } }] as any;
  const v = verdictsOf({ spf: { status: { result: 'pass' }, domain: 'b.test' } } as any, { evidence: { action: 'accept', reason: '', verdict: 'ham', score: 1.5 } }, 'mx.example.test', locals);
  assert.deepEqual([v.auth.spf, v.spam, v.mailboxIds], [{ result: 'pass', domain: 'b.test' }, { verdict: 'ham', score: 1.5, action: 'accept' }, ['m1']]);
  assert.equal(verdictsOf({} as any, null, 'h', locals).spam, undefined);
});

test('Dovecot setup: who stores the mail, what its processes must reach, the error texts, the render options', async () => {
  const { mailIdentity, accessNeeds, describe, stillBlockedMessage, relocationFailedMessage, renderOptions } = await import('../src/dovecot/setup.ts');
  const me = { username: 'dev', uid: 1000, gid: 1000 };
  assert.deepEqual(mailIdentity(false, 'vmail', null, me), { mailUser: 'dev', ids: { uid: 1000, gid: 1000 } }, 'rootless: the current user, whatever is configured');
  assert.deepEqual(mailIdentity(true, 'vmail', { uid: 998, gid: 997 }, me), { mailUser: 'vmail', ids: { uid: 998, gid: 997 } });
  assert.throws(() => mailIdentity(true, 'vmail', null, me), (e: any) => e.code === 'config_error' && /user "vmail" does not exist; create it \(useradd --system --shell \/usr\/sbin\/nologin vmail\)/.test(e.message));
  assert.throws(() => mailIdentity(true, 'root', { uid: 0, gid: 0 }, me), /mail must not be stored as root/);

  const mail = { name: 'vmail', uid: 998, gids: [997] };
  const paths = { users: '/d/dovecot/users', mailRoot: '/d/mail', baseDir: '/d/dovecot/run' } as any;
  assert.deepEqual(accessNeeds({ name: 'dovecot', uid: 105, gids: [110] }, mail)(paths).map((n) => [n.who.name, n.role, n.path, n.perms]), [
    ['dovecot', 'auth process', '/d/dovecot/users', 'r'],
    ['vmail', 'mail processes', '/d/mail', 'rwx'],
    ['vmail', 'mail processes', '/d/dovecot/run', ''],
  ]);
  assert.equal(accessNeeds(null, mail)(paths).length, 2, 'no dovecot user: only the mail user is checked');

  const need = { who: { name: 'dovecot', uid: 105, gids: [110] }, role: 'auth process', path: '/root/x/users', perms: 'r' };
  const blocked = { at: '/root', mode: 0o700, owner: 0, lacks: 'x' };
  const why = "Dovecot's auth process (user dovecot) cannot read /root/x/users: /root (mode 0700, owner uid 0) does not give it search (x) permission";
  assert.equal(describe(need, blocked), why);
  assert.equal(describe({ ...need, perms: 'rwx' }, { ...blocked, lacks: 'w' }), why.replace('cannot read', 'cannot write to').replace('search (x)', 'w'));
  assert.match(stillBlockedMessage(need, blocked), new RegExp(`^${why.replace(/[()]/g, '\\$&')}\\. Fix: set data_dir to .* or set dovecot\\.fallback_dir to a folder those users can traverse$`));
  assert.match(relocationFailedMessage('WHY', '/var/lib/letterbox-dev-x', { code: 'EACCES', message: 'm' }), /^WHY; moving Dovecot's files to \/var\/lib\/letterbox-dev-x failed \(EACCES\)\. Fix: .* to a writable folder everyone can traverse$/);
  assert.match(relocationFailedMessage('WHY', '/t', { message: 'boom' }), /failed \(boom\)/);

  const who = { isRoot: true, mailUser: 'vmail', ids: { uid: 998, gid: 997 }, clientUser: 'root', series: '2.4' as const, authPolicy: undefined };
  const r = renderOptions({} as any, paths, who, { v23: 'a', v24: 'b' });
  assert.deepEqual([r.mode, r.mailUser, r.mailUid, r.mailGid, r.clientUser, r.series, r.extraBlocks], ['root', 'vmail', 998, 997, 'root', '2.4', [{ name: 'spam learning', v23: 'a', v24: 'b' }]]);
  assert.deepEqual([renderOptions({} as any, paths, { ...who, isRoot: false }, null).mode, renderOptions({} as any, paths, who, null).extraBlocks], ['rootless', []]);
});

test('mailbox CLI: the row, what add and passwd print (a generated password once, never a given one), --disable/--enable', async () => {
  const { mailboxRow, addedOutput, passwdOutput, disabledChange } = await import('../src/cli/mailboxes.ts');
  const m = { id: 'mbx_1', address: 'alice@example.test', domain: 'example.test', domainId: 'dom_1', quotaBytes: 2 * 1024 ** 3, disabled: false, tags: [], createdAt: '', updatedAt: '' };
  assert.deepEqual([mailboxRow(m).quota, mailboxRow(m).status, mailboxRow({ ...m, disabled: true }).status], ['2G', 'active', 'disabled']);
  assert.deepEqual(addedOutput(m, null), { json: m, text: 'added alice@example.test (mbx_1), quota 2G\n' });
  assert.deepEqual(addedOutput(m, 'gen-pw'), { json: { ...m, password: 'gen-pw' }, text: 'added alice@example.test (mbx_1), quota 2G\npassword: gen-pw\n(shown once: store it now)\n' });
  assert.deepEqual(passwdOutput(m, 'given-pw', true), { json: m, text: 'password changed for alice@example.test\n' });
  assert.deepEqual(passwdOutput(m, 'gen-pw', false), { json: { ...m, password: 'gen-pw' }, text: 'password changed for alice@example.test\npassword: gen-pw\n(shown once: store it now)\n' });
  assert.deepEqual([disabledChange({ disable: true }), disabledChange({ enable: true }), disabledChange({})], [true, false, undefined]);
});

test('supervision: restart backoff (1 s … 30 s, reset after a minute up), the guard with or without its process group, Dovecot log levels', async () => {
  const { restartBackoff, guardScript } = await import('../src/supervise/process.ts');
  const { dovecotLogLevel } = await import('../src/dovecot/supervisor.ts');
  let restarts = 0;
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    const next = restartBackoff(restarts, 5000);
    delays.push(next.delayMs);
    restarts = next.restarts;
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.deepEqual(restartBackoff(restarts, 60001), { delayMs: 1000, restarts: 1 }, 'up for over a minute: back to 1 s');
  assert.deepEqual(restartBackoff(3, 60000), { delayMs: 8000, restarts: 4 });

  const plain = guardScript(false);
  const group = guardScript(true);
  for (const g of [plain, group]) {
    assert.match(g, /^\nexec 3<&0 <\/dev\/null\n"\$@" &\n/, 'the daemon runs with stdin detached; the pipe is on fd 3');
    assert.match(g, /\( read -r _ <&3; kill -TERM \$d 2>\/dev\/null \) &/, 'the pipe closing stops the daemon');
    assert.match(g, /exit \$rc\n$/);
  }
  assert.doesNotMatch(plain, /ps -o pid= -g/);
  assert.match(group, /ps -o pid= -g \$\$/);
  assert.ok(group.startsWith(plain.replace(/exit \$rc\n$/, '')));

  assert.deepEqual(
    ['master: Fatal: x', 'imap: Panic: y', 'auth: Error: z', 'lmtp: Warning: w', 'master: Info: Dovecot v2.3 starting up', 'ErrorX: not a level'].map(dovecotLogLevel),
    ['error', 'error', 'error', 'warn', 'info', 'info'],
  );
});

// ---- src/reports/send-out.ts: runReportsOut split into the run, one report, DMARC and TLS (#13) ----
test('reportGate: no sender, the run limit, the per-destination limit, a suppressed destination, in that order; else null', () => {
  const ok = { senderDomain: 'ours.test', total: 0, sentToDestination: 0, suppressed: false, maxPerRun: 3, maxPerDestination: 1 };
  assert.equal(reportGate(ok), null);
  assert.equal(reportGate({ ...ok, senderDomain: null, total: 9 }), 'no domain of ours to send from');
  assert.equal(reportGate({ ...ok, total: 3, sentToDestination: 1 }), 'rate limit: reports.max_per_run (3) reached');
  assert.equal(reportGate({ ...ok, sentToDestination: 1, suppressed: true }), 'rate limit: reports.max_per_destination (1) reached for this address');
  assert.equal(reportGate({ ...ok, suppressed: true }), 'destination suppressed (it hard-bounced before)');
});

test("publishedPolicy: the record's tags now, the last evaluation's p/sp where the record has none, RFC 7489 defaults", () => {
  assert.deepEqual(publishedPolicy('x.test', { p: 'reject', pct: '50', adkim: 's', fo: '1' }, { p: 'none', sp: 'none' }), { domain: 'x.test', p: 'reject', sp: 'reject', pct: 50, adkim: 's', aspf: 'r', fo: '1' });
  assert.deepEqual(publishedPolicy('x.test', { pct: 'abc' }, { p: 'quarantine', sp: 'none' }), { domain: 'x.test', p: 'quarantine', sp: 'none', pct: 100, adkim: 'r', aspf: 'r', fo: '0' });
});
