// Outbound benchmark: authenticated submission (465, implicit TLS, AUTH PLAIN, reused connections)
// → sender checks → DKIM signing → durable queue → SMTP delivery to Postfix's smtp-sink on loopback
// (via a test DNS MX). Times from the first MAIL FROM to the last message counted by smtp-sink;
// CPU of the whole stack per message; the clients run in this process.
//
// The peer (#15) does the same work with the classic tools: Postfix on 465 (wrapper-mode TLS, same
// certificate), SASL through Dovecot's auth service, sender bound to the login, DKIM signing by
// OpenDKIM (RSA-2048 + Ed25519, like Letterbox's default keys), queue, relayhost = the same sink
// (bench/stacks.ts postfixSubmissionStack). Both are driven by the same client code and message.
// Rounds alternate between the two (--pairs, default 3: L P, P L, L P, …), each row printed with
// /proc/loadavg; the ratio is Letterbox's mean CPU per message ÷ the peer's.
// --relay also measures the earlier peer: a plain Postfix relay fed by smtp-source (no TLS, AUTH or DKIM).
//   node bench/outbound.ts [--messages 1000] [--clients 10] [--pairs 3] [--relay] [--bare]
import { spawn, execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDns } from '../test/helpers/dns.ts';
import { freePort, applianceCert } from '../test/helpers/appliance.ts';
import { RawSmtp, authPlain } from '../test/helpers/proof-smtp.ts';
import { message } from '../test/helpers/proof-load.ts';
import { cpuMs, ownCpuMs, rssSampler, machine, table, arg, waitFor, run } from './lib.ts';
import { letterboxStack, postfixRelayStack, postfixSubmissionStack, wrapperServeSettings, type Stack } from './stacks.ts';
import { mkdtempSync, mkdirSync, chmodSync, readdirSync, chownSync, writeFileSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const N = Number(arg('messages', '1000'));
const CLIENTS = Number(arg('clients', '10'));
const PAIRS = Number(arg('pairs', '3'));
const PW = 'bench password 123';
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const tmp = mkdtempSync(join(tmpdir(), 'lbb-out-'));
const dns = await new TestDns().start();
dns.mx('remote.bench.test', 'mx.remote.bench.test').a('mx.remote.bench.test', '127.0.0.1');
const sinkPort = await freePort();
// smtp-sink: -c prints a running count of completed DATA commands; -u is required as root; -D keeps
// every message (to count the DKIM signatures each stack added).
chmodSync(tmp, 0o755);
const dumpDir = join(tmp, 'sink');
mkdirSync(dumpDir);
chownSync(dumpDir, Number(execFileSync('id', ['-u', 'postfix'], { encoding: 'utf8' })), 0); // smtp-sink writes as postfix
const dump = join(dumpDir, 'dump'); // smtp-sink appends a random suffix
const sink = spawn('smtp-sink', ['-c', '-u', 'postfix', '-D', dump, `127.0.0.1:${sinkPort}`, '1000'], { stdio: ['ignore', 'pipe', 'inherit'] });
let sunk = 0;
sink.stdout.on('data', (d: Buffer) => {
  const m = /(\d+)\s*$/.exec(d.toString('latin1').replace(/\r/g, ' '));
  if (m) sunk = Math.max(sunk, Number(m[1]));
});
await sleep(300);
console.log(`# outbound benchmark — ${machine()}`);
// Letterbox as src/bin/letterbox runs it (its Node flags, MALLOC_ARENA_MAX, compile cache);
// --bare: Node's defaults.
const settings = process.argv.includes('--bare') ? { nodeArgs: [], env: {} } : wrapperServeSettings();
console.log(`# Letterbox serve: node flags "${settings.nodeArgs.join(' ')}", env ${JSON.stringify(settings.env)}`);
const lb = await letterboxStack({
  ...settings,
  dnsServer: dns.server,
  domain: 'bench.test',
  user: 'user',
  extraToml: `[outbound]\nport = ${sinkPort}\nmta_sts = false\nconcurrency = 20\nconcurrency_per_domain = 20\npoll_interval_ms = 100\n[submission]\nmax_messages_per_hour = 0\nmax_recipients_per_day = 0\n`,
});
const ca = applianceCert(lb.app);
const from = 'user@bench.test';
const body = message('outbound-bench', from, 'rcpt@remote.bench.test');
let peer: Stack | null = null;

async function client(port: number, count: number) {
  const c = await RawSmtp.connect(port, { tls: true, ca });
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
  }
  await c.quit();
}

async function round(stack: Stack, port: number, n: number, mainPid: number | null) {
  const base = sunk;
  const roots = stack.roots();
  const load0 = load();
  const cpu0 = cpuMs(roots);
  const main0 = mainPid ? ownCpuMs(mainPid) : 0;
  const mem = rssSampler(() => stack.roots());
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(port, Math.floor(n / CLIENTS) + (i < n % CLIENTS ? 1 : 0))));
  const accepted = performance.now() - t0;
  const ok = await waitFor(() => sunk >= base + n, 600000, 50);
  const ms = performance.now() - t0;
  const cpu = cpuMs(roots) - cpu0;
  const main = mainPid ? ownCpuMs(mainPid) - main0 : 0;
  const m = mem.stop();
  return {
    messages: n,
    'accept msg/s': (n / (accepted / 1000)).toFixed(0),
    'end-to-end msg/s': ((sunk - base) / (ms / 1000)).toFixed(0),
    'CPU ms/msg': (cpu / n).toFixed(2),
    'of which Node': mainPid ? (main / n).toFixed(2) : '-',
    'peak PSS MB': m.peakMb,
    'main peak RSS MB': m.mainPeakMb,
    loadavg: `${load0} → ${load()}`,
    note: ok ? '' : `only ${sunk - base} at the sink`,
  };
}

