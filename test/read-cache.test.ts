// The API's read caches (src/db/read-cache.ts) must never serve what the database no longer says:
// unit tests on a real SQLite file with a second connection standing in for the CLI, then the API
// of a running appliance read before and after CLI changes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ReadCache, dbGeneration } from '../src/db/read-cache.ts';
import { withState, type DB } from '../src/db/index.ts';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { call, createKey } from './helpers/mailapi.ts';

const dir = mkdtempSync(join(tmpdir(), 'lb-read-cache-'));
let app: Appliance | undefined;
after(async () => {
  await app?.stop();
  app?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

function open(file: string): DB {
  const db = withState(new Database(file));
  db.pragma('journal_mode = WAL');
  return db;
}

test('ReadCache: hits while unchanged; a commit by another connection shows from the next turn; own writes at once', async () => {
  const file = join(dir, 'a.db');
  const server = open(file);
  const cli = open(file);
  server.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)');
  server.prepare("INSERT INTO t VALUES ('a', 'one')").run();
  const cache = new ReadCache<{ v: string }>(server);
  let loads = 0;
  const read = () =>
    cache.get('a', () => {
      loads++;
      return server.prepare('SELECT v FROM t WHERE k = ?').get('a') as { v: string } | undefined;
    })?.v;

  assert.equal(read(), 'one');
  assert.equal(read(), 'one');
  assert.equal(loads, 1, 'the second read is a hit');
  await nextTurn();
  assert.equal(read(), 'one');
  assert.equal(loads, 1, 'still a hit in a later turn when nothing changed');

  // Another process (the CLI) commits: seen from the next turn of the event loop on.
  const g0 = dbGeneration(server);
  cli.prepare("UPDATE t SET v = 'two' WHERE k = 'a'").run();
  await nextTurn();
  assert.notEqual(dbGeneration(server), g0);
  assert.equal(read(), 'two');
  assert.equal(loads, 2);

  // This connection's own write: seen at once, in the same turn.
  server.prepare("UPDATE t SET v = 'three' WHERE k = 'a'").run();
  assert.equal(read(), 'three');
  // A delete by the other connection: the row is gone, and "not found" is not cached.
  cli.prepare("DELETE FROM t WHERE k = 'a'").run();
  await nextTurn();
  assert.equal(read(), undefined);
  cli.prepare("INSERT INTO t VALUES ('a', 'four')").run();
  await nextTurn();
  assert.equal(read(), 'four');
  server.close();
  cli.close();
});

test('ReadCache: bounded (the oldest quarter dropped when full, the rest kept)', () => {
  const server = open(join(dir, 'b.db'));
  const cache = new ReadCache<number>(server, 8);
  let loads = 0;
  const get = (k: string) => cache.get(k, () => ++loads);
  const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
  for (const k of keys) get(k);
  assert.equal(loads, 8);
  get('a');
  assert.equal(loads, 8, 'hit');
  get('i'); // full: a and b (the two first stored) dropped, then i stored
  assert.equal(loads, 9);
  for (const k of ['c', 'd', 'e', 'f', 'g', 'h', 'i']) get(k);
  assert.equal(loads, 9, 'the newer three quarters and i are still cached');
  get('a');
  get('b');
  assert.equal(loads, 11, 'a and b were dropped and are loaded again');
  server.close();
});

test('API: mailbox reads reflect CLI changes at the next request (get, list; key revocation: test/api.test.ts)', async () => {
  app = await startAppliance();
  await app.cliJson(['domain', 'add', 'cache.test']);
  await app.cliJson(['mailbox', 'add', 'ann@cache.test', '--password', 'ann password 123456']);
  await app.cliJson(['mailbox', 'add', 'ben@cache.test', '--password', 'ben password 123456']);
  const key = await createKey(app, '*');
  const get = async () => (await call(app!, key, 'GET', '/mailboxes/ann@cache.test')).json?.data;
  const list = async () => ((await call(app!, key, 'GET', '/mailboxes?domain=cache.test')).json?.data ?? []).map((m: any) => `${m.address}:${m.disabled}`);

  assert.equal((await get()).disabled, false);
  assert.deepEqual(await list(), ['ann@cache.test:false', 'ben@cache.test:false']);
  assert.equal((await get()).disabled, false, 'read again (served from the cache)');

  await app.cli(['mailbox', 'set', 'ann@cache.test', '--disable']);
  assert.equal((await get()).disabled, true, 'disabled by the CLI: the next read says so');
  assert.deepEqual(await list(), ['ann@cache.test:true', 'ben@cache.test:false']);

  assert.equal((await app.cli(['mailbox', 'rm', 'ben@cache.test'])).code, 0);
  assert.equal((await call(app, key, 'GET', '/mailboxes/ben@cache.test')).status, 404);
  assert.deepEqual(await list(), ['ann@cache.test:true']);

  // A change made through the API itself is seen at once too.
  assert.equal((await call(app, key, 'PATCH', '/mailboxes/ann@cache.test', { disabled: false })).status, 200);
  assert.equal((await get()).disabled, false);
});
