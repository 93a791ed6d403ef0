// Spam learning on Dovecot 2.4 (issue #14 item 3): the appliance with Debian 13's Dovecot 2.4.1 and
// the real rspamd and Redis; moving a message into Junk over IMAP runs the IMAPSieve script of
// `mailbox Junk`, which pipes it to rspamc (the Debian 13 root's own, run inside the root by
// Dovecot's imap process) and trains spam for that user; moving it out of Junk trains ham (the
// `imapsieve_from Junk` script), moving it to Trash trains nothing. The 2.3 counterpart is in
// test/spam.test.ts. Needs LETTERBOX_DOVECOT_BINARY = the wrapper written by
// `test/debian13/setup.sh --wrappers DIR` (.ci/run's Debian 13 block sets it), and rspamd and
// redis-server installed here (install.sh --dev --test-tools).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, type Appliance } from '../helpers/appliance.ts';
import { TestDns } from '../helpers/dns.ts';
import { call } from '../helpers/mailapi.ts';

const DOVECOT = process.env.LETTERBOX_DOVECOT_BINARY ?? '';
const skip = DOVECOT ? false : 'no Dovecot 2.4 here: run with LETTERBOX_DOVECOT_BINARY=<dir>/dovecot after test/debian13/setup.sh --wrappers <dir> (.ci/run does)';
const PW = 'spam24 test password 123';
const HOST = 'mail.letterbox.test';
// A long, varied text: Bayes needs at least 11 tokens to learn.
const LONG = 'Cheap watches and exclusive pharmacy offers, limited time only, click the link below to claim your prize money today, unsubscribe anytime from these wonderful daily newsletter deals.';
let app: Appliance;
let dns: TestDns;
let client: ImapFlow;

before(async () => {
  if (skip) return;
  assert.ok(existsSync('/usr/bin/rspamd') && existsSync('/usr/bin/redis-server'), 'rspamd and redis-server must be installed (install.sh --dev --test-tools)');
  dns = await new TestDns().start();
  app = await startAppliance({
    hostname: HOST,
    readyTimeoutMs: 240000,
    env: { LETTERBOX_DOVECOT_BINARY: DOVECOT },
    extraToml: `
[dns]
servers = ["${dns.server}"]
timeout_ms = 1500
[outbound]
port = 9
[spam]
enabled = true
timeout_ms = 8000
fuzzy = false
# Compiled regexps shared between test runs (rspamd compiles them for ~a minute the first time).
hs_cache_dir = "${join(tmpdir(), 'letterbox-test-rspamd-hs')}"
`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', PW]);
  await sleep(1500); // Dovecot re-reads its users file at most once a second
  client = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: 'alice@ours.test', pass: PW }, logger: false, tls: { ca: applianceCert(app), servername: HOST } });
  await client.connect();
});

after(async () => {
  await client?.logout().catch(() => {});
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

const stat = async (user: string): Promise<{ spam: number; ham: number }> => (await app.cliJson(['spam', 'stat', user])).data;

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 30000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await fn();
  while (!ok(v) && Date.now() < deadline) {
    await sleep(200);
    v = await fn();
  }
  return v;
}

/** Appends a fresh message to `folder`; its UID there. */
async function append(folder: string, subject: string): Promise<number> {
  const raw = [`From: friend@elsewhere.test`, `To: alice@ours.test`, `Subject: ${subject}`, `Message-ID: <${randomBytes(8).toString('hex')}@elsewhere.test>`, `Date: ${new Date().toUTCString()}`, '', `${LONG} ${randomBytes(24).toString('hex')} ${subject}`, ''].join('\r\n');
  const r = await client.append(folder, raw);
  assert.ok(r && r.uid, `appended to ${folder}`);
  return r.uid!;
}

async function move(from: string, uid: number, to: string): Promise<number> {
  const lock = await client.getMailboxLock(from);
  try {
    const r = await client.messageMove(String(uid), to, { uid: true });
    assert.ok(r && r.uidMap?.get(uid), `moved ${from} → ${to}`);
    return r.uidMap!.get(uid)!;
  } finally {
    lock.release();
  }
}

test('the appliance runs Dovecot 2.4 with the IMAPSieve learning block written', { skip }, () => {
  const conf = readFileSync(join(app.dataDir, 'dovecot', 'dovecot.conf'), 'utf8');
  assert.match(conf, /^dovecot_config_version = 2\.4\.0$/m);
  assert.match(conf, /^imapsieve_from Junk \{/m);
  // Precompiled with the 2.4 sievec (the one beside the Dovecot binary), so no compile per move.
  assert.ok(!app.logs.some((l) => l.includes('could not precompile')), app.logs.filter((l) => l.includes('precompile')).join('\n'));
  assert.ok(existsSync(join(app.dataDir, 'rspamd', 'sieve', 'learn-spam.svbin')));
});

test('Dovecot 2.4: IMAP MOVE into Junk trains spam for that user, out of Junk trains ham, Junk → Trash trains nothing', { skip, timeout: 120000 }, async () => {
  const before = await stat('alice@ours.test');
  const uid = await append('INBOX', `learn-${randomBytes(4).toString('hex')}`);
  const inJunk = await move('INBOX', uid, 'Junk');
  const afterSpam = await until(() => stat('alice@ours.test'), (s) => s.spam > before.spam);
  assert.equal(afterSpam.spam, before.spam + 1, 'one spam learn');
  assert.equal(afterSpam.ham, before.ham);
  await move('Junk', inJunk, 'INBOX');
  const afterHam = await until(() => stat('alice@ours.test'), (s) => s.ham > before.ham);
  assert.equal(afterHam.ham, before.ham + 1, 'one ham learn');
  // Junk → Trash: no ham. A later INBOX → Junk move is the barrier: once its spam learn shows, the
  // Trash move (made before it, on the same connection) has been handled.
  const trashed = await move('INBOX', await append('INBOX', `trash-${randomBytes(4).toString('hex')}`), 'Junk');
  const s2 = await until(() => stat('alice@ours.test'), (s) => s.spam > afterHam.spam);
  await move('Junk', trashed, 'Trash');
  await move('INBOX', await append('INBOX', `barrier-${randomBytes(4).toString('hex')}`), 'Junk');
  const s3 = await until(() => stat('alice@ours.test'), (s) => s.spam > s2.spam);
  assert.deepEqual([s3.spam, s3.ham], [s2.spam + 1, afterHam.ham], 'Junk → Trash trained nothing');
});

test("Dovecot 2.4: the pipe the learning scripts use stays out of users' own scripts", { skip }, async () => {
  const key = (await app.cliJson(['key', 'create', '--name', 'spam24', '--scopes', 'mailboxes:*'])).secret;
  const r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/pipe', { script: 'require "vnd.dovecot.pipe";\npipe "rspamd-learn" ["learn_ham", "bob@ours.test"];\n' });
  assert.equal(r.status, 400, JSON.stringify(r.json));
  assert.match(r.json.error.message, /line 1: .*vnd\.dovecot\.pipe/);
});
