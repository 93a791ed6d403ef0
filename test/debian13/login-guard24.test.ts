// Login protection on Dovecot 2.4 (issue #16 item 9): the appliance with Debian 13's Dovecot 2.4.1,
// whose auth policy requests reach Letterbox's login guard, so IMAP brute force locks the account
// the same way as on 2.3 (test/login-protection.test.ts), and a locked account answers exactly as a
// wrong password does. Needs LETTERBOX_DOVECOT_BINARY = the wrapper written by
// `test/debian13/setup.sh --wrappers DIR` (.ci/run's Debian 13 block sets it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAppliance, applianceCert, type Appliance } from '../helpers/appliance.ts';
import { TestDns } from '../helpers/dns.ts';
import { imapLogin as imapLoginAs, parallelWrongLogins, smtpAuth as smtpAuthAs, type LoginTarget } from '../helpers/login-attempts.ts';

const DOVECOT = process.env.LETTERBOX_DOVECOT_BINARY ?? '';
const skip = DOVECOT ? false : 'no Dovecot 2.4 here: run with LETTERBOX_DOVECOT_BINARY=<dir>/dovecot after test/debian13/setup.sh --wrappers <dir> (.ci/run does)';
const D = 'guard24.test';
const PW = { dave: 'dave password 123456', erin: 'erin password 123456' };
let app: Appliance;
let dns: TestDns;
let ca: string;

before(async () => {
  if (skip) return;
  dns = await new TestDns().start();
  app = await startAppliance({
    env: { LETTERBOX_DOVECOT_BINARY: DOVECOT },
    extraToml: `
[dns]
servers = ["${dns.server}"]
timeout_ms = 1000
[outbound]
port = 9
[submission]
auth_max_failures = 5
auth_delay_ms = 0
`,
  });
  ca = applianceCert(app);
  await app.cliJson(['domain', 'add', D]);
  for (const [u, pw] of Object.entries(PW)) await app.cliJson(['mailbox', 'add', `${u}@${D}`, '--password', pw]);
  await new Promise((r) => setTimeout(r, 1500)); // Dovecot re-reads its users file at most once a second
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

// IMAP LOGIN and submission AUTH PLAIN from a loopback address.
const target = (): LoginTarget => ({ app, ca });
const imapLogin = (localAddress: string, user: string, pw: string) => imapLoginAs(target(), user, pw, localAddress);
const smtpAuth = (localAddress: string, user: string, pw: string) => smtpAuthAs(target(), user, pw, localAddress);

test("the appliance runs Dovecot 2.4 with the login guard's auth policy written", { skip }, () => {
  const conf = readFileSync(join(app.dataDir, 'dovecot', 'dovecot.conf'), 'utf8');
  assert.match(conf, /^dovecot_config_version = 2\.4\.0$/m);
  assert.match(conf, /^auth_policy_server_url = http:\/\/127\.0\.0\.1:\d+\/$/m);
});

test('IMAP on Dovecot 2.4: 20 parallel wrong logins lock the account; locked, the right password gets the same answer as a wrong one; the owner\'s known network still works; submission is locked too', { skip }, async () => {
  assert.match(await imapLogin('127.0.40.1', `dave@${D}`, PW.dave), /^a1 OK/);
  const answers = await parallelWrongLogins(20, '127.0.41.', (local, pw) => imapLogin(local, `dave@${D}`, pw));
  assert.ok(answers.every((a) => /^a1 NO/.test(a)), answers.join(' | '));
  // Dovecot told the guard about each failure through the policy's report requests.
  assert.ok(app.logs.filter((l) => l.includes('"authentication failed"') && l.includes('"protocol":"imap"') && l.includes(`dave@${D}`)).length >= 1, 'IMAP failures reach the login guard');
  const locked = await imapLogin('127.0.41.99', `dave@${D}`, PW.dave);
  assert.match(locked, /^a1 NO/, 'locked: the right password is refused from a stranger\'s network');
  const wrong = await imapLogin('127.0.41.98', `dave@${D}`, 'yet another wrong one');
  assert.equal(locked, wrong, 'a locked account and a wrong password answer alike');
  assert.ok(app.logs.some((l) => l.includes('locked out') && l.includes(`dave@${D}`) && l.includes('"protocol":"imap"')), 'the lockout is logged');
  assert.match(await imapLogin('127.0.40.1', `dave@${D}`, PW.dave), /^a1 OK/, 'the owner\'s known network still works');
  assert.match(await smtpAuth('127.0.41.97', `dave@${D}`, PW.dave), /^454 4\.7\.0 /, 'one lock for IMAP and submission');
});

test('Dovecot 2.4: submission and IMAP failures count together toward one limit', { skip }, async () => {
  for (let i = 1; i <= 3; i++) assert.match(await smtpAuth(`127.0.42.${i}`, `erin@${D}`, 'wrong'), /^535 /);
  for (let i = 4; i <= 5; i++) assert.match(await imapLogin(`127.0.42.${i}`, `erin@${D}`, 'wrong'), /^a1 NO/);
  assert.match(await imapLogin('127.0.42.6', `erin@${D}`, PW.erin), /^a1 NO/, '5 failures over both protocols lock IMAP');
  assert.match(await smtpAuth('127.0.42.7', `erin@${D}`, PW.erin), /^454 4\.7\.0 /, '...and submission');
});
