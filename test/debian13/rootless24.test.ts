// The production arrangement on Debian 13: Letterbox as an unprivileged user with its Dovecot 2.4
// rootless under the same uid. Node itself runs inside the Debian 13 root (chroot as that user, in a
// private mount namespace with /tmp shared), so Dovecot is the root's own 2.4.1 started the way
// production starts it: the CLI adds a domain and a mailbox, mail is delivered over LMTP (with a
// quota), a Sieve script files into Junk, a client logs in over IMAP, and the API reads the mailbox as
// the master user; with ManageSieve and the injection listener on (as `letterbox init` writes them),
// ManageSieve serves the user's scripts and a failed IMAP login reaches the login guard through
// Dovecot 2.4's auth policy. Needs root and the Debian 13 root: LB_TEST_TRIXIE_ROOT (set by .ci/run after
// test/debian13/setup.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { ImapFlow } from 'imapflow';
import { APP_DIR, applianceToml, freePort } from '../helpers/appliance.ts';
import { deliverLmtp } from '../../src/delivery/lmtp.ts';
import { connect } from 'node:net';
import { ManageSieve } from '../helpers/managesieve.ts';

const ROOT = process.env.LB_TEST_TRIXIE_ROOT ?? '';
const skip = !ROOT ? 'no Debian 13 root: run with LB_TEST_TRIXIE_ROOT=<root> after test/debian13/setup.sh (.ci/run does)' : process.getuid?.() !== 0 ? 'needs root (chroot, a throwaway user)' : false;
const user = `lbr${randomBytes(3).toString('hex')}`;
let uid = 0;
let gid = 0;
let dir = '';
let app = '';
let config = '';
let ports: { mx: number; submission: number; submissions: number; imap: number; api: number };
let msPort = 0;
let injectPort = 0;
let child: ChildProcess | null = null;
const logs: string[] = [];

/** argv that runs `args` inside the root as the user, with the host's /tmp, /dev and /proc. */
function inRoot(args: string[]): string[] {
  const script = 'r=$0; u=$1; shift; for d in /tmp /dev /proc; do mkdir -p "$r$d" && mount --rbind "$d" "$r$d"; done; exec chroot --userspec="$u" "$r" "$@"';
  return ['--mount', '--propagation', 'private', '/bin/sh', '-c', script, ROOT, `${uid}:${gid}`, ...args];
}

const cliArgs = (args: string[]) => inRoot([join(app, 'node'), '--disable-warning=ExperimentalWarning', join(app, 'src/cli.ts'), '--config', config, ...args]);
const env = () => ({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir, LANG: 'C.UTF-8', LETTERBOX_LISTEN_MANAGESIEVE: `127.0.0.1:${msPort}`, LETTERBOX_LISTEN_INJECT: `127.0.0.1:${injectPort}` });

function cli(args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const c = execFile('unshare', cliArgs(args), { env: env() }, (err: any, stdout, stderr) => res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }));
    c.stdin!.on('error', () => {});
    c.stdin!.end(input);
  });
}

