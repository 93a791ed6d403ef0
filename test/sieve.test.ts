// Sieve filters: scripts through the API and the CLI (stored and compiled by Dovecot), a filed
// message received over the real MX landing in its folder (read over IMAP through the API), a
// script with an error refused with its line, limits, and ManageSieve (RFC 5804) spoken raw:
// STARTTLS required before AUTHENTICATE, then PUTSCRIPT, SETACTIVE and LISTSCRIPTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { TestDns } from './helpers/dns.ts';
import { applianceCert, freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { ManageSieve } from './helpers/managesieve.ts';
import { call, waitFor } from './helpers/mailapi.ts';
import { parseCompileErrors } from '../src/sieve/scripts.ts';

const PW = 'alice password 12345';
let app: Appliance;
let dns: TestDns;
let key: string;
let msPort: number;

test('compiler messages: line and text from doveadm, the summary line dropped', () => {
  const e = parseCompileErrors(
    "doveadm(a@b): Error: sieve: bad: line 3: unknown command 'fileintoo' (only reported once at first occurrence)\ndoveadm(a@b): Error: sieve: bad: validation failed\n",
  );
  assert.deepEqual(e, [{ line: 3, message: "unknown command 'fileintoo'" }]);
  assert.deepEqual(parseCompileErrors('doveadm(a@b): Error: sieve: big: sieve script is too large (max 65536 bytes)\ndoveadm(a@b): Error: sieve: big: parse failed\n'), [
    { line: null, message: 'sieve script is too large (max 65536 bytes)' },
  ]);
});

before(async () => {
  dns = await new TestDns().start();
  msPort = await freePort();
  app = await startAppliance({
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\n[sieve]\nmax_scripts = 3\nmax_script_size = "4k"\n`,
    env: { LETTERBOX_LISTEN_MANAGESIEVE: `127.0.0.1:${msPort}` },
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', PW]);
  await app.cliJson(['mailbox', 'add', 'bob@ours.test', '--password', 'bob password 123456']);
  key = (await app.cliJson(['key', 'create', '--name', 'sieve', '--scopes', 'mailboxes:*,messages:read'])).secret;
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/bob@ours.test/sieve/scripts')).status === 200, 'Dovecot to know the new mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

async function sendMx(to: string, subject: string, extra: Record<string, string> = {}) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'client.sender.test' } as any);
  await t.sendMail({ from: 'Someone <someone@sender.test>', to, subject, text: `body of ${subject}\n`, headers: extra });
}

async function subjects(address: string, folder: string): Promise<string[]> {
  const r = await call(app, key, 'GET', `/mailboxes/${address}/messages?folder=${encodeURIComponent(folder)}`);
  if (r.status !== 200) return [];
  return r.json.data.messages.map((m: any) => m.subject);
}

const FILTER = `require ["fileinto", "mailbox"];
if header :contains "subject" "[lists]" {
  fileinto :create "Lists";
  stop;
}
`;

test('API: a script is stored, activated and files mail received over the MX into its folder', async () => {
  let r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/lists', { script: FILTER, activate: true });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.deepEqual(r.json.data, { name: 'lists', active: true, script: FILTER });
  r = await call(app, key, 'GET', '/mailboxes/alice@ours.test/sieve/scripts');
  assert.deepEqual(r.json.data, [{ name: 'lists', active: true }]);
  r = await call(app, key, 'GET', '/mailboxes/alice@ours.test/sieve/scripts/lists');
  assert.equal(r.json.data.script, FILTER);

  await sendMx('alice@ours.test', 'Weekly digest [lists]');
  await sendMx('alice@ours.test', 'A personal note');
  await waitFor(async () => (await subjects('alice@ours.test', 'Lists')).includes('Weekly digest [lists]'), 'the list message in Lists');
  await waitFor(async () => (await subjects('alice@ours.test', 'INBOX')).includes('A personal note'), 'the other message in INBOX');
  assert.ok(!(await subjects('alice@ours.test', 'INBOX')).includes('Weekly digest [lists]'));
});

test('API: a script with an error is refused with the line (400) and nothing changes; limits; unknown names 404', async () => {
  const broken = 'require "fileinto";\n\nif header :contains "subject" "x" {\n  fileintoo "X";\n}\n';
  let r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/lists', { script: broken });
  assert.equal(r.status, 400, JSON.stringify(r.json));
  assert.equal(r.json.error.code, 'validation_error');
  assert.match(r.json.error.message, /line 4: unknown command 'fileintoo'/);
  assert.deepEqual(r.json.error.details.issues, [{ path: 'script:4', message: "unknown command 'fileintoo'" }]);
  assert.equal((await call(app, key, 'GET', '/mailboxes/alice@ours.test/sieve/scripts/lists')).json.data.script, FILTER, 'the stored script is unchanged');
  // Programs are never available (extprograms off).
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/pipe', { script: 'require "vnd.dovecot.pipe";\npipe "sh";\n' });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /line 1: .*vnd\.dovecot\.pipe/);
  // Size and count limits ([sieve] max_script_size = 4k, max_scripts = 3).
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/big', { script: '#'.repeat(5000) + '\nkeep;\n' });
  assert.equal(r.status, 413);
  for (const n of ['two', 'three']) assert.equal((await call(app, key, 'PUT', `/mailboxes/alice@ours.test/sieve/scripts/${n}`, { script: 'keep;\n' })).status, 200);
  r = await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/four', { script: 'keep;\n' });
  assert.equal(r.status, 409, JSON.stringify(r.json));
  assert.equal((await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/three', { script: 'keep;\n' })).status, 200, 'replacing one is fine at the limit');
  assert.equal((await call(app, key, 'DELETE', '/mailboxes/alice@ours.test/sieve/scripts/three')).status, 200);
  assert.equal((await call(app, key, 'DELETE', '/mailboxes/alice@ours.test/sieve/scripts/three')).status, 404);
  assert.equal((await call(app, key, 'GET', '/mailboxes/alice@ours.test/sieve/scripts/nothere')).status, 404);
  assert.equal((await call(app, key, 'POST', '/mailboxes/alice@ours.test/sieve/scripts/nothere/activate')).status, 404);
  assert.equal((await call(app, key, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/..%2Fx', { script: 'keep;\n' })).status, 400);
  assert.equal((await call(app, key, 'GET', '/mailboxes/nobody@ours.test/sieve/scripts')).status, 404);
  // Activate another, then deactivate all.
  assert.deepEqual((await call(app, key, 'POST', '/mailboxes/alice@ours.test/sieve/scripts/two/activate')).json.data, { name: 'two', active: true });
  r = await call(app, key, 'POST', '/mailboxes/alice@ours.test/sieve/deactivate');
  assert.ok(r.json.data.every((s: any) => !s.active));
  assert.equal((await call(app, key, 'DELETE', '/mailboxes/alice@ours.test/sieve/scripts/two')).status, 200);
  assert.equal((await call(app, key, 'POST', '/mailboxes/alice@ours.test/sieve/scripts/lists/activate')).status, 200);
  // A key without mailboxes:write cannot change scripts.
  const ro = (await app.cliJson(['key', 'create', '--name', 'ro', '--scopes', 'mailboxes:read'])).secret;
  assert.equal((await call(app, ro, 'PUT', '/mailboxes/alice@ours.test/sieve/scripts/x', { script: 'keep;\n' })).status, 403);
  assert.equal((await call(app, ro, 'GET', '/mailboxes/alice@ours.test/sieve/scripts')).status, 200);
});

test('CLI: sieve put/list/get/activate/rm; a broken script exits 2 with the line', async () => {
  const f = join(app.dir, 'bob.sieve');
  writeFileSync(f, 'require "fileinto";\nfileinto "Archive";\n');
  let r = await app.cli(['sieve', 'put', 'bob@ours.test', 'archive', f, '--activate']);
  assert.equal(r.code, 0, r.stderr);
  const list = await app.cliJson(['sieve', 'list', 'bob@ours.test']);
  assert.deepEqual(list, [{ name: 'archive', active: true }]);
  assert.equal((await app.cli(['sieve', 'get', 'bob@ours.test', 'archive'])).stdout, 'require "fileinto";\nfileinto "Archive";\n');
  r = await app.cli(['sieve', 'put', 'bob@ours.test', 'bad', '-'], { input: 'if true {\n  stopp;\n}\n' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /line 2: unknown command 'stopp'/);
  r = await app.cli(['sieve', 'rm', 'bob@ours.test', 'archive']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await app.cliJson(['sieve', 'list', 'bob@ours.test']), []);
  assert.equal((await app.cli(['sieve', 'rm', 'bob@ours.test', 'archive'])).code, 2);
  assert.equal((await app.cli(['sieve', 'list', 'nobody@ours.test'])).code, 2);
});

// ---- ManageSieve, raw protocol (RFC 5804)


test('ManageSieve: capabilities, no AUTHENTICATE before STARTTLS, then PUTSCRIPT + SETACTIVE; the script filters delivery', async () => {
  // From another loopback address: Dovecot counts a client whose address equals its own as secure
  // (no TLS needed), which a client on another host never is.
  const open = async () => {
    const sock = connect({ host: '127.0.0.1', port: msPort, localAddress: '127.0.0.2' });
    await new Promise<void>((res, rej) => (sock.once('connect', () => res()), sock.once('error', rej)));
    const ms = new ManageSieve(sock);
    return { ms, greet: await ms.response() };
  };
  const plain = Buffer.from(`\0bob@ours.test\0bob password 123456`).toString('base64');
  {
    const { ms, greet } = await open();
    assert.equal(greet.status, 'OK');
    assert.ok(greet.lines.some((l) => l === '"STARTTLS"'), greet.lines.join('\n'));
    assert.ok(greet.lines.some((l) => l === '"SASL" ""'), 'no SASL mechanism offered before STARTTLS');
    assert.ok(greet.lines.some((l) => /^"SIEVE" ".*\bfileinto\b.*"$/.test(l)));
    assert.ok(!greet.lines.some((l) => /vnd\.dovecot\.(pipe|execute|filter)/.test(l)), 'no extprograms');
    const early = await ms.cmd(`AUTHENTICATE "PLAIN" "${plain}"`);
    assert.equal(early.status, 'NO', `AUTHENTICATE before STARTTLS must fail: ${early.text}`);
    assert.match(early.text, /ENCRYPT-NEEDED/);
    ms.sock.destroy();
  }
  // (A new connection: Dovecot 2.3 refuses a second AUTHENTICATE on a connection whose first one failed.)
  const { ms } = await open();
  const caps = await ms.starttls(applianceCert(app), app.hostname);
  assert.ok(caps.lines.some((l) => /^"SASL" ".*PLAIN/.test(l)), caps.lines.join('\n'));
  const auth = await ms.cmd(`AUTHENTICATE "PLAIN" "${plain}"`);
  assert.equal(auth.status, 'OK', auth.text);
  const script = 'require ["fileinto", "mailbox"];\nif address :is "from" "boss@sender.test" {\n  fileinto :create "Boss";\n}\n';
  const bad = 'require "fileinto";\nfileintoo "x";\n';
  const badPut = await ms.cmd(`PUTSCRIPT "broken" {${Buffer.byteLength(bad)}+}\r\n${bad}`);
  assert.equal(badPut.status, 'NO');
  assert.match(badPut.lines.join('\n'), /line 2/);
  const put = await ms.cmd(`PUTSCRIPT "boss" {${Buffer.byteLength(script)}+}\r\n${script}`);
  assert.equal(put.status, 'OK', put.text);
  assert.equal((await ms.cmd('SETACTIVE "boss"')).status, 'OK');
  const list = await ms.cmd('LISTSCRIPTS');
  assert.ok(list.lines.includes('"boss" ACTIVE'), list.lines.join('\n'));
  await ms.cmd('LOGOUT');
  ms.sock.destroy();
  // The API sees the same storage, and the script runs at delivery.
  assert.deepEqual((await call(app, key, 'GET', '/mailboxes/bob@ours.test/sieve/scripts')).json.data, [{ name: 'boss', active: true }]);
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'client.sender.test' } as any);
  await t.sendMail({ from: 'boss@sender.test', to: 'bob@ours.test', subject: 'From the boss', text: 'hi\n' });
  await waitFor(async () => (await subjects('bob@ours.test', 'Boss')).includes('From the boss'), 'the message in Boss');
});
