// The README's quick start from any folder (issue 15): a clone in a private folder under /root run as
// root, and a clone in a user's home run as that user — serve with the development defaults, then
// `domain add`, `mailbox add`, delivery and an IMAP login. As root, Dovecot's unprivileged users
// (auth as dovecot, mail as vmail) cannot traverse /root: Letterbox keeps Dovecot's files and the mail
// in /var/lib/letterbox-dev-<hash> (symlinked from data/), and where even that cannot help it stops
// at start with exit 78 naming the path, the user and the fix.
// Needs root (a folder under /root, a throwaway user); CI runs as root.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { ImapFlow } from 'imapflow';
import { APP_DIR, freePort } from './helpers/appliance.ts';
import { deliverLmtp } from '../src/delivery/lmtp.ts';

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root (a folder under /root, a throwaway user); CI runs as root';
const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups.reverse()) {
    try {
      c();
    } catch {}
  }
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A clone of the checkout at `dir`: the program files, node_modules hard-linked (or linked). */
function clone(dir: string, opts: { linkModules: boolean }): void {
  mkdirSync(dir, { recursive: true });
  for (const f of ['package.json', 'src']) cpSync(join(APP_DIR, f), join(dir, f), { recursive: true });
  for (const f of ['data', 'certs']) mkdirSync(join(dir, f));
  if (opts.linkModules) symlinkSync(realpathSync(join(APP_DIR, 'node_modules')), join(dir, 'node_modules'));
  else execFileSync('sh', ['-c', `cp -al "${realpathSync(join(APP_DIR, 'node_modules'))}" "${dir}/node_modules" 2>/dev/null || cp -a "${realpathSync(join(APP_DIR, 'node_modules'))}" "${dir}/node_modules"`]);
}

async function devPorts() {
  return { mx: await freePort(), submission: await freePort(), submissions: await freePort(), imap: await freePort(), api: await freePort() };
}

/** The development defaults, with test ports (LETTERBOX_LISTEN_*): no config file anywhere. */
function devEnv(ports: Awaited<ReturnType<typeof devPorts>>, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LETTERBOX_LISTEN_MX: `127.0.0.1:${ports.mx}`,
    LETTERBOX_LISTEN_SUBMISSION: `127.0.0.1:${ports.submission}`,
    LETTERBOX_LISTEN_SUBMISSIONS: `127.0.0.1:${ports.submissions}`,
    LETTERBOX_LISTEN_IMAP: `127.0.0.1:${ports.imap}`,
    LETTERBOX_LISTEN_API: `127.0.0.1:${ports.api}`,
    LETTERBOX_LOG_LEVEL: 'info',
    ...extra,
  };
  delete env.LETTERBOX_CONFIG;
  return env;
}

