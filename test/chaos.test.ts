// Zero-loss chaos test. Sustained MX load and authenticated submission load (local and remote
// recipients) from several concurrent clients that behave like real MTAs (retry on 4xx and on a
// lost connection), while faults are injected:
//   1. `letterbox serve` SIGKILLed at random moments and restarted (3 times here; PROOF_CHAOS_LONG=1
//      → 12 kills and longer load, see bench/README.md);
//   2. Dovecot's master SIGKILLed (Letterbox's supervisor restarts it);
//   3. the DNS server silent (queries time out);
//   4. the data directory on a full filesystem (a tmpfs mounted by the test).
// After each phase every message that got a final 250 must be in its mailbox (read over IMAP,
// matched by a unique token) or at the remote MX (a loopback sink reached via the test DNS):
// lost = 0. Duplicates are counted and bounded: a message can be duplicated only when the process
// dies (or Dovecot/the network fails) after the message was stored and before the client saw the 250
// (the client retries), or after the remote MX took a queued message and before the queue recorded
// it; so duplicates ≤ faults × (concurrent clients + outbound concurrency).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, statfsSync, openSync, writeSync, closeSync, unlinkSync, renameSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { ProofSink } from './helpers/proof-sink.ts';
import { Ledger, sendReliably, sendOnce, mailboxTokens, tally, token, type Target } from './helpers/proof-load.ts';

const LONG = process.env.PROOF_CHAOS_LONG === '1';
const KILLS = Number(process.env.PROOF_CHAOS_KILLS ?? (LONG ? 12 : 3));
const MX_CLIENTS = LONG ? 6 : 3;
const SUB_CLIENTS = LONG ? 3 : 2;
const OUTBOUND_CONCURRENCY = 4;
const PW = 'chaos test password 1';
const DOMAIN = 'ours.test';
const REMOTE_DOMAINS = 400;
const MAILBOXES = ['m1', 'm2', 'm3'].map((m) => `${m}@${DOMAIN}`);

let app: Appliance;
let dns: TestDns;
let sink: ProofSink;
let ca: string;

