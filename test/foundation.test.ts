// Foundation, end to end: a real `letterbox serve` with its supervised Dovecot; mailboxes created
// through the real CLI; logins over implicit TLS with imapflow and with Python's imaplib.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, runCli, type Appliance } from './helpers/appliance.ts';
import { alive } from '../src/dovecot/supervisor.ts';

const run = promisify(execFile);
let app: Appliance;
const PW = 'correct horse battery staple';

before(async () => {
  app = await startAppliance();
});
after(() => app?.cleanup());

function imap(user: string, pass: string) {
  return new ImapFlow({
    host: '127.0.0.1',
    port: app.ports.imap,
    secure: true,
    tls: { ca: applianceCert(app), servername: 'localhost' },
    auth: { user, pass },
    logger: false,
  });
}

async function canLogin(user: string, pass: string): Promise<boolean> {
  const c = imap(user, pass);
  c.on('error', () => {});
  try {
    await c.connect();
    await c.logout();
    return true;
  } catch (err: any) {
    if (err.authenticationFailed) return false;
    throw err;
  }
}

/** Python's imaplib over TLS, verifying the appliance's certificate; prints the LIST lines. */
async function pythonLogin(user: string, pass: string): Promise<string> {
  const script = `
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[4]), ssl_context=ctx)
m.login(sys.argv[1], sys.argv[2])
typ, data = m.list()
print('\\n'.join(d.decode() for d in data))
m.logout()
`;
  const { stdout } = await run('python3', ['-c', script, user, pass, join(app.dir, 'certs', 'fullchain.pem'), String(app.ports.imap)]);
  return stdout;
}

async function eventually(fn: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await sleep(150);
  }
  return fn();
}

test('domain add prints the DNS records; mailbox add makes an IMAP account within 2 s', async () => {
  const d = await app.cliJson(['domain', 'add', 'example.test']);
  assert.equal(d.name, 'example.test');
  const types = d.records.map((r: any) => `${r.type}:${r.purpose}`);
  for (const t of ['MX:mx', 'TXT:spf', 'TXT:dkim', 'TXT:dmarc']) assert.ok(types.includes(t), t);
  const m = await app.cli(['mailbox', 'add', 'alice@example.test', '--password', PW, '--quota', '10M']);
  assert.equal(m.code, 0, m.stderr);
  const started = Date.now();
  assert.ok(await eventually(() => canLogin('alice@example.test', PW), 2000), 'login works within 2 s');
  assert.ok(Date.now() - started < 2500);
});

test('imapflow sees INBOX, Sent, Drafts, Junk and Trash with their special-use flags', async () => {
  const c = imap('alice@example.test', PW);
  await c.connect();
  const list = await c.list();
  await c.logout();
  const byUse = Object.fromEntries(list.filter((f) => f.specialUse).map((f) => [f.specialUse, f.path]));
  assert.deepEqual(byUse, { '\\Inbox': 'INBOX', '\\Sent': 'Sent', '\\Drafts': 'Drafts', '\\Junk': 'Junk', '\\Trash': 'Trash' });
});

test("Python's imaplib logs in over TLS with certificate verification and lists the folders", async () => {
  const out = await pythonLogin('alice@example.test', PW);
  for (const f of ['INBOX', 'Sent', 'Drafts', 'Junk', 'Trash']) assert.match(out, new RegExp(`"/" "?${f}"?$`, 'm'));
});

test('the quota is visible through IMAP GETQUOTAROOT', async () => {
  const c = imap('alice@example.test', PW);
  await c.connect();
  const q: any = await c.getQuota('INBOX');
  await c.logout();
  assert.equal(q.storage.limit, 10 * 1024 * 1024);
  assert.equal(q.storage.usage, 0);
});

test('a generated password is printed once and works; mixed-case login names work', async () => {
  const r = await app.cliJson(['mailbox', 'add', 'Carol@Example.test']);
  assert.equal(r.address, 'carol@example.test');
  assert.equal(typeof r.password, 'string');
  assert.ok(r.password.length >= 20);
  assert.ok(await eventually(() => canLogin('Carol@EXAMPLE.test', r.password)));
  const listed = await app.cli(['mailbox', 'list']);
  assert.doesNotMatch(listed.stdout, new RegExp(r.password));
});

test('CLI errors say what to do and exit non-zero', async () => {
  const unknownDomain = await app.cli(['mailbox', 'add', 'x@nowhere.test']);
  assert.equal(unknownDomain.code, 2);
  assert.match(unknownDomain.stderr, /letterbox domain add nowhere\.test/);
  const short = await app.cli(['mailbox', 'add', 'y@example.test', '--password', 'short']);
  assert.equal(short.code, 2);
  assert.match(short.stderr, /at least 12 characters/);
  const rmDomain = await app.cli(['domain', 'rm', 'example.test']);
  assert.equal(rmDomain.code, 2);
  assert.match(rmDomain.stderr, /--force/);
  const json = await app.cli(['--json', 'mailbox', 'rm', 'ghost@example.test']);
  assert.equal(JSON.parse(json.stderr).error.code, 'not_found');
});

test('the users file and secrets are not world-readable; the master password never reaches the log', () => {
  const users = join(app.dataDir, 'dovecot', 'users');
  assert.equal(statSync(users).mode & 0o007, 0);
  assert.equal(statSync(join(app.dataDir, 'secrets', 'dovecot-master')).mode & 0o777, 0o600);
  const secret = readFileSync(join(app.dataDir, 'secrets', 'dovecot-master'), 'utf8').trim();
  assert.ok(!app.logs.join('\n').includes(secret));
  assert.ok(!app.logs.join('\n').includes(PW));
});