before(async () => {
  if (skip) return;
  execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
  gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }));
  // The same user inside the root (Node and Dovecot look it up there).
  execFileSync('chroot', [ROOT, 'groupadd', '-g', String(gid), user]);
  execFileSync('chroot', [ROOT, 'useradd', '-u', String(uid), '-g', String(gid), '--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  dir = mkdtempSync('/tmp/lb24r-');
  chmodSync(dir, 0o755);
  app = join(dir, 'app');
  mkdirSync(app);
  for (const f of ['package.json', 'src']) cpSync(join(APP_DIR, f), join(app, f), { recursive: true });
  execFileSync('sh', ['-c', `cp -al "${realpathSync(join(APP_DIR, 'node_modules'))}" "${app}/node_modules" 2>/dev/null || cp -a "${realpathSync(join(APP_DIR, 'node_modules'))}" "${app}/node_modules"`]);
  cpSync(realpathSync(process.execPath), join(app, 'node'));
  ports = { mx: await freePort(), submission: await freePort(), submissions: await freePort(), imap: await freePort(), api: await freePort() };
  msPort = await freePort();
  injectPort = await freePort();
  config = join(dir, 'letterbox.toml');
  writeFileSync(config, applianceToml(dir, ports));
  execFileSync('chown', ['-R', `${uid}:${gid}`, dir]);
});

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
  if (skip) return;
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync('pgrep', ['-u', String(uid)]);
      await new Promise((r) => setTimeout(r, 100));
    } catch {
      break;
    }
  }
  for (const cmd of [['chroot', ROOT, 'userdel', user], ['chroot', ROOT, 'groupdel', user], ['userdel', user]]) {
    try {
      execFileSync(cmd[0], cmd.slice(1), { stdio: 'ignore' });
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

test('rootless on Dovecot 2.4 (Debian 13): serve as a user, CLI, LMTP with quota, Sieve, IMAP, the login guard, ManageSieve, the API as master user', { skip, timeout: 240000 }, async () => {
  child = spawn('unshare', cliArgs(['serve']), { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`not ready:\n${logs.slice(-30).join('\n')}`)), 120000);
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
  const conf = readFileSync(join(dir, 'data/dovecot/dovecot.conf'), 'utf8');
  assert.match(conf, /^dovecot_config_version = 2\.4\.0$/m);
  assert.match(conf, new RegExp(`^default_internal_user = ${user}$`, 'm'));
  assert.ok(logs.some((l) => l.includes('Dovecot v2.4.')), 'the root\'s Dovecot 2.4 started');
  // Every Dovecot process of this instance runs as the user.
  const instance = /^instance_name = (\S+)/m.exec(conf)![1];
  const ps = execFileSync('ps', ['-eo', 'uid=,args='], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(instance) || l.includes(join(dir, 'data/dovecot/dovecot.conf')));
  assert.ok(ps.length >= 3, ps.join('\n'));
  for (const l of ps) assert.equal(Number(l.trim().split(/\s+/)[0]), uid, l);

  for (const args of [['domain', 'add', 'example.test'], ['mailbox', 'add', 'alice@example.test', '--password', 'rootless 2.4 password', '--quota', '40K']]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
  }
  assert.match(readFileSync(join(dir, 'data/dovecot/users'), 'utf8'), /^alice@example\.test:.*userdb_quota_storage_size=40960B userdb_quota_storage_grace=4096B$/m);
  const sieve = await new Promise<{ code: number; stderr: string }>((res) => {
    const c = execFile('unshare', inRoot(['/usr/bin/doveadm', '-c', join(dir, 'data/dovecot/dovecot.conf'), 'sieve', 'put', '-u', 'alice@example.test', '-a', 'f']), { env: env() }, (err: any, _o, stderr) => res({ code: err ? 1 : 0, stderr: String(stderr) }));
    c.stdin!.end('require "fileinto";\nif header :contains "subject" "[SPAM]" { fileinto "Junk"; }\n');
  });
  assert.equal(sieve.code, 0, sieve.stderr);
  const deliver = (subject: string, body = 'hello\r\n') => deliverLmtp(join(dir, 'data/dovecot/run/lmtp'), { from: 'bob@elsewhere.test', to: ['alice@example.test'] }, Buffer.from(`From: bob@elsewhere.test\r\nTo: alice@example.test\r\nSubject: ${subject}\r\n\r\n${body}`), { lhlo: 'test' });
  let res = await deliver('rootless 2.4');
  for (let i = 0; i < 40 && res[0].status !== 'delivered'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    res = await deliver('rootless 2.4');
  }
  assert.equal(res[0].status, 'delivered', JSON.stringify(res));
  assert.equal((await deliver('[SPAM] filed by sieve'))[0].status, 'delivered');
  const big = await deliver('too big', ('y'.repeat(998) + '\r\n').repeat(60));
  assert.equal(big[0].status, 'tempfail', JSON.stringify(big));

  const ca = readFileSync(join(dir, 'certs/fullchain.pem'), 'utf8');
  const c = new ImapFlow({ host: '127.0.0.1', port: ports.imap, secure: true, tls: { ca, servername: 'mail.letterbox.test' }, auth: { user: 'alice@example.test', pass: 'rootless 2.4 password' }, logger: false });
  await c.connect();
  try {
    for (const [folder, want] of [['INBOX', 'rootless 2.4'], ['Junk', '[SPAM] filed by sieve']]) {
      const lock = await c.getMailboxLock(folder);
      try {
        const got = await c.fetchOne('*', { envelope: true });
        assert.ok(got);
        assert.equal(got.envelope?.subject, want);
      } finally {
        lock.release();
      }
    }
  } finally {
    await c.logout();
  }
  // A wrong password: Dovecot 2.4 reports the failure to the login guard (auth policy).
  const wrong = new ImapFlow({ host: '127.0.0.1', port: ports.imap, secure: true, tls: { ca, servername: 'mail.letterbox.test' }, auth: { user: 'alice@example.test', pass: 'not the password' }, logger: false });
  await assert.rejects(wrong.connect());
  for (let i = 0; i < 50 && !logs.some((l) => l.includes('"authentication failed"') && l.includes('"protocol":"imap"')); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(logs.some((l) => l.includes('"authentication failed"') && l.includes('"protocol":"imap"') && l.includes('alice@example.test')), 'the IMAP failure reached the login guard');
  // ManageSieve (managesieve-login rootless too): STARTTLS, AUTHENTICATE, the script put with doveadm is active.
  {
    const sock = connect({ host: '127.0.0.1', port: msPort, localAddress: '127.0.0.2' });
    await new Promise<void>((res, rej) => (sock.once('connect', () => res()), sock.once('error', rej)));
    const ms = new ManageSieve(sock);
    const greet = await ms.response();
    assert.ok(greet.lines.includes('"IMPLEMENTATION" "Letterbox"'), greet.lines.join('\n'));
    assert.ok(greet.lines.some((l) => /^"SIEVE" ".*\bvacation\b.*"$/.test(l)), 'vacation available (injection listener on)');
    await ms.starttls(ca, 'mail.letterbox.test');
    const auth = await ms.cmd(`AUTHENTICATE "PLAIN" "${Buffer.from('\0alice@example.test\0rootless 2.4 password').toString('base64')}"`);
    assert.equal(auth.status, 'OK', auth.text);
    const list = await ms.cmd('LISTSCRIPTS');
    assert.ok(list.lines.includes('"f" ACTIVE'), list.lines.join('\n'));
    await ms.cmd('LOGOUT');
    ms.sock.destroy();
  }
  // The API reads the mailbox as the master user.
  const key = await cli(['--json', 'key', 'create', '--name', 'r', '--scopes', '*']);
  assert.equal(key.code, 0, key.stderr);
  const r = await fetch(`http://127.0.0.1:${ports.api}/api/v1/mailboxes/alice@example.test/messages?folder=Junk`, { headers: { Authorization: `Bearer ${JSON.parse(key.stdout).secret}` } });
  const body: any = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.deepEqual(body.data.messages.map((m: any) => m.subject), ['[SPAM] filed by sieve']);

  const exited = new Promise<number | null>((r2) => child!.once('exit', (code) => r2(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});
