// Queue benchmark: a large outbound queue (default 1,000 messages × 100 recipients = 100,000
// queue entries, one row per recipient) while the remote MX is down, then a restart with the remote
// MX back: enqueue rate, time to stop, time to ready, and time from restart to the first delivery.
//   node bench/queue.ts [--messages 1000] [--rcpts 100] [--clients 10] [--drain-seconds 300]
// Flow: submission (465, AUTH) with `rcpts` recipients per message; the engine tries each entry,
// finds the remote MX refusing connections and defers it (retry in 1 h). Then SIGTERM, smtp-sink
// starts on the MX port, `letterbox serve` starts again and `letterbox queue retry --all` makes
// every entry due (as after an outage); we time the first message reaching smtp-sink.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TestDns } from '../test/helpers/dns.ts';
import { freePort, applianceCert } from '../test/helpers/appliance.ts';
import { RawSmtp, authPlain } from '../test/helpers/proof-smtp.ts';
import { message } from '../test/helpers/proof-load.ts';
import { cpuMs, rssKb, treePssKb, machine, table, arg, waitFor } from './lib.ts';
import { letterboxStack } from './stacks.ts';

const MESSAGES = Number(arg('messages', '1000'));
const RCPTS = Number(arg('rcpts', '100'));
const CLIENTS = Number(arg('clients', '10'));
const DRAIN = Number(arg('drain-seconds', '300'));
const PW = 'bench password 123';

const dns = await new TestDns().start();
dns.mx('remote.bench.test', 'mx.remote.bench.test').a('mx.remote.bench.test', '127.0.0.1');
const sinkPort = await freePort(); // nothing listens here until the restart
console.log(`# queue benchmark — ${machine()}`);
const stack = await letterboxStack({
  dnsServer: dns.server,
  domain: 'bench.test',
  user: 'user',
  extraToml: `[outbound]\nport = ${sinkPort}\nmta_sts = false\nconcurrency = 20\nconcurrency_per_domain = 20\nretry_schedule = ["1h"]\nretry_jitter = 0\nconnect_timeout_ms = 1000\n[submission]\nmax_messages_per_hour = 0\nmax_recipients_per_day = 0\nmax_recipients_per_message = ${Math.max(100, RCPTS)}\n`,
});
const app = stack.app;
const ca = applianceCert(app);
const from = 'user@bench.test';
const body = message('queue-bench', from, 'r0@remote.bench.test');
const rows: Record<string, string | number>[] = [];
const count = (sql: string) => {
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  try {
    return (db.prepare(sql).get() as any).n as number;
  } finally {
    db.close();
  }
};

async function client(n: number) {
  const c = await RawSmtp.connect(app.ports.submissions, { tls: true, ca });
  const ok = (r: { code: number; text: string }, code: number) => {
    if (r.code !== code) throw new Error(`expected ${code}, got ${r.code} ${r.text}`);
  };
  ok(await c.read(), 220);
  ok(await c.cmd('EHLO bench.client'), 250);
  ok(await c.cmd(authPlain(from, PW)), 235);
  for (let i = 0; i < n; i++) {
    ok(await c.cmd(`MAIL FROM:<${from}>`), 250);
    for (let r = 0; r < RCPTS; r++) ok(await c.cmd(`RCPT TO:<r${r}@remote.bench.test>`), 250);
    ok(await c.data(body), 250);
  }
  await c.quit();
}