const rows: Record<string, string | number>[] = [];
const cpu: Record<'lb' | 'peer', number[]> = { lb: [], peer: [] };
try {
  peer = await postfixSubmissionStack({ sinkPort, certFile: join(lb.app.dir, 'certs', 'fullchain.pem'), keyFile: join(lb.app.dir, 'certs', 'privkey.pem'), address: from, password: PW });
  const sides = {
    lb: { name: 'Letterbox: 465 TLS + AUTH → DKIM (RSA + Ed25519) → queue → smtp-sink', run: (n: number) => round(lb, lb.app.ports.submissions, n, lb.app.process.pid!) },
    peer: { name: 'Postfix 465 TLS + Dovecot SASL → OpenDKIM (RSA + Ed25519) → queue → smtp-sink', run: (n: number) => round(peer!, peer!.port, n, null) },
  };
  await sides.lb.run(Math.min(100, N)); // warm-up, not reported
  await sides.peer.run(Math.min(100, N));
  for (let p = 0; p < PAIRS; p++) {
    const order: ('lb' | 'peer')[] = p % 2 === 0 ? ['lb', 'peer'] : ['peer', 'lb'];
    for (const side of order) {
      const row = await sides[side].run(N);
      cpu[side].push(Number(row['CPU ms/msg']));
      rows.push({ pair: p + 1, stack: sides[side].name, ...row });
      console.log(JSON.stringify(rows.at(-1)));
    }
  }
} finally {
  await peer?.stop();
  await lb.stop();
}
if (process.argv.includes('--relay')) {
  // The earlier peer: Postfix relaying the same message from smtp-source (plain SMTP from
  // mynetworks: no TLS, no AUTH, no DKIM — less work than Letterbox does) to the same smtp-sink.
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
      const load0 = load();
      const cpu0 = cpuMs(roots);
      const mem = rssSampler(() => relay.roots());
      const t0 = performance.now();
      const r = await src(N);
      const accepted = performance.now() - t0;
      const ok = await waitFor(() => sunk >= base + N, 600000, 50);
      const ms = performance.now() - t0;
      const c = cpuMs(roots) - cpu0;
      const m = mem.stop();
      rows.push({
        pair: '-',
        stack: `Postfix relay: smtp-source ${CLIENTS} sessions (-d) → queue → smtp-sink (no TLS, AUTH or DKIM)`,
        messages: N,
        'accept msg/s': (N / (accepted / 1000)).toFixed(0),
        'end-to-end msg/s': ((sunk - base) / (ms / 1000)).toFixed(0),
        'CPU ms/msg': (c / N).toFixed(2),
        'of which Node': '-',
        'peak PSS MB': m.peakMb,
        'main peak RSS MB': '-',
        loadavg: `${load0} → ${load()}`,
        note: [r.code ? `smtp-source exit ${r.code}` : '', ok ? '' : `only ${sunk - base} at the sink`].filter(Boolean).join('; '),
      });
      console.log(JSON.stringify(rows.at(-1)));
    } finally {
      await relay.stop();
    }
  } catch (err: any) {
    console.log(`# Postfix relay peer not measured: ${err.message}`);
  }
}
sink.kill('SIGTERM');
await sleep(300);
await dns.stop();
// Every message at the sink should carry two DKIM signatures (one RSA, one Ed25519).
{
  const text = readdirSync(dumpDir).map((f) => readFileSync(join(dumpDir, f), 'latin1')).join('');
  const count = (re: RegExp) => (text.match(re) ?? []).length;
  console.log(`# at the sink: ${sunk} messages, ${count(/\ba=rsa-sha256\b/g)} RSA and ${count(/\ba=ed25519-sha256\b/g)} Ed25519 DKIM signatures`);
}
rmSync(tmp, { recursive: true, force: true });
console.log('\n' + table(rows));
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
if (cpu.lb.length && cpu.peer.length) {
  console.log(`# CPU ms per message: Letterbox ${cpu.lb.map((x) => x.toFixed(2)).join(', ')} (mean ${mean(cpu.lb).toFixed(2)}); Postfix + SASL + OpenDKIM ${cpu.peer.map((x) => x.toFixed(2)).join(', ')} (mean ${mean(cpu.peer).toFixed(2)})`);
  console.log(`# Letterbox ÷ Postfix + SASL + OpenDKIM = ${(mean(cpu.lb) / mean(cpu.peer)).toFixed(2)} (per pair: ${cpu.lb.map((x, i) => (x / cpu.peer[i]).toFixed(2)).join(', ')})`);
}
