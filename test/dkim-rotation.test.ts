// DKIM key rotation end to end (issue #18 item 4) against a real appliance, a real DNS server on
// loopback and a remote MX on loopback: rotate → the new records are printed but mail keeps its old
// signatures while they are unpublished → published and verified → signing switches (messages
// verify with python3-dkim against the new selectors) → the old selectors stay published for the
// grace period → then their private keys are deleted and the CLI says the records can go. Events
// (webhook types) at each step; the API's routes; the daily job (grace ends, automatic rotation).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert } from './helpers/sink.ts';
import { call, createKey, waitFor } from './helpers/mailapi.ts';
import { loadConfig } from '../src/config/load.ts';
import { openDatabase, dbPath } from '../src/db/index.ts';
import { createLogger } from '../src/log.ts';
import { dkimDaily } from '../src/dkim/job.ts';
import { rotationStatus } from '../src/dkim/rotate.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const D = 'ours.test';
let app: Appliance;
let dns: TestDns;
let sink: Sink;
let certDir: string;
let key: string;
/** Every DKIM record ever published in the test zone (what dkimpy may look up). */
const published: Record<string, string> = {};

function publish(records: { type: string; name: string; value: string; priority?: number; purpose: string }[]) {
  for (const r of records) {
    if (r.type === 'MX') dns.remove(r.name, 'MX').mx(r.name, r.value, r.priority);
    else if (r.type === 'TXT') {
      dns.remove(r.name, 'TXT').txt(r.name, r.value);
      if (r.purpose === 'dkim') published[r.name] = r.value;
    }
  }
}

