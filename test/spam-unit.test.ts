// The spam decisions and generated configs as pure functions, without sockets (issue #14).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applySpam, assess, authSymbols, effectiveSettings, greylistScanSettings, headerText, messageGreylist, recipientVerdict, type EffectiveSpamSettings } from '../src/spam/policy.ts';
import { renderRedisConfig, renderRspamdFiles, spamPaths } from '../src/spam/config.ts';
import { renderImapSieveBlock, renderLearnScript, renderSieveScripts } from '../src/spam/dovecot.ts';
import { decide, type Evidence } from '../src/smtp/inbound/policy.ts';
import { classifyDnsblProbe, rspamdVersionLine } from '../src/spam/doctor.ts';

const on: EffectiveSpamSettings = { mode: 'on', reject: 15, junk: 6, greylist: 4, greylisting: 'on' };
const off: EffectiveSpamSettings = { mode: 'off', reject: 15, junk: 6, greylist: 4, greylisting: 'on' };
const none = { mode: null, reject: null, junk: null, greylist: null, greylisting: null };
const scanned = (score: number, action = 'no action') => ({ kind: 'scanned' as const, result: { score, action }, ms: 5 });

test('effective settings: mailbox overrides domain overrides config; null inherits', () => {
  const g = { reject: 15, junk: 6, greylist: 4, greylisting: true };
  assert.deepEqual(effectiveSettings(g, null, null), { mode: 'on', reject: 15, junk: 6, greylist: 4, greylisting: 'on' });
  assert.deepEqual(effectiveSettings(g, { ...none, mode: 'off', reject: 20, greylist: 2 }, null), { mode: 'off', reject: 20, junk: 6, greylist: 2, greylisting: 'on' });
  assert.deepEqual(
    effectiveSettings(g, { ...none, mode: 'off', reject: 20, greylist: 2, greylisting: 'off' }, { ...none, mode: 'on', junk: 3, greylist: 5, greylisting: 'on' }),
    { mode: 'on', reject: 20, junk: 3, greylist: 5, greylisting: 'on' },
  );
  assert.equal(effectiveSettings(g, { ...none, greylisting: 'off' }, null).greylisting, 'off', 'a domain turns greylisting off for its mailboxes');
  assert.equal(effectiveSettings({ ...g, greylisting: false }, null, { ...none, greylisting: 'on' }).greylisting, 'off', '[spam] greylisting = false (module off) wins');
});

test('greylist threshold of a message: the highest of its recipients; none when any opted out', () => {
  assert.equal(messageGreylist([on]), 4);
  assert.equal(messageGreylist([on, { ...on, greylist: 7 }]), 7);
  assert.equal(messageGreylist([on, { ...on, greylisting: 'off' }]), null);
  assert.equal(messageGreylist([on, off]), null);
  assert.equal(messageGreylist([]), null);
});

test('recipient verdict by score and thresholds', () => {
  assert.equal(recipientVerdict(15, on), 'reject');
  assert.equal(recipientVerdict(14.99, on), 'junk');
  assert.equal(recipientVerdict(6, on), 'junk');
  assert.equal(recipientVerdict(5.9, on), 'ham');
  assert.equal(recipientVerdict(-3, on), 'ham');
  assert.equal(recipientVerdict(100, off), 'off');
});

test('assess: reject only when every recipient rejects; a partial reject goes to Junk', () => {
  const all = assess(scanned(15, 'reject'), [on, on], 'tempfail');
  assert.equal(all.evidence.action, 'reject');
  assert.deepEqual(all.recipients, ['reject', 'reject']);
  const mixed = assess(scanned(15, 'reject'), [on, { ...on, reject: 100 }], 'tempfail');
  assert.equal(mixed.evidence.action, 'accept');
  assert.deepEqual(mixed.recipients, ['reject', 'junk']);
  assert.equal(mixed.evidence.verdict, 'junk');
  const withOff = assess(scanned(15, 'reject'), [on, off], 'tempfail');
  assert.equal(withOff.evidence.action, 'accept', 'a recipient with filtering off still gets it');
  assert.deepEqual(withOff.recipients, ['reject', 'off']);
});

