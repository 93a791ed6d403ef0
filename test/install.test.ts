// install.sh production mode, exercised for real into a temporary --root tree (never the real /):
// dry run, preflight errors, a full install (Node provisioning, npm ci --omit=dev, init, units),
// file modes, an idempotent re-run, the installed program started from the tree (LMTP in, IMAP out),
// systemd-analyze verify and the security exposure, then --uninstall (data kept) and --purge.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, cpSync, existsSync, mkdirSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDns } from './helpers/dns.ts';
import { APP_DIR, freePort } from './helpers/appliance.ts';
import { deliverLmtp } from '../src/delivery/lmtp.ts';

// install.sh runs from a snapshot of the checkout (like an unpacked release), so edits to the
// working tree during the test do not look like upgrades.
let INSTALL = '';
// The system's PATH, without the Node 24 the test runner put first: install.sh must find or
// provision a suitable Node by itself.
const SYS_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((res) => {
    execFile(cmd, args, { env: { ...process.env, PATH: SYS_PATH, ...env }, maxBuffer: 50 * 1024 * 1024 }, (err: any, stdout, stderr) =>
      res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
}

const install = (args: string[]) => sh('bash', [INSTALL, ...args]);

let base: string;
let root: string;
const HOST = 'mail.example.test';
const common = () => ['--root', root, '--hostname', HOST, '--ip', '192.0.2.10', '--ip', '2001:db8::10', '--no-start'];

function mode(p: string): number {
  return statSync(p).mode & 0o777;
}

function sha(files: string[]): string {
  const h = createHash('sha256');
  for (const f of files.sort()) h.update(f).update(readFileSync(f));
  return h.digest('hex');
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

before(() => {
  base = mkdtempSync(join(tmpdir(), 'lbi-'));
  chmodSync(base, 0o755); // the installed program's Dovecot (root master in tests) must traverse it
  root = join(base, 'root');
  const src = join(base, 'release');
  mkdirSync(src);
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'install.sh', 'src', 'systemd']) cpSync(join(APP_DIR, f), join(src, f), { recursive: true });
  INSTALL = join(src, 'install.sh');
});
after(() => rmSync(base, { recursive: true, force: true }));

test('--dry-run prints every action and changes nothing', async () => {
  const r = await install([...common(), '--dry-run', '--smarthost', 'relay.example:587']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(existsSync(root), false, 'dry run created the root');
  for (const want of ['npm ci --omit=dev', 'letterbox --config', 'init --hostname mail.example.test', 'letterbox.service', 'dry run: nothing was changed']) {
    assert.ok(r.stdout.includes(want), `dry run output lacks "${want}":\n${r.stdout}`);
  }
});

test('preflight refuses a hostname that is not an FQDN, with a clear message', async () => {
  const r = await install(['--root', join(base, 'never'), '--hostname', 'mailserver', '--dry-run']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /preflight failed: hostname 'mailserver' is not a fully qualified domain name: pass --hostname/);
  const r2 = await install(['--root', join(base, 'never'), '--hostname', HOST, '--ip', '300.1.1.1', '--dry-run']);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /--ip 300\.1\.1\.1: not an IPv4 or IPv6 address/);
  const r3 = await install(['--bogus']);
  assert.equal(r3.code, 1);
  assert.match(r3.stderr, /unknown option --bogus/);
  assert.equal(existsSync(join(base, 'never')), false);
});

test('preflight accepts Debian 12 and 13, Ubuntu 24.04 and 26.04 (Dovecot 2.3 or 2.4) and names the others', async () => {
  const releases: [string, string, string | null][] = [
    ['debian', '12', '2.3'],
    ['debian', '13', '2.4'],
    ['ubuntu', '24.04', '2.3'],
    ['ubuntu', '26.04', '2.4'],
    ['debian', '11', null],
    ['ubuntu', '22.04', null],
    ['fedora', '41', null],
  ];
  for (const [id, ver, dovecot] of releases) {
    const osr = join(base, `os-release-${id}-${ver}`);
    writeFileSync(osr, `PRETTY_NAME="${id} ${ver}"\nID=${id}\nVERSION_ID="${ver}"\n`);
    const r = await sh('bash', [INSTALL, ...common(), '--dry-run'], { LETTERBOX_OS_RELEASE: osr });
    assert.equal(r.code, 0, r.stderr);
    if (dovecot) {
      assert.ok(r.stderr.includes(`preflight: OS ${id} ${ver}: supported (Dovecot ${dovecot})`), `${id} ${ver}:\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /unsupported OS/);
    } else {
      // --root only warns (the tree is not this system); a real install stops on the same check.
      assert.match(r.stderr, new RegExp(`WARNING: unsupported OS '${id} ${ver.replace('.', '\\.')}': Letterbox supports Debian 12 and 13, Ubuntu 24\\.04 and 26\\.04`), r.stderr);
    }
  }
});

test('a real --root install: program, Node, config, secrets, modes, unit', { timeout: 300000 }, async () => {
  const r = await install([...common(), '--smarthost', 'relay-user:s3cret@relay.example:587']);
  assert.equal(r.code, 0, `install failed:\n${r.stderr}\n${r.stdout}`);
  assert.match(r.stderr, /--root: not creating users letterbox and vmail/);
  const opt = join(root, 'opt/letterbox');
  const etc = join(root, 'etc/letterbox');
  const data = join(root, 'var/lib/letterbox');
  // Program and Node
  assert.ok(existsSync(join(opt, 'src/cli.ts')));
  assert.ok(existsSync(join(opt, 'node_modules/better-sqlite3')));
  assert.equal(existsSync(join(opt, 'node_modules/typescript')), false, 'devDependencies were installed (npm ci --omit=dev expected)');
  const nodebin = readFileSync(join(opt, '.runtime/nodebin'), 'utf8').trim();
  const v = await sh(join(nodebin, 'node'), ['-p', 'process.versions.node']);
  const [maj, min] = v.stdout.trim().split('.').map(Number);
  assert.ok(maj > 22 || (maj === 22 && min >= 19), `installed Node ${v.stdout}`);
  // Config, certificates, secrets, data
  const config = join(etc, 'letterbox.toml');
  const toml = readFileSync(config, 'utf8');
  assert.match(toml, /^hostname = "mail\.example\.test"/m);
  assert.match(toml, /^ips = \["192\.0\.2\.10", "2001:db8::10"\]/m);
  assert.match(toml, new RegExp(`^data_dir = "${data}"`, 'm'));
  assert.match(toml, /^smarthost = "relay\.example:587"/m);
  assert.match(toml, /^smarthost_user = "relay-user"/m);
  assert.ok(!toml.includes('s3cret'), 'the smarthost password must not be in the config');
  assert.equal(readFileSync(join(data, 'secrets/smarthost-password'), 'utf8').trim(), 's3cret');
  assert.equal(mode(config), 0o640);
  assert.equal(mode(etc), 0o750);
  assert.equal(mode(join(etc, 'certs/privkey.pem')), 0o600);
  assert.equal(mode(join(etc, 'certs/fullchain.pem')), 0o644);
  assert.equal(mode(data), 0o750);
  assert.equal(mode(join(data, 'secrets')), 0o700);
  for (const f of readdirSync(join(data, 'secrets'))) assert.equal(mode(join(data, 'secrets', f)), 0o600, f);
  assert.ok(existsSync(join(data, 'letterbox.db')));
  assert.ok(existsSync(join(data, 'dovecot/dovecot.conf')));
  // Unit, enabled offline in the tree; CLI wrapper
  const unit = join(root, 'etc/systemd/system/letterbox.service');
  const unitText = readFileSync(unit, 'utf8');
  assert.ok(unitText.includes(`ExecStart=${opt}/src/bin/letterbox --config ${config} serve`), unitText);
  const wants = join(root, 'etc/systemd/system/multi-user.target.wants/letterbox.service');
  assert.ok(lstatSync(wants).isSymbolicLink());
  assert.equal(readlinkSync(wants), '/etc/systemd/system/letterbox.service');
  const wrapper = join(root, 'usr/local/bin/letterbox');
  assert.equal(mode(wrapper), 0o755);
  const list = await sh(wrapper, ['--json', 'domain', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(JSON.parse(list.stdout), []);
  // The summary
  assert.match(r.stdout, /Ports to open/);
  assert.match(r.stdout, /mail\.example\.test\.\s+A\s+192\.0\.2\.10/);
  assert.match(r.stdout, /PTR of 2001:db8::10 → mail\.example\.test/);
});

test('systemd-analyze verify is clean for the installed unit; exposure ≤ 2.5', async () => {
  const unit = join(root, 'etc/systemd/system/letterbox.service');
  const v = await sh('systemd-analyze', ['verify', unit]);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stderr.trim(), '', `verify warnings:\n${v.stderr}`);
  for (const file of [join(APP_DIR, 'systemd/letterbox.service'), unit]) {
    const s = await sh('systemd-analyze', ['security', '--offline=true', file]);
    const m = /Overall exposure level for letterbox\.service: (\d+\.\d+)/.exec(s.stdout + s.stderr);
    assert.ok(m, `no exposure figure in:\n${s.stdout}${s.stderr}`);
    assert.ok(Number(m[1]) <= 2.5, `exposure ${m[1]} > 2.5`);
  }
  const text = readFileSync(unit, 'utf8');
  for (const want of ['User=letterbox', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ReadWritePaths=', 'ProtectHome=yes', 'PrivateTmp=yes', 'PrivateDevices=yes', 'RestrictAddressFamilies=', 'SystemCallFilter=@system-service', 'LockPersonality=yes', 'RestrictRealtime=yes', 'RestrictSUIDSGID=yes', 'UMask=0027', 'Restart=on-failure', 'RestartPreventExitStatus=78', 'MemoryMax=']) {
    assert.ok(text.includes(want), `unit lacks ${want}`);
  }
});

test('re-running is an upgrade that changes nothing: config, secrets, keys and certificates keep their checksums', async () => {
  const etc = join(root, 'etc/letterbox');
  const data = join(root, 'var/lib/letterbox');
  const watched = () => [...walk(etc), ...walk(join(data, 'secrets')), join(root, 'etc/systemd/system/letterbox.service'), join(root, 'usr/local/bin/letterbox')];
  const before = sha(watched());
  const r = await install([...common(), '--smarthost', 'other.example:25']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /existing installation found .*upgrading/);
  assert.match(r.stdout, /nothing changed \(already up to date\)/);
  assert.match(r.stderr, /--smarthost\/--acme-email apply to a new config only/);
  assert.equal(sha(watched()), before);
  assert.ok(!readFileSync(join(etc, 'letterbox.toml'), 'utf8').includes('other.example'));
  // A new release: the program is replaced and the run says so; state is still untouched.
  appendFileSync(join(base, 'release/README.md'), '\nrelease note\n');
  const up = await install(common());
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /changes in this run:\n\s+- deployed Letterbox [\d.]+ to /);
  assert.ok(readFileSync(join(root, 'opt/letterbox/README.md'), 'utf8').endsWith('release note\n'));
  assert.equal(sha(watched()), before);
});

test('the installed program runs from the tree: /healthz, send on 587, receive on 25 and LMTP, read over IMAP', { timeout: 120000 }, async () => {
  const dns = await new TestDns().start();
  dns.txt('elsewhere.test', 'v=spf1 ip4:127.0.0.1 -all');
  const opt = join(root, 'opt/letterbox');
  const config = join(root, 'etc/letterbox/letterbox.toml');
  const wrapper = join(root, 'usr/local/bin/letterbox');
  const ports = { mx: await freePort(), submission: await freePort(), submissions: await freePort(), imap: await freePort(), api: await freePort(), managesieve: await freePort(), inject: await freePort() };
  const env = {
    LETTERBOX_DNS_SERVERS: dns.server,
    LETTERBOX_OUTBOUND_MTA_STS: 'false',
    LETTERBOX_LISTEN_MX: `127.0.0.1:${ports.mx}`,
    LETTERBOX_LISTEN_SUBMISSION: `127.0.0.1:${ports.submission}`,
    LETTERBOX_LISTEN_SUBMISSIONS: `127.0.0.1:${ports.submissions}`,
    LETTERBOX_LISTEN_IMAP: `127.0.0.1:${ports.imap}`,
    LETTERBOX_LISTEN_API: `127.0.0.1:${ports.api}`,
    // init writes ManageSieve on 0.0.0.0:4190 and the injection listener on 127.0.0.1:10026: test ports instead.
    LETTERBOX_LISTEN_MANAGESIEVE: `127.0.0.1:${ports.managesieve}`,
    LETTERBOX_LISTEN_INJECT: `127.0.0.1:${ports.inject}`,
    LETTERBOX_OUTBOUND_SMARTHOST: '',
    // rspamd (on by default when installed) is tested in test/spam.test.ts; here it would compile its
    // rules for a minute and query the config's resolver (127.0.0.1:53, nothing listens in tests).
    LETTERBOX_SPAM_ENABLED: 'false',
  };
  assert.equal((await sh(wrapper, ['domain', 'add', 'example.test'], env)).code, 0);
  const mb = await sh(wrapper, ['mailbox', 'add', 'alice@example.test', '--password', 'a long enough password'], env);
  assert.equal(mb.code, 0, mb.stderr);
  const logs: string[] = [];
  const child: ChildProcess = spawn(join(opt, 'src/bin/letterbox'), ['--config', config, 'serve'], { env: { ...process.env, PATH: SYS_PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`not ready:\n${logs.join('\n')}`)), 60000);
      for (const s of [child.stdout!, child.stderr!]) {
        createInterface({ input: s }).on('line', (l) => {
          logs.push(l);
          if (l.includes('"letterbox ready"')) {
            clearTimeout(t);
            res();
          }
        });
      }
      child.once('exit', (c) => rej(new Error(`exited ${c}:\n${logs.join('\n')}`)));
    });
    // What install.sh waits for.
    const health = await fetch(`http://127.0.0.1:${ports.api}/healthz`);
    assert.equal(health.status, 200, await health.text());
    const ca = readFileSync(join(root, 'etc/letterbox/certs/fullchain.pem'), 'utf8');
    const tls = { ca, servername: 'localhost' };
    // Send: submission on 587 with STARTTLS and AUTH, to a local mailbox.
    const sub = nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, requireTLS: true, tls, auth: { user: 'alice@example.test', pass: 'a long enough password' } } as any);
    await sub.sendMail({ from: 'alice@example.test', to: 'alice@example.test', subject: 'sent through submission', text: 'hello from 587' });
    // Receive: the MX, from a remote sender (its DNS comes from the test's DNS server).
    const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.mx, secure: false, tls, name: 'mx.elsewhere.test' } as any);
    await mx.sendMail({ envelope: { from: 'bob@elsewhere.test', to: ['alice@example.test'] }, from: 'bob@elsewhere.test', to: 'alice@example.test', subject: 'received on the MX', text: 'hello from 25' });
    // And straight into Dovecot over LMTP.
    const msg = Buffer.from('From: bob@elsewhere.test\r\nTo: alice@example.test\r\nSubject: installed smoke\r\nMessage-ID: <smoke@elsewhere.test>\r\n\r\nhello from the tree\r\n');
    const res = await deliverLmtp(join(root, 'var/lib/letterbox/dovecot/run/lmtp'), { from: 'bob@elsewhere.test', to: ['alice@example.test'] }, msg, { lhlo: 'test' });
    assert.equal(res[0].status, 'delivered', JSON.stringify(res));
    const want = ['installed smoke', 'received on the MX', 'sent through submission'];
    let subjects: string[] = [];
    for (let i = 0; i < 100 && want.some((w) => !subjects.includes(w)); i++) {
      const client = new ImapFlow({ host: '127.0.0.1', port: ports.imap, secure: true, tls, auth: { user: 'alice@example.test', pass: 'a long enough password' }, logger: false });
      await client.connect();
      const lock = await client.getMailboxLock('INBOX');
      try {
        subjects = [];
        for await (const m of client.fetch('1:*', { envelope: true })) subjects.push(m.envelope?.subject ?? '');
      } finally {
        lock.release();
      }
      await client.logout();
      if (want.some((w) => !subjects.includes(w))) await sleep(150);
    }
    assert.deepEqual(subjects.slice().sort(), want, logs.slice(-20).join('\n'));
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await dns.stop();
  }
});

