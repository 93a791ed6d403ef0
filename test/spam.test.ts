// Spam filtering on the MX with the real rspamd and Redis started by the appliance under test
// (issue #14). A TestDns answers every lookup at once (NXDOMAIN unless set), so nothing leaves the
// machine and no scan waits on a DNS timeout. rspamd's test patterns (GTUBE and its add-header
// variant) and a greylist threshold of 3 make the scores deterministic. Needs rspamd and
// redis-server installed (install.sh --dev --test-tools does it): without them this file fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { dkimSign } from 'mailauth';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';

const PW = 'spam test password 123';
const HOST = 'mail.letterbox.test';
const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
// rspamd's "add header" test pattern (enable_test_patterns, [spam] test_patterns in the config).
const GTUBE_ADD_HEADER = 'YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
const tok = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

let app: Appliance;
let dns: TestDns;
let sink: Sink;
let sinkCert: { key: string; cert: string; dir: string };
let cert: string;
const imaps = new Map<string, ImapFlow>();
const dkimKey = generateKeyPairSync('rsa', { modulusLength: 2048 });

before(async () => {
  assert.ok(existsSync('/usr/bin/rspamd') && existsSync('/usr/bin/redis-server'), 'rspamd and redis-server must be installed (install.sh --dev --test-tools)');
  dns = await new TestDns().start();
  sinkCert = testCert(['mx.remote.test']);
  sink = await new Sink(sinkCert).start();
  app = await startAppliance({
    hostname: HOST,
    readyTimeoutMs: 240000,
    extraToml: `
[dns]
servers = ["${dns.server}"]
timeout_ms = 1500
[outbound]
mta_sts = false
port = ${sink.port}
poll_interval_ms = 200
[spam]
enabled = true
greylist = 3
greylist_delay = "3s"
timeout_ms = 8000
fuzzy = false
test_patterns = true
max_scan_size = "100k"
# Compiled regexps shared between test runs (rspamd compiles them for ~a minute the first time).
hs_cache_dir = "${join(tmpdir(), 'letterbox-test-rspamd-hs')}"
`,
  });
  cert = applianceCert(app);
  await app.cliJson(['domain', 'add', 'ours.test']);
  for (const m of ['alice', 'bob', 'nofilter']) await app.cliJson(['mailbox', 'add', `${m}@ours.test`, '--password', PW]);
  const p = (dkimKey.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64');
  dns
    .txt('pass.test', 'v=spf1 ip4:127.0.0.1 -all')
    .txt('_dmarc.pass.test', 'v=DMARC1; p=reject')
    .txt('sel1._domainkey.pass.test', `v=DKIM1; k=rsa; p=${p}`)
    .mx('pass.test', 'mx.pass.test')
    .a('mx.pass.test', '127.0.0.1')
    .a('client.pass.test', '127.0.0.1')
    .txt('fresh.test', 'v=spf1 ip4:127.0.0.1 -all')
    .txt('_dmarc.fresh.test', 'v=DMARC1; p=none')
    .txt('sel1._domainkey.fresh.test', `v=DKIM1; k=rsa; p=${p}`)
    // The blocklist's test entry as a public resolver sees it: "query refused" (Spamhaus's 127.255.255.254).
    .a('2.0.0.127.zen.spamhaus.org', '127.255.255.254')
    .mx('remote.test', 'mx.remote.test')
    .a('mx.remote.test', '127.0.0.1');
  await sleep(1500); // Dovecot re-reads its users file at most once a second
});

after(async () => {
  if (process.env.SPAM_TEST_LOGS) console.log(app?.logs.filter((l) => /spam|rspamd|redis|"mx"|error/.test(l)).slice(-80).join('\n'));
  for (const c of imaps.values()) await c.logout().catch(() => {});
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
  await sink?.stop();
  if (sinkCert) Sink.cleanupCert(sinkCert.dir);
});

function message(o: { from: string; to: string; subject: string; body?: string; extra?: string[]; noIds?: boolean }): string {
  return [
    `From: ${o.from}`,
    `To: ${o.to}`,
    `Subject: ${o.subject}`,
    ...(o.noIds ? [] : [`Message-ID: <${randomBytes(8).toString('hex')}@${o.from.split('@')[1]}>`, `Date: ${new Date().toUTCString()}`]),
    ...(o.extra ?? []),
    '',
    o.body ?? 'Hello, this is an ordinary message about the meeting on Thursday and the agenda we discussed.',
    '',
  ].join('\r\n');
}

async function signed(raw: string, signingDomain = 'pass.test'): Promise<string> {
  const r = await dkimSign(raw, { signingDomain, selector: 'sel1', privateKey: dkimKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
  return r.signatures + raw;
}

async function send(from: string, to: string[], raw: string): Promise<{ code: number; response: string }> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, requireTLS: true, tls: { ca: cert, servername: HOST }, name: 'client.pass.test' });
  try {
    const info = await t.sendMail({ envelope: { from, to }, raw });
    return { code: Number(info.response.slice(0, 3)), response: info.response };
  } catch (err: any) {
    return { code: err.responseCode ?? 0, response: String(err.response ?? err.message) };
  } finally {
    t.close();
  }
}

