// Outbound benchmark: authenticated submission (465, implicit TLS, AUTH PLAIN, reused connections)
// → sender checks → DKIM signing → durable queue → SMTP delivery to Postfix's smtp-sink on loopback
// (via a test DNS MX). Times from the first MAIL FROM to the last message counted by smtp-sink;
// CPU of the whole Letterbox stack (Node + its Dovecot) per message; the client runs in this process.
//   node bench/outbound.ts [--messages 2000] [--clients 10]
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDns } from '../test/helpers/dns.ts';
import { freePort, applianceCert } from '../test/helpers/appliance.ts';
import { RawSmtp, authPlain } from '../test/helpers/proof-smtp.ts';
import { message } from '../test/helpers/proof-load.ts';
import { cpuMs, ownCpuMs, rssSampler, machine, table, arg, waitFor, run } from './lib.ts';
import { letterboxStack, postfixRelayStack } from './stacks.ts';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const N = Number(arg('messages', '2000'));
const CLIENTS = Number(arg('clients', '10'));
const PW = 'bench password 123';

const dns = await new TestDns().start();
dns.mx('remote.bench.test', 'mx.remote.bench.test').a('mx.remote.bench.test', '127.0.0.1');
const sinkPort = await freePort();
// smtp-sink: -c prints a running count of completed DATA commands; -u is required as root.
const sink = spawn('smtp-sink', ['-c', '-u', 'postfix', `127.0.0.1:${sinkPort}`, '1000'], { stdio: ['ignore', 'pipe', 'inherit'] });
let sunk = 0;
sink.stdout.on('data', (d: Buffer) => {
  const m = /(\d+)\s*$/.exec(d.toString('latin1').replace(/\r/g, ' '));
  if (m) sunk = Math.max(sunk, Number(m[1]));
});
await sleep(300);
console.log(`# outbound benchmark — ${machine()}`);
const stack = await letterboxStack({
  dnsServer: dns.server,
  domain: 'bench.test',
  user: 'user',
  extraToml: `[outbound]\nport = ${sinkPort}\nmta_sts = false\nconcurrency = 20\nconcurrency_per_domain = 20\npoll_interval_ms = 100\n[submission]\nmax_messages_per_hour = 0\nmax_recipients_per_day = 0\n`,
});
const ca = applianceCert(stack.app);
const from = 'user@bench.test';
const body = message('outbound-bench', from, 'rcpt@remote.bench.test');

async function client(count: number, counter: { sent: number }) {
  const c = await RawSmtp.connect(stack.app.ports.submissions, { tls: true, ca });
  const expect = (r: { code: number; text: string }, code: number) => {
    if (r.code !== code) throw new Error(`expected ${code}, got ${r.code} ${r.text}`);
  };
  expect(await c.read(), 220);
  expect(await c.cmd('EHLO bench.client'), 250);
  expect(await c.cmd(authPlain(from, PW)), 235);
  for (let i = 0; i < count; i++) {
    expect(await c.cmd(`MAIL FROM:<${from}>`), 250);
    expect(await c.cmd('RCPT TO:<rcpt@remote.bench.test>'), 250);
    expect(await c.data(body), 250);
    counter.sent++;
  }
  await c.quit();
}

async function round(n: number) {
  const base = sunk;
  const counter = { sent: 0 };
  const roots = stack.roots();
  const cpu0 = cpuMs(roots);
  const main0 = ownCpuMs(roots[0]);
  const mem = rssSampler(() => stack.roots());
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(Math.floor(n / CLIENTS) + (i < n % CLIENTS ? 1 : 0), counter)));
  const accepted = performance.now() - t0;
  const ok = await waitFor(() => sunk >= base + n, 600000, 50);
  const ms = performance.now() - t0;
  const cpu = cpuMs(roots) - cpu0;
  const main = ownCpuMs(roots[0]) - main0;
  const m = mem.stop();
  return {
    messages: n,
    'accepted in s': (accepted / 1000).toFixed(1),
    'accept msg/s': (n / (accepted / 1000)).toFixed(0),
    'delivered in s': (ms / 1000).toFixed(1),
    'end-to-end msg/s': ((sunk - base) / (ms / 1000)).toFixed(0),
    'CPU ms/msg': (cpu / n).toFixed(2),
    'of which Node': (main / n).toFixed(2),
    'peak PSS MB': m.peakMb,
    'Node peak RSS MB': m.mainPeakMb,
    note: ok ? '' : `only ${sunk - base} at the sink`,
  };
}

const rows: Record<string, string | number>[] = [];
try {
  await round(Math.min(100, N)); // warm-up, not reported
  const row = await round(N);
  console.log(JSON.stringify(row));
  rows.push({ path: `Letterbox: 465 TLS + AUTH → DKIM → queue → smtp-sink, ${CLIENTS} clients, reused connections`, ...row });
} finally {
  await stack.stop();
}
const tmp = mkdtempSync(join(tmpdir(), 'lbb-out-'));
// The peer: Postfix relaying the same message from smtp-source (plain SMTP from mynetworks: no TLS,
// no AUTH, no DKIM — less work than Letterbox does) to the same smtp-sink.
try {
  const relay = await postfixRelayStack({ sinkPort });
  try {
    const file = join(tmp, 'message.eml');
    writeFileSync(file, body.replace(/\r\n/g, '\n'));
    const src = (m: number) => run('smtp-source', ['-s', String(CLIENTS), '-d', '-m', String(m), '-f', from, '-t', 'rcpt@remote.bench.test', '-M', 'client.bench.test', '-F', file, `127.0.0.1:${relay.port}`]);
    const warm = sunk;
    await src(Math.min(100, N));
    await waitFor(() => sunk >= warm + Math.min(100, N), 60000, 50);
    const base = sunk;
    const roots = relay.roots();
    const cpu0 = cpuMs(roots);
    const mem = rssSampler(() => relay.roots());
    const t0 = performance.now();
    const r = await src(N);
    const accepted = performance.now() - t0;
    const ok = await waitFor(() => sunk >= base + N, 600000, 50);
    const ms = performance.now() - t0;
    const cpu = cpuMs(roots) - cpu0;
    const m = mem.stop();
    rows.push({
      path: `Postfix relay: smtp-source ${CLIENTS} sessions (-d) → queue → smtp-sink`,
      messages: N,
      'accepted in s': (accepted / 1000).toFixed(1),
      'accept msg/s': (N / (accepted / 1000)).toFixed(0),
      'delivered in s': (ms / 1000).toFixed(1),
      'end-to-end msg/s': ((sunk - base) / (ms / 1000)).toFixed(0),
      'CPU ms/msg': (cpu / N).toFixed(2),
      'of which Node': '-',
      'peak PSS MB': m.peakMb,
      'Node peak RSS MB': '-',
      note: [r.code ? `smtp-source exit ${r.code}` : '', ok ? '' : `only ${sunk - base} at the sink`, 'no TLS, AUTH or DKIM'].filter(Boolean).join('; '),
    });
    console.log(JSON.stringify(rows.at(-1)));
  } finally {
    await relay.stop();
  }
} catch (err: any) {
  console.log(`# Postfix relay peer not measured: ${err.message}`);
}
sink.kill('SIGTERM');
await dns.stop();
rmSync(tmp, { recursive: true, force: true });
console.log('\n' + table(rows));
if (rows.length === 2) console.log(`# CPU per message: Letterbox ÷ Postfix relay = ${(Number(rows[0]['CPU ms/msg']) / Number(rows[1]['CPU ms/msg'])).toFixed(2)}`);
