// Memory benchmark (#15): `letterbox serve` with the default config (the test appliance's), its Node
// process's RSS and, through the inspector, its main isolate's heap after a full GC:
//   1. idle with an empty database (one domain, one mailbox),
//   2. idle with --mailboxes (10,000) mailboxes, seeded straight into SQLite as bench/api-load.ts does,
//   3. peak under a short inbound load (bench/inbound.ts's DKIM-signed 4 KB message via smtp-source),
//   4. after the load, once it has settled (--settle seconds, then a GC).
//   node bench/memory.ts [--mailboxes 10000] [--messages 1000] [--settle 20] [--threads N] [--bare] [--node-flags "..."] [--env K=V,...] [--no-compile-cache] [--idle-only] [--spam]
// Soak (#15): `--soak 200000 [--soak-minutes 40]` instead sends that many messages (or as many as fit
// in the minutes) in batches of 2,000 (every fifth batch over 100 one-message sessions, the rest over
// 20 reused sessions) and prints the Node RSS, the main heap (no GC forced) and /proc/loadavg every
// 10 s; then the growth after warm-up (the first 10 % of the samples).
// RSS is /proc/PID/status VmRSS of the Node process alone (Dovecot's processes are separate).
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { TestDns } from '../test/helpers/dns.ts';
import { newId } from '../src/util/ids.ts';
import { rssKb, pssKb, tree, treePssKb, run, machine, table, arg, waitFor, cpuMs } from './lib.ts';
import { letterboxStack } from './stacks.ts';
import { makeMessage, SENDER_DOMAIN } from './inbound-message.ts';

const MAILBOXES = Number(arg('mailboxes', '10000'));
const N = Number(arg('messages', '1000'));
const SETTLE = Number(arg('settle', '20'));
const THREADS = arg('threads', '');
// The harness starts `node src/cli.ts serve` itself, not src/bin/letterbox (what the systemd unit
// runs): by default the serve process gets the wrapper's memory settings, read from the wrapper;
// --bare leaves them out (Node's defaults).
const wrapper = readFileSync(new URL('../src/bin/letterbox', import.meta.url), 'utf8');
const BARE = process.argv.includes('--bare');
const wrapperFlags = BARE ? '' : (/serve_node_flags="\$\{LETTERBOX_NODE_FLAGS-([^}]*)\}"/.exec(wrapper)?.[1] ?? '');
const wrapperArenas = BARE ? '' : (/MALLOC_ARENA_MAX:-(\d+)/.exec(wrapper)?.[1] ?? '');
const NODE_FLAGS = arg('node-flags', wrapperFlags);
// The wrapper's compile cache for serve (in development: .runtime/node-compile-cache); warm from
// the second run on (Node writes it when the process exits). --no-compile-cache leaves it out.
const compileCache = BARE || process.argv.includes('--no-compile-cache') || !wrapper.includes('NODE_COMPILE_CACHE') ? '' : fileURLToPath(new URL('../.runtime/node-compile-cache', import.meta.url));
// --env K=V[,K=V]: the environment of the serve process (default: the wrapper's MALLOC_ARENA_MAX
// and compile cache).
const EXTRA_ENV = Object.fromEntries(
  arg('env', [wrapperArenas ? `MALLOC_ARENA_MAX=${wrapperArenas}` : '', compileCache ? `NODE_COMPILE_CACHE=${compileCache}` : ''].filter(Boolean).join(','))
    .split(',')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const DOMAIN = 'bench.test';
const USER = 'user';
/** --idle-only: stop after the two idle samples. */
class IdleOnly extends Error {}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The main isolate's heap (after a full GC) through the inspector of the serve process. */
class Inspector {
  private ws: WebSocket | null = null;
  private id = 0;
  private readonly pending = new Map<number, (v: any) => void>();
  async connect(logs: string[]): Promise<void> {
    const line = await waitFor(() => logs.some((l) => l.includes('Debugger listening on ws://')), 10000);
    if (!line) throw new Error('no inspector URL in the logs');
    const url = /ws:\/\/\S+/.exec(logs.find((l) => l.includes('Debugger listening on ws://'))!)![0];
    this.ws = new WebSocket(url);
    await new Promise<void>((res, rej) => {
      this.ws!.onopen = () => res();
      this.ws!.onerror = () => rej(new Error('inspector connection failed'));
    });
    this.ws.onmessage = (e) => {
      const m = JSON.parse(String(e.data));
      if (m.id && this.pending.has(m.id)) {
        this.pending.get(m.id)!(m.result);
        this.pending.delete(m.id);
      }
    };
  }
  call(method: string, params: object = {}): Promise<any> {
    const id = ++this.id;
    return new Promise((res) => {
      this.pending.set(id, res);
      this.ws!.send(JSON.stringify({ id, method, params }));
    });
  }
  async heapAfterGc(): Promise<{ heapUsedMb: number; heapTotalMb: number; externalMb: number; arrayBuffersMb: number }> {
    await this.call('HeapProfiler.collectGarbage');
    const r = await this.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const m = JSON.parse(r.result.value);
    const mb = (b: number) => Math.round(b / 1048576);
    return { heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal), externalMb: mb(m.external), arrayBuffersMb: mb(m.arrayBuffers) };
  }
  close(): void {
    this.ws?.close();
  }
}