async function imap(user: string): Promise<ImapFlow> {
  let c = imaps.get(user);
  if (c && c.usable) return c;
  c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user, pass: PW }, logger: false, tls: { ca: cert, servername: HOST } });
  await c.connect();
  imaps.set(user, c);
  return c;
}

async function find(user: string, folder: string, token: string): Promise<{ uid: number; source: string }[]> {
  const c = await imap(user);
  const lock = await c.getMailboxLock(folder);
  try {
    await c.noop();
    const uids = await c.search({ subject: token }, { uid: true });
    if (!uids || uids.length === 0) return [];
    const out: { uid: number; source: string }[] = [];
    for await (const m of c.fetch(uids, { source: true, uid: true }, { uid: true })) out.push({ uid: m.uid, source: m.source!.toString() });
    return out;
  } finally {
    lock.release();
  }
}

let key: string | null = null;
async function apiKey(): Promise<string> {
  if (!key) {
    const r = await app.cliJson(['key', 'create', '--name', 'spam-test']);
    key = (r.data?.secret ?? r.secret) as string;
  }
  return key;
}

/** The rspamd main process of this appliance: the child of its supervisor's guard shell. */
function rspamdMainPid(): number {
  return daemonPid('/usr/bin/rspamd', join(app.dataDir, 'rspamd', 'conf'), 'rspamd');
}

/** A supervised daemon of this appliance (binary, a path on its command line, its comm prefix). */
function daemonPid(binary: string, conf: string, comm: string): number {
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmd.startsWith('/bin/sh\0') || !cmd.includes(`\0guard\0${binary}\0`) || !cmd.includes(conf)) continue;
    const children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).map(Number);
    for (const c of children) if (readFileSync(`/proc/${c}/comm`, 'utf8').startsWith(comm)) return c;
  }
  throw new Error(`${comm} process not found`);
}

const headerOf = (src: string) => src.slice(0, src.indexOf('\r\n\r\n'));

/** rspamd's learned counts for one user's Bayes statistics. */
async function stat(user: string): Promise<{ spam: number; ham: number }> {
  return (await app.cliJson(['spam', 'stat', user])).data;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 20000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await fn();
  while (!ok(v) && Date.now() < deadline) {
    await sleep(200);
    v = await fn();
  }
  return v;
}

// A long, varied text: Bayes needs at least 11 tokens to learn.
const LONG = 'Cheap watches and exclusive pharmacy offers, limited time only, click the link below to claim your prize money today, unsubscribe anytime from these wonderful daily newsletter deals.';

test('GTUBE is refused at end of DATA with 550 5.7.1 and a short reason, not the symbol list', async () => {
  const subject = tok('gtube');
  const r = await send('someone@pass.test', ['alice@ours.test'], await signed(message({ from: 'someone@pass.test', to: 'alice@ours.test', subject, body: GTUBE })));
  assert.equal(r.code, 550, r.response);
  assert.match(r.response, /5\.7\.1/);
  assert.doesNotMatch(r.response, /GTUBE|symbol/i);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 0);
  assert.equal((await find('alice@ours.test', 'Junk', subject)).length, 0);
});

