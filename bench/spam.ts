// Spam-filtering benchmark (issue #14): the same ham/spam mix through
//   Letterbox + rspamd:  MX (SPF/DKIM/DMARC/ARC) → rspamd /checkv2 over its Unix socket → LMTP → Dovecot
//   classic:             Postfix smtpd → rspamd proxy as a milter (self_scan) → queue → LMTP → Dovecot
// with the same generated rspamd config (src/spam/config.ts; greylisting off, test patterns on so
// the "spam" message scores add-header deterministically) and its own Redis each. Reports
// whole-stack CPU per message, rspamd+Redis CPU per message separately, msg/s, peak PSS, and the
// idle PSS of rspamd + Redis.
//   node bench/spam.ts [--messages 1000] [--spam-share 0.2]
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
import { cpuMs, ownCpuMs, pssKb, rssSampler, run, machine, table, arg, waitFor, tree } from './lib.ts';
import { letterboxStack, classicStack, type Stack } from './stacks.ts';

const N = Number(arg('messages', '1000'));
const SPAM_SHARE = Number(arg('spam-share', '0.2'));
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
async function milterRspamd(nameserver: string): Promise<{ port: number; roots: number[]; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'lbb-rspamd-'));
  chmodSync(dir, 0o755);
  const paths = spamPaths(dir);
  const port = await freePort();
  const o = { paths, nameservers: [nameserver], thresholds: { reject: 15, junk: 6, greylist: 4 }, greylisting: false, greylistDelaySeconds: 300, hsCacheDir: HS_CACHE, fuzzy: false, testPatterns: true, maxScanSize: 10485760, redisMaxMemory: 128 * 1024 * 1024, source: 'bench' };
  const files = renderRspamdFiles(o);
  files['override.d/worker-proxy.inc'] = `bind_socket = "127.0.0.1:${port}";\nmilter = yes;\ntimeout = 120s;\ncount = 1;\nupstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n`;
  files['override.d/worker-normal.inc'] = 'enabled = false;\ncount = 0;\n';
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
  const rspamd = spawn('rspamd', rspamdArgs(paths), { ...ids, stdio: ['ignore', 'ignore', 'inherit'] });
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

interface Row {
  stack: string;
  messages: number;
  seconds: string;
  'msg/s': string;
  'CPU ms/msg (whole stack)': string;
  'of which rspamd+Redis': string;
  'peak PSS MB (all)': number;
  'rspamd+Redis PSS MB idle → peak': string;
  note: string;
}

async function measure(name: string, stack: Stack, extraRoots: number[], files: { ham: string; spam: string }): Promise<Row> {
  const roots = () => [...stack.roots(), ...extraRoots];
  // Warm-up: 30 of each, not counted (first LMTP connections, JIT, rspamd's first scans).
  const base0 = stack.delivered();
  for (const f of [files.ham, files.spam]) await run('smtp-source', ['-s', '5', '-m', '30', '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', f, `127.0.0.1:${stack.port}`]);
  await waitFor(() => stack.delivered() >= base0 + 60, 120000);
  await sleep(2000);
  const idle = spamPssMb(roots());
  const before = stack.delivered();
  const cpu0 = cpuMs(roots());
  const s0 = spamCpu(roots());
  let spamPeak = idle;
  const sampler = setInterval(() => (spamPeak = Math.max(spamPeak, spamPssMb(roots()))), 500);
  const mem = rssSampler(roots);
  const nSpam = Math.round(N * SPAM_SHARE);
  const nHam = N - nSpam;
  const t0 = performance.now();
  const results = await Promise.all([
    run('smtp-source', ['-s', '16', '-d', '-m', String(nHam), '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', files.ham, `127.0.0.1:${stack.port}`]),
    run('smtp-source', ['-s', '4', '-d', '-m', String(nSpam), '-f', `news@${SENDER_DOMAIN}`, '-t', `${USER}@${DOMAIN}`, '-M', 'client.bench.test', '-F', files.spam, `127.0.0.1:${stack.port}`]),
  ]);
  const all = await waitFor(() => stack.delivered() >= before + N, 600000, 50);
  const ms = performance.now() - t0;
  const cpu = cpuMs(roots()) - cpu0;
  const sc = spamCpu(roots()) - s0;
  clearInterval(sampler);
  const m = mem.stop();
  const got = stack.delivered() - before;
  const bad = results.filter((r) => r.code !== 0).map((r) => r.stderr.trim().split('\n').pop());
  return {
    stack: name,
    messages: got,
    seconds: (ms / 1000).toFixed(1),
    'msg/s': (got / (ms / 1000)).toFixed(0),
    'CPU ms/msg (whole stack)': (cpu / Math.max(1, got)).toFixed(2),
    'of which rspamd+Redis': (sc / Math.max(1, got)).toFixed(2),
    'peak PSS MB (all)': m.peakMb,
    'rspamd+Redis PSS MB idle → peak': `${idle} → ${spamPeak}`,
    note: [all ? '' : `only ${got} stored`, ...bad.map((b) => `smtp-source: ${b}`)].filter(Boolean).join('; '),
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
console.log(`# ${N} messages per stack (${Math.round(N * SPAM_SHARE)} spam at add-header score, the rest DKIM/DMARC-passing ham), 20 sessions reusing connections`);
const rows: Row[] = [];

{
  const lb = await letterboxStack({
    dnsServer: dns.server,
    domain: DOMAIN,
    user: USER,
    extraToml: `[spam]\nenabled = true\ngreylisting = false\nfuzzy = false\ntest_patterns = true\nhs_cache_dir = "${HS_CACHE}"\n`,
  });
  try {
    const row = await measure('Letterbox + rspamd (HTTP, Unix socket)', lb, [], files);
    console.log(JSON.stringify(row));
    rows.push(row);
  } finally {
    await lb.stop();
  }
}
{
  const milter = await milterRspamd(dns.server);
  try {
    const classic = await classicStack({ domain: DOMAIN, user: USER, extraMainCf: `smtpd_milters = inet:127.0.0.1:${milter.port}\nmilter_default_action = tempfail\nmilter_protocol = 6\nmilter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}\n` });
    try {
      const row = await measure('Postfix → rspamd milter → LMTP → Dovecot', classic, milter.roots, files);
      console.log(JSON.stringify(row));
      rows.push(row);
    } finally {
      await classic.stop();
    }
  } finally {
    await milter.stop();
  }
}
await dns.stop();
rmSync(dir, { recursive: true, force: true });
console.log('\n' + table(rows as any));
if (rows.length === 2) {
  const [a, b] = rows;
  console.log(`# Letterbox ÷ classic: CPU/msg ${(Number(a['CPU ms/msg (whole stack)']) / Number(b['CPU ms/msg (whole stack)'])).toFixed(2)}, msg/s ${(Number(a['msg/s']) / Number(b['msg/s'])).toFixed(2)}`);
}