let sink: ReturnType<typeof spawn> | null = null;
try {
  const roots = [app.process.pid!];
  const cpu0 = cpuMs(roots);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(Math.floor(MESSAGES / CLIENTS) + (i < MESSAGES % CLIENTS ? 1 : 0))));
  const ms = performance.now() - t0;
  const cpu = cpuMs(roots) - cpu0;
  const entries = MESSAGES * RCPTS;
  rows.push({ step: `enqueue ${MESSAGES} messages × ${RCPTS} recipients over 465 (${CLIENTS} clients)`, seconds: (ms / 1000).toFixed(1), rate: `${(entries / (ms / 1000)).toFixed(0)} entries/s, ${(MESSAGES / (ms / 1000)).toFixed(1)} msg/s`, 'CPU ms': `${(cpu / MESSAGES).toFixed(1)} per message`, note: 'remote MX down meanwhile: every entry tried once and deferred' });
  console.log(JSON.stringify(rows.at(-1)));
  // Let the engine try everything once (each attempt: connection refused → deferred 1 h).
  await waitFor(() => count("SELECT count(*) AS n FROM outbound_queue WHERE status = 'queued' AND attempts > 0") >= entries || count("SELECT count(*) AS n FROM outbound_queue WHERE status = 'inflight'") === 0, 600000, 500);
  const queued = count("SELECT count(*) AS n FROM outbound_queue WHERE status = 'queued'");
  const mem = { node: Math.round(rssKb(app.process.pid!) / 1024), pss: Math.round(treePssKb([app.process.pid!]) / 1024) };
  rows.push({ step: `queue holds ${queued} entries`, seconds: '', rate: '', 'CPU ms': '', note: `Node RSS ${mem.node} MB, stack PSS ${mem.pss} MB` });
  console.log(JSON.stringify(rows.at(-1)));

  const s0 = performance.now();
  await app.stop();
  rows.push({ step: 'SIGTERM → exit (graceful stop)', seconds: ((performance.now() - s0) / 1000).toFixed(2), rate: '', 'CPU ms': '', note: '' });
  let sunk = 0;
  sink = spawn('smtp-sink', ['-c', '-u', 'postfix', `127.0.0.1:${sinkPort}`, '1000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  sink.stdout!.on('data', (d: Buffer) => {
    const m = /(\d+)\s*$/.exec(d.toString('latin1').replace(/\r/g, ' '));
    if (m) sunk = Math.max(sunk, Number(m[1]));
  });
  await new Promise((r) => setTimeout(r, 300));
  const r0 = performance.now();
  await app.restart();
  const ready = performance.now() - r0;
  rows.push({ step: 'restart → "letterbox ready"', seconds: (ready / 1000).toFixed(2), rate: '', 'CPU ms': '', note: `${queued} entries in the queue` });
  const q0 = performance.now();
  const retry = await app.cli(['queue', 'retry', '--all']);
  if (retry.code !== 0) throw new Error(retry.stderr);
  rows.push({ step: 'letterbox queue retry --all', seconds: ((performance.now() - q0) / 1000).toFixed(2), rate: '', 'CPU ms': '', note: retry.stdout.trim().split('\n')[0] ?? '' });
  const got = await waitFor(() => sunk > 0, 120000, 20);
  const first = performance.now() - r0;
  rows.push({ step: 'restart → first message at smtp-sink', seconds: got ? (first / 1000).toFixed(2) : 'none in 120 s', rate: '', 'CPU ms': '', note: 'includes the retry command' });
  const d0 = performance.now();
  const c0 = cpuMs([app.process.pid!]);
  const base = sunk;
  const left = () => count("SELECT count(*) AS n FROM outbound_queue WHERE status IN ('queued', 'inflight')");
  const empty = await waitFor(() => left() === 0, DRAIN * 1000, 250);
  const secs = (performance.now() - d0) / 1000;
  const dcpu = cpuMs([app.process.pid!]) - c0;
  const done = queued - left();
  rows.push({ step: empty ? 'drain the whole queue' : `drain (stopped after ${DRAIN} s)`, seconds: secs.toFixed(1), rate: `${(done / secs).toFixed(0)} entries/s`, 'CPU ms': done ? `${(dcpu / done).toFixed(2)} per entry` : '', note: `${done} entries in ${sunk - base} SMTP transactions (up to ${RCPTS} recipients each)` });
  for (const r of rows) console.log(JSON.stringify(r));
} finally {
  await stack.stop();
  sink?.kill('SIGTERM');
  await dns.stop();
}
console.log('\n' + table(rows));