before(async () => {
  dns = await new TestDns().start();
  sink = await new ProofSink().start();
  dns.mx('other.test', 'mx.other.test').a('mx.other.test', '127.0.0.1');
  for (let i = 0; i < REMOTE_DOMAINS; i++) dns.mx(`d${i}.remote.test`, 'mx.other.test');
  app = await startAppliance({
    extraToml: [
      '[dns]',
      `servers = ["${dns.server}"]`,
      'timeout_ms = 500',
      '[outbound]',
      `port = ${sink.port}`,
      'mta_sts = false',
      'poll_interval_ms = 200',
      'retry_schedule = ["1s"]',
      'retry_jitter = 0',
      `concurrency = ${OUTBOUND_CONCURRENCY}`,
      'connect_timeout_ms = 2000',
      '[submission]',
      'max_messages_per_hour = 0',
      'max_recipients_per_day = 0',
      '',
    ].join('\n'),
    env: { LETTERBOX_LOG_LEVEL: 'info' },
  });
  ca = applianceCert(app);
  await app.cliJson(['domain', 'add', DOMAIN]);
  for (const m of MAILBOXES) {
    const r = await app.cli(['mailbox', 'add', m, '--password', PW]);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(async () => {
  try {
    await app?.kill('SIGKILL');
  } catch {}
  if (mounted) {
    try {
      execFileSync('umount', ['-l', app.dataDir]);
    } catch {}
  }
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
});

const mxTarget = (): Target => ({ port: app.ports.mx });
const subTarget = (): Target => ({ port: app.ports.submissions, submission: { user: MAILBOXES[0], pass: PW, ca } });

/** Runs MX and submission clients until `stop()` resolves; each sends message after message. */
// With `fresh`, every MX message comes from a new sender domain and every remote recipient is in a
// new domain, so SPF/DMARC and MX lookups really go to the DNS server (the resolver caches answers).
let freshDomain = 0;
async function load(ledger: Ledger, phase: string, until: Promise<void>, retryGrace = 60000, fresh = false): Promise<void> {
  let stopping = false;
  until.then(() => (stopping = true));
  const clients: Promise<void>[] = [];
  for (let i = 0; i < MX_CLIENTS; i++) {
    clients.push(
      (async () => {
        for (let n = 0; !stopping; n++) {
          const to = MAILBOXES[(i + n) % MAILBOXES.length];
          const tok = token(`${phase}-mx${i}`);
          const from = fresh ? `sender@s-${tok}.example` : `sender${i}@sender.example`;
          // Once the fault phase is over, a message in flight still gets retried to a verdict.
          await sendReliably(mxTarget(), from, to, to, tok, ledger, Date.now() + retryGrace);
        }
      })(),
    );
  }
  for (let i = 0; i < SUB_CLIENTS; i++) {
    clients.push(
      (async () => {
        for (let n = 0; !stopping; n++) {
          const remote = n % 2 === 0;
          const to = remote ? (fresh && freshDomain < REMOTE_DOMAINS ? `r${i}@d${freshDomain++}.remote.test` : `r${i}@other.test`) : MAILBOXES[1 + (n % 2)];
          await sendReliably(subTarget(), MAILBOXES[0], to, remote ? 'sink' : to, token(`${phase}-sub${i}`), ledger, Date.now() + retryGrace);
        }
      })(),
    );
  }
  await until;
  await Promise.all(clients);
}

/** Waits (bounded) for the queue to hand every acked remote message to the sink, then counts. */
async function verify(ledger: Ledger, faults: number, what: string) {
  const remote = ledger.acked.filter((a) => a.dest === 'sink');
  const end = Date.now() + 90000;
  while (Date.now() < end && remote.some((a) => sink.find(a.token).length === 0)) await sleep(250);
  const boxes = new Map<string, Map<string, number>>();
  for (const m of MAILBOXES) boxes.set(m, await mailboxTokens({ port: app.ports.imap, ca, user: m, pass: PW }));
  const t = tally(ledger, boxes, (tok) => sink.find(tok).length);
  const bound = faults * (MX_CLIENTS + SUB_CLIENTS + OUTBOUND_CONCURRENCY);
  console.log(
    `# chaos ${what}: acked=${t.acked} (mx ${ledger.acked.filter((a) => a.kind === 'mx').length}, submission ${ledger.acked.filter((a) => a.kind === 'submission').length}, remote ${remote.length}) ` +
      `lost=${t.lost.length} duplicates=${t.duplicates} (bound ${bound}) faults=${faults} attempts=${ledger.attempts} 4xx=${ledger.temporary} connection-errors=${ledger.connectionErrors} replies=${JSON.stringify(ledger.codes)}`,
  );
  assert.deepEqual(t.lost, [], 'every message that got 250 is in its mailbox or at the remote MX');
  assert.ok(t.duplicates <= bound, `duplicates ${t.duplicates} ≤ ${bound}`);
  return t;
}

test(`Letterbox SIGKILLed ${KILLS} times under MX + submission load: 0 lost`, async () => {
  const ledger = new Ledger();
  let kills = 0;
  const chaos = (async () => {
    await sleep(1500);
    for (let k = 0; k < KILLS; k++) {
      await sleep(700 + Math.random() * (LONG ? 4000 : 2000));
      await app.kill('SIGKILL');
      kills++;
      await sleep(Math.random() * 500);
      await app.restart();
    }
    await sleep(LONG ? 5000 : 1500);
  })();
  await load(ledger, 'kill', chaos);
  assert.equal(kills, KILLS);
  assert.deepEqual(ledger.permanent, [], 'no message refused permanently');
  assert.ok(ledger.acked.length >= MX_CLIENTS + SUB_CLIENTS, `load ran (${ledger.acked.length} acked)`);
  assert.ok(ledger.acked.some((a) => a.dest === 'sink'), 'some remote messages went through the queue');
  assert.ok(ledger.connectionErrors > 0, 'the kills did interrupt sessions');
  await verify(ledger, KILLS, 'kill');
});

function dovecotPid(): number {
  return Number(readFileSync(join(app.dataDir, 'dovecot', 'run', 'master.pid'), 'utf8').trim());
}

test('Dovecot SIGKILLed under load: only 4xx while it is down, 0 lost', async () => {
  const ledger = new Ledger();
  const rounds = LONG ? 5 : 2;
  const chaos = (async () => {
    for (let k = 0; k < rounds; k++) {
      await sleep(1000 + Math.random() * 1500);
      process.kill(dovecotPid(), 'SIGKILL');
      // The supervisor restarts it (1 s, 2 s, ... later); wait until a new master is up.
      const end = Date.now() + 40000;
      let pid = 0;
      while (Date.now() < end) {
        await sleep(200);
        try {
          pid = dovecotPid();
          process.kill(pid, 0);
          break;
        } catch {
          pid = 0;
        }
      }
      assert.ok(pid > 0, 'Dovecot came back');
    }
    await sleep(1500);
  })();
  await load(ledger, 'dovecot', chaos);
  assert.deepEqual(ledger.permanent, [], 'no message refused permanently while Dovecot was down');
  assert.ok(ledger.temporary > 0, 'the outage was felt: messages for local mailboxes were deferred with 4xx while Dovecot was down');
  await verify(ledger, rounds, 'dovecot');
});

test('DNS server silent under load: only 4xx, 0 lost, remote mail delivered after it returns', async () => {
  const ledger = new Ledger();
  const chaos = (async () => {
    await sleep(1500);
    dns.silent = true;
    await sleep(LONG ? 15000 : 5000);
    dns.silent = false;
    await sleep(1500);
  })();
  await load(ledger, 'dns', chaos, 60000, true);
  assert.deepEqual(ledger.permanent, [], 'no message refused permanently during the DNS outage');
  assert.ok(ledger.temporary > 0, 'the outage was felt: messages from new sender domains were deferred with 4xx');
  await verify(ledger, 1, 'dns');
});

let mounted = false;
test('data directory on a full filesystem: only 4xx answers, never a lost 250', async (t) => {
  // Move the data dir onto a small tmpfs (needs root and CAP_SYS_ADMIN to mount).
  await app.stop();
  const orig = app.dataDir + '.orig';
  renameSync(app.dataDir, orig);
  mkdirSync(app.dataDir);
  const used = Number(execFileSync('du', ['-sk', orig], { encoding: 'utf8' }).split(/\s/)[0]);
  const sizeKb = used + 4096;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k,mode=0755`, 'tmpfs', app.dataDir], { stdio: 'pipe' });
    mounted = true;
  } catch (err: any) {
    rmSync(app.dataDir, { recursive: true, force: true });
    renameSync(orig, app.dataDir);
    await app.restart();
    const why = `cannot mount a tmpfs here (${String(err.stderr ?? err.message).trim()}): the full-filesystem case needs root with CAP_SYS_ADMIN`;
    // CI runs as root: there a skip would be a silent hole in the proof, so it fails instead.
    if (process.getuid?.() === 0) assert.fail(why);
    t.skip(why);
    return;
  }
  execFileSync('cp', ['-a', orig + '/.', app.dataDir + '/']); // keeps owners (vmail) and modes
  await app.restart();

  // Fill it to the last block.
  const filler = join(app.dataDir, 'filler');
  const fd = openSync(filler, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  let size = chunk.length;
  for (let i = 0; i < 100000 && size >= 1; i++) {
    try {
      writeSync(fd, chunk, 0, size);
    } catch (err: any) {
      if (err.code !== 'ENOSPC') throw err;
      size = Math.floor(size / 2);
    }
  }
  closeSync(fd);
  const st = statfsSync(app.dataDir);
  assert.ok(st.bavail * st.bsize < 4096, `filesystem full (${st.bavail} blocks left)`);

  // Every message once, no retry: each answer is a 4xx (or a 250 that must then be delivered).
  const ledger = new Ledger();
  const answers: number[] = [];
  const sent: { tok: string; to: string; dest: string; sub: boolean }[] = [];
  for (let i = 0; i < 6; i++) {
    const sub = i % 3 === 2;
    const to = sub ? (i % 2 ? 'full@other.test' : MAILBOXES[2]) : MAILBOXES[i % MAILBOXES.length];
    const s = { tok: token('full'), to, dest: to.endsWith('other.test') ? 'sink' : to, sub };
    sent.push(s);
    answers.push(await sendOnce(sub ? subTarget() : mxTarget(), sub ? MAILBOXES[0] : 'x@sender.example', s.to, s.dest, s.tok, ledger));
  }
  console.log(`# chaos full-disk: answers ${answers.join(',')}`);
  assert.ok(app.process.exitCode === null && app.process.signalCode === null, 'Letterbox still running on a full disk');
  for (const a of answers) assert.ok(a === 250 || a === 0 || (a >= 400 && a < 500), `only 4xx (or 250) on a full disk, got ${a}`);
  assert.ok(answers.some((a) => a >= 400 && a < 500), 'the full disk was noticed (at least one 4xx)');

  // Space comes back: the senders retry and everything that was deferred is accepted.
  unlinkSync(filler);
  const retry = new Ledger();
  for (const s of sent) {
    if (ledger.acked.some((a) => a.token === s.tok)) continue;
    const r = await sendReliably(s.sub ? subTarget() : mxTarget(), s.sub ? MAILBOXES[0] : 'x@sender.example', s.to, s.dest, s.tok, retry, Date.now() + 60000);
    assert.equal(r, 'acked', `retried after the disk was freed: ${s.tok}`);
  }
  ledger.acked.push(...retry.acked);
  assert.equal(ledger.acked.length, sent.length);
  await verify(ledger, 1, 'full-disk');
  // Keep the mail in place for cleanup: stop, unmount.
  await app.stop();
  execFileSync('umount', [app.dataDir]);
  mounted = false;
  rmSync(orig, { recursive: true, force: true });
  writeFileSync(join(app.dir, 'unmounted'), '');
});
