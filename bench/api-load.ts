// API list/get latency and memory benchmark: 10,000 mailboxes, 50 concurrent HTTP clients
// (autocannon, bench/node_modules) on
//   GET /api/v1/mailboxes?limit=50            (first page)
//   GET /api/v1/mailboxes?limit=50&cursor=…   (a page from the middle)
//   GET /api/v1/mailboxes/{address}           (random mailbox each request)
// plus Letterbox's and Dovecot's memory idle (after start) and under this load.
// (Send throughput and message-list latency: bench/api.ts.)
//   node bench/api-load.ts [--mailboxes 10000] [--seconds 10] [--connections 50] [--only first,middle,get]
//                          [--tool autocannon|wrk] [--rate R] [--think MS] [--threads N]
// Seeding: mailbox rows are inserted straight into the SQLite database while the appliance is
// stopped, all with one precomputed Argon2id hash (creating 10,000 through the API would hash 10,000
// passwords, ~35 ms each, which is not what this measures); the appliance then starts on them.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { TestDns } from '../test/helpers/dns.ts';
import { newId } from '../src/util/ids.ts';
import { cpuMs, rssKb, pssKb, treePssKb, tree, machine, table, arg, runWrk, BENCH_NODE_MODULES } from './lib.ts';
import { letterboxStack } from './stacks.ts';

const require = createRequire(BENCH_NODE_MODULES + '/');
const autocannon = require('autocannon');

const MAILBOXES = Number(arg('mailboxes', '10000'));
const SECONDS = Number(arg('seconds', '10'));
const CONNECTIONS = Number(arg('connections', '50'));
const ONLY = new Set(arg('only', 'first,middle,get').split(','));
// The load generator: autocannon (Node, in this process) or wrk (C, one thread; `apt-get install wrk`,
// done by bench/setup.sh). wrk takes far less CPU than autocannon on the core it shares with the rest.
const TOOL = arg('tool', 'autocannon');
// --rate R: autocannon only, R requests/s in all (autocannon paces in bursts: each second's share is
// sent at once, so its latencies under --rate are queueing behind the burst).
const RATE = Number(arg('rate', '0'));
// --think MS: wrk only: each client waits a random think time (exponential, mean MS) between getting
// an answer and sending its next request, like API clients that do something with what they read;
// without it every client sends its next request at once (the load is then as much as the server
// can take, and latency ≈ clients ÷ throughput).
const THINK = Number(arg('think', '0'));
// --threads N: api.threads (worker threads serving the API; 0 = the main thread serves it).
const THREADS = arg('threads', '');
const DOMAIN = 'bench.test';

