// Device (app) passwords (issue #17 item 4) against a real `letterbox serve` and its Dovecot: created
// over the API (shown once), IMAP LOGIN with one works (Dovecot checks it from its own file) and is
// recorded as last used (through the auth policy report), SMTP submission accepts it, revoking it
// refuses it and closes its open IMAP session, require_app_passwords refuses the main password on
// IMAP and SMTP while app passwords keep working; the CLI; and the pure parts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as netConnect, type Socket } from 'node:net';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, freePort, type Appliance } from './helpers/appliance.ts';
import { imapLogin as imapLoginAs, parallelWrongLogins, smtpAuth as smtpAuthAs, type LoginTarget } from './helpers/login-attempts.ts';
import { call, checkRepliesAgainstDoc, waitFor } from './helpers/mailapi.ts';
import { checkAppPasswordName, generateAppPassword, hashAppPassword, lastUsedDue, looksLikeAppPassword } from '../src/auth/app-passwords.ts';
import { renderAppPasswordsDir, renderAppPasswordsFile } from '../src/dovecot/app-passwords.ts';

const D = 'apps.test';
// CI runs this file again against Dovecot 2.4 (LETTERBOX_DOVECOT_BINARY = the test/debian13
// wrapper): the app-password passdb, the auth policy ("last used") and ManageSieve all have 2.4 text.
const PW = 'main password 1234567';
let app: Appliance;
let ca: string;
let key: string;
let msPort: number;

