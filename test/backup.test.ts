// Backup → restore round trip on a real appliance: the backup is taken while it runs; restore
// refuses a running instance, refuses a tampered archive, moves existing data aside, restores into a
// fresh data dir, and afterwards the mailbox still logs in over IMAP and reads its mail.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { deliverLmtp } from '../src/delivery/lmtp.ts';

const run = promisify(execFile);
const PW = 'backup test password 1';
let app: Appliance;
let out: string;
let archive: string;
let dkimFile: string;
let dkimSum: string;
let masterSecret: string;

const sum = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

async function readInbox(): Promise<string[]> {
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, tls: { ca: applianceCert(app), servername: 'localhost' }, auth: { user: 'alice@example.test', pass: PW }, logger: false });
  await c.connect();
  const subjects: string[] = [];
  const lock = await c.getMailboxLock('INBOX');
  try {
    for await (const m of c.fetch('1:*', { envelope: true })) subjects.push(m.envelope?.subject ?? '');
  } finally {
    lock.release();
  }
  await c.logout();
  return subjects;
}

before(async () => {
  out = mkdtempSync(join(tmpdir(), 'lbb-'));
  app = await startAppliance();
  assert.equal((await app.cli(['domain', 'add', 'example.test'])).code, 0);
  assert.equal((await app.cli(['mailbox', 'add', 'alice@example.test', '--password', PW])).code, 0);
  const msg = Buffer.from('From: bob@elsewhere.test\r\nTo: alice@example.test\r\nSubject: kept across restore\r\nMessage-ID: <b1@elsewhere.test>\r\n\r\nbody\r\n');
  // Dovecot picks up a new users-file entry within about a second.
  let res;
  for (let i = 0; i < 40; i++) {
    res = await deliverLmtp(join(app.dataDir, 'dovecot/run/lmtp'), { from: 'bob@elsewhere.test', to: ['alice@example.test'] }, msg, { lhlo: 'test' });
    if (res[0].status === 'delivered') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(res![0].status, 'delivered', JSON.stringify(res));
  const dir = join(app.dataDir, 'dkim', 'example.test');
  dkimFile = join(dir, readdirSync(dir)[0]);
  dkimSum = sum(dkimFile);
  masterSecret = readFileSync(join(app.dataDir, 'secrets', 'dovecot-master'), 'utf8');
});
after(() => {
  app?.cleanup();
  rmSync(out, { recursive: true, force: true });
});

test('backup of a running instance: one private .tar.gz with a manifest of checksums', async () => {
  const r = await app.cliJson(['backup', '--to', join(out, 'b')]);
  archive = r.file;
  assert.ok(existsSync(archive));
  assert.match(archive, /letterbox-backup-mail\.letterbox\.test-.*\.tar\.gz$/);
  assert.equal(statSync(archive).mode & 0o777, 0o600);
  const { stdout } = await run('tar', ['-tzf', archive]);
  const names = stdout.split('\n');
  for (const want of ['manifest.json', 'data/letterbox.db', 'data/secrets/dovecot-master', 'config/letterbox.toml', 'certs/cert.pem', 'certs/key.pem']) {
    assert.ok(names.some((n) => n.replace(/^\.\//, '') === want), `${want} missing from the archive`);
  }
  assert.ok(names.some((n) => n.startsWith('data/dkim/example.test/')), 'DKIM keys missing');
  assert.ok(names.some((n) => /^data\/mail\/example\.test\/alice\/Maildir\/(new|cur)\/.+/.test(n)), 'the message is missing');
  assert.ok(!names.some((n) => n.startsWith('data/dovecot/run')), 'runtime sockets must not be archived');
  const ex = mkdtempSync(join(out, 'x-'));
  await run('tar', ['-xzf', archive, '-C', ex, 'manifest.json']);
  const m = JSON.parse(readFileSync(join(ex, 'manifest.json'), 'utf8'));
  assert.equal(m.format, 'letterbox-backup');
  assert.equal(m.hostname, 'mail.letterbox.test');
  assert.ok(m.migrations.length > 0);
  assert.ok(m.files.every((f: any) => /^[0-9a-f]{64}$/.test(f.sha256)));
  // DEST may also be given as an argument.
  const r2 = await app.cliJson(['backup', join(out, 'b2')]);
  assert.ok(r2.file.startsWith(join(out, 'b2') + '/'));
});

test('restore refuses to overwrite a running instance without --force', async () => {
  const r = await app.cli(['restore', archive]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Letterbox is running on .*stop it first.*--force/);
  assert.ok(existsSync(join(app.dataDir, 'letterbox.db')));
});

test('a tampered archive is refused before anything is touched', async () => {
  assert.equal(await app.stop(), 0);
  const ex = mkdtempSync(join(out, 't-'));
  await run('tar', ['-xzpf', archive, '-C', ex]);
  writeFileSync(join(ex, 'data/secrets/dovecot-master'), 'tampered\n');
  const bad = join(out, 'tampered.tar.gz');
  await run('tar', ['-C', ex, '-czf', bad, 'manifest.json', 'data', 'config', 'certs']);
  const before = readdirSync(app.dataDir).sort();
  const r = await app.cli(['restore', bad]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /data\/secrets\/dovecot-master does not match its checksum; nothing was restored/);
  assert.deepEqual(readdirSync(app.dataDir).sort(), before);
  const junk = join(out, 'junk.tar.gz');
  writeFileSync(junk, 'not a tarball');
  const j = await app.cli(['restore', junk]);
  assert.equal(j.code, 2);
  assert.match(j.stderr, /not a usable Letterbox backup: tar could not extract it/);
});

test('restore over existing data moves it aside; into a fresh data dir the mailbox logs in and reads its mail', { timeout: 120000 }, async () => {
  // Over existing data (stopped instance): the old contents are kept aside.
  const r1 = await app.cliJson(['restore', archive]);
  assert.ok(r1.actions.some((a: string) => /moved the previous contents/.test(a)), JSON.stringify(r1.actions));
  assert.ok(readdirSync(app.dataDir).some((n) => n.startsWith('.before-restore-')));
  // A fresh, empty data dir (a new machine).
  rmSync(app.dataDir, { recursive: true, force: true });
  mkdirSync(app.dataDir, { mode: 0o755 });
  const r2 = await app.cliJson(['restore', archive]);
  assert.equal(r2.restored, true);
  assert.equal(sum(dkimFile), dkimSum, 'DKIM key restored byte for byte');
  assert.equal(readFileSync(join(app.dataDir, 'secrets', 'dovecot-master'), 'utf8'), masterSecret);
  assert.equal(statSync(join(app.dataDir, 'secrets', 'dovecot-master')).mode & 0o777, 0o600);
  assert.ok(existsSync(join(app.dataDir, 'restored-config.toml')));
  // --with-config also puts the backed-up config in place, keeping the current one aside.
  const original = readFileSync(app.configPath, 'utf8');
  writeFileSync(app.configPath, original + '\n# edited after the backup\n');
  const r3 = await app.cliJson(['restore', archive, '--with-config']);
  assert.ok(r3.actions.some((a: string) => /restored the config to/.test(a)), JSON.stringify(r3.actions));
  assert.equal(readFileSync(app.configPath, 'utf8'), original);
  assert.ok(readdirSync(app.dir).some((n) => n.startsWith('letterbox.toml.before-restore-')));
  await app.restart();
  const domains = await app.cliJson(['domain', 'list']);
  assert.deepEqual(domains.map((d: any) => d.name), ['example.test']);
  assert.deepEqual(await readInbox(), ['kept across restore']);
});