test('a clean DKIM-signed message lands in INBOX with our score header; a spam header it brought is removed', async () => {
  const subject = tok('clean');
  const raw = await signed(message({ from: 'friend@pass.test', to: 'alice@ours.test', subject, extra: ['X-Spam-Status: No, score=-100 (forged by the sender)', 'X-Spam-Flag: NO'] }));
  const r = await send('friend@pass.test', ['alice@ours.test'], raw);
  assert.equal(r.code, 250, r.response);
  const [m] = await find('alice@ours.test', 'INBOX', subject);
  assert.ok(m, 'in INBOX');
  const h = headerOf(m.source);
  assert.match(h, /^X-Spam-Score: -?\d+\.\d\d$/m);
  assert.match(h, /^X-Spam-Status: No, score=/m);
  assert.doesNotMatch(h, /forged by the sender|X-Spam-Flag/);
  assert.equal((h.match(/^X-Spam-Status:/gm) ?? []).length, 1);
  // The message.received event carries the verdict and the score.
  const res = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1/events?type=message.received&limit=100`, { headers: { authorization: `Bearer ${await apiKey()}` } });
  assert.equal(res.status, 200);
  const events = ((await res.json()) as any).data as any[];
  const e = events.find((x: any) => x.data?.subject === subject);
  assert.ok(e, 'event recorded');
  assert.equal(e.data.spam.verdict, 'ham');
  assert.equal(typeof e.data.spam.score, 'number');
});

test('a message over the add-header threshold is delivered to Junk with X-Spam-Status: Yes', async () => {
  const subject = tok('junk');
  const r = await send('friend@pass.test', ['bob@ours.test'], await signed(message({ from: 'friend@pass.test', to: 'bob@ours.test', subject, body: `Hello\r\n${GTUBE_ADD_HEADER}` })));
  assert.equal(r.code, 250, r.response);
  assert.equal((await find('bob@ours.test', 'INBOX', subject)).length, 0);
  const [m] = await find('bob@ours.test', 'Junk', subject);
  assert.ok(m, 'in Junk');
  assert.match(headerOf(m.source), /^X-Spam-Status: Yes, score=/m);
  // The messages API serves the verdict the MX stored at delivery (not the header).
  const r2 = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1/mailboxes/bob@ours.test/messages/${m.uid}?folder=Junk`, { headers: { authorization: `Bearer ${await apiKey()}` } });
  assert.equal(r2.status, 200);
  const spam = ((await r2.json()) as any).data.spam;
  assert.equal(spam?.verdict, 'junk', JSON.stringify(spam));
  assert.equal(typeof spam.score, 'number');
});

test('greylisting: 451 4.7.1 first and on an early retry, accepted after the (test-shortened) delay', async () => {
  // No Date, no Message-ID, no DMARC domain: rspamd scores it ~3.4, over the test's greylist = 3.
  const subject = tok('grey');
  const raw = message({ from: 'stranger@unknown.test', to: 'alice@ours.test', subject, noIds: true });
  const first = await send('stranger@unknown.test', ['alice@ours.test'], raw);
  assert.equal(first.code, 451, first.response);
  assert.match(first.response, /4\.7\.1/);
  const early = await send('stranger@unknown.test', ['alice@ours.test'], raw);
  assert.equal(early.code, 451, early.response);
  await sleep(3500);
  const later = await send('stranger@unknown.test', ['alice@ours.test'], raw);
  assert.equal(later.code, 250, later.response);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 1);
});

test('greylisting exemption: a DMARC-pass sender domain seen before is not greylisted, a new one is', async () => {
  // All-caps subject, no Date, no Message-ID: ~4 points, over the test's greylist = 3 even with the
  // SPF/DKIM/DMARC pass credits.
  const caps = (from: string, to: string) => message({ from, to, subject: `HELLO THERE FRIEND ${randomBytes(3).toString('hex').toUpperCase()}`, noIds: true, body: `An ordinary note ${randomBytes(8).toString('hex')} about the meeting on Thursday.` });
  const first = await send('a@fresh.test', ['alice@ours.test'], await signed(caps('a@fresh.test', 'alice@ours.test'), 'fresh.test'));
  assert.equal(first.code, 451, `first DMARC pass from fresh.test: greylisted (${first.response})`);
  assert.match(first.response, /4\.7\.1/);
  const second = await send('b@fresh.test', ['alice@ours.test'], await signed(caps('b@fresh.test', 'alice@ours.test'), 'fresh.test'));
  assert.equal(second.code, 250, `fresh.test passed DMARC before: exempt (${second.response})`);
});