test('app passwords: 140 random bits in groups of four, SHA-256 hex stored, names validated, last-used writes at most once a minute', () => {
  const a = generateAppPassword();
  assert.match(a, /^[a-z2-7]{4}(-[a-z2-7]{4}){6}$/);
  assert.notEqual(a, generateAppPassword());
  assert.ok(looksLikeAppPassword(a) && !looksLikeAppPassword('main password 1234567'));
  assert.equal(hashAppPassword('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(checkAppPasswordName("  Alice's phone "), "Alice's phone");
  for (const bad of ['', ' ', 'x'.repeat(65), 'a\nb', 42]) assert.throws(() => checkAppPasswordName(bad), { code: 'validation_error' });
  const now = Date.parse('2026-12-07T12:00:00Z');
  assert.equal(lastUsedDue(null, now), true);
  assert.equal(lastUsedDue('2026-12-07T11:59:30.000Z', now), false);
  assert.equal(lastUsedDue('2026-12-07T11:58:59.000Z', now), true);
  const h = hashAppPassword(a);
  assert.equal(renderAppPasswordsFile([{ address: 'a@b.test', id: 'app_1', hash: h }]).split('\n')[1], `a@b.test/${h}:{SHA256.HEX}${h}::::::lb_app=app_1`);
  assert.throws(() => renderAppPasswordsFile([{ address: 'a:b@c.test', id: 'app_1', hash: h }]));
  // Dovecot 2.4's layout: one file per password, named by login and hash.
  assert.deepEqual([...renderAppPasswordsDir([{ address: 'a@b.test', id: 'app_1', hash: h }, { address: '../x@b.test', id: 'app_2', hash: h }])], [[`a@b.test/${h}`, `a@b.test:{SHA256.HEX}${h}::::::lb_app=app_1\n`]]);
});

before(async () => {
  msPort = await freePort();
  app = await startAppliance({ extraToml: `[outbound]\nport = 9\n[submission]\nauth_delay_ms = 0\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\n`, env: { LETTERBOX_LISTEN_MANAGESIEVE: `127.0.0.1:${msPort}` } });
  ca = applianceCert(app);
  await app.cliJson(['domain', 'add', D]);
  for (const u of ['alice', 'bob', 'carol', 'dan', 'erin']) await app.cliJson(['mailbox', 'add', `${u}@${D}`, '--password', PW]);
  key = (await app.cliJson(['key', 'create', '--name', 'apps', '--scopes', 'mailboxes:*'])).secret;
  await waitFor(async () => (await imapLogin(`alice@${D}`, PW)).startsWith('a1 OK'), 'Dovecot to know the mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
});

// IMAP LOGIN and submission AUTH PLAIN, from a loopback address when given.
const target = (): LoginTarget => ({ app, ca });
const imapLogin = (user: string, pw: string, localAddress?: string) => imapLoginAs(target(), user, pw, localAddress);

/**
 * One ManageSieve (RFC 5804) AUTHENTICATE PLAIN after STARTTLS from `localAddress`; the final
 * response line (OK/NO/BYE). Raw protocol: Debian has no ManageSieve client library for Node.
 */
async function sieveAuth(user: string, pw: string, localAddress = '127.0.0.2'): Promise<string> {
  let sock: Socket | TLSSocket = netConnect({ host: '127.0.0.1', port: msPort, localAddress });
  let buf = '';
  const onData = (d: Buffer) => (buf += d.toString('utf8'));
  const until = async (re: RegExp) => {
    const end = Date.now() + 30000;
    for (;;) {
      const m = re.exec(buf);
      if (m) {
        buf = buf.slice(m.index + m[0].length);
        return m[0].trim();
      }
      if (Date.now() > end || sock.destroyed) throw new Error(`ManageSieve: no ${re} in ${JSON.stringify(buf)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    sock.on('data', onData);
    await until(/^(OK|NO|BYE)\b.*\r\n/m);
    sock.write('STARTTLS\r\n');
    await until(/^OK\b.*\r\n/m);
    sock.removeListener('data', onData);
    buf = '';
    sock = tlsConnect({ socket: sock as Socket, ca, servername: app.hostname });
    sock.on('data', onData);
    await until(/^OK\b.*\r\n/m); // capabilities again, after TLS
    sock.write(`AUTHENTICATE "PLAIN" "${Buffer.from(`\0${user}\0${pw}`).toString('base64')}"\r\n`);
    return await until(/^(OK|NO|BYE)\b.*\r\n/m);
  } finally {
    sock.destroy();
  }
}

const smtpAuth = (user: string, pw: string, localAddress?: string) => smtpAuthAs(target(), user, pw, localAddress, 'apps.example');

test('API: created (shown once), IMAP LOGIN and SMTP submission accept it, last used recorded; the main password still works', async () => {
  let r = await call(app, key, 'POST', `/mailboxes/alice@${D}/app-passwords`, { name: 'Phone' });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const { id, password } = r.json.data;
  assert.match(password, /^[a-z2-7]{4}(-[a-z2-7]{4}){6}$/);
  assert.equal(r.json.data.lastUsed, null);
  assert.equal((await call(app, key, 'POST', `/mailboxes/alice@${D}/app-passwords`, { name: '' })).status, 400);
  assert.equal((await call(app, key, 'POST', `/mailboxes/nobody@${D}/app-passwords`, { name: 'x' })).status, 404);
  r = await call(app, key, 'GET', `/mailboxes/alice@${D}/app-passwords`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.data.appPasswords.map((a: any) => [a.id, a.name]), [[id, 'Phone']]);
  assert.ok(!JSON.stringify(r.json).includes(password), 'never listed again');
  // Dovecot re-reads its files within about a second.
  await waitFor(async () => (await imapLogin(`alice@${D}`, password)).startsWith('a1 OK'), 'IMAP LOGIN with the app password');
  assert.match(await imapLogin(`bob@${D}`, password), /^a1 NO/, "another mailbox's login does not take it");
  assert.match(await imapLogin(`alice@${D}`, PW), /^a1 OK/, 'the main password still works');
  assert.match(await imapLogin(`alice@${D}`, password.replace(/^./, (c: string) => (c === 'a' ? 'b' : 'a'))), /^a1 NO/);
  // Last used: time and address, from Dovecot's auth policy report.
  const used = await waitFor(async () => (await call(app, key, 'GET', `/mailboxes/alice@${D}/app-passwords`)).json.data.appPasswords[0].lastUsed, 'last used recorded');
  assert.equal(used.ip, '127.0.0.1');
  assert.equal(used.protocol, 'imap');
  assert.ok(Date.now() - Date.parse(used.at) < 120_000);
  // SMTP submission.
  assert.match(await smtpAuth(`alice@${D}`, password), /^235 /);
  assert.match(await smtpAuth(`bob@${D}`, password), /^535 /);
  assert.match(await smtpAuth(`alice@${D}`, PW), /^235 /);
});

test('ManageSieve takes app passwords too (same Dovecot passdb)', async () => {
  const { password } = (await call(app, key, 'POST', `/mailboxes/dan@${D}/app-passwords`, { name: 'Sieve editor' })).json.data;
  await waitFor(async () => (await sieveAuth(`dan@${D}`, password)).startsWith('OK'), 'ManageSieve AUTHENTICATE with the app password');
  assert.match(await sieveAuth(`dan@${D}`, PW), /^OK/);
});

test('revoked: refused on IMAP and SMTP, and the open IMAP session it logged in is closed', async () => {
  const r = await call(app, key, 'POST', `/mailboxes/bob@${D}/app-passwords`, { name: 'Laptop' });
  const { id, password } = r.json.data;
  await waitFor(async () => (await imapLogin(`bob@${D}`, password)).startsWith('a1 OK'), 'IMAP LOGIN with the app password');
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: `bob@${D}`, pass: password }, logger: false, tls: { ca, servername: app.hostname } });
  await c.connect();
  let closed = false;
  c.on('close', () => (closed = true));
  await c.mailboxOpen('INBOX');
  assert.equal((await call(app, key, 'DELETE', `/mailboxes/bob@${D}/app-passwords/${id}`)).status, 200);
  await waitFor(() => closed, 'the open IMAP session to be closed');
  await waitFor(async () => (await imapLogin(`bob@${D}`, password)).startsWith('a1 NO'), 'the revoked password to be refused by Dovecot');
  assert.match(await smtpAuth(`bob@${D}`, password), /^535 /);
  assert.equal((await call(app, key, 'DELETE', `/mailboxes/bob@${D}/app-passwords/${id}`)).status, 404);
  assert.match(await imapLogin(`bob@${D}`, PW), /^a1 OK/, 'the main password is untouched');
});

test('require_app_passwords: the main password is refused on IMAP and SMTP; app passwords keep working; off again restores it', async () => {
  const { password } = (await call(app, key, 'POST', `/mailboxes/carol@${D}/app-passwords`, { name: 'Tablet' })).json.data;
  let r = await call(app, key, 'PUT', `/mailboxes/carol@${D}/require-app-passwords`, { enabled: true });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal((await call(app, key, 'GET', `/mailboxes/carol@${D}/app-passwords`)).json.data.requireAppPasswords, true);
  assert.match(await smtpAuth(`carol@${D}`, PW), /^535 /, 'SMTP refuses the main password at once');
  await waitFor(async () => (await imapLogin(`carol@${D}`, PW)).startsWith('a1 NO'), 'IMAP to refuse the main password');
  assert.match(await imapLogin(`carol@${D}`, password), /^a1 OK/);
  assert.match(await smtpAuth(`carol@${D}`, password), /^235 /);
  // The API still reads the mailbox (master-user login, not the main password).
  r = await call(app, (await app.cliJson(['key', 'create', '--name', 'msg', '--scopes', 'messages:read'])).secret, 'GET', `/mailboxes/carol@${D}/messages`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal((await call(app, key, 'PUT', `/mailboxes/carol@${D}/require-app-passwords`, { enabled: false })).status, 200);
  assert.match(await smtpAuth(`carol@${D}`, PW), /^235 /);
  await waitFor(async () => (await imapLogin(`carol@${D}`, PW)).startsWith('a1 OK'), 'IMAP to take the main password again');
});

test('CLI: app-password add, ls, rm, require', async () => {
  const added = JSON.parse((await app.cli(['--json', 'app-password', 'add', `alice@${D}`, 'Work laptop'])).stdout);
  assert.ok(looksLikeAppPassword(added.password));
  let r = await app.cli(['app-password', 'ls', `alice@${D}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Work laptop/);
  assert.ok(!r.stdout.includes(added.password));
  assert.equal((await app.cli(['app-password', 'add', `alice@${D}`, ''])).code, 2);
  assert.equal((await app.cli(['app-password', 'rm', `alice@${D}`, 'Work laptop'])).code, 0);
  assert.equal((await app.cli(['app-password', 'rm', `alice@${D}`, 'Work laptop'])).code, 2);
  r = await app.cli(['app-password', 'require', `alice@${D}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse((await app.cli(['--json', 'app-password', 'ls', `alice@${D}`])).stdout).requireAppPasswords, true);
  assert.equal((await app.cli(['app-password', 'require', `alice@${D}`, '--off'])).code, 0);
});

test('the replies match the OpenAPI document', async () => {
  const { checked, problems } = await checkRepliesAgainstDoc(app);
  assert.ok(checked > 0);
  assert.deepEqual(problems, []);
});

// Issue #17 item 6: ManageSieve logins go through the same login guard as IMAP and submission
// (Dovecot's auth policy requests cover every Dovecot protocol). auth_max_failures is 10 here.
test('ManageSieve: 20 parallel wrong logins lock the account on every protocol; the right password is refused from a new network', async () => {
  const answers = await parallelWrongLogins(20, '127.0.60.', (local, pw) => sieveAuth(`dan@${D}`, pw, local));
  assert.ok(answers.every((a) => /^NO/.test(a)), answers.join(' | '));
  assert.match(await sieveAuth(`dan@${D}`, PW, '127.0.60.99'), /^NO/, 'locked: the right password is refused on ManageSieve');
  assert.match(await imapLogin(`dan@${D}`, PW, '127.0.60.98'), /^a1 NO/, '...on IMAP');
  assert.match(await smtpAuth(`dan@${D}`, PW, '127.0.60.97'), /^454 4\.7\.0 /, '...and on submission');
  assert.ok(app.logs.some((l) => l.includes('login locked out') && l.includes(`dan@${D}`) && l.includes('sieve')), 'the lockout names the protocol');
  // Parallel attempts cannot exceed the limit: at most auth_max_failures passwords were checked.
  const checked = app.logs.filter((l) => l.includes('"msg":"authentication failed"') && l.includes(`dan@${D}`)).length;
  assert.ok(checked >= 1 && checked <= 10, `${checked} wrong passwords checked`);
});

test('IMAP, submission and ManageSieve failures count together toward one limit (10)', async () => {
  const tries = [
    ...Array.from({ length: 4 }, (_, i) => () => smtpAuth(`erin@${D}`, 'wrong', `127.0.61.${i + 1}`)),
    ...Array.from({ length: 3 }, (_, i) => () => imapLogin(`erin@${D}`, 'wrong', `127.0.61.${i + 11}`)),
    ...Array.from({ length: 3 }, (_, i) => () => sieveAuth(`erin@${D}`, 'wrong', `127.0.61.${i + 21}`)),
  ];
  const answers = await Promise.all(tries.map((t) => t()));
  assert.ok(answers.every((a) => /^(535|a1 NO|NO)/.test(a)), answers.join(' | '));
  assert.match(await sieveAuth(`erin@${D}`, PW, '127.0.61.99'), /^NO/, '10 failures over three protocols lock ManageSieve');
  assert.match(await imapLogin(`erin@${D}`, PW, '127.0.61.98'), /^a1 NO/, '...IMAP');
  assert.match(await smtpAuth(`erin@${D}`, PW, '127.0.61.97'), /^454 4\.7\.0 /, '...and submission');
});