test('assess: soft reject from rspamd (greylisting) → greylist, unless a recipient opted out', () => {
  assert.equal(assess(scanned(4.2, 'soft reject'), [on], 'tempfail').evidence.action, 'greylist');
  assert.equal(assess(scanned(4.2, 'soft reject'), [on, off], 'tempfail').evidence.action, 'accept');
});

test('assess: greylisting off for a recipient accepts what rspamd greylisted; the scan settings carry the threshold', () => {
  assert.equal(assess(scanned(4.2, 'soft reject'), [{ ...on, greylisting: 'off' }], 'tempfail').evidence.action, 'accept');
  assert.equal(assess(scanned(0, 'soft reject'), [{ ...on, greylist: 9 }], 'tempfail').evidence.action, 'greylist', 'a too-early retry scores little');
  assert.deepEqual(greylistScanSettings([on], 6), { actions: { greylist: 4 } });
  assert.deepEqual(greylistScanSettings([{ ...on, greylist: -2 }], 6), { actions: { greylist: -2 } }, 'below the global threshold');
  // rspamd also greylists at "add header": dropped for the scan when the threshold is above it.
  assert.deepEqual(greylistScanSettings([{ ...on, greylist: 9 }, on], 6), { actions: { greylist: 9, 'add header': null } });
  assert.deepEqual(greylistScanSettings([on, { ...on, greylisting: 'off' }], 6), { symbols_disabled: ['GREYLIST_CHECK', 'GREYLIST_SAVE'] });
  assert.deepEqual(greylistScanSettings([off], 6), { symbols_disabled: ['GREYLIST_CHECK', 'GREYLIST_SAVE'] });
});

test('assess: headers carry score and status; junk says Yes', () => {
  const a = assess(scanned(7.256, 'add header'), [on], 'tempfail');
  assert.deepEqual(a.headers, [['X-Spam-Score', '7.26'], ['X-Spam-Status', 'Yes, score=7.26 action=add header']]);
  assert.equal(headerText(a.headers), 'X-Spam-Score: 7.26\r\nX-Spam-Status: Yes, score=7.26 action=add header\r\n');
  const h = assess(scanned(-1), [on], 'tempfail');
  assert.equal(h.headers[1][1], 'No, score=-1.00 action=no action');
  assert.equal(h.evidence.verdict, 'ham');
});

test('assess: scanner failure → tempfail by default, or accept with a "not scanned" header', () => {
  const t = assess({ kind: 'failed', error: 'ECONNREFUSED' }, [on], 'tempfail');
  assert.equal(t.evidence.action, 'tempfail');
  const a = assess({ kind: 'failed', error: 'ECONNREFUSED' }, [on], 'accept');
  assert.equal(a.evidence.action, 'accept');
  assert.match(a.headers[0][1], /not scanned/);
  const big = assess({ kind: 'too_big', size: 20, max: 10 }, [on], 'tempfail');
  assert.equal(big.evidence.action, 'accept');
  assert.match(big.headers[0][1], /not scanned \(message larger than 10 bytes\)/);
  assert.deepEqual(assess({ kind: 'off' }, [off], 'tempfail').headers, []);
});

