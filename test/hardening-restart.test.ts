// Issue 16 item 5: an Idempotency-Key claimed by a request that died with the process (kill -9)
// must not stay "in progress" for 24 hours. At the next start the claim is settled from the
// outbound queue: replayed when the message was accepted, released when it was not.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { call, createKey, waitFor } from './helpers/mailapi.ts';

let app: Appliance;
let dns: TestDns;
let key: string;

before(async () => {
  dns = await new TestDns().start();
  app = await startAppliance({ extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n` });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'ann@ours.test', '--password', 'ann password 123456']);
  await app.cliJson(['mailbox', 'add', 'bea@ours.test', '--password', 'bea password 123456']);
  key = await createKey(app, '*');
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/bea@ours.test/folders')).status === 200, 'Dovecot to know the mailboxes');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

const body = (n: string) => ({ to: 'bea@ours.test', subject: `idem ${n}`, text: 'hello' });

test('item 5: claims left in progress by a killed process are settled at the next start (replayed if sent, released if not)', async () => {
  // A send that went through: its claim is put back to "in progress" below, as if the process had
  // died after the message was accepted but before the response was recorded.
  const sent = await call(app, key, 'POST', '/mailboxes/ann@ours.test/send', body('sent'), { 'Idempotency-Key': 'k-sent' });
  assert.equal(sent.status, 200, JSON.stringify(sent.json));
  const messageId = sent.json.data.messageId;
  await app.kill('SIGKILL');
  const db = new Database(join(app.dataDir, 'letterbox.db'));
  const cols = (db.prepare('PRAGMA table_info(api_idempotency)').all() as { name: string }[]).map((c) => c.name);
  db.prepare('UPDATE api_idempotency SET status = NULL, response = NULL WHERE idem_key = ?').run('k-sent');
  // A request that died before anything was accepted: its claim names a Message-ID nothing has.
  const keyId = (db.prepare('SELECT key_id FROM api_idempotency WHERE idem_key = ?').get('k-sent') as { key_id: string }).key_id;
  const hash = (db.prepare('SELECT request_hash FROM api_idempotency WHERE idem_key = ?').get('k-sent') as { request_hash: string }).request_hash;
  if (cols.includes('message_id')) {
    db.prepare('INSERT INTO api_idempotency (key_id, idem_key, request_hash, created_at, message_id) VALUES (?, ?, ?, ?, ?)').run(keyId, 'k-lost', hash, Date.now(), '<never-sent@ours.test>');
  } else {
    db.prepare('INSERT INTO api_idempotency (key_id, idem_key, request_hash, created_at) VALUES (?, ?, ?, ?)').run(keyId, 'k-lost', hash, Date.now());
  }
  const queued = (db.prepare('SELECT count(*) AS n FROM outbound_queue').get() as { n: number }).n;
  db.close();
  await app.restart();

  // Accepted before the crash: the same key and body answer the first response, nothing is sent again.
  const again = await call(app, key, 'POST', '/mailboxes/ann@ours.test/send', body('sent'), { 'Idempotency-Key': 'k-sent' });
  assert.equal(again.status, 200, JSON.stringify(again.json));
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.equal(again.json.data.messageId, messageId);
  assert.deepEqual(again.json.data.accepted.map((a: any) => a.recipient), ['bea@ours.test']);
  const db2 = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  assert.equal((db2.prepare('SELECT count(*) AS n FROM outbound_queue').get() as { n: number }).n, queued, 'nothing sent twice');
  db2.close();

  // Never accepted: the key is free again (not a 409 "in progress" for 24 hours), the send goes out.
  const lost = await call(app, key, 'POST', '/mailboxes/ann@ours.test/send', body('sent'), { 'Idempotency-Key': 'k-lost' });
  assert.equal(lost.status, 200, JSON.stringify(lost.json));
  assert.equal(lost.headers.get('idempotent-replayed'), null);
  assert.notEqual(lost.json.data.messageId, messageId);
  assert.ok(app.logs.some((l) => l.includes('idempotency claims')), 'the start logs what it settled');
});