// Failed logins slow later logins from the same IP (Dovecot's auth penalty), so these come last.
test('a password change takes effect within 2 s; the old one stops working', async () => {
  const NEW = 'another long password 42';
  const r = await app.cli(['mailbox', 'passwd', 'alice@example.test', '--password-stdin'], { input: NEW + '\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(await eventually(() => canLogin('alice@example.test', NEW), 2000));
  assert.equal(await canLogin('alice@example.test', PW), false);
});

test('a disabled mailbox cannot log in; enabling it again restores access', async () => {
  await app.cliJson(['mailbox', 'add', 'dave@example.test', '--password', PW]);
  assert.ok(await eventually(() => canLogin('dave@example.test', PW)));
  assert.equal((await app.cli(['mailbox', 'disable', 'dave@example.test'])).code, 0);
  assert.ok(await eventually(async () => !(await canLogin('dave@example.test', PW)), 5000), 'refused once disabled');
  assert.equal((await app.cli(['mailbox', 'enable', 'dave@example.test'])).code, 0);
  assert.ok(await eventually(() => canLogin('dave@example.test', PW), 8000), 'allowed again');
});

test('wrong passwords and unknown users are refused', async () => {
  assert.equal(await canLogin('alice@example.test', 'wrong password here'), false);
  assert.equal(await canLogin('nobody@example.test', PW), false);
});

test('a Dovecot that dies is restarted by the supervisor (and counted in letterbox_dovecot_restarts_total)', async () => {
  const { secret } = await app.cliJson(['key', 'create', '--name', 'metrics', '--scopes', 'metrics:read']);
  const restarts = async () => {
    const r = await fetch(`http://127.0.0.1:${app.ports.api}/metrics`, { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(r.status, 200);
    return Number(/^letterbox_dovecot_restarts_total (\d+)$/m.exec(await r.text())?.[1]);
  };
  const before = await restarts();
  const pid = Number(readFileSync(join(app.dataDir, 'dovecot', 'run', 'master.pid'), 'utf8'));
  process.kill(pid, 'SIGKILL');
  const restarted = await eventually(async () => {
    try {
      const now = Number(readFileSync(join(app.dataDir, 'dovecot', 'run', 'master.pid'), 'utf8'));
      return now !== pid && alive(now);
    } catch {
      return false;
    }
  }, 20000);
  assert.ok(restarted, 'a new Dovecot master runs');
  assert.ok(app.logs.some((l) => l.includes('Dovecot exited unexpectedly')));
  assert.ok(await eventually(() => canLogin('dave@example.test', PW).catch(() => false), 15000), 'IMAP works again');
  assert.equal(await restarts(), before + 1);
});

test('SIGTERM: exits 0 promptly and leaves no Dovecot behind', async () => {
  const pid = Number(readFileSync(join(app.dataDir, 'dovecot', 'run', 'master.pid'), 'utf8'));
  assert.ok(alive(pid));
  const t0 = Date.now();
  const code = await app.stop();
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 10000);
  assert.equal(alive(pid), false, 'Dovecot master stopped');
});

test('SIGKILL of Letterbox still stops its Dovecot (no orphan); a restart serves the same accounts', async () => {
  await app.restart();
  await app.cliJson(['mailbox', 'add', 'erin@example.test', '--password', PW]);
  assert.ok(await eventually(() => canLogin('erin@example.test', PW)));
  const pid = Number(readFileSync(join(app.dataDir, 'dovecot', 'run', 'master.pid'), 'utf8'));
  assert.ok(alive(pid));
  await app.kill('SIGKILL');
  let gone = false;
  for (let i = 0; i < 50 && !gone; i++) {
    gone = !alive(pid);
    if (!gone) await sleep(200);
  }
  assert.ok(gone, 'Dovecot exited after its parent was killed');
  await app.restart();
  assert.ok(await eventually(() => canLogin('erin@example.test', PW)), 'the account works after the restart');
  assert.equal(await app.stop(), 0);
});

test('init writes a config once and never overwrites it', async () => {
  const cfg = join(app.dir, 'init', 'letterbox.toml');
  const r1 = await runCli(cfg, ['--json', 'init', '--hostname', 'mail.example.org', '--ip', '192.0.2.7', '--data-dir', join(app.dir, 'init', 'data')]);
  assert.equal(r1.code, 0, r1.stderr);
  const text = readFileSync(cfg, 'utf8');
  assert.match(text, /hostname = "mail\.example\.org"/);
  assert.ok(existsSync(join(app.dir, 'init', 'data', 'secrets', 'dovecot-master')));
  assert.ok(existsSync(join(app.dir, 'init', 'data', 'dovecot', 'dovecot.conf')));
  const secret = readFileSync(join(app.dir, 'init', 'data', 'secrets', 'dovecot-master'), 'utf8');
  const r2 = await runCli(cfg, ['--json', 'init', '--hostname', 'other.example.org']);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(readFileSync(cfg, 'utf8'), text);
  assert.equal(readFileSync(join(app.dir, 'init', 'data', 'secrets', 'dovecot-master'), 'utf8'), secret);
  assert.match(JSON.parse(r2.stdout).actions.join('\n'), /kept existing config/);
});