function smaps(pid: number): { anonMb: number; fileMb: number } {
  const t = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(t)?.[1] ?? 0);
  return { anonMb: Math.round(kb('RssAnon') / 1024), fileMb: Math.round(kb('RssFile') / 1024) };
}

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
const dns = await new TestDns().start();
dns.txt(`b1._domainkey.${SENDER_DOMAIN}`, `v=DKIM1; k=rsa; p=${publicKey.toString('base64')}`);
dns.txt(SENDER_DOMAIN, 'v=spf1 ip4:127.0.0.1 -all');
dns.txt(`_dmarc.${SENDER_DOMAIN}`, 'v=DMARC1; p=reject');
const dir = mkdtempSync(join(tmpdir(), 'lbb-mem-'));
const file = join(dir, 'message.eml');
writeFileSync(file, makeMessage(privateKey, USER, DOMAIN).replace(/\r\n/g, '\n'));
console.log(`# memory benchmark — ${machine()}`);
console.log(`# serve process: node flags "${NODE_FLAGS}", env ${JSON.stringify(EXTRA_ENV)}, api.threads ${THREADS || 'default'}`);

// The serve process gets the flags on its command line, as from src/bin/letterbox (NODE_OPTIONS
// refuses most V8 flags), and an inspector on a free port (to read its heap); NODE_OPTIONS reaches
// only it, the CLI runs of the harness have their own environment.
const env = { NODE_OPTIONS: '--inspect=127.0.0.1:0', ...EXTRA_ENV };
const stack = await letterboxStack({
  dnsServer: dns.server,
  domain: DOMAIN,
  user: USER,
  // --spam: with spam filtering (rspamd + Redis, children of serve; the test config has it off).
  extraToml: (THREADS ? `[api]\nthreads = ${THREADS}\n` : '') + (process.argv.includes('--spam') ? '[spam]\nenabled = true\n' : ''),
  env,
  nodeArgs: NODE_FLAGS.split(' ').filter(Boolean),
});
const app = stack.app;
const insp = new Inspector();
if (process.argv.includes('--soak')) {
  try {
    await soak();
  } finally {
    insp.close();
    await stack.stop();
    await dns.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
const rows: Record<string, string | number>[] = [];

async function soak(): Promise<void> {
  const total = Number(arg('soak', '200000'));
  const minutes = Number(arg('soak-minutes', '40'));
  await insp.connect(app.logs);
  const pid = app.process.pid!;
  const source = (extra: string[], m: number) =>
    run('smtp-source', [...extra, '-m', String(m), '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', file, `127.0.0.1:${stack.port}`]);
  let sent = 0;
  let failed = 0;
  const samples: { s: number; sent: number; rssMb: number; heapUsedMb: number; load: string }[] = [];
  const t0 = performance.now();
  const cpu0 = cpuMs([pid]);
  const tick = async () => {
    const r = await insp.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const m = JSON.parse(r.result.value);
    const { anonMb, fileMb } = smaps(pid);
    const row = { s: Math.round((performance.now() - t0) / 1000), sent, rssMb: Math.round(rssKb(pid) / 1024), anonMb, fileMb, heapUsedMb: Math.round(m.heapUsed / 1048576), heapTotalMb: Math.round(m.heapTotal / 1048576), load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') };
    samples.push(row);
    console.log(JSON.stringify(row));
    app.logs.length = 0; // the harness keeps the server's log lines; not needed here
  };
  await tick();
  const timer = setInterval(() => void tick(), 10000);
  try {
    for (let batch = 0; sent < total && performance.now() - t0 < minutes * 60000; batch++) {
      const m = Math.min(2000, total - sent);
      const r = await source(batch % 5 === 4 ? ['-s', '100'] : ['-s', '20', '-d'], m);
      if (r.code !== 0) {
        failed++;
        console.log(`# smtp-source exit ${r.code}: ${r.stderr.slice(0, 300)}`);
      }
      sent += m;
    }
  } finally {
    clearInterval(timer);
  }
  await tick();
  const secs = (performance.now() - t0) / 1000;
  const stored = stack.delivered();
  const cpuPer = (cpuMs([pid]) - cpu0) / Math.max(1, stored);
  const after = samples.slice(Math.ceil(samples.length / 10));
  const rss = after.map((x) => x.rssMb);
  const mean = rss.reduce((a, b) => a + b, 0) / Math.max(1, rss.length);
  console.log(`# soak: ${sent} sent (${failed} smtp-source runs failed), ${stored} in the mailbox, ${secs.toFixed(0)} s, ${(stored / secs).toFixed(0)} msg/s, ${cpuPer.toFixed(2)} CPU ms/msg (stack)`);
  console.log(`# RSS after warm-up (${rss.length} samples of 10 s): min ${Math.min(...rss)}, max ${Math.max(...rss)}, mean ${mean.toFixed(0)} MB; within ${((Math.max(Math.max(...rss) - mean, mean - Math.min(...rss)) / mean) * 100).toFixed(1)} % of the mean`);
  const q = Math.max(1, Math.floor(after.length / 4));
  console.log(`# RSS mean by quarter of the run after warm-up: ${[0, 1, 2, 3].map((i) => { const part = after.slice(i * q, i === 3 ? undefined : (i + 1) * q).map((x) => x.rssMb); return (part.reduce((a, b) => a + b, 0) / Math.max(1, part.length)).toFixed(0); }).join(' / ')} MB`);
}
async function sample(what: string, note = ''): Promise<void> {
  const pid = app.process.pid!;
  const heap = await insp.heapAfterGc();
  await sleep(500);
  const { anonMb, fileMb } = smaps(pid);
  const row = { what, 'Node RSS MB': Math.round(rssKb(pid) / 1024), 'anon MB': anonMb, 'file MB': fileMb, 'heap used MB (main, after GC)': heap.heapUsedMb, 'heap total MB': heap.heapTotalMb, 'external MB': heap.externalMb, 'stack PSS MB (with Dovecot)': Math.round(treePssKb([pid]) / 1024), note };
  console.log(JSON.stringify(row));
  rows.push(row);
  // The whole appliance by program (the serve process's tree): PSS (shared pages split) and RSS.
  const by = new Map<string, { n: number; pss: number; rss: number }>();
  for (const p of tree([pid])) {
    let comm = '?';
    try {
      comm = readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {}
    const key = comm.startsWith('rspamd') ? 'rspamd' : /^(dovecot|lmtp|auth|anvil|log|config|stats|imap|imap-login|managesieve)/.test(comm) ? 'dovecot' : comm === 'sh' ? 'sh' : comm;
    const e = by.get(key) ?? { n: 0, pss: 0, rss: 0 };
    e.n++;
    e.pss += pssKb(p);
    e.rss += rssKb(p);
    by.set(key, e);
  }
  console.log(`#   by program: ${[...by].map(([k, e]) => `${k} ×${e.n} PSS ${Math.round(e.pss / 1024)} / RSS ${Math.round(e.rss / 1024)} MB`).join('; ')}`);
}
try {
  await insp.connect(app.logs);
  await sleep(10000);
  await sample('idle, empty database (1 mailbox)');

  insp.close();
  await app.stop();
  app.logs.length = 0;
  const db = new Database(join(app.dataDir, 'letterbox.db'));
  const { domain_id, password_hash } = db.prepare(`SELECT domain_id, password_hash FROM mailboxes WHERE address = '${USER}@${DOMAIN}'`).get() as any;
  const ins = db.prepare('INSERT INTO mailboxes (id, domain_id, local_part, address, password_hash, quota_bytes, disabled, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?)');
  const now = new Date().toISOString();
  db.transaction(() => {
    for (let i = 1; i < MAILBOXES; i++) ins.run(newId('mbx'), domain_id, `u${i}`, `u${i}@${DOMAIN}`, password_hash, '[]', now, now);
  })();
  db.close();
  await app.restart();
  await insp.connect(app.logs);
  await sleep(10000);
  await sample(`idle, ${MAILBOXES} mailboxes`);
  if (process.argv.includes('--idle-only')) throw new IdleOnly();

  // Inbound load: warm-up, then N messages over 20 reused sessions; RSS sampled every 250 ms.
  await run('smtp-source', ['-s', '5', '-m', '50', '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', file, `127.0.0.1:${stack.port}`]);
  await waitFor(() => stack.delivered() >= 50, 60000);
  const pid = app.process.pid!;
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, rssKb(pid))), 250);
  // What the peak is made of: the main isolate's heap and Buffers (no GC forced), once a second.
  const heapPeak = { heapTotal: 0, heapUsed: 0, external: 0 };
  const heapTimer = setInterval(async () => {
    const r = await insp.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const m = JSON.parse(r.result.value);
    for (const k of ['heapTotal', 'heapUsed', 'external'] as const) heapPeak[k] = Math.max(heapPeak[k], Math.round(m[k] / 1048576));
  }, 1000);
  const before = stack.delivered();
  const cpu0 = cpuMs([pid]);
  const t0 = performance.now();
  for (const s of [['-s', '20', '-d'], ['-s', '100']]) {
    await run('smtp-source', [...s, '-m', String(N / 2), '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', file, `127.0.0.1:${stack.port}`]);
  }
  const all = await waitFor(() => stack.delivered() >= before + N, 600000, 50);
  clearInterval(timer);
  clearInterval(heapTimer);
  const got = stack.delivered() - before;
  const secs = (performance.now() - t0) / 1000;
  const cpuPer = (cpuMs([pid]) - cpu0) / Math.max(1, got);
  const row = { what: `peak under inbound load (${got} messages, 20 reused + 100 one-shot sessions)`, 'Node RSS MB': Math.round(peak / 1024), 'anon MB': '', 'file MB': '', 'heap used MB (main, after GC)': `(max seen ${heapPeak.heapUsed})`, 'heap total MB': heapPeak.heapTotal, 'external MB': heapPeak.external, 'stack PSS MB (with Dovecot)': '', note: `${(got / secs).toFixed(0)} msg/s, ${cpuPer.toFixed(2)} CPU ms/msg (stack)${all ? '' : `; only ${got} stored`}` };
  console.log(JSON.stringify(row));
  rows.push(row);
  await sleep(SETTLE * 1000);
  await sample(`after the load (+${SETTLE} s)`);
} catch (err) {
  if (!(err instanceof IdleOnly)) throw err;
} finally {
  insp.close();
  await stack.stop();
  await dns.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log('\n' + table(rows as any));