test('greylisting per mailbox and per domain: off, a higher threshold, a lower threshold (CLI)', async () => {
  // The same kind of message as the greylisting test (~3.4 > the global greylist = 3), each from a
  // new sender with a new body, so rspamd has seen neither.
  let n = 0;
  const grey = async (to: string) => {
    const from = `stranger${++n}@unknown.test`;
    const subject = tok('grey');
    // A body of its own: rspamd also lets through a body that passed greylisting before.
    const r = await send(from, [to], message({ from, to, subject, noIds: true, body: `Hello, this is an ordinary message about the meeting on Thursday, ${subject}.` }));
    const [m] = r.code === 250 ? await find(to, 'INBOX', subject) : [];
    return { code: r.code, score: m ? /^X-Spam-Score: (.*)$/m.exec(headerOf(m.source))?.[1] : r.response };
  };
  const first = await grey('bob@ours.test');
  assert.equal(first.code, 451, `bob inherits the global threshold (${first.score})`);
  const off = await app.cliJson(['spam', 'set', 'bob@ours.test', '--greylisting', 'off']);
  assert.equal(off.data.effective.greylisting, 'off');
  assert.equal((await grey('bob@ours.test')).code, 250, 'greylisting off for bob');
  await app.cliJson(['spam', 'set', 'bob@ours.test', '--greylisting', 'inherit', '--greylist', '10']);
  assert.equal((await grey('bob@ours.test')).code, 250, "under bob's threshold of 10");
  // Lower than the global threshold: a message the others accept at once is greylisted for bob.
  await app.cliJson(['spam', 'set', 'bob@ours.test', '--greylist', '-100']);
  const ordinary = (to: string, from: string) => {
    const subject = tok('ordinary');
    return send(from, [to], message({ from, to, subject, body: `Hello, nothing special here, ${subject}.` }));
  };
  assert.equal((await ordinary('alice@ours.test', `${tok('s')}@unknown3.test`)).code, 250, 'alice: under the global threshold');
  const low = await ordinary('bob@ours.test', `${tok('s')}@unknown3.test`);
  assert.equal(low.code, 451, low.response);
  assert.match(low.response, /4\.7\.1/);
  // A message to alice and bob: greylisted only if both would greylist it (alice would not).
  const both = await send('x@unknown3.test', ['alice@ours.test', 'bob@ours.test'], message({ from: 'x@unknown3.test', to: 'alice@ours.test', subject: tok('both'), body: tok('Hello, nothing special here') }));
  assert.equal(both.code, 250, both.response);
  await app.cliJson(['spam', 'set', 'bob@ours.test', '--greylist', 'inherit']);
  // A domain turns it off for its mailboxes; a mailbox can turn it back on.
  await app.cliJson(['spam', 'set', 'ours.test', '--greylisting', 'off']);
  assert.equal((await grey('alice@ours.test')).code, 250, 'off for the domain');
  await app.cliJson(['spam', 'set', 'alice@ours.test', '--greylisting', 'on']);
  assert.equal((await grey('alice@ours.test')).code, 451, 'on again for alice');
  await app.cliJson(['spam', 'set', 'alice@ours.test', '--greylisting', 'inherit']);
  await app.cliJson(['spam', 'set', 'ours.test', '--greylisting', 'inherit']);
  const bad = await app.cli(['spam', 'set', 'bob@ours.test', '--greylisting', 'sometimes']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--greylisting/);
});

test('per-mailbox "off": GTUBE is delivered to INBOX, unscanned', async () => {
  const set = await app.cliJson(['spam', 'set', 'nofilter@ours.test', '--off']);
  assert.equal(set.data.effective.mode, 'off');
  const subject = tok('off');
  const r = await send('someone@pass.test', ['nofilter@ours.test'], await signed(message({ from: 'someone@pass.test', to: 'nofilter@ours.test', subject, body: GTUBE })));
  assert.equal(r.code, 250, r.response);
  const [m] = await find('nofilter@ours.test', 'INBOX', subject);
  assert.ok(m);
  assert.doesNotMatch(headerOf(m.source), /^X-Spam-Score:/m);
  // Bad input is refused with a clear error.
  const bad = await app.cli(['spam', 'set', 'nofilter@ours.test', '--junk', 'lots']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--junk/);
});

test('per-mailbox thresholds: a mailbox with a higher reject score gets GTUBE in Junk', async () => {
  await app.cliJson(['spam', 'set', 'bob@ours.test', '--reject', '100']);
  const subject = tok('high');
  const r = await send('someone@pass.test', ['bob@ours.test'], await signed(message({ from: 'someone@pass.test', to: 'bob@ours.test', subject, body: GTUBE })));
  assert.equal(r.code, 250, r.response);
  assert.equal((await find('bob@ours.test', 'Junk', subject)).length, 1);
  await app.cliJson(['spam', 'set', 'bob@ours.test', '--reject', 'inherit']);
});