test('applySpam on the authentication decision: auth reject/tempfail stand; spam reject 550 5.7.1, greylist 451 4.7.1', () => {
  const authReject = { action: 'reject' as const, code: 550, enhanced: '5.7.1', text: 'DMARC', reason: 'dmarc' };
  const spamReject = { action: 'reject' as const, reason: 'spam score 15', verdict: 'reject', score: 15 };
  assert.equal(applySpam(authReject, spamReject), authReject);
  assert.equal(applySpam({ action: 'tempfail', reason: 'dns' }, spamReject).action, 'tempfail');
  const r = applySpam({ action: 'quarantine', reason: 'dmarc quarantine' }, spamReject);
  assert.deepEqual(r, { action: 'reject', code: 550, enhanced: '5.7.1', text: 'Message rejected as spam', reason: 'spam score 15' });
  const g = applySpam({ action: 'accept', reason: 'ok' }, { action: 'greylist', reason: 'g', verdict: 'greylist', score: 4 });
  assert.equal((g as any).code, 451);
  assert.equal((g as any).enhanced, '4.7.1');
  assert.equal(applySpam({ action: 'accept', reason: 'ok' }, { action: 'tempfail', reason: 'down', verdict: 'failed', score: null }).action, 'tempfail');
  assert.deepEqual(applySpam({ action: 'quarantine', reason: 'q' }, { action: 'accept', reason: 'ham', verdict: 'ham', score: 0 }), { action: 'quarantine', reason: 'q' });
});

test('decide() includes the spam evidence; a DMARC reject still wins over it', () => {
  const base: Evidence = { spf: 'pass', dkim: 'pass', dmarc: { result: 'pass', policy: 'reject', domain: 'a.test' } };
  const s = { dmarcReject: 'reject' as const, spfFail: 'accept' as const };
  assert.equal(decide(base, s).action, 'accept');
  assert.equal(decide({ ...base, spam: { action: 'reject', reason: 'x', verdict: 'reject', score: 20 } }, s).action, 'reject');
  const dm = decide({ ...base, dmarc: { result: 'fail', policy: 'reject', domain: 'a.test' }, spam: { action: 'greylist', reason: 'g', verdict: 'greylist', score: 4 } }, s);
  assert.equal((dm as any).code, 550);
  assert.match((dm as any).text, /DMARC/);
});

test('our SPF/DKIM/DMARC/ARC verdicts become rspamd stock symbols', () => {
  assert.deepEqual(authSymbols({ spf: 'pass', dkim: 'pass', dmarc: { result: 'pass', policy: 'reject' }, arc: 'pass' }), { R_SPF_ALLOW: 1, R_DKIM_ALLOW: 1, DMARC_POLICY_ALLOW: 1, ARC_ALLOW: 1 });
  assert.deepEqual(authSymbols({ spf: 'fail', dkim: 'fail', dmarc: { result: 'fail', policy: 'quarantine' } }), { R_SPF_FAIL: 1, R_DKIM_REJECT: 1, DMARC_POLICY_QUARANTINE: 1 });
  assert.deepEqual(authSymbols({ spf: 'none', dkim: 'none', dmarc: null }), { R_SPF_NA: 1, R_DKIM_NA: 1, DMARC_NA: 1 });
});

