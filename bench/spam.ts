// Spam-filtering benchmark (issue #14): the same ham/spam mix through
//   Letterbox + rspamd:  MX (SPF/DKIM/DMARC/ARC) → rspamd /checkv2 over its Unix socket → LMTP → Dovecot
//   classic:             Postfix smtpd → rspamd proxy as a milter (self_scan) → queue → LMTP → Dovecot
// with the same generated rspamd config (src/spam/config.ts; greylisting off, test patterns on so
// the "spam" message scores add-header deterministically) and its own Redis each. Reports
// whole-stack CPU per message, rspamd+Redis CPU per message separately, msg/s, peak PSS, and the
// idle PSS of rspamd + Redis, and the whole appliance (Node, Dovecot, rspamd, Redis) idle and loaded.
// Both stacks run side by side; the measurements alternate between them (L C, C L, L C …) so load
// from other work on the machine falls on both; /proc/loadavg is printed with every measurement.
//   node bench/spam.ts [--messages 1000] [--spam-share 0.2] [--rounds 3] [--no-spam-peer]
import { generateKeyPairSync, createPrivateKey } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync, mkdirSync, chmodSync, chownSync, readdirSync, readFileSync } from 'node:fs';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDns } from '../test/helpers/dns.ts';
import { freePort } from '../test/helpers/appliance.ts';
import { dkimSignatures } from '../src/dkim/sign.ts';
import { renderRedisConfig, renderRspamdFiles, rspamdArgs, spamPaths } from '../src/spam/config.ts';
import { RspamdClient, redisPing } from '../src/spam/client.ts';
import { loadavg } from 'node:os';
import { cpuMs, ownCpuMs, pssKb, rssSampler, run, machine, table, arg, waitFor, tree } from './lib.ts';
import { letterboxStack, classicStack, type Stack } from './stacks.ts';

const N = Number(arg('messages', '1000'));
const SPAM_SHARE = Number(arg('spam-share', '0.2'));
const ROUNDS = Number(arg('rounds', '3'));
const DOMAIN = 'bench.test';
const USER = 'user';
const SENDER_DOMAIN = 'sender.bench.test';
const HS_CACHE = join(tmpdir(), 'letterbox-test-rspamd-hs');
const ADD_HEADER_PATTERN = 'YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

function makeMessage(privateKeyPem: string, spam: boolean): string {
  const para = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\r\n';
  const text = para.repeat(18) + (spam ? `${ADD_HEADER_PATTERN}\r\n` : '');
  const html = `<html><body><p>${para.repeat(14)}</p></body></html>\r\n`;
  const unsigned =
    `From: Bench Sender <news@${SENDER_DOMAIN}>\r\nTo: <${USER}@${DOMAIN}>\r\nSubject: Benchmark message\r\n` +
    `Date: ${new Date().toUTCString()}\r\nMessage-ID: <bench.${spam ? 'spam' : 'ham'}@${SENDER_DOMAIN}>\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n` +
    `--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}--b1--\r\n`;
  const sig = dkimSignatures(Buffer.from(unsigned), [{ domain: SENDER_DOMAIN, selector: 'b1', algorithm: 'rsa', key: createPrivateKey(privateKeyPem) }], new Date());
  return sig + unsigned;
}

const isSpamProc = (pid: number) => {
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    return comm.startsWith('rspamd') || comm.startsWith('redis-server');
  } catch {
    return false;
  }
};
const spamPids = (roots: number[]) => tree(roots).filter(isSpamProc);
/** CPU ms of rspamd's and Redis's processes (each its own utime+stime; their workers do not exit). */
const spamCpu = (roots: number[]) => spamPids(roots).reduce((a, p) => a + ownCpuMs(p), 0);
const spamPssMb = (roots: number[]) => Math.round(spamPids(roots).reduce((a, p) => a + pssKb(p), 0) / 1024);