test('IMAP MOVE into Junk trains spam for that user; moving it back trains ham', async () => {
  const subject = tok('learn');
  const r = await send('friend@pass.test', ['alice@ours.test'], await signed(message({ from: 'friend@pass.test', to: 'alice@ours.test', subject, body: `${LONG}\r\n${subject}` })));
  assert.equal(r.code, 250, r.response);
  const [m] = await find('alice@ours.test', 'INBOX', subject);
  assert.ok(m);
  const before = await stat('alice@ours.test');
  const c = await imap('alice@ours.test');
  let lock = await c.getMailboxLock('INBOX');
  try {
    await c.messageMove(String(m.uid), 'Junk', { uid: true });
  } finally {
    lock.release();
  }
  const afterSpam = await until(() => stat('alice@ours.test'), (s) => s.spam > before.spam);
  assert.equal(afterSpam.spam, before.spam + 1, 'one spam learn');
  const [j] = await find('alice@ours.test', 'Junk', subject);
  lock = await c.getMailboxLock('Junk');
  try {
    await c.messageMove(String(j.uid), 'INBOX', { uid: true });
  } finally {
    lock.release();
  }
  const afterHam = await until(() => stat('alice@ours.test'), (s) => s.ham > before.ham);
  assert.equal(afterHam.ham, before.ham + 1, 'one ham learn');
});

test('letterbox spam learn trains a message file for a mailbox', async () => {
  const before = await stat('bob@ours.test');
  const file = join(app.dir, 'learn.eml');
  writeFileSync(file, message({ from: 'x@pass.test', to: 'bob@ours.test', subject: tok('cli-learn'), body: `${LONG} ${randomBytes(16).toString('hex')}` }));
  const r = await app.cliJson(['spam', 'learn', 'bob@ours.test', '--spam', file]);
  assert.equal(r.data.learned, true, JSON.stringify(r));
  assert.equal((await stat('bob@ours.test')).spam, before.spam + 1);
  const bad = await app.cli(['spam', 'learn', 'bob@ours.test', file]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--spam or --ham/);
});

test('rspamd killed: 451 4.3.0 while it is down, delivered once the supervisor restarted it', async () => {
  const pid = rspamdMainPid();
  process.kill(pid, 'SIGKILL');
  const subject = tok('down');
  const raw = await signed(message({ from: 'friend@pass.test', to: 'alice@ours.test', subject }));
  const down = await send('friend@pass.test', ['alice@ours.test'], raw);
  assert.equal(down.code, 451, down.response);
  assert.match(down.response, /4\.3\.0/);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 0);
  const back = await until(() => send('friend@pass.test', ['alice@ours.test'], raw), (x) => x.code === 250, 120000);
  assert.equal(back.code, 250, back.response);
  assert.equal((await find('alice@ours.test', 'INBOX', subject)).length, 1, 'delivered once');
  const metrics = await (await fetch(`http://127.0.0.1:${app.ports.api}/metrics`, { headers: { authorization: `Bearer ${await apiKey()}` } })).text();
  assert.match(metrics, /^letterbox_rspamd_restarts_total 1$/m);
  assert.match(metrics, /^letterbox_rspamd_up 1$/m);
  assert.match(metrics, /^letterbox_redis_up 1$/m);
  assert.match(metrics, /^letterbox_spam_verdicts_total\{direction="inbound",verdict="reject"\} [1-9]/m);
  assert.match(metrics, /^letterbox_spam_scan_duration_seconds_count\{direction="inbound"\} [1-9]/m);
});