test('generated rspamd config: Unix sockets only, no proxy, our auth modules off, thresholds and resolver', () => {
  const paths = spamPaths('/var/lib/letterbox');
  const files = renderRspamdFiles({ paths, nameservers: ['127.0.0.1:5353'], thresholds: { reject: 12, junk: 5, greylist: 3.5 }, greylisting: true, greylistDelaySeconds: 120, hsCacheDir: paths.dbDir, fuzzy: false, maxScanSize: 1000, redisMaxMemory: 1 << 20, source: 'test' });
  assert.match(files['override.d/worker-normal.inc'], /^bind_socket = "\/var\/lib\/letterbox\/rspamd\/run\/normal\.sock mode=0666";$/m);
  assert.match(files['override.d/worker-controller.inc'], /^bind_socket = "\/var\/lib\/letterbox\/rspamd\/run\/controller\.sock mode=0666";$/m);
  assert.match(files['override.d/worker-proxy.inc'], /enabled = false/);
  for (const m of ['spf', 'dkim', 'dmarc', 'arc', 'dkim_signing', 'fuzzy_check']) assert.match(files[`override.d/${m}.conf`], /enabled = false/, m);
  assert.match(files['local.d/actions.conf'], /reject = 12;\nadd_header = 5;\ngreylist = 3.5;/);
  assert.match(files['local.d/options.inc'], /nameserver = \["127\.0\.0\.1:5353"\]/);
  assert.match(files['local.d/greylist.conf'], /timeout = 120s;/);
  assert.match(files['local.d/greylist.conf'], /greylist_min_score = -1000;/, 'the per-scan greylist threshold decides');
  assert.doesNotMatch(files['local.d/greylist.conf'], /enabled = false/);
  // Bayes per mailbox with a shared fallback: two classifiers, the per-mailbox one scored first.
  const stat = files['override.d/statistic.conf'];
  const classifiers = stat.split(/^classifier "bayes" \{$/m).slice(1);
  assert.equal(classifiers.length, 2, stat);
  assert.match(classifiers[0], /name = "bayes";[\s\S]*per_user = false;[\s\S]*symbol = "BAYES_SPAM";[\s\S]*learn_condition/);
  assert.match(classifiers[1], /name = "bayes_user";[\s\S]*per_user = true;[\s\S]*symbol = "BAYES_HAM_USER";[\s\S]*symbol = "BAYES_SPAM_USER";/);
  assert.doesNotMatch(classifiers[1], /learn_condition/, 'a Junk move always trains the mailbox');
  assert.doesNotMatch(files['local.d/classifier-bayes.conf'], /per_user/, 'the old single-classifier file is emptied');
  assert.match(files['local.d/statistics_group.conf'], /"BAYES_SPAM_USER" \{\n    weight = 5\.1;/);
  assert.match(files['local.d/composites.conf'], /expression = "\(-BAYES_SPAM_USER \| -BAYES_HAM_USER\) & \(~BAYES_SPAM \| ~BAYES_HAM\)";/);
  const redis = renderRedisConfig({ paths, nameservers: [], thresholds: { reject: 15, junk: 6, greylist: 4 }, greylisting: false, greylistDelaySeconds: 300, hsCacheDir: '', fuzzy: true, maxScanSize: 1, redisMaxMemory: 1048576, source: 'test' });
  assert.match(redis, /^port 0$/m, 'no TCP listener');
  assert.match(redis, /^unixsocket \/var\/lib\/letterbox\/redis\/redis\.sock$/m);
  assert.match(redis, /^dir \/var\/lib\/letterbox\/redis$/m);
  assert.match(redis, /^maxmemory 1048576$/m);
});

test('IMAPSieve learning block and scripts', () => {
  const paths = spamPaths('/d');
  const block = renderImapSieveBlock(paths);
  assert.match(block, /imapsieve_mailbox1_name = Junk/);
  assert.match(block, /imapsieve_mailbox2_from = Junk/);
  assert.match(block, /sieve_pipe_bin_dir = \/d\/rspamd\/sieve-bin/);
  const s = renderSieveScripts();
  assert.match(s['learn-spam.sieve'], /pipe :copy "rspamd-learn" \["learn_spam", "\$\{user\}"\]/);
  assert.match(s['learn-ham.sieve'], /if string "\$\{mailbox\}" \["Trash", "Junk"\] \{ stop; \}/);
  assert.match(renderLearnScript(paths), /exec \/usr\/bin\/rspamc -h \/d\/rspamd\/run\/controller\.sock -t 30 -d "\$2" "\$1"/);
});

test('doctor: the DNSBL test entry tells whether blocklist lookups work through the resolver', () => {
  assert.equal(classifyDnsblProbe(['127.0.0.2', '127.0.0.10'], null).status, 'ok');
  const refused = classifyDnsblProbe(['127.255.255.254'], null);
  assert.equal(refused.status, 'fail');
  assert.match(refused.message, /refused/);
  assert.match(refused.fix!, /unbound/);
  assert.equal(classifyDnsblProbe([], null).status, 'warn');
  assert.equal(classifyDnsblProbe(null, 'ETIMEOUT').status, 'warn');
});

test('doctor: the rspamd version line, from rspamd 3.4 (one line) and 3.12 (Debian 13: the version, then a feature list)', () => {
  assert.equal(rspamdVersionLine('Rspamd daemon version 3.4\n'), 'Rspamd daemon version 3.4');
  const v312 = 'Rspamd daemon version 3.12.1\n\nCPU architecture x86_64; features: avx2, avx, sse2\nHyperscan enabled: TRUE\nJemalloc enabled: TRUE\n' +
    'LuaJIT enabled: TRUE (LuaJIT version: LuaJIT 2.1.1737090214)\nASAN enabled: FALSE\nBLAS enabled: FALSE\nFasttext enabled: FALSE\n';
  assert.equal(rspamdVersionLine(v312), 'Rspamd daemon version 3.12.1');
  assert.equal(rspamdVersionLine('\n  something else\n'), 'something else');
});

test('backup skips rspamd sockets and caches, keeps Redis dump and the generated config', async () => {
  const { spamBackupSkip } = await import('../src/spam/manage.ts');
  assert.equal(spamBackupSkip('rspamd/run'), true);
  assert.equal(spamBackupSkip('rspamd/run/normal.sock'), true);
  assert.equal(spamBackupSkip('rspamd/db/abc.hsmp'), true);
  assert.equal(spamBackupSkip('redis/redis.sock'), true);
  assert.equal(spamBackupSkip('redis/dump.rdb'), false);
  assert.equal(spamBackupSkip('rspamd/conf/local.d/actions.conf'), false);
  assert.equal(spamBackupSkip('rspamdx/db'), false);
});

test('rspamd client: a learn refused with 204 and a body (rspamd 3.4) is an answer, not "rspamd unreachable"', async () => {
  const { createServer } = await import('node:net');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { RspamdClient } = await import('../src/spam/client.ts');
  const dir = mkdtempSync(join(tmpdir(), 'lb-rspamd-204-'));
  const sock = join(dir, 'controller.sock');
  const body = '{"error":"all learn conditions denied learning spam in default classifier"}';
  // The bytes rspamd 3.4's controller sends (captured with curl -v): a 204 that carries a body.
  const server = createServer((c) => {
    c.once('data', () => c.end(`HTTP/1.1 204 all learn conditions denied learning spam in default classifier\r\nConnection: close\r\nServer: rspamd/3.4\r\nContent-Length: ${body.length}\r\nContent-Type: application/json\r\n\r\n${body}`));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  const client = new RspamdClient({ normalSocket: join(dir, 'normal.sock'), controllerSocket: sock });
  try {
    const r = await client.learn('spam', Buffer.from('Subject: x\r\n\r\nhello\r\n'), 'alice@ours.test', 5000);
    assert.deepEqual(r, { learned: false, error: 'all learn conditions denied learning spam in default classifier' });
  } finally {
    client.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('greylisting exemption store: a domain seen before is exempt; a domain seen today is not written again (no commit per message)', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { openDatabase } = await import('../src/db/index.ts');
  const { silentLogger } = await import('../src/log.ts');
  const { seenDomainBefore } = await import('../src/spam/store.ts');
  const dir = mkdtempSync(join(tmpdir(), 'lb-seen-'));
  const db = openDatabase(join(dir, 'l.db'), { log: silentLogger(), clock: { now: () => Date.parse('2026-12-07T10:00:00Z') } });
  try {
    const changes = () => db.prepare('SELECT total_changes()').pluck().get() as number;
    assert.equal(seenDomainBefore(db, 'pass.test', '2026-12-07T10:00:00.000Z'), false, 'first time');
    const c0 = changes();
    assert.equal(seenDomainBefore(db, 'pass.test', '2026-12-07T18:00:00.000Z'), true);
    assert.equal(changes(), c0, 'same day: nothing written');
    assert.equal(seenDomainBefore(db, 'pass.test', '2026-12-08T08:00:00.000Z'), true);
    assert.equal(changes(), c0 + 1, 'next day: last_seen updated');
    assert.equal(db.prepare('SELECT last_seen FROM spam_seen_domains WHERE domain = ?').pluck().get('pass.test'), '2026-12-08T08:00:00.000Z');
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
