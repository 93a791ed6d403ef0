// Inbound benchmark: Postfix's smtp-source sends a real 4 KB multipart DKIM-signed message (-F) to
// each receiving stack; we time until every message is stored, and count the CPU of the whole stack
// (all its processes, from /proc) and its peak RSS.
//   node bench/inbound.ts [--messages 2000] [--stacks letterbox,classic,haraka]
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestDns } from '../test/helpers/dns.ts';
import { makeMessage, SENDER_DOMAIN } from './inbound-message.ts';
import { cpuMs, ownCpuMs, rssSampler, run, machine, table, arg, waitFor } from './lib.ts';
import { letterboxStack, classicStack, harakaStack, type Stack } from './stacks.ts';

const N = Number(arg('messages', '2000'));
const STACKS = arg('stacks', 'letterbox,classic,haraka').split(',');
const DOMAIN = 'bench.test';
const USER = 'user';

interface Row {
  stack: string;
  scenario: string;
  messages: number;
  seconds: string;
  'msg/s': string;
  'CPU ms/msg': string;
  'of which main process': string;
  'peak PSS MB (all processes)': number;
  'peak RSS MB (main process)': number;
  note: string;
}

async function measure(stack: Stack, scenario: { name: string; args: string[] }, file: string): Promise<Row> {
  const before = stack.delivered();
  const cpu0 = cpuMs(stack.roots());
  const main0 = ownCpuMs(stack.roots()[0]);
  const rss = rssSampler(() => stack.roots());
  const t0 = performance.now();
  const r = await run('smtp-source', [...scenario.args, '-m', String(N), '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', file, `127.0.0.1:${stack.port}`]);
  const sent = performance.now() - t0;
  const all = await waitFor(() => stack.delivered() >= before + N, 600000, 50);
  const ms = performance.now() - t0;
  const cpu = cpuMs(stack.roots()) - cpu0;
  const mainCpu = ownCpuMs(stack.roots()[0]) - main0;
  const mem = rss.stop();
  const got = stack.delivered() - before;
  const note = [r.code !== 0 ? `smtp-source exit ${r.code}: ${r.stderr.trim().split('\n').pop()}` : '', all ? '' : `only ${got} stored`, `source done at ${(sent / 1000).toFixed(1)} s`].filter(Boolean).join('; ');
  return {
    stack: stack.name,
    scenario: scenario.name,
    messages: got,
    seconds: (ms / 1000).toFixed(1),
    'msg/s': (got / (ms / 1000)).toFixed(0),
    'CPU ms/msg': (cpu / Math.max(1, got)).toFixed(2),
    'of which main process': (mainCpu / Math.max(1, got)).toFixed(2),
    'peak PSS MB (all processes)': mem.peakMb,
    'peak RSS MB (main process)': mem.mainPeakMb,
    note,
  };
}

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
const dns = await new TestDns().start();
dns.txt(`b1._domainkey.${SENDER_DOMAIN}`, `v=DKIM1; k=rsa; p=${publicKey.toString('base64')}`);
dns.txt(SENDER_DOMAIN, 'v=spf1 ip4:127.0.0.1 -all');
dns.txt(`_dmarc.${SENDER_DOMAIN}`, 'v=DMARC1; p=reject');
const dir = mkdtempSync(join(tmpdir(), 'lbb-msg-'));
const file = join(dir, 'message.eml');
const msg = makeMessage(privateKey, USER, DOMAIN);
writeFileSync(file, msg.replace(/\r\n/g, '\n')); // smtp-source appends CRLF to each line
console.log(`# inbound benchmark — ${machine()}`);
console.log(`# message: ${Buffer.byteLength(msg)} bytes, multipart/alternative, DKIM rsa-sha256 (SPF pass, DKIM pass, DMARC p=reject pass at Letterbox)`);

const scenarios = [
  { name: '20 sessions, reused connections (-d)', args: ['-s', '20', '-d'] },
  { name: '100 sessions, one connection per message', args: ['-s', '100'] },
];
const rows: Row[] = [];
for (const name of STACKS) {
  let stack: Stack;
  try {
    stack = name === 'letterbox' ? await letterboxStack({ dnsServer: dns.server, domain: DOMAIN, user: USER }) : name === 'classic' ? await classicStack({ domain: DOMAIN, user: USER }) : await harakaStack({ domain: DOMAIN });
  } catch (err: any) {
    console.log(`# ${name}: could not be set up: ${err.message}`);
    continue;
  }
  try {
    // Warm-up (first LMTP connections, JIT, Dovecot's first index): 50 messages, not counted.
    await run('smtp-source', ['-s', '5', '-m', '50', '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', file, `127.0.0.1:${stack.port}`]);
    await waitFor(() => stack.delivered() >= 50, 60000);
    for (const s of scenarios) {
      const row = await measure(stack, s, file);
      console.log(JSON.stringify(row));
      rows.push(row);
    }
  } finally {
    await stack.stop();
  }
}
await dns.stop();
rmSync(dir, { recursive: true, force: true });
console.log('\n' + table(rows as any));
const lb = rows.filter((r) => r.stack === 'Letterbox');
const cl = rows.filter((r) => r.stack.startsWith('Postfix'));
for (const s of scenarios) {
  const a = lb.find((r) => r.scenario === s.name);
  const b = cl.find((r) => r.scenario === s.name);
  if (a && b) console.log(`# ${s.name}: Letterbox CPU/msg ÷ classic CPU/msg = ${(Number(a['CPU ms/msg']) / Number(b['CPU ms/msg'])).toFixed(2)}; msg/s ratio ${(Number(a['msg/s']) / Number(b['msg/s'])).toFixed(2)}`);
}