test('Redis killed: mail is still scanned and accepted (no greylisting meanwhile, never a 4.3.0), the supervisor restarts it, then greylisting and learning work again', async () => {
  const metrics = async () => (await (await fetch(`http://127.0.0.1:${app.ports.api}/metrics`, { headers: { authorization: `Bearer ${await apiKey()}` } })).text());
  const restarts = () => metrics().then((m) => Number(/^letterbox_redis_restarts_total (\d+)$/m.exec(m)?.[1] ?? -1));
  const before = await restarts();
  const pid = daemonPid('/usr/bin/redis-server', join(app.dataDir, 'redis'), 'redis-server');
  // A greylistable message (~3.4 > greylist = 3): each with a sender and body rspamd has not seen.
  let n = 0;
  const grey = (tag: string) => {
    const from = `redis-${tag}-${++n}@unknown.test`;
    const subject = tok(`redis-${tag}`);
    return send(from, ['alice@ours.test'], message({ from, to: 'alice@ours.test', subject, noIds: true, body: `Hello, this is an ordinary note, ${subject}.` })).then((r) => ({ ...r, subject }));
  };
  process.kill(pid, 'SIGKILL');
  // Redis restarts within moments, so this scan may see it down (scored, not greylisted: 250) or
  // back (451 4.7.1). Never a scanner failure.
  const during = await grey('during');
  assert.ok(during.code === 250 || (during.code === 451 && /4\.7\.1/.test(during.response)), during.response);
  if (during.code === 250) assert.match(headerOf((await find('alice@ours.test', 'INBOX', during.subject))[0].source), /^X-Spam-Score: /m, 'scanned');
  // The supervisor restarted it, and rspamd uses the new one.
  assert.equal(await until(restarts, (r) => r === before + 1, 60000), before + 1);
  assert.match(await until(metrics, (m) => /^letterbox_redis_up 1$/m.test(m), 60000), /^letterbox_redis_up 1$/m);
  assert.notEqual(daemonPid('/usr/bin/redis-server', join(app.dataDir, 'redis'), 'redis-server'), pid);
  const after = await until(() => grey('after'), (r) => r.code === 451, 30000);
  assert.equal(after.code, 451, after.response);
  assert.match(after.response, /4\.7\.1/, 'greylisting (state in Redis) works again');
  const learned = await stat('bob@ours.test');
  const file = join(app.dir, 'learn-after-redis.eml');
  writeFileSync(file, message({ from: 'x@pass.test', to: 'bob@ours.test', subject: tok('after-redis'), body: `${LONG} ${randomBytes(16).toString('hex')}` }));
  assert.equal((await app.cliJson(['spam', 'learn', 'bob@ours.test', '--spam', file])).data.learned, true);
  assert.equal((await stat('bob@ours.test')).spam, learned.spam + 1, 'learning (Bayes in Redis) works again');
});

test('outbound abuse check: spam from an authenticated session is refused (550 5.7.1 / API 422), nothing reaches the remote', async () => {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.submission, secure: false, requireTLS: true, auth: { user: 'alice@ours.test', pass: PW }, tls: { ca: cert, servername: HOST } });
  try {
    await assert.rejects(t.sendMail({ from: 'alice@ours.test', to: 'victim@remote.test', subject: tok('out-spam'), text: `Buy now\n${GTUBE}\n` }), (err: any) => {
      assert.equal(err.responseCode, 550, err.response);
      assert.match(String(err.response), /5\.7\.1 .*spam/);
      return true;
    });
    // The same path still sends clean mail: proof the sink would have seen the spam.
    const clean = tok('out-clean');
    await t.sendMail({ from: 'alice@ours.test', to: 'friend@remote.test', subject: clean, text: 'Hello, see you on Thursday for the planning meeting.\n' });
    await sink.waitFor((r) => r.some((x) => x.data.toString().includes(clean)));
  } finally {
    t.close();
  }
  const api = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1/mailboxes/alice@ours.test/send`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await apiKey()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to: 'victim2@remote.test', subject: tok('api-spam'), text: `Cheap\n${GTUBE}\n` }),
  });
  const body = (await api.json()) as any;
  assert.equal(api.status, 422, JSON.stringify(body));
  assert.equal(body.error.code, 'message_rejected');
  await sleep(1000); // the queue polls every 200 ms: anything queued would have been sent by now
  assert.ok(!sink.received.some((r) => r.to.some((x) => x.startsWith('victim'))), 'no spam reached the remote');
  const res = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1/events?type=message.blocked_outbound`, { headers: { authorization: `Bearer ${await apiKey()}` } });
  const events = ((await res.json()) as any).data as any[];
  assert.equal(events.length, 2, JSON.stringify(events));
  assert.deepEqual(events.map((e) => e.data.origin).sort(), ['api', 'submission']);
  assert.ok(events.every((e) => e.data.score >= 10));
});

