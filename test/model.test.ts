import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readdirSync, statSync, readFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAddress, normalizeDomain, splitDetail } from '../src/util/address.ts';
import { openDatabase, loadMigrations, pendingMigrations } from '../src/db/index.ts';
import { renderUsersFile, writeDovecotFile } from '../src/dovecot/users.ts';
import { silentLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { parseConfig, developmentDefaults } from '../src/config/load.ts';
import { addDomain, removeDomain, listDomains } from '../src/services/domains.ts';
import { addMailbox, updateMailbox, listMailboxes, removeMailbox } from '../src/services/mailboxes.ts';
import { addAlias } from '../src/services/aliases.ts';
import { verifyPassword, generatePassword } from '../src/auth/passwords.ts';
import type { ServiceContext } from '../src/services/context.ts';

const opts = { log: silentLogger(), clock: systemClock };

test('addresses: IDN domains become lower-case A-labels, local parts lower-case', () => {
  assert.equal(normalizeDomain('Bücher.Example'), 'xn--bcher-kva.example');
  assert.equal(normalizeDomain('EXAMPLE.com.'), 'example.com');
  assert.deepEqual(parseAddress(' Alice@Example.COM '), { local: 'alice', domain: 'example.com', address: 'alice@example.com' });
  assert.equal(parseAddress('*@example.com', { allowWildcard: true }).address, '*@example.com');
  for (const bad of ['alice', '@example.com', 'alice@', 'a..b@example.com', '.a@example.com', 'a b@example.com', 'a@localhost', 'a@exa_mple.com', 'a@-x.com', 'a@1.2.3.4', `${'x'.repeat(65)}@example.com`, '*@example.com']) {
    assert.throws(() => parseAddress(bad), { code: 'validation_error' }, bad);
  }
  assert.deepEqual(splitDetail(parseAddress('bob+lists@example.com')), { base: parseAddress('bob@example.com'), detail: 'lists' });
  assert.equal(splitDetail(parseAddress('bob@example.com')).detail, null);
});

test('migrations: from empty, recorded, re-run is a no-op, backup before migrating an existing database', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lbmig-'));
  const file = join(dir, 'db.sqlite');
  const migs = loadMigrations();
  assert.ok(migs.length >= 2 && migs[0].id === 1);
  let db = openDatabase(file, opts);
  const applied = db.prepare('SELECT id FROM schema_migrations ORDER BY id').pluck().all();
  assert.deepEqual(applied, migs.map((m) => m.id));
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  db.prepare("INSERT INTO domains (id, name, unicode_name, created_at) VALUES ('d1', 'keep.test', 'keep.test', 'now')").run();
  db.close();
  db = openDatabase(file, opts); // re-run: nothing pending, no backup
  assert.equal(pendingMigrations(db, migs).length, 0);
  db.close();
  assert.equal(readdirSync(dir).filter((f) => f.includes('.bak')).length, 0);
  // A new migration: the existing data is backed up first, then kept.
  const mdir = join(dir, 'migrations');
  mkdirSync(mdir);
  for (const f of readdirSync(join(import.meta.dirname, '..', 'src', 'db', 'migrations'))) copyFileSync(join(import.meta.dirname, '..', 'src', 'db', 'migrations', f), join(mdir, f));
  writeFileSync(join(mdir, '9999_extra.sql'), 'ALTER TABLE domains ADD COLUMN note TEXT;');
  db = openDatabase(file, { ...opts, migrations: loadMigrations(mdir) });
  assert.equal(db.prepare("SELECT name FROM domains WHERE id = 'd1'").pluck().get(), 'keep.test');
  db.close();
  const backups = readdirSync(dir).filter((f) => f.includes('before-migration-9999'));
  assert.equal(backups.length, 1);
  const bdb = openDatabase(join(dir, backups[0]), opts);
  assert.equal(bdb.prepare("SELECT name FROM domains WHERE id = 'd1'").pluck().get(), 'keep.test');
  bdb.close();
});