test('the summary prints the DNS records of every domain (the same records as letterbox dns)', async () => {
  const r = await install(common());
  assert.equal(r.code, 0, r.stderr);
  const dnsOut = await sh(join(root, 'usr/local/bin/letterbox'), ['--json', 'dns', 'example.test']);
  const records = JSON.parse(dnsOut.stdout).records as { type: string; name: string; value: string }[];
  assert.match(r.stdout, /-- example\.test/);
  for (const rec of records) assert.ok(r.stdout.includes(rec.name) && r.stdout.includes(rec.value.slice(0, 40)), `summary lacks ${rec.type} ${rec.name}`);
  assert.match(r.stdout, /nothing changed/);
});

test('--uninstall removes the program and unit but keeps config and data; --purge removes them', async () => {
  const u = await install(['--root', root, '--uninstall']);
  assert.equal(u.code, 0, u.stderr);
  assert.equal(existsSync(join(root, 'opt/letterbox')), false);
  assert.equal(existsSync(join(root, 'etc/systemd/system/letterbox.service')), false);
  assert.equal(existsSync(join(root, 'etc/systemd/system/multi-user.target.wants/letterbox.service')), false);
  assert.equal(existsSync(join(root, 'usr/local/bin/letterbox')), false);
  assert.ok(existsSync(join(root, 'etc/letterbox/letterbox.toml')));
  assert.ok(existsSync(join(root, 'var/lib/letterbox/letterbox.db')));
  assert.ok(existsSync(join(root, 'var/lib/letterbox/mail/example.test/alice')));
  assert.match(u.stdout, /kept: .*etc\/letterbox .*var\/lib\/letterbox/);
  const dry = await install(['--root', root, '--uninstall', '--purge', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.ok(existsSync(join(root, 'var/lib/letterbox/letterbox.db')), 'dry-run purge deleted data');
  const p = await install(['--root', root, '--uninstall', '--purge']);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(existsSync(join(root, 'etc/letterbox')), false);
  assert.equal(existsSync(join(root, 'var/lib/letterbox')), false);
});