test('/healthz and letterbox doctor report rspamd and Redis, and a blocklist refusing our resolver', async () => {
  const h = (await (await fetch(`http://127.0.0.1:${app.ports.api}/healthz`)).json()) as any;
  assert.deepEqual(h.checks.spam, { ok: true, problem: null, enabled: true, rspamd: true, redis: true });
  const r = await app.cli(['--json', 'doctor', '--outbound-probe', '', '--ntp', '', '--timeout-ms', '1000']);
  const checks = (JSON.parse(r.stdout).checks ?? JSON.parse(r.stdout).data.checks) as any[];
  const spam = checks.filter((c) => c.area === 'spam');
  assert.equal(spam.find((c) => c.name === 'rspamd').status, 'ok', JSON.stringify(spam));
  assert.equal(spam.find((c) => c.name === 'redis').status, 'ok');
  const bl = spam.find((c) => c.name === 'blocklist resolver');
  assert.equal(bl.status, 'fail');
  assert.match(bl.message, /refused/);
  assert.match(bl.fix, /unbound/);
});

test('API: spam settings per domain and mailbox (PUT/GET …/spam) and POST /mailboxes/:id/spam/learn', async () => {
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1${path}`, { method, headers: { authorization: `Bearer ${await apiKey()}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
  const d = await call('PUT', '/domains/ours.test/spam', { junk: 4, greylist: 5 });
  assert.equal(d.status, 200, JSON.stringify(d.body));
  assert.deepEqual(d.body.data.effective, { mode: 'on', reject: 15, junk: 4, greylist: 5, greylisting: 'on' });
  const m = await call('GET', '/mailboxes/alice@ours.test/spam');
  assert.equal(m.body.data.effective.junk, 4, 'the mailbox inherits the domain');
  assert.equal(m.body.data.effective.greylist, 5);
  const p = await call('PUT', '/mailboxes/alice@ours.test/spam', { junk: 8, reject: null, greylisting: 'off' });
  assert.deepEqual(p.body.data.effective, { mode: 'on', reject: 15, junk: 8, greylist: 5, greylisting: 'off' });
  assert.deepEqual(p.body.data.override, { mode: null, reject: null, junk: 8, greylist: null, greylisting: 'off' });
  assert.equal((await call('PUT', '/mailboxes/alice@ours.test/spam', { greylisting: 'maybe' })).status, 400);
  assert.equal((await call('PUT', '/mailboxes/alice@ours.test/spam', { greylist: 'low' })).status, 400);
  await call('PUT', '/domains/ours.test/spam', { greylist: null });
  await call('PUT', '/mailboxes/alice@ours.test/spam', { greylisting: null });
  assert.equal((await call('PUT', '/mailboxes/alice@ours.test/spam', { junk: 'high' })).status, 400);
  assert.equal((await call('PUT', '/mailboxes/alice@ours.test/spam', { mode: 'maybe' })).status, 400);
  await call('PUT', '/domains/ours.test/spam', { junk: null });
  await call('PUT', '/mailboxes/alice@ours.test/spam', { junk: null });
  const before = await stat('alice@ours.test');
  const l = await call('POST', '/mailboxes/alice@ours.test/spam/learn', { as: 'ham', message: message({ from: 'x@pass.test', to: 'alice@ours.test', subject: tok('api-learn'), body: `${LONG} ${randomBytes(16).toString('hex')}` }) });
  assert.equal(l.status, 200, JSON.stringify(l.body));
  assert.equal(l.body.data.learned, true);
  assert.equal((await stat('alice@ours.test')).ham, before.ham + 1);
  assert.equal((await call('POST', '/mailboxes/alice@ours.test/spam/learn', { as: 'junk', message: 'x' })).status, 400);
});

test('over max_scan_size: delivered unscanned with a header saying so, never refused for size', async () => {
  const subject = tok('big');
  const body = Array.from({ length: 2000 }, (_, i) => `line ${i} of a long report ${'x'.repeat(60)}`).join('\r\n');
  const r = await send('friend@pass.test', ['alice@ours.test'], await signed(message({ from: 'friend@pass.test', to: 'alice@ours.test', subject, body: `${body}\r\n${GTUBE}` })));
  assert.equal(r.code, 250, r.response);
  const [m] = await find('alice@ours.test', 'INBOX', subject);
  assert.ok(m);
  assert.match(headerOf(m.source), /^X-Spam-Status: Unknown, not scanned \(message larger than 102400 bytes\)$/m);
});

