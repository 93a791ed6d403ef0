// Benchmarks of the Management API part 2 (not part of the test run):
//   1. POST /mailboxes/{id}/send with a live key, remote recipient → queued, 20 concurrent clients:
//      requests per second (target ≥ 150/s on 2 cores). The remote MX refuses connections, so every
//      entry is tried once and deferred; with --deliver it accepts, and the queue's deliveries run
//      in the same process while the sends go on.
//   2. GET /mailboxes/{id}/messages on a 10,000-message folder: p50/p99 latency (target p99 ≤ 50 ms).
// Usage: node bench/api.ts [--client wrk|node] [--seconds 12] [--sends 2000] [--concurrency 20] [--messages 10000] [--lists 500] [--deliver] [--threads N]
//   --threads N: api.threads (default 2; 0 = the main thread serves the API alone).
//   --client wrk (default): wrk sends for --seconds; --client node: --sends requests with Node's fetch.
// Environment PROF=cpu: the appliance writes a V8 CPU profile to /tmp/prof; PROF=perf: it runs with
// --perf-basic-prof, for perf record.
// Runs a real appliance (test harness) with a receiving SMTP server on loopback as the remote MX.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, freePort } from '../test/helpers/appliance.ts';
import { TestDns } from '../test/helpers/dns.ts';
import { Sink, testCert } from '../test/helpers/sink.ts';
import { call, createKey, waitFor } from '../test/helpers/mailapi.ts';
import { cpuMs, machine, ownCpuMs, runWrk } from './lib.ts';
import Database from 'better-sqlite3';
import { join } from 'node:path';

const { values: o } = parseArgs({
  options: {
    sends: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '20' },
    messages: { type: 'string', default: '10000' },
    lists: { type: 'string', default: '500' },
    deliver: { type: 'boolean', default: false },
    client: { type: 'string', default: 'wrk' },
    seconds: { type: 'string', default: '12' },
    threads: { type: 'string', default: '' },
  },
});
const SENDS = Number(o.sends);
const SECONDS = Number(o.seconds);
if (o.client !== 'wrk' && o.client !== 'node') throw new Error('--client wrk|node');
const CONC = Number(o.concurrency);
const MESSAGES = Number(o.messages);
const LISTS = Number(o.lists);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

