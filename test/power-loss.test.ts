// Power loss, not only SIGKILL (#21): a killed process leaves the page cache behind, a power cut does
// not. The appliance's whole data_dir (SQLite, spool, queue, Dovecot's mail and indexes) lives on
// test/power/lazyfs.py, a FUSE file system that keeps every write in memory until the file is
// fsync'ed. The power cut drops all of that, fails every later operation with EIO and kills every
// process of the appliance; the file system is then mounted again over what was durable and the
// appliance started on it. Every message answered 250 must still be there: in the mailbox (MX) or
// delivered by the queue (submission). The model's limit (lazyfs.py): directory entries are taken as
// durable at once, so this tests the contents' fsync discipline, not the directories'.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { mxTransaction, submitTransaction } from './helpers/proof-smtp.ts';
import { waitFor } from './helpers/mailapi.ts';

const ROOT = process.getuid?.() === 0;
const skip = ROOT ? false : 'needs root: the FUSE mount with allow_other that Dovecot’s users write through (CI runs as root)';
const PW = 'power loss password 1';
const LAZYFS = new URL('./power/lazyfs.py', import.meta.url).pathname;
let base = '';
let backing = '';
let mnt = '';
let lazy: ChildProcess | null = null;
let lazyLog = '';
let app: Appliance;
let dns: TestDns;
let sink: Sink;

const mounted = () => readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);

async function mountLazy(): Promise<void> {
  lazy = spawn('/usr/bin/python3', [LAZYFS, backing, mnt], { stdio: ['pipe', 'ignore', 'pipe'] });
  lazy.stdin!.on('error', () => {}); // EPIPE once it is killed
  lazy.stderr!.on('data', (d) => (lazyLog += d));
  await waitFor(() => mounted(), 'lazyfs mounted', 15000);
}

/** Every process (but lazyfs) with a file, folder or executable under the mount: the appliance and its Dovecot. */
function holders(): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === lazy?.pid || Number(p) === process.pid) continue;
    try {
      const links = [readlinkSync(`/proc/${p}/cwd`), ...readdirSync(`/proc/${p}/fd`).map((fd) => {
        try {
          return readlinkSync(`/proc/${p}/fd/${fd}`);
        } catch {
          return '';
        }
      })];
      if (links.some((l) => l === mnt || l.startsWith(mnt + '/'))) pids.push(Number(p));
    } catch {
      /* gone, or not ours to read */
    }
  }
  return pids;
}