test('malformed MIME, 8-bit garbage and a huge header are scanned or passed, never a crash', async () => {
  const garbage = Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 7919) % 256).filter((b) => b !== 0 && b !== 10 && b !== 13)).toString('latin1');
  const cases = [
    message({ from: 'x@unknown2.test', to: 'bob@ours.test', subject: tok('mime'), extra: ['MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="never-closed"'], body: '--never-closed\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--wrong' }),
    message({ from: 'x@unknown2.test', to: 'bob@ours.test', subject: tok('garbage'), body: garbage.match(/.{1,200}/gs)!.join('\r\n') }),
    message({ from: 'x@unknown2.test', to: 'bob@ours.test', subject: tok('header'), extra: [`X-Long: ${Array.from({ length: 3000 }, (_, i) => `part${i}`).join('\r\n\t')}`] }),
  ];
  for (const raw of cases) {
    const r = await send('x@unknown2.test', ['bob@ours.test'], raw);
    assert.ok(r.code === 250 || r.code === 451 || (r.code >= 500 && r.code < 600), r.response);
    assert.doesNotMatch(r.response, /4\.3\.0/, 'not an internal failure');
  }
  const h = (await (await fetch(`http://127.0.0.1:${app.ports.api}/healthz`)).json()) as any;
  assert.equal(h.checks.spam.rspamd, true);
});

// Last in the file: it trains the shared Bayes statistics, which then score every later message.
test('Bayes per mailbox with a shared fallback: a mailbox that never trained gets the verdict others taught; a trained one gets its own', async () => {
  const call = async (path: string, body: unknown) => {
    const r = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${await apiKey()}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
  // Two vocabularies unlike every other message of this file; each text long enough (≥ 11 tokens).
  const spammy = 'replica rolex bitcoin doubler crypto giveaway guaranteed returns wire transfer inheritance beneficiary barrister overseas lottery claim fee'.split(' ');
  const hammy = 'committee minutes allotment volunteers rota compost watering schedule greenhouse seedlings tomatoes harvest festival parish hall agenda'.split(' ');
  const text = (words: string[], i: number) => Array.from({ length: 40 }, (_, j) => words[(i * 3 + j * 7) % words.length] + (j % 5 === 0 ? '.' : '')).join(' ');
  const learn = async (addr: string, as: 'spam' | 'ham', words: string[], i: number) => {
    const r = await call(`/mailboxes/${addr}/spam/learn`, { as, message: message({ from: 'x@pass.test', to: addr, subject: `${as} sample ${i}`, body: text(words, i) }) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.data.learned, true, `the mailbox's own classifier always learns: ${JSON.stringify(r.body)}`);
  };
  const scoreOf = async (addr: string) => {
    const subject = tok('bayes-probe');
    const r = await send('news@pass.test', [addr], await signed(message({ from: 'news@pass.test', to: addr, subject, body: text(spammy, 99) })));
    assert.equal(r.code, 250, r.response);
    const [m] = [...(await find(addr, 'INBOX', subject)), ...(await find(addr, 'Junk', subject))];
    assert.ok(m, `probe for ${addr} delivered`);
    return Number(/^X-Spam-Score: (-?[\d.]+)$/m.exec(headerOf(m.source))![1]);
  };
  for (const m of ['carol', 'dave']) await app.cliJson(['mailbox', 'add', `${m}@ours.test`, '--password', PW]);
  await sleep(1500); // Dovecot re-reads its users file at most once a second
  const untrained = await scoreOf('carol@ours.test');
  // alice teaches: 10 of each kind (rspamd's min_learns in the generated config).
  for (let i = 0; i < 10; i++) {
    await learn('alice@ours.test', 'spam', spammy, i);
    await learn('alice@ours.test', 'ham', hammy, i);
  }
  assert.deepEqual(await stat('carol@ours.test'), { mailbox: 'carol@ours.test', spam: 0, ham: 0 }, 'carol trained nothing');
  const fallback = await scoreOf('carol@ours.test');
  assert.ok(fallback - untrained >= 3, `the shared statistics add BAYES_SPAM for carol: ${untrained} → ${fallback}`);
  // dave teaches his own Bayes the opposite: for him, that vocabulary is ham. His verdict replaces
  // the shared one (BAYES_HAM_USER -3, the shared BAYES_SPAM weighs 0 for him).
  for (let i = 0; i < 10; i++) {
    await learn('dave@ours.test', 'ham', spammy, i + 20);
    await learn('dave@ours.test', 'spam', hammy, i + 20);
  }
  const own = await scoreOf('dave@ours.test');
  assert.ok(own <= untrained - 2, `dave's own statistics call it ham: ${own} (untrained ${untrained}, shared ${fallback})`);
});