before(async () => {
  dns = await new TestDns().start();
  const cert = testCert(['mx.remote.test']);
  certDir = cert.dir;
  sink = await new Sink(cert).start();
  dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1').a('mail.letterbox.test', '127.0.0.1');
  app = await startAppliance({
    extraToml: `[dns]
servers = ["${dns.server}"]
timeout_ms = 1000
[outbound]
port = ${sink.port}
ipv4_only = true
retry_schedule = ["1h"]
tls_ca_file = "${join(certDir, 'cert.pem')}"
[dkim]
rotation_grace = "3s"
`,
  });
  await app.cliJson(['domain', 'add', D]);
  await app.cliJson(['mailbox', 'add', `alice@${D}`, '--password', 'alice password 12345']);
  publish((await app.cliJson(['dns', D])).records);
  key = await createKey(app, '*');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

/** Sends one message to the remote MX and returns the selectors of its signatures, each verified by python3-dkim. */
async function sendAndVerify(subject: string): Promise<{ s: string; a: string; ok: boolean }[]> {
  const r = await call(app, key, 'POST', `/mailboxes/alice@${D}/send`, { to: 'carol@remote.test', subject, text: 'signed?' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const got = await waitFor(() => sink.received.find((m) => m.data.includes(`Subject: ${subject}`)), `"${subject}" at the remote MX`);
  return dkimpy(got.data);
}

/** python3-dkim's verdict on each signature of `message`, against the records published so far. */
function dkimpy(message: Buffer): { s: string; a: string; ok: boolean }[] {
  const dir = mkdtempSync(join(tmpdir(), 'lbt-dkim-'));
  try {
    writeFileSync(join(dir, 'msg.eml'), message);
    writeFileSync(join(dir, 'records.json'), JSON.stringify(published));
    const out = JSON.parse(execFileSync('/usr/bin/python3', [join(HERE, 'helpers', 'dkimverify.py'), join(dir, 'msg.eml'), join(dir, 'records.json')], { encoding: 'utf8' }));
    return out.map((x: any) => ({ s: x.s, a: x.a, ok: x.ok }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function events(type: string): any[] {
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  try {
    // Each event's data, with the time it was recorded as _at.
    return (db.prepare('SELECT data, created_at FROM events WHERE type = ? ORDER BY id').all(type) as { data: string; created_at: string }[]).map((r) => ({ ...JSON.parse(r.data), _at: r.created_at }));
  } finally {
    db.close();
  }
}

test('rotation end to end: publish → switch → old selectors kept for the grace period → removed', async () => {
  const before = await app.cliJson(['dkim', 'status', D]);
  const old = before.keys.filter((k: any) => k.state === 'active').map((k: any) => k.selector);
  assert.equal(old.length, 2);
  const sigs0 = await sendAndVerify('before rotation');
  assert.deepEqual(sigs0.map((x) => [x.s, x.ok]).sort(), old.map((s: string) => [s, true]).sort(), 'signed with the original keys, verified by dkimpy');

  // Rotate: two new selectors, printed with their records; nothing signs with them yet.
  const text = await app.cli(['dkim', 'rotate', D]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /Publish these records \(keep the current ones\)/);
  const st1 = await app.cliJson(['dkim', 'status', D]);
  const fresh = st1.keys.filter((k: any) => k.state === 'pending');
  assert.deepEqual(fresh.map((k: any) => k.algorithm).sort(), ['ed25519', 'rsa']);
  for (const k of fresh) {
    assert.ok(!old.includes(k.selector), 'new selectors');
    assert.ok(text.stdout.includes(k.record.name + '.'), `the rotate output names ${k.record.name}`);
  }
  assert.match(st1.advice[0], /publish .* then run 'letterbox domain verify ours\.test'/);
  const again = await app.cli(['dkim', 'rotate', D]);
  assert.equal(again.code, 2, 'a second rotation while one waits: conflict');
  assert.match(again.stderr, /waiting for its records/);
  assert.equal(events('dkim.rotation_started').length, 1);
  // `letterbox dns` lists the pending selectors with the active ones.
  const dnsNow = (await app.cliJson(['dns', D])).records.filter((r: any) => r.purpose === 'dkim').map((r: any) => r.name.split('.')[0]);
  assert.deepEqual(dnsNow.sort(), [...old, ...fresh.map((k: any) => k.selector)].sort());

  // Not yet published: verify does not switch, and the domain still verifies (the new keys are not required yet).
  let v = await app.cliJson(['domain', 'verify', D]);
  assert.equal(v.ok, true, JSON.stringify(v.records.filter((r: any) => !r.ok)));
  assert.equal(v.rotation, undefined);
  const pendingChecks = v.records.filter((r: any) => fresh.some((k: any) => r.name === k.record.name));
  assert.deepEqual(pendingChecks.map((r: any) => [r.ok, r.required]), [[false, false], [false, false]]);
  assert.match(pendingChecks[0].problem, /signing switches to it once it is published/);
  const sigs1 = await sendAndVerify('rotation pending');
  assert.deepEqual(sigs1.map((x) => x.s).sort(), [...old].sort(), 'still the old selectors');
  assert.ok(sigs1.every((x) => x.ok));

  // Only one of the two published: still no switch.
  publish([fresh[0].record]);
  v = await app.cliJson(['domain', 'verify', D]);
  assert.equal(v.rotation, undefined);
  assert.equal((await app.cliJson(['dkim', 'status', D])).keys.filter((k: any) => k.state === 'pending').length, 2);

  // Both published: the verification switches signing to them.
  publish([fresh[1].record]);
  v = await app.cliJson(['domain', 'verify', D]);
  assert.deepEqual(v.rotation.activated.sort(), fresh.map((k: any) => k.selector).sort());
  assert.deepEqual(v.rotation.retiring.sort(), [...old].sort());
  const st2 = await app.cliJson(['dkim', 'status', D]);
  assert.deepEqual(st2.keys.filter((k: any) => k.state === 'active').map((k: any) => k.selector).sort(), fresh.map((k: any) => k.selector).sort());
  assert.deepEqual(st2.keys.filter((k: any) => k.state === 'retiring').map((k: any) => k.selector).sort(), [...old].sort());
  assert.ok(st2.advice.some((a: string) => /keep .* published until/.test(a)));
  const rotated = events('dkim.rotated');
  assert.equal(rotated.length, 1);
  // The grace period (dkim.rotation_grace = 3s) runs from the switch: graceUntil is 3 s after the
  // event was recorded (never compared with the test's own clock, which a loaded machine delays).
  const graceMs = Date.parse(rotated[0].graceUntil) - Date.parse(rotated[0]._at);
  assert.ok(graceMs > 2000 && graceMs <= 3000, `graceUntil is the switch + 3 s (${graceMs} ms)`);

  const sigs2 = await sendAndVerify('after the switch');
  assert.deepEqual(sigs2.map((x) => x.s).sort(), fresh.map((k: any) => k.selector).sort(), 'signed with the new selectors');
  assert.ok(sigs2.every((x) => x.ok), `dkimpy verifies both new signatures: ${JSON.stringify(sigs2)}`);
  assert.deepEqual(sigs2.map((x) => x.a).sort(), ['ed25519-sha256', 'rsa-sha256']);
  // The old selectors are still listed for publication during the grace period; their keys still exist.
  const dnsGrace = (await app.cliJson(['dns', D])).records.filter((r: any) => r.purpose === 'dkim').map((r: any) => r.name.split('.')[0]);
  assert.deepEqual(dnsGrace.sort(), [...old, ...fresh.map((k: any) => k.selector)].sort());
  const oldPaths = old.map((s: string) => join(app.dataDir, 'dkim', D, `${s}.pem`));
  assert.ok(oldPaths.every((p: string) => existsSync(p)));
  // A message signed before the switch still verifies during the grace period (its selector is published).
  const stillOk = dkimpy(sink.received.find((m) => m.data.includes('Subject: rotation pending'))!.data);
  assert.ok(stillOk.length === 2 && stillOk.every((x) => x.ok));

  // Grace over (3 s here): the next verification deletes the old private keys; the CLI says the records can go.
  await sleep(3100);
  v = await app.cliJson(['domain', 'verify', D]);
  assert.deepEqual(v.rotation.removed.sort(), [...old].sort());
  assert.ok(oldPaths.every((p: string) => !existsSync(p)), 'old private keys deleted');
  const st3 = await app.cliJson(['dkim', 'status', D]);
  assert.deepEqual(st3.keys.filter((k: any) => k.state === 'removed').map((k: any) => k.selector).sort(), [...old].sort());
  const st3text = await app.cli(['dkim', 'status', D]);
  assert.match(st3text.stdout, /are no longer used: you can remove them from DNS/);
  const dnsAfter = (await app.cliJson(['dns', D])).records.filter((r: any) => r.purpose === 'dkim').map((r: any) => r.name.split('.')[0]);
  assert.deepEqual(dnsAfter.sort(), fresh.map((k: any) => k.selector).sort(), 'letterbox dns no longer lists them');
  const retired = events('dkim.retired');
  assert.equal(retired.length, 1);
  assert.deepEqual(retired[0].removeFromDns.sort(), old.map((s: string) => `${s}._domainkey.${D}`).sort());
  // Mail keeps flowing, signed with the new keys.
  const sigs3 = await sendAndVerify('after the grace period');
  assert.ok(sigs3.length === 2 && sigs3.every((x) => x.ok && !old.includes(x.s)));
});

test('API: GET /domains/:id/dkim and POST /domains/:id/dkim/rotate (201, then 409 while waiting)', async () => {
  await app.cliJson(['domain', 'add', 'api.test']);
  const r = await call(app, key, 'POST', '/domains/api.test/dkim/rotate');
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.json.data.records.length, 2);
  assert.match(r.json.data.records[0].value, /^v=DKIM1; k=(rsa|ed25519); p=/);
  const again = await call(app, key, 'POST', '/domains/api.test/dkim/rotate');
  assert.equal(again.status, 409);
  const s = await call(app, key, 'GET', '/domains/api.test/dkim');
  assert.equal(s.status, 200);
  assert.deepEqual(s.json.data.keys.map((k: any) => k.state).sort(), ['active', 'active', 'pending', 'pending']);
  const d = await call(app, key, 'GET', '/domains/api.test');
  assert.deepEqual(d.json.data.dkim.map((k: any) => k.state).sort(), ['active', 'active', 'pending', 'pending']);
  const ro = await createKey(app, 'domains:read');
  assert.equal((await call(app, ro, 'POST', '/domains/api.test/dkim/rotate')).status, 403);
});

test('the daily job: grace periods end and, with dkim.rotate_every_months, due rotations start', async () => {
  await app.cliJson(['domain', 'add', 'auto.test']);
  const config = loadConfig({ path: app.configPath });
  const log = createLogger({ level: 'silent' });
  const db = openDatabase(dbPath(config.data_dir), { log, clock: { now: () => Date.now() } });
  try {
    const later = { now: () => Date.now() + 40 * 86_400_000 };
    // Not configured: nothing rotates, however old the keys.
    assert.deepEqual((await dkimDaily({ db, config, log, clock: later })).rotated, []);
    const monthly = { ...config, dkim: { ...config.dkim, rotate_every_months: 1 } };
    // Keys younger than a month: nothing.
    assert.deepEqual((await dkimDaily({ db, config: monthly, log, clock: { now: () => Date.now() } })).rotated, []);
    const run = await dkimDaily({ db, config: monthly, log, clock: later });
    // Domains with a rotation already waiting (api.test) are left alone.
    assert.ok(run.rotated.includes('auto.test'), JSON.stringify(run));
    assert.ok(!run.rotated.includes('api.test'));
    assert.equal(rotationStatus({ db, config, log, clock: later }, 'auto.test').keys.filter((k) => k.state === 'pending').length, 2);
  } finally {
    db.close();
  }
});