/** A private rspamd (proxy worker as a milter, scanning itself) + Redis for Postfix, same generated config. */
async function milterRspamd(nameserver: string, o2: { authChecks: boolean }): Promise<{ port: number; roots: number[]; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'lbb-rspamd-'));
  chmodSync(dir, 0o755);
  const paths = spamPaths(dir);
  const port = await freePort();
  const o = { paths, nameservers: [nameserver], thresholds: { reject: 15, junk: 6, greylist: 4 }, greylisting: false, greylistDelaySeconds: 300, hsCacheDir: HS_CACHE, fuzzy: false, testPatterns: true, maxScanSize: 10485760, redisMaxMemory: 128 * 1024 * 1024, source: 'bench' };
  const files = renderRspamdFiles(o);
  files['override.d/worker-proxy.inc'] = `bind_socket = "127.0.0.1:${port}";\nmilter = yes;\ntimeout = 120s;\ncount = 1;\nupstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n`;
  files['override.d/worker-normal.inc'] = 'enabled = false;\ncount = 0;\n';
  // The classic stack as it is usually run: rspamd itself checks SPF, DKIM, DMARC and ARC (in
  // Letterbox's config these modules are off because Letterbox checked them before the scan).
  if (o2.authChecks) for (const m of ['spf', 'dkim', 'dmarc', 'arc']) delete files[`override.d/${m}.conf`];
  for (const [rel, c] of Object.entries(files)) {
    mkdirSync(dirname(join(paths.confDir, rel)), { recursive: true });
    writeFileSync(join(paths.confDir, rel), c, { mode: 0o644 });
  }
  for (const d of [paths.dbDir, paths.runDir, paths.redisDir, HS_CACHE]) mkdirSync(d, { recursive: true });
  writeFileSync(paths.redisConfig, renderRedisConfig(o), { mode: 0o644 });
  const ids = { uid: Number(execFileSync('id', ['-u', '_rspamd'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', '_rspamd'], { encoding: 'utf8' })) };
  execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, dir, HS_CACHE]);
  execFileSync('chmod', ['-R', 'a+rX', paths.confDir]);
  const redis = spawn('redis-server', [paths.redisConfig], { ...ids, stdio: 'ignore' });
  if (!(await waitFor(() => redisPing(paths.redisSocket), 20000))) throw new Error('bench Redis did not start');
  const rspamd = spawn('rspamd', rspamdArgs(paths), { ...ids, stdio: 'ignore' });
  const probe = async () => {
    try {
      execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`]);
      return true;
    } catch {
      return false;
    }
  };
  if (!(await waitFor(probe, 180000, 500))) throw new Error('bench rspamd (milter) did not start');
  await sleep(3000); // workers and maps settle
  const stopOne = async (c: ChildProcess) => {
    c.kill('SIGTERM');
    await waitFor(() => c.exitCode !== null || c.signalCode !== null, 10000);
  };
  return {
    port,
    roots: [rspamd.pid!, redis.pid!],
    async stop() {
      await stopOne(rspamd);
      await stopOne(redis);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The appliance's processes by component (comm of each process under the stack's roots). */
function component(pid: number): 'Node' | 'Dovecot' | 'rspamd' | 'Redis' | 'other' {
  let comm = '';
  try {
    comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {}
  if (comm.startsWith('rspamd')) return 'rspamd';
  if (comm.startsWith('redis')) return 'Redis';
  if (comm === 'node' || comm.startsWith('letterbox') || comm === 'MainThread') return 'Node';
  try {
    const exe = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (/dovecot/.test(exe)) return 'Dovecot';
  } catch {}
  if (['dovecot', 'lmtp', 'imap', 'imap-login', 'auth', 'config', 'log', 'anvil', 'stats', 'pop3-login', 'managesieve', 'managesieve-login', 'indexer', 'indexer-worker', 'dict', 'imap-urlauth', 'lmtp-login'].includes(comm)) return 'Dovecot';
  return 'other';
}
type Parts = Record<'Node' | 'Dovecot' | 'rspamd' | 'Redis' | 'other' | 'total', number>;
function rollup(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const m of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').matchAll(/^(\w+):\s+(\d+) kB$/gm)) out[m[1]] = Number(m[2]);
  } catch {}
  return out;
}
/**
 * Memory per component three ways, MB: PSS (shared pages split between all their users, machine-wide:
 * other rspamd/Node/Dovecot instances on this machine lower it), RSS summed (shared pages counted in
 * every process: an upper bound), and "alone": private pages summed plus, per component, the largest
 * shared set of one of its processes (its binary and libraries counted once): what the appliance
 * would take on a machine of its own.
 */
function parts(roots: number[]): { pss: Parts; rss: Parts; alone: Parts } {
  const z = (): Parts => ({ Node: 0, Dovecot: 0, rspamd: 0, Redis: 0, other: 0, total: 0 });
  const pss = z(), rss = z(), priv = z(), shared = z();
  for (const p of tree(roots)) {
    const r = rollup(p);
    const c = component(p);
    pss[c] += r.Pss ?? 0;
    rss[c] += r.Rss ?? 0;
    priv[c] += (r.Private_Clean ?? 0) + (r.Private_Dirty ?? 0);
    shared[c] = Math.max(shared[c], (r.Shared_Clean ?? 0) + (r.Shared_Dirty ?? 0));
  }
  const alone = z();
  for (const k of ['Node', 'Dovecot', 'rspamd', 'Redis', 'other'] as const) alone[k] = priv[k] + shared[k];
  const mb = (x: Parts): Parts => {
    x.total = x.Node + x.Dovecot + x.rspamd + x.Redis + x.other;
    for (const k of Object.keys(x) as (keyof Parts)[]) x[k] = Math.round(x[k] / 1024);
    return x;
  };
  return { pss: mb(pss), rss: mb(rss), alone: mb(alone) };
}
const fmt = (p: Parts) => `Node ${p.Node}, Dovecot ${p.Dovecot}, rspamd ${p.rspamd}, Redis ${p.Redis}${p.other ? `, other ${p.other}` : ''}: total ${p.total}`;
const fmt3 = (x: { pss: Parts; rss: Parts; alone: Parts }) => `PSS [${fmt(x.pss)}]; RSS summed [${fmt(x.rss)}]; alone [${fmt(x.alone)}]`;
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
/** CPU ms of the stack's live processes by component (each process's own utime+stime). */
function cpuParts(roots: number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of tree(roots)) {
    let c: string = component(p);
    if (c === 'other') {
      try {
        if (/postfix/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8'))) c = 'Postfix';
      } catch {}
    }
    out[c] = (out[c] ?? 0) + ownCpuMs(p);
  }
  return out;
}

interface Row {
  round: number;
  stack: string;
  messages: number;
  seconds: string;
  'msg/s': string;
  'CPU ms/msg (whole stack)': string;
  'of which rspamd+Redis': string;
  'split ms/msg (live processes)': string;
  'peak PSS MB (all)': number;
  'rspamd+Redis PSS MB idle → peak': string;
  'load before → after': string;
  note: string;
}

interface Bench {
  name: string;
  stack: Stack;
  extraRoots: number[];
}
const rootsOf = (b: Bench) => [...b.stack.roots(), ...b.extraRoots];

/** 30 ham + 30 spam, not counted (first LMTP connections, JIT, rspamd's first scans). */
async function warm(b: Bench, files: { ham: string; spam: string }): Promise<void> {
  const base0 = b.stack.delivered();
  for (const f of [files.ham, files.spam]) await run('smtp-source', ['-s', '5', '-m', '30', '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', f, `127.0.0.1:${b.stack.port}`]);
  await waitFor(() => b.stack.delivered() >= base0 + 60, 120000);
}

type Peak = { parts: { pss: Parts; rss: Parts; alone: Parts } };
async function measure(round: number, b: Bench, files: { ham: string; spam: string }, peaks: Peak): Promise<Row> {
  const roots = () => rootsOf(b);
  await sleep(2000);
  const loadBefore = load();
  const idle = spamPssMb(roots());
  const before = b.stack.delivered();
  const cpu0 = cpuMs(roots());
  const s0 = spamCpu(roots());
  const p0 = cpuParts(roots());
  let spamPeak = idle;
  const sampler = setInterval(() => {
    spamPeak = Math.max(spamPeak, spamPssMb(roots()));
    const p = parts(roots());
    if (p.alone.total > peaks.parts.alone.total) peaks.parts = p;
  }, 500);
  const mem = rssSampler(roots);
  const nSpam = Math.round(N * SPAM_SHARE);
  const nHam = N - nSpam;
  const t0 = performance.now();
  const results = await Promise.all([
    run('smtp-source', ['-s', '16', '-d', '-m', String(nHam), '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', files.ham, `127.0.0.1:${b.stack.port}`]),
    run('smtp-source', ['-s', '4', '-d', '-m', String(nSpam), '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', files.spam, `127.0.0.1:${b.stack.port}`]),
  ]);
  const all = await waitFor(() => b.stack.delivered() >= before + N, 600000, 50);
  const ms = performance.now() - t0;
  const cpu = cpuMs(roots()) - cpu0;
  const sc = spamCpu(roots()) - s0;
  const p1 = cpuParts(roots());
  clearInterval(sampler);
  const m = mem.stop();
  const got = b.stack.delivered() - before;
  const bad = results.filter((r) => r.code !== 0).map((r) => r.stderr.trim().split('\n').pop());
  return {
    round,
    stack: b.name,
    messages: got,
    seconds: (ms / 1000).toFixed(1),
    'msg/s': (got / (ms / 1000)).toFixed(0),
    'CPU ms/msg (whole stack)': (cpu / Math.max(1, got)).toFixed(2),
    'of which rspamd+Redis': (sc / Math.max(1, got)).toFixed(2),
    'split ms/msg (live processes)': Object.keys(p1)
      .filter((k) => p1[k] - (p0[k] ?? 0) > 0)
      .map((k) => `${k} ${((p1[k] - (p0[k] ?? 0)) / Math.max(1, got)).toFixed(2)}`)
      .join(', '),
    'peak PSS MB (all)': m.peakMb,
    'rspamd+Redis PSS MB idle → peak': `${idle} → ${spamPeak}`,
    'load before → after': `${loadBefore} → ${load()}`,
    note: [all ? '' : `only ${got} stored`, ...bad.map((x) => `smtp-source: ${x}`)].filter(Boolean).join('; '),
  };
}

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
const dns = await new TestDns().start();
dns.txt(`b1._domainkey.${SENDER_DOMAIN}`, `v=DKIM1; k=rsa; p=${publicKey.toString('base64')}`);
dns.txt(SENDER_DOMAIN, 'v=spf1 ip4:127.0.0.1 -all');
dns.txt(`_dmarc.${SENDER_DOMAIN}`, 'v=DMARC1; p=reject');
const dir = mkdtempSync(join(tmpdir(), 'lbb-spam-msg-'));
const files = { ham: join(dir, 'ham.eml'), spam: join(dir, 'spam.eml') };
writeFileSync(files.ham, makeMessage(privateKey, false).replace(/\r\n/g, '\n'));
writeFileSync(files.spam, makeMessage(privateKey, true).replace(/\r\n/g, '\n'));
console.log(`# spam benchmark — ${machine()}`);
console.log(`# ${N} messages per measurement (${Math.round(N * SPAM_SHARE)} spam at add-header score, the rest DKIM/DMARC-passing ham), 20 sessions reusing connections; ${ROUNDS} rounds alternating the stacks`);
const rows: Row[] = [];
const cleanups: (() => Promise<void>)[] = [];
// Interrupted: stop every stack started so far (they are not children that die with us).
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await dns.stop().catch(() => {});
    process.exit(130);
  });
}
try {
  const lb = await letterboxStack({
    dnsServer: dns.server,
    domain: DOMAIN,
    user: USER,
    extraToml: `[spam]\nenabled = true\ngreylisting = false\nfuzzy = false\ntest_patterns = true\nhs_cache_dir = "${HS_CACHE}"\n`,
    // PROF=1: a V8 CPU profile of Letterbox's Node process in /tmp/prof-spam (written at its exit).
    env: process.env.PROF ? { NODE_OPTIONS: '--cpu-prof --cpu-prof-dir=/tmp/prof-spam' } : undefined,
  });
  cleanups.push(() => lb.stop());
  const milterCf = (port: number) => `smtpd_milters = inet:127.0.0.1:${port}\nmilter_default_action = tempfail\nmilter_protocol = 6\nmilter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}\n`;
  const milter = await milterRspamd(dns.server, { authChecks: false });
  cleanups.push(() => milter.stop());
  const classic = await classicStack({ domain: DOMAIN, user: USER, extraMainCf: milterCf(milter.port) });
  cleanups.push(() => classic.stop());
  const milterA = await milterRspamd(dns.server, { authChecks: true });
  cleanups.push(() => milterA.stop());
  const classicA = await classicStack({ domain: DOMAIN, user: USER, extraMainCf: milterCf(milterA.port) });
  cleanups.push(() => classicA.stop());
  const L: Bench = { name: 'Letterbox + rspamd (HTTP, Unix socket)', stack: lb, extraRoots: [] };
  // --no-spam-peer: Letterbox with spam filtering off in the same run: what the scan costs Node.
  let N0: Bench | null = null;
  if (process.argv.includes('--no-spam-peer')) {
    const lb0 = await letterboxStack({ dnsServer: dns.server, domain: DOMAIN, user: USER, extraToml: `[spam]\nenabled = false\n` });
    cleanups.push(() => lb0.stop());
    N0 = { name: 'Letterbox, spam filtering off', stack: lb0, extraRoots: [] };
  }
  const C: Bench = { name: 'Postfix → rspamd milter → LMTP → Dovecot', stack: classic, extraRoots: milter.roots };
  const CA: Bench = { name: 'same, rspamd checking SPF/DKIM/DMARC/ARC', stack: classicA, extraRoots: milterA.roots };
  // The appliance idle: just started (rspamd's maps loaded, no mail yet), then after the warm-up.
  await sleep(5000);
  const fresh = parts(rootsOf(L));
  await warm(L, files);
  await warm(C, files);
  await warm(CA, files);
  if (N0) await warm(N0, files);
  await sleep(5000);
  const idleL = parts(rootsOf(L));
  const idleC = spamPssMb(rootsOf(C));
  console.log(`# Letterbox appliance idle, just started (no mail yet), MB: ${fmt3(fresh)}`);
  console.log(`# Letterbox appliance idle, after the warm-up, MB: ${fmt3(idleL)}`);
  console.log(`# classic stack's rspamd+Redis idle PSS: ${idleC} MB (load ${load()})`);
  const peaks: { L: Peak; other: Peak } = { L: { parts: idleL }, other: { parts: parts(rootsOf(C)) } };
  for (let r = 1; r <= ROUNDS; r++) {
    const order = [...(r % 2 === 1 ? [L, C, CA] : [CA, C, L]), ...(N0 ? [N0] : [])];
    for (const b of order) {
      const row = await measure(r, b, files, b === L ? peaks.L : peaks.other);
      console.log(JSON.stringify(row));
      rows.push(row);
    }
  }
  console.log('\n' + table(rows as any));
  const mean = (name: string, k: keyof Row) => {
    const v = rows.filter((x) => x.stack === name).map((x) => Number(x[k]));
    return v.reduce((a, b) => a + b, 0) / v.length;
  };
  for (const peer of [C, CA]) {
    for (let r = 1; r <= ROUNDS; r++) {
      const [a, b] = [rows.find((x) => x.round === r && x.stack === L.name)!, rows.find((x) => x.round === r && x.stack === peer.name)!];
      console.log(`# round ${r}: Letterbox ÷ ${peer.name}: CPU/msg ${(Number(a['CPU ms/msg (whole stack)']) / Number(b['CPU ms/msg (whole stack)'])).toFixed(2)}, msg/s ${(Number(a['msg/s']) / Number(b['msg/s'])).toFixed(2)}`);
    }
  }
  for (const b of [L, C, CA]) {
    console.log(`# mean of ${ROUNDS}: ${b.name}: ${mean(b.name, 'CPU ms/msg (whole stack)').toFixed(2)} ms/msg (rspamd+Redis ${mean(b.name, 'of which rspamd+Redis').toFixed(2)}), ${mean(b.name, 'msg/s').toFixed(0)} msg/s`);
  }
  for (const peer of [C, CA]) {
    console.log(`# mean ratio Letterbox ÷ ${peer.name}: CPU/msg ${(mean(L.name, 'CPU ms/msg (whole stack)') / mean(peer.name, 'CPU ms/msg (whole stack)')).toFixed(2)}, msg/s ${(mean(L.name, 'msg/s') / mean(peer.name, 'msg/s')).toFixed(2)}`);
  }
  console.log(`# Letterbox appliance at its loaded peak (largest "alone" total, sampled every 0.5 s), MB: ${fmt3(peaks.L.parts)}`);
  console.log(`# load at the end: ${load()}`);
} finally {
  for (const c of cleanups.reverse()) await c().catch((e) => console.error('cleanup:', e.message));
  await dns.stop();
  rmSync(dir, { recursive: true, force: true });
}