function run(cmd: string, args: string[], o: { cwd: string; env: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((res) => {
    const c = execFile(cmd, args, { cwd: o.cwd, env: o.env }, (err: any, stdout, stderr) =>
      res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
    c.stdin!.on('error', () => {});
    c.stdin!.end();
  });
}

/** Starts `serve`; resolves once "letterbox ready" is logged, rejects with the log if it exits first. */
function serve(cmd: string, args: string[], o: { cwd: string; env: NodeJS.ProcessEnv }): Promise<{ child: ChildProcess; logs: string[] }> {
  const child = spawn(cmd, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  cleanups.push(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`not ready after 90 s:\n${logs.slice(-30).join('\n')}`)), 90000);
    for (const s of [child.stdout!, child.stderr!]) {
      createInterface({ input: s }).on('line', (l) => {
        logs.push(l);
        if (l.includes('"letterbox ready"')) {
          clearTimeout(t);
          res({ child, logs });
        }
      });
    }
    child.once('exit', (c) => {
      clearTimeout(t);
      rej(new Error(`exited ${c}:\n${logs.slice(-30).join('\n')}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  return exited;
}

async function imapInbox(port: number, ca: string, user: string, pass: string): Promise<{ folders: string[]; subjects: string[] }> {
  // The users file applies within about a second of `mailbox add` (Dovecot re-reads it by mtime).
  let lastErr: unknown;
  for (let i = 0; i < 40; i++) {
    const c = new ImapFlow({ host: '127.0.0.1', port, secure: true, tls: { ca, servername: 'localhost' }, auth: { user, pass }, logger: false });
    try {
      await c.connect();
      const folders = (await c.list()).map((f) => f.path).sort();
      const subjects: string[] = [];
      const lock = await c.getMailboxLock('INBOX');
      try {
        for await (const m of c.fetch('1:*', { envelope: true })) subjects.push(m.envelope?.subject ?? '');
      } finally {
        lock.release();
      }
      await c.logout();
      return { folders, subjects };
    } catch (err) {
      lastErr = err;
      c.close();
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  throw lastErr;
}

const MSG = Buffer.from('From: bob@elsewhere.test\r\nTo: alice@example.test\r\nSubject: quick start\r\n\r\nhello\r\n');

test('as root, from a clone in a 0700 folder under /root: serve, domain add, mailbox add, delivery, IMAP login', { skip, timeout: 240000 }, async () => {
  const priv = mkdtempSync('/root/lbq-');
  chmodSync(priv, 0o700);
  cleanups.push(() => rmSync(priv, { recursive: true, force: true }));
  const app = join(priv, 'letterbox');
  clone(app, { linkModules: true });
  const ports = await devPorts();
  const env = devEnv(ports);
  const cli = ['--disable-warning=ExperimentalWarning', join(app, 'src/cli.ts')];
  const { child, logs } = await serve(process.execPath, [...cli, 'serve'], { cwd: app, env });
  const link = join(app, 'data', 'dovecot');
  assert.ok(lstatSync(link).isSymbolicLink(), 'data/dovecot should point to a folder Dovecot can reach');
  const moved = readlinkSync(link).replace(/\/dovecot$/, '');
  cleanups.push(() => rmSync(moved, { recursive: true, force: true }));
  assert.match(moved, /^\/var\/lib\/letterbox-dev-[0-9a-f]{12}$/);
  assert.equal(readlinkSync(join(app, 'data', 'mail')), join(moved, 'mail'));
  assert.equal(statSync(join(moved, 'mail')).uid, Number(execFileSync('id', ['-u', 'vmail'], { encoding: 'utf8' })));
  assert.ok(logs.some((l) => l.includes('Dovecot\'s users cannot reach data_dir') && l.includes('/root (mode 0700')), logs.join('\n'));
  // The README's commands, from the clone, with no --config.
  const d = await run(process.execPath, [...cli, 'domain', 'add', 'example.test'], { cwd: app, env });
  assert.equal(d.code, 0, d.stderr);
  const m = await run(process.execPath, [...cli, 'mailbox', 'add', 'alice@example.test', '--password', 'a long password'], { cwd: app, env });
  assert.equal(m.code, 0, m.stderr);
  const res = await deliverLmtp(join(app, 'data/dovecot/run/lmtp'), { from: 'bob@elsewhere.test', to: ['alice@example.test'] }, MSG, { lhlo: 'test' });
  assert.equal(res[0].status, 'delivered', JSON.stringify(res));
  const inbox = await imapInbox(ports.imap, readFileSync(join(app, 'certs/fullchain.pem'), 'utf8'), 'alice@example.test', 'a long password');
  assert.deepEqual(inbox.folders, ['Drafts', 'INBOX', 'Junk', 'Sent', 'Trash']);
  assert.deepEqual(inbox.subjects, ['quick start']);
  assert.ok(!logs.some((l) => /Temporary authentication failure|Permission denied|missing \+x/.test(l)), logs.filter((l) => /dovecot/.test(l)).join('\n'));
  assert.equal(await stop(child), 0);
  // Restarting reuses the moved files (the mail is still there).
  const again = await serve(process.execPath, [...cli, 'serve'], { cwd: app, env });
  const inbox2 = await imapInbox(ports.imap, readFileSync(join(app, 'certs/fullchain.pem'), 'utf8'), 'alice@example.test', 'a long password');
  assert.deepEqual(inbox2.subjects, ['quick start']);
  assert.equal(await stop(again.child), 0);
});

test('as root, when Dovecot still cannot reach its files, serve stops with exit 78 naming the path, the user and the fix', { skip, timeout: 120000 }, async () => {
  const priv = mkdtempSync('/root/lbq-');
  chmodSync(priv, 0o700);
  cleanups.push(() => rmSync(priv, { recursive: true, force: true }));
  const app = join(priv, 'letterbox');
  clone(app, { linkModules: true });
  // The folder for Dovecot's files is itself private.
  const env = devEnv(await devPorts(), { LETTERBOX_DOVECOT_FALLBACK_DIR: join(priv, 'state') });
  const r = await run(process.execPath, ['--disable-warning=ExperimentalWarning', join(app, 'src/cli.ts'), 'serve'], { cwd: app, env });
  assert.equal(r.code, 78, r.stderr + r.stdout);
  assert.match(r.stderr, /Dovecot's auth process \(user dovecot\) cannot read \/root\/lbq-\w+\/state\/letterbox-dev-[0-9a-f]{12}\/dovecot\/users: \/root \(mode 0700, owner uid 0\) does not give it search \(x\) permission\. Fix: set data_dir to a folder outside private directories/);
});

test('as a user, from a clone in that user\'s home (0700): serve, domain add, mailbox add, delivery, IMAP login', { skip, timeout: 240000 }, async () => {
  const user = `lbh${randomBytes(3).toString('hex')}`;
  const home = `/home/${user}`;
  execFileSync('useradd', ['--create-home', '--home-dir', home, '--shell', '/bin/sh', user]);
  cleanups.push(() => {
    rmSync(home, { recursive: true, force: true });
    execFileSync('userdel', [user]);
  });
  // Dovecot's processes die with their guard; let them go before the user is removed.
  cleanups.push(() => {
    for (let i = 0; i < 50; i++) {
      try {
        execFileSync('pgrep', ['-u', user]);
        execFileSync('sleep', ['0.1']);
      } catch {
        break;
      }
    }
  });
  chmodSync(home, 0o700);
  const app = join(home, 'letterbox');
  clone(app, { linkModules: false });
  const node = join(app, '.runtime-node');
  cpSync(realpathSync(process.execPath), node);
  execFileSync('chown', ['-R', `${user}:${user}`, home]);
  const ports = await devPorts();
  const env = devEnv(ports, { HOME: home, USER: user, LOGNAME: user });
  const as = (args: string[]) => ['--reuid', user, '--regid', user, '--init-groups', '--', node, '--disable-warning=ExperimentalWarning', join(app, 'src/cli.ts'), ...args];
  const { child, logs } = await serve('setpriv', as(['serve']), { cwd: app, env });
  assert.ok(!lstatSync(join(app, 'data', 'dovecot')).isSymbolicLink(), 'rootless: Dovecot runs as the user and reads data/ where it is');
  assert.match(readFileSync(join(app, 'data/dovecot/dovecot.conf'), 'utf8'), new RegExp(`default_internal_user = ${user}`));
  const d = await run('setpriv', as(['domain', 'add', 'example.test']), { cwd: app, env });
  assert.equal(d.code, 0, d.stderr);
  const m = await run('setpriv', as(['mailbox', 'add', 'alice@example.test', '--password', 'a long password']), { cwd: app, env });
  assert.equal(m.code, 0, m.stderr);
  let res;
  for (let i = 0; i < 40; i++) {
    res = await deliverLmtp(join(app, 'data/dovecot/run/lmtp'), { from: 'bob@elsewhere.test', to: ['alice@example.test'] }, MSG, { lhlo: 'test' }).catch((e) => [{ status: String(e) }]);
    if (res[0].status === 'delivered') break;
    await new Promise((r) => setTimeout(r, 150));
  }
  // The LMTP socket is the user's (mode 0600): root may connect, as the appliance itself would.
  assert.equal(res![0].status, 'delivered', JSON.stringify(res));
  const inbox = await imapInbox(ports.imap, readFileSync(join(app, 'certs/fullchain.pem'), 'utf8'), 'alice@example.test', 'a long password');
  assert.deepEqual(inbox.subjects, ['quick start']);
  assert.ok(existsSync(join(app, 'data/mail/example.test/alice/Maildir')));
  assert.equal(statSync(join(app, 'data/mail')).uid, Number(execFileSync('id', ['-u', user], { encoding: 'utf8' })));
  assert.ok(!logs.some((l) => /Temporary authentication failure|Permission denied/.test(l)), logs.join('\n'));
  assert.equal(await stop(child), 0);
});
