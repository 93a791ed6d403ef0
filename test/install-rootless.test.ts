// The production arrangement of systemd/letterbox.service, without systemd (not PID 1 here):
// `letterbox serve` as an unprivileged system user whose only privilege is an ambient
// CAP_NET_BIND_SERVICE (bounding set reduced to it, no_new_privs) — exactly what the unit grants —
// with its Dovecot child rootless under the same uid, binding a port below 1024. The CLI runs as
// that user too (as the installed wrapper does), mail is delivered over LMTP and read over IMAP.
// Needs root to create the throwaway user; CI runs as root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { ImapFlow } from 'imapflow';
import { APP_DIR, CLI, applianceToml, freePort } from './helpers/appliance.ts';
import { deliverLmtp } from '../src/delivery/lmtp.ts';

const isRoot = process.getuid?.() === 0;
const user = `lbt${randomBytes(3).toString('hex')}`;
let uid = 0;
let gid = 0;
let dir = '';
let config = '';
let child: ChildProcess | null = null;
const logs: string[] = [];
let imapPort = 0;
// What the service user executes: the checkout, or a copy of it when the user cannot read the
// checkout (e.g. a clone under /root, mode 0700).
let node = process.execPath;
let cli = CLI;

// The unit's privileges: User=, AmbientCapabilities=CAP_NET_BIND_SERVICE, CapabilityBoundingSet=, NoNewPrivileges=.
const asService = () => ['--reuid', String(uid), '--regid', String(gid), '--init-groups', '--inh-caps=+net_bind_service', '--ambient-caps=+net_bind_service', '--bounding-set=-all,+net_bind_service', '--no-new-privs'];

function lowFreePort(): Promise<number> {
  const tryPort = (p: number) =>
    new Promise<boolean>((res) => {
      const s = createServer();
      s.once('error', () => res(false));
      s.listen(p, '127.0.0.1', () => s.close(() => res(true)));
    });
  return (async () => {
    for (let p = 900 + Math.floor(Math.random() * 50); p < 1020; p++) if (await tryPort(p)) return p;
    throw new Error('no free port below 1024');
  })();
}

function cliAs(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const c = execFile('setpriv', [...asService(), node, '--disable-warning=ExperimentalWarning', cli, '--config', config, ...args], { cwd: dir, env: { ...process.env, HOME: dir } }, (err: any, stdout, stderr) =>
      res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
    c.stdin!.on('error', () => {});
    c.stdin!.end(input ?? '');
  });
}

before(async () => {
  if (!isRoot) return;
  execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
  gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
  dir = mkdtempSync(join(tmpdir(), 'lbr-'));
  chmodSync(dir, 0o755);
  imapPort = await lowFreePort();
  config = join(dir, 'letterbox.toml');
  writeFileSync(config, applianceToml(dir, { mx: await freePort(), submission: await freePort(), submissions: await freePort(), imap: imapPort, api: await freePort() }));
  execFileSync('chown', ['-R', `${uid}:${gid}`, dir]);
  try {
    if (process.env.LB_TEST_COPY_APP) throw new Error('forced');
    execFileSync('setpriv', [...asService(), 'sh', '-c', `test -r "${cli}" && test -x "${node}"`]);
  } catch {
    const app = join(dir, 'app');
    execFileSync('mkdir', ['-p', app]);
    // Hard links where possible (same file system), else copies; either way new, traversable folders.
    for (const f of ['package.json', 'src', 'node_modules']) execFileSync('sh', ['-c', `cp -al "${join(APP_DIR, f)}" "${app}/" 2>/dev/null || cp -a "${join(APP_DIR, f)}" "${app}/"`]);
    execFileSync('cp', [realpathSync(process.execPath), join(app, 'node')]);
    chmodSync(app, 0o755);
    node = join(app, 'node');
    cli = join(app, 'src', 'cli.ts');
  }
});

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
  if (!isRoot) return;
  // Dovecot's processes die with their guard; give them a moment, then remove the user.
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync('pgrep', ['-u', String(uid)]);
      await new Promise((r) => setTimeout(r, 100));
    } catch {
      break;
    }
  }
  try {
    execFileSync('userdel', [user]);
  } catch {}
  rmSync(dir, { recursive: true, force: true });
});

test('as an unprivileged user with only CAP_NET_BIND_SERVICE, Letterbox runs Dovecot rootless on a port below 1024', { skip: isRoot ? false : 'needs root to create a throwaway system user (CI runs as root)', timeout: 120000 }, async () => {
  child = spawn('setpriv', [...asService(), node, '--disable-warning=ExperimentalWarning', cli, '--config', config, 'serve'], { cwd: dir, env: { ...process.env, HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`not ready:\n${logs.slice(-30).join('\n')}`)), 60000);
    for (const s of [child!.stdout!, child!.stderr!]) {
      createInterface({ input: s }).on('line', (l) => {
        logs.push(l);
        if (l.includes('"letterbox ready"')) {
          clearTimeout(t);
          res();
        }
      });
    }
    child!.once('exit', (c) => rej(new Error(`exited ${c}:\n${logs.slice(-30).join('\n')}`)));
  });
  // Every Dovecot process of this instance runs as the service user.
  const dovecotConf = readFileSync(join(dir, 'data/dovecot/dovecot.conf'), 'utf8');
  assert.match(dovecotConf, new RegExp(`default_internal_user = ${user}`));
  const instance = /^instance_name = (\S+)/m.exec(dovecotConf)![1];
  const ps = execFileSync('ps', ['-eo', 'uid=,args='], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(instance) || l.includes(join(dir, 'data/dovecot/dovecot.conf')));
  assert.ok(ps.length >= 3, ps.join('\n'));
  for (const l of ps) assert.equal(Number(l.trim().split(/\s+/)[0]), uid, `not running as ${user}: ${l}`);
  assert.equal(statSync(join(dir, 'data/mail')).uid, uid);

  const d = await cliAs(['domain', 'add', 'example.test']);
  assert.equal(d.code, 0, d.stderr);
  const m = await cliAs(['mailbox', 'add', 'alice@example.test', '--password-stdin'], 'rootless password 1\n');
  assert.equal(m.code, 0, m.stderr);
  assert.equal(statSync(join(dir, 'data/letterbox.db')).uid, uid);
  const msg = Buffer.from('From: bob@elsewhere.test\r\nTo: alice@example.test\r\nSubject: rootless\r\n\r\nhello\r\n');
  let res;
  for (let i = 0; i < 40; i++) {
    res = await deliverLmtp(join(dir, 'data/dovecot/run/lmtp'), { from: 'bob@elsewhere.test', to: ['alice@example.test'] }, msg, { lhlo: 'test' });
    if (res[0].status === 'delivered') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(res![0].status, 'delivered', JSON.stringify(res));
  const c = new ImapFlow({ host: '127.0.0.1', port: imapPort, secure: true, tls: { ca: readFileSync(join(dir, 'certs/fullchain.pem'), 'utf8'), servername: 'localhost' }, auth: { user: 'alice@example.test', pass: 'rootless password 1' }, logger: false });
  await c.connect();
  const lock = await c.getMailboxLock('INBOX');
  try {
    const got = await c.fetchOne('*', { envelope: true });
    assert.ok(got);
    assert.equal(got.envelope?.subject, 'rootless');
  } finally {
    lock.release();
  }
  await c.logout();
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});