console.log(`# API send/list benchmark — ${machine()}`);
const dns = await new TestDns().start();
const cert = testCert(['mx.remote.test']);
const sink = await new Sink(cert).start();
dns.mx('remote.test', 'mx.remote.test').a('mx.remote.test', '127.0.0.1');
// Without --deliver the MX's port is one nobody listens on: connections are refused at once.
const mxPort = o.deliver ? sink.port : await freePort();
const app = await startAppliance({
  env: { ...(process.env.PROF ? { NODE_OPTIONS: process.env.PROF === 'perf' ? '--perf-basic-prof' : '--cpu-prof --cpu-prof-dir=/tmp/prof' } : {}) },
  extraToml: `[dns]\nservers = ["${dns.server}"]\n[outbound]\nport = ${mxPort}\nipv4_only = true\n[submission]\nmax_messages_per_hour = 0\nmax_recipients_per_day = 0\n[api]\n${o.threads ? `threads = ${o.threads}\n` : ''}rate_burst = 1000000\nrate_per_minute = 1000000\nsend_rate_burst = 1000000\nsend_rate_per_minute = 1000000\n`,
});
try {
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', 'alice password 12345']);
  await app.cliJson(['mailbox', 'add', 'bulk@ours.test', '--password', 'bulk password 123456']);
  const key = await createKey(app, '*');
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/bulk@ours.test/folders')).status === 200, 'Dovecot');

  // 1. Sends.
  const body = { to: 'someone@remote.test', subject: 'Benchmark', text: 'Hello from the benchmark.\n'.repeat(40), html: '<p>Hello from the benchmark.</p>'.repeat(40) };
  for (let i = 0; i < 20; i++) await call(app, key, 'POST', '/mailboxes/alice@ours.test/send', body); // warm-up
  // Flush what earlier work left dirty (a previous run's cleanup, this run's setup): measured
  // back-to-back, a run otherwise pays for the last one's writeback (seen: 110–120 instead of 150+).
  execFileSync('sync');
  const cpu0 = cpuMs([app.process.pid!]);
  const node0 = ownCpuMs(app.process.pid!);
  let done: number, secs: number, failed: number, p50: number, p99: number, clientMs: number;
  if (o.client === 'wrk') {
    // wrk (C, one thread) as the 20 clients: it needs ~0.1 ms of CPU per request where Node's fetch
    // needs ~1 ms, CPU that the server would otherwise lose on these two shared cores.
    const lua = `wrk.method = "POST"\nwrk.body = ${JSON.stringify(JSON.stringify(body))}\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer ${key}"\n`;
    const r = runWrk(`http://127.0.0.1:${app.ports.api}/api/v1/mailboxes/alice@ours.test/send`, { connections: CONC, seconds: SECONDS, lua, cpu: true });
    ({ total: done, p50, p99 } = r);
    secs = done / r.rps;
    failed = r.wrong + r.errors;
    clientMs = r.cpuMs!;
    // wrk ran synchronously: let fetch's pool see the keep-alive sockets the server closed meanwhile.
    await new Promise((r) => setTimeout(r, 200));
  } else {
    let next = 0;
    failed = 0;
    const lat: number[] = [];
    const client0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONC }, async () => {
        while (next < SENDS) {
          next++;
          const s = performance.now();
          const r = await call(app, key, 'POST', '/mailboxes/alice@ours.test/send', body);
          lat.push(performance.now() - s);
          if (r.status !== 200) failed++;
        }
      }),
    );
    secs = (performance.now() - t0) / 1000;
    done = SENDS;
    [p50, p99] = [pct(lat, 50), pct(lat, 99)];
    const cu = process.cpuUsage(client0);
    clientMs = (cu.user + cu.system) / 1000;
  }
  const cpuPerSend = (cpuMs([app.process.pid!]) - cpu0) / done;
  const nodePerSend = (ownCpuMs(app.process.pid!) - node0) / done;
  console.log(
    `send${o.deliver ? ' (queue delivering to a loopback MX meanwhile)' : ' (remote MX refusing: entries deferred)'}: ${done} requests from ${CONC} concurrent clients (${o.client}): ${(done / secs).toFixed(1)} req/s, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, failed ${failed}; ` +
      `CPU per send: ${cpuPerSend.toFixed(1)} ms server (Letterbox + Dovecot), of which ${nodePerSend.toFixed(1)} ms Letterbox's Node process (all its threads); ${(clientMs / done).toFixed(2)} ms client (${o.client})`,
  );
  // Every answered send must have its queue entry and its Sent copy (20 warm-up sends came first;
  // wrk stops with up to one request per connection unanswered, which the server still completes).
  await new Promise((r) => setTimeout(r, 1000));
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  const queued = (db.prepare('SELECT count(*) AS n FROM outbound_queue').get() as { n: number }).n;
  db.close();
  const sent = (await call(app, key, 'GET', '/mailboxes/alice@ours.test/messages?folder=Sent&limit=1')).json.data.total;
  console.log(`check: ${queued} queue entries and ${sent} Sent copies for ${done - failed} answered sends + 20 warm-up (+ at most ${CONC} unanswered at the end)`);
  if (queued !== sent || queued < done - failed + 20 || queued > done + 20 + CONC) throw new Error('a send is missing its queue entry or its Sent copy');

  // 2. Lists of a big folder: fill it over IMAP (the user's own login), then page through it.
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user: 'bulk@ours.test', pass: 'bulk password 123456' }, logger: false, tls: { ca: [applianceCert(app)], servername: 'mail.letterbox.test' } } as any);
  await c.connect();
  const f0 = performance.now();
  for (let i = 0; i < MESSAGES; i++) {
    const msg = `From: someone@remote.test\r\nTo: bulk@ours.test\r\nSubject: bulk ${i}\r\nMessage-ID: <bulk${i}@remote.test>\r\nDate: ${new Date(Date.now() - (MESSAGES - i) * 1000).toUTCString()}\r\n\r\nbody ${i}\r\n`;
    await c.append('INBOX', msg, i % 3 ? ['\\Seen'] : []);
  }
  await c.logout();
  console.log(`filled INBOX with ${MESSAGES} messages in ${((performance.now() - f0) / 1000).toFixed(1)} s`);
  const queries = ['?limit=25', '?limit=25&unseen=1', `?limit=25&before=${Math.floor(MESSAGES / 2)}`];
  for (const q of queries) {
    const ls: number[] = [];
    for (let i = 0; i < LISTS; i++) {
      const s = performance.now();
      const r = await call(app, key, 'GET', `/mailboxes/bulk@ours.test/messages${q}`);
      ls.push(performance.now() - s);
      if (r.status !== 200 || r.json.data.messages.length !== 25) throw new Error(`list failed: ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    }
    console.log(`list ${q} on ${MESSAGES} messages: p50 ${pct(ls, 50).toFixed(1)} ms, p99 ${pct(ls, 99).toFixed(1)} ms (${LISTS} requests)`);
  }
} finally {
  await app.stop();
  app.cleanup();
  await sink.stop();
  await dns.stop();
  Sink.cleanupCert(cert.dir);
}