const dns = await new TestDns().start();
console.log(`# API benchmark — ${machine()}`);
const stack = await letterboxStack({
  dnsServer: dns.server,
  domain: DOMAIN,
  user: 'user',
  extraToml: `[api]\n${THREADS ? `threads = ${THREADS}\n` : ''}rate_per_minute = 1000000\nrate_burst = 1000000\nsend_rate_per_minute = 1000000\nsend_rate_burst = 1000000\n[submission]\nmax_messages_per_hour = 0\nmax_recipients_per_day = 0\n`,
});
const app = stack.app;
const rows: Record<string, string | number>[] = [];
try {
  const key = (await app.cliJson(['key', 'create', '--name', 'bench', '--scopes', '*'])).secret as string;
  await app.stop();
  const db = new Database(join(app.dataDir, 'letterbox.db'));
  const { domain_id, password_hash } = db.prepare("SELECT domain_id, password_hash FROM mailboxes WHERE address = 'user@bench.test'").get() as any;
  const ins = db.prepare('INSERT INTO mailboxes (id, domain_id, local_part, address, password_hash, quota_bytes, disabled, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?)');
  const now = new Date().toISOString();
  const t0 = performance.now();
  db.transaction(() => {
    for (let i = 1; i < MAILBOXES; i++) ins.run(newId('mbx'), domain_id, `u${i}`, `u${i}@${DOMAIN}`, password_hash, JSON.stringify(i % 10 ? [] : ['team']), now, now);
  })();
  db.close();
  console.log(`# seeded ${MAILBOXES} mailboxes in ${(performance.now() - t0).toFixed(0)} ms`);
  await app.restart();
  await sleep(5000);
  const node = app.process.pid!;
  const idle = { nodeRss: Math.round(rssKb(node) / 1024), stackPss: Math.round(treePssKb([node]) / 1024) };
  const dovecotIdle = Math.round(tree([node]).filter((p) => p !== node).reduce((a, p) => a + pssKb(p), 0) / 1024);
  console.log(`# idle with ${MAILBOXES} mailboxes: Node RSS ${idle.nodeRss} MB; whole stack PSS ${idle.stackPss} MB (Dovecot processes ${dovecotIdle} MB)`);
  rows.push({ what: `memory idle, ${MAILBOXES} mailboxes`, 'req/s': '', p50: '', p90: '', p99: '', 'CPU ms/req': '', 'Node RSS MB': idle.nodeRss, 'stack PSS MB': idle.stackPss, note: `Dovecot ${dovecotIdle} MB PSS` });

  const base = `http://127.0.0.1:${app.ports.api}`;
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const first = (await (await fetch(`${base}/api/v1/mailboxes?limit=50`, { headers })).json()) as any;
  if (!Array.isArray(first.data) || first.data.length !== 50) throw new Error(`list answered ${JSON.stringify(first).slice(0, 300)}`);
  let cursor = first.nextCursor;
  for (let i = 0; i < MAILBOXES / 100 && cursor; i++) cursor = ((await (await fetch(`${base}/api/v1/mailboxes?limit=50&cursor=${encodeURIComponent(cursor)}`, { headers })).json()) as any).nextCursor;

  interface Load { rps: number; p50: number; p90: number; p99: number; total: number; wrong: number; errors: number }

  function autocannonLoad(opts: any, expectStatus: number): Promise<Load> {
    let wrong = 0;
    return new Promise((res, rej) => {
      const { path, randomMailbox, ...rest } = opts;
      const requests = randomMailbox ? [{ setupRequest: (req: any) => ({ ...req, path: `/api/v1/mailboxes/u${1 + Math.floor(Math.random() * (MAILBOXES - 1))}@${DOMAIN}` }) }] : undefined;
      const inst = autocannon(
        { url: base + (path ?? ''), connections: CONNECTIONS, duration: SECONDS, headers, ...(requests ? { requests } : {}), ...(RATE ? { overallRate: RATE } : {}), ...rest },
        (err: Error, r: any) => (err ? rej(err) : res({ rps: r.requests.average, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, total: r.requests.total, wrong, errors: r.errors })),
      );
      inst.on('response', (_c: unknown, status: number) => {
        if (status !== expectStatus) wrong++;
      });
    });
  }

  function wrkLoad(opts: any): Load {
    const lua =
      `wrk.headers["Authorization"] = "Bearer ${key}"\n` +
      (opts.randomMailbox ? `request = function() return wrk.format("GET", "/api/v1/mailboxes/u" .. math.random(1, ${MAILBOXES - 1}) .. "@${DOMAIN}") end\n` : '');
    return runWrk(base + (opts.path ?? '/api/v1/mailboxes'), { connections: CONNECTIONS, seconds: opts.duration ?? SECONDS, thinkMs: THINK, lua });
  }

  async function bench(what: string, opts: any, expectStatus = 200) {
    const roots = [app.process.pid!];
    const mark = app.logs.length;
    const cpu0 = cpuMs(roots);
    const r = TOOL === 'wrk' ? wrkLoad(opts) : await autocannonLoad(opts, expectStatus);
    const cpu = cpuMs(roots) - cpu0;
    await sleep(1000); // the access lines written meanwhile reach app.logs
    // Which API thread answered how many (the kernel spreads connections over the workers).
    const perThread = new Map<string, number>();
    for (let i = mark; i < app.logs.length; i++) {
      const l = app.logs[i];
      if (!l.includes('"api request"')) continue;
      const t = /"apiThread":(\d+)/.exec(l)?.[1] ?? 'main';
      perThread.set(t, (perThread.get(t) ?? 0) + 1);
    }
    const answered = [...perThread.values()].reduce((a, b) => a + b, 0);
    const split = perThread.size > 1 ? `, threads ${[...perThread].sort().map(([t, n]) => `${t}:${Math.round((100 * n) / answered)}%`).join(' ')}` : '';
    const row = {
      what,
      'req/s': r.rps.toFixed(0),
      p50: `${r.p50} ms`,
      p90: `${r.p90} ms`,
      p99: `${r.p99} ms`,
      'CPU ms/req': (cpu / Math.max(1, r.total)).toFixed(2),
      'Node RSS MB': Math.round(rssKb(app.process.pid!) / 1024),
      'stack PSS MB': Math.round(treePssKb(roots) / 1024),
      note: `${TOOL}${RATE && TOOL !== 'wrk' ? ` paced at ${RATE}/s` : ''}${THINK && TOOL === 'wrk' ? `, think time ${THINK} ms` : ''}, ${r.total} requests${r.wrong ? `, ${r.wrong} not ${expectStatus}` : ''}${r.errors ? `, ${r.errors} errors` : ''}${split}`,
    };
    console.log(JSON.stringify(row));
    rows.push(row);
  }

  await bench('warm-up (not a result)', { path: '/api/v1/mailboxes?limit=50', duration: 6 });
  rows.pop();
  if (ONLY.has('first')) await bench('GET /mailboxes?limit=50 (first page)', { path: '/api/v1/mailboxes?limit=50' });
  if (ONLY.has('middle')) await bench('GET /mailboxes?limit=50&cursor= (middle page)', { path: `/api/v1/mailboxes?limit=50&cursor=${encodeURIComponent(cursor)}` });
  if (ONLY.has('get')) await bench('GET /mailboxes/{address} (random of all)', { randomMailbox: true });
  const after = Math.round(tree([app.process.pid!]).filter((p) => p !== app.process.pid).reduce((a, p) => a + pssKb(p), 0) / 1024);
  rows.push({ what: 'memory after the load', 'req/s': '', p50: '', p90: '', p99: '', 'CPU ms/req': '', 'Node RSS MB': Math.round(rssKb(app.process.pid!) / 1024), 'stack PSS MB': Math.round(treePssKb([app.process.pid!]) / 1024), note: `Dovecot ${after} MB PSS` });
} finally {
  await stack.stop();
  await dns.stop();
}
console.log('\n' + table(rows));