/** The power goes: unsynced writes dropped, every process of the appliance killed, the disk mounted again. */
async function powerCut(): Promise<void> {
  const before = lazyLog.length;
  lazy!.stdin!.write('cut\n');
  await waitFor(() => lazyLog.slice(before).includes('power cut'), 'lazyfs to drop what was not fsynced', 10000);
  const serve = app.kill('SIGKILL');
  for (const pid of holders()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await serve;
  await waitFor(() => holders().length === 0, 'every process of the appliance gone', 15000);
  execFileSync('fusermount3', ['-u', '-z', mnt]);
  const exited = new Promise((r) => lazy!.once('exit', r));
  lazy!.kill('SIGKILL');
  await exited;
  await mountLazy();
  await app.restart();
}

before(async () => {
  if (skip) return;
  base = mkdtempSync('/tmp/lb-power-');
  backing = join(base, 'backing');
  mnt = join(base, 'mnt');
  for (const d of [base, backing, mnt]) {
    mkdirSync(d, { recursive: true });
    chmodSync(d, 0o755); // Dovecot's users traverse into data/
  }
  await mountLazy();
  dns = await new TestDns().start();
  const cert = testCert(['mx.remote.test']);
  sink = await new Sink(cert).start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1');
  app = await startAppliance({
    dataDir: join(mnt, 'data'),
    readyTimeoutMs: 180000,
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[outbound]\nport = ${sink.port}\nipv4_only = true\nretry_schedule = ["1s"]\ntls_ca_file = "${join(cert.dir, 'cert.pem')}"\n`,
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', PW]);
  await waitFor(async () => (await mx('warm-up')) === 250, 'Dovecot to know alice', 60000);
});

after(async () => {
  if (skip) return;
  await app?.stop();
  for (const pid of holders()) process.kill(pid, 'SIGKILL');
  if (mnt && mounted()) execFileSync('fusermount3', ['-u', '-z', mnt]);
  lazy?.kill('SIGKILL');
  app?.cleanup();
  await dns?.stop();
  await sink?.stop?.();
  if (base) rmSync(base, { recursive: true, force: true });
});

/** One MX transaction to alice (a 3 KB body); the DATA reply code, or 0 when the connection failed or died first. */
const mx = (subject: string) => mxTransaction(app.ports.mx, { to: 'alice@ours.test', subject, body: 'power loss body\r\n'.repeat(200), timeoutMs: 60000 });

/** One submission (465) to a remote recipient; the DATA reply code, or 0. */
const submit = (subject: string) => submitTransaction(app.ports.submissions, { ca: applianceCert(app), user: 'alice@ours.test', pass: PW, to: 'bob@remote.test', subject, timeoutMs: 60000 });

/** Alice's mail files as the disk has them (name:size), for the failure message. */
function maildirFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\/(new|cur|tmp)\//.test(p)) out.push(`${p.slice(backing.length)}:${statSync(p).size}`);
    }
  };
  try {
    walk(join(backing, 'data', 'mail'));
  } catch (err: any) {
    out.push(`(${err.code ?? err.message})`);
  }
  return out;
}

async function inboxSubjects(): Promise<string[]> {
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, tls: { ca: applianceCert(app), servername: app.hostname }, auth: { user: 'alice@ours.test', pass: PW }, logger: false });
  c.on('error', () => {});
  await c.connect();
  try {
    const lock = await c.getMailboxLock('INBOX');
    try {
      if ((c.mailbox as any).exists === 0) return [];
      const out: string[] = [];
      for await (const m of c.fetch('1:*', { envelope: true })) out.push(m.envelope?.subject ?? '');
      return out;
    } finally {
      lock.release();
    }
  } finally {
    await c.logout().catch(() => {});
  }
}

test('lazyfs itself: an unsynced write is gone after the power cut, a synced one stays (the model can fail)', { skip }, async () => {
  const dir = join(mnt, 'model-check');
  mkdirSync(dir, { recursive: true });
  execFileSync('/usr/bin/python3', ['-c', `import os
fd = os.open('${dir}/synced', os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b'kept'); os.fsync(fd); os.close(fd)
fd = os.open('${dir}/unsynced', os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b'lost'); os.close(fd)`]);
  assert.equal(readFileSync(join(dir, 'unsynced'), 'utf8'), 'lost', 'before the cut, readers see the write');
  await powerCut();
  assert.equal(readFileSync(join(mnt, 'model-check', 'synced'), 'utf8'), 'kept');
  assert.equal(readFileSync(join(mnt, 'model-check', 'unsynced'), 'utf8'), '', 'the unsynced contents are gone');
});

test('MX: the power goes while mail arrives on 3 sessions; every message answered 250 is in the mailbox afterwards', { skip }, async () => {
  const accepted: string[] = [];
  const codes: number[] = [];
  let cut: Promise<void> | null = null;
  let n = 0;
  const stream = async (s: number) => {
    // Until the cut, then on until 40 were tried; the first failure after the cut ends this sender.
    while ((!cut || n < 40) && n < 200) {
      const subject = `power mx ${s}-${n++}`;
      const code = await mx(subject);
      codes.push(code);
      if (code === 250) accepted.push(subject);
      if (accepted.length >= 12 && !cut) cut = powerCut();
      if (cut && code !== 250) break;
    }
  };
  await Promise.all([stream(1), stream(2), stream(3)]);
  await cut;
  assert.ok(cut, `the power cut happened (replies: ${codes.join(' ')})`);
  assert.ok(accepted.length >= 12, `${accepted.length} accepted before the cut`);
  let have: string[] = [];
  let imapError = '';
  await waitFor(async () => {
    try {
      have = await inboxSubjects();
      imapError = '';
    } catch (err: any) {
      imapError = String(err?.responseText ?? err?.message ?? err);
    }
    return accepted.every((s) => have.includes(s));
  }, 'every accepted message in INBOX', 60000).catch(() => {});
  assert.equal(imapError, '', `INBOX can be read after the power cut; the appliance's last log lines:\n${app.logs.slice(-12).join('\n')}`);
  const lost = accepted.filter((s) => !have.includes(s));
  assert.deepEqual(lost, [], `answered 250 but lost by the power cut (${lost.length} of ${accepted.length}; mail files on disk: ${maildirFiles().join(', ')})`);
  // And the appliance still takes mail on the same disk.
  assert.equal(await mx('power mx after restart'), 250);
});

test('submission → queue: 10 messages queued for a remote MX that defers, the power goes, the queue delivers all 10 after the restart', { skip }, async () => {
  sink.rcpt.set('bob@remote.test', 'temp');
  const subjects = Array.from({ length: 10 }, (_, i) => `power queue ${i}`);
  for (const s of subjects) assert.equal(await submit(s), 250, `${s} queued`);
  await powerCut();
  sink.rcpt.set('bob@remote.test', 'ok');
  const arrived = () => subjects.filter((s) => sink.received.some((r) => r.data.toString().includes(`Subject: ${s}\r\n`)));
  await waitFor(() => arrived().length === subjects.length, 'all 10 at the remote MX', 90000).catch(() => {});
  assert.deepEqual(subjects.filter((s) => !arrived().includes(s)), [], 'queued (250) but never delivered after the power cut');
  assert.ok(existsSync(join(mnt, 'data', 'letterbox.db')));
});