test('users file: Dovecot passwd-file lines with quota and nologin; rewrites always get a later whole-second mtime', () => {
  const text = renderUsersFile([
    { address: 'b@x.test', passwordHash: '{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$abc$def', quotaBytes: 1024, disabled: true },
    { address: 'a@x.test', passwordHash: '{ARGON2ID}$h', quotaBytes: 0, disabled: false },
  ]);
  const lines = text.trim().split('\n').slice(1);
  assert.equal(lines[0], 'a@x.test:{ARGON2ID}$h::::::');
  assert.equal(lines[1], 'b@x.test:{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$abc$def::::::userdb_quota_rule=*:storage=1024B nologin reason=mailbox_disabled');
  assert.throws(() => renderUsersFile([{ address: 'a:b@x', passwordHash: 'h', quotaBytes: 0, disabled: false }]));
  const dir = mkdtempSync(join(tmpdir(), 'lbusers-'));
  const f = join(dir, 'users');
  assert.equal(writeDovecotFile(f, 'one\n'), true);
  const m1 = Math.floor(statSync(f).mtimeMs / 1000);
  assert.equal(writeDovecotFile(f, 'one\n'), false, 'unchanged content is not rewritten');
  assert.equal(writeDovecotFile(f, 'two\n'), true); // same size, same second: mtime must still move
  const m2 = Math.floor(statSync(f).mtimeMs / 1000);
  assert.ok(m2 > m1, `mtime ${m2} > ${m1}`);
  assert.equal(statSync(f).mode & 0o777, 0o640);
  assert.equal(readFileSync(f, 'utf8'), 'two\n');
});

test('service layer: domains, mailboxes, aliases; the users file follows every change', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lbsvc-'));
  const config = parseConfig({ ...developmentDefaults(dir), data_dir: join(dir, 'data') }, 'test', dir);
  const db = openDatabase(join(dir, 'data', 'letterbox.db'), opts);
  const ctx: ServiceContext = { db, config, log: silentLogger(), clock: systemClock };
  const usersFile = () => readFileSync(join(dir, 'data', 'dovecot', 'users'), 'utf8');
  const d = await addDomain(ctx, 'Bücher.Example');
  assert.equal(d.name, 'xn--bcher-kva.example');
  assert.equal(d.unicodeName, 'bücher.example');
  assert.deepEqual(d.dkim.map((k) => k.algorithm).sort(), ['ed25519', 'rsa']);
  for (const k of d.dkim) assert.equal(statSync(k.privateKeyPath).mode & 0o777, 0o600);
  await assert.rejects(addDomain(ctx, 'bücher.example'), { code: 'conflict' });
  const { mailbox, generatedPassword } = await addMailbox(ctx, { address: 'Alice@Bücher.example', quota: '1G', tags: ['staff'] });
  assert.equal(mailbox.address, 'alice@xn--bcher-kva.example');
  assert.equal(mailbox.quotaBytes, 1024 ** 3);
  assert.ok(generatedPassword && generatedPassword.length === 20);
  const hash = db.prepare('SELECT password_hash FROM mailboxes WHERE id = ?').pluck().get(mailbox.id) as string;
  assert.ok(await verifyPassword(hash, generatedPassword!));
  assert.ok(!hash.includes(generatedPassword!));
  assert.match(usersFile(), /^alice@xn--bcher-kva\.example:\{ARGON2ID\}\$argon2id\$/m);
  await assert.rejects(addMailbox(ctx, { address: 'short@xn--bcher-kva.example', password: 'tooshort' }), { code: 'validation_error' });
  await assert.rejects(addMailbox(ctx, { address: 'bob+x@xn--bcher-kva.example' }), { code: 'validation_error' });
  await assert.rejects(addMailbox(ctx, { address: 'bob@unknown.example' }), { code: 'not_found' });
  await assert.rejects(addMailbox(ctx, { address: 'ALICE@xn--bcher-kva.example' }), { code: 'conflict' });
  await updateMailbox(ctx, mailbox.address, { disabled: true });
  assert.match(usersFile(), /nologin/);
  assert.equal(listMailboxes(ctx, { status: 'disabled' }).length, 1);
  assert.equal(listMailboxes(ctx, { tags: ['staff', 'other'] }).length, 0);
  assert.equal(listMailboxes(ctx, { tags: ['staff'] }).length, 1);
  const a = addAlias(ctx, '*@bücher.example', ['alice@bücher.example']);
  assert.equal(a.catchAll, true);
  assert.throws(() => addAlias(ctx, 'alice@bücher.example', ['x@y.example']), { code: 'conflict' });
  assert.throws(() => removeDomain(ctx, d.name), { code: 'conflict' });
  removeDomain(ctx, d.name, { force: true });
  assert.equal(listDomains(ctx).length, 0);
  assert.doesNotMatch(usersFile(), /alice/);
  assert.throws(() => removeMailbox(ctx, mailbox.id), { code: 'not_found' });
  // Re-adding in the same month picks a fresh selector (the old key file stays).
  const again = await addDomain(ctx, 'bücher.example');
  assert.ok(again.dkim.every((k) => !d.dkim.some((o) => o.selector === k.selector)));
  db.close();
  assert.notEqual(generatePassword(), generatePassword());
});
