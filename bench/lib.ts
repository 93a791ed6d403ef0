// Shared measuring tools for the benchmarks: CPU time and memory of whole process trees from /proc,
// machine description, running external load tools, and a results table.
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync, openSync, fstatSync, closeSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpus, totalmem, loadavg, tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_NODE_MODULES = join(dirname(fileURLToPath(import.meta.url)), 'node_modules');
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

interface Stat {
  pid: number;
  ppid: number;
  /** utime+stime+cutime+cstime in ticks: own CPU plus that of reaped children. */
  ticks: number;
}

function readStat(pid: number): Stat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields after comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return { pid, ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch {
    return null;
  }
}

function allStats(): Stat[] {
  const out: Stat[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = readStat(Number(d));
    if (s) out.push(s);
  }
  return out;
}

/** The pids of the given roots and all their descendants. */
export function tree(roots: number[]): number[] {
  const stats = allStats();
  const kids = new Map<number, number[]>();
  for (const s of stats) kids.set(s.ppid, [...(kids.get(s.ppid) ?? []), s.pid]);
  const out: number[] = [];
  const todo = [...roots];
  while (todo.length) {
    const p = todo.pop()!;
    if (out.includes(p)) continue;
    out.push(p);
    todo.push(...(kids.get(p) ?? []));
  }
  return out;
}

/**
 * CPU milliseconds used so far by a whole stack: every process under the roots, including
 * children that already exited and were reaped by a process of the tree (cutime/cstime).
 */
export function cpuMs(roots: number[]): number {
  let t = 0;
  for (const p of tree(roots)) t += readStat(p)?.ticks ?? 0;
  return (t * 1000) / HZ;
}

/** CPU ms of one process alone (utime+stime, without its children). */
export function ownCpuMs(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / HZ;
  } catch {
    return 0;
  }
}

export function rssKb(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Proportional set size (shared pages split between their users), kB. */
export function pssKb(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Sum of PSS over a process tree: the stack's real memory footprint. */
export function treePssKb(roots: number[]): number {
  return tree(roots).reduce((a, p) => a + pssKb(p), 0);
}

/** Sum of RSS over a process tree (shared pages counted in each process: an upper bound). */
export function treeRssKb(roots: number[]): number {
  return tree(roots).reduce((a, p) => a + rssKb(p), 0);
}

/**
 * Samples every 250 ms until stopped: peak PSS of the whole tree (MB) and peak RSS of the first
 * root alone (the main process, e.g. Letterbox's Node process).
 */
export function rssSampler(roots: () => number[]): { stop(): { peakMb: number; mainPeakMb: number; samples: number } } {
  let peak = 0;
  let main = 0;
  let n = 0;
  const sample = () => {
    n++;
    const r = roots();
    peak = Math.max(peak, treePssKb(r));
    main = Math.max(main, rssKb(r[0]));
  };
  const t = setInterval(sample, 250);
  return {
    stop() {
      clearInterval(t);
      sample();
      return { peakMb: Math.round(peak / 1024), mainPeakMb: Math.round(main / 1024), samples: n };
    },
  };
}

export function machine(): string {
  const node = process.version;
  let dovecot = '';
  let postfix = '';
  try {
    dovecot = execFileSync('dovecot', ['--version'], { encoding: 'utf8' }).trim();
  } catch {}
  try {
    postfix = execFileSync('postconf', ['-d', '-h', 'mail_version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {}
  const l = loadavg().map((x) => x.toFixed(2)).join(' ');
  return `${new Date().toISOString().slice(0, 16)}Z, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${node}, Dovecot ${dovecot || '?'}, Postfix ${postfix || '-'}, load before ${l}, ${speedProbe()}`;
}

/**
 * How fast this machine is right now: one RSA-2048 signature (pure computation) and one system call
 * (fstat), best of five rounds each. The development machine is a shared VM whose system calls got
 * 1.5× slower within an hour while computation did not; the mail and API paths are heavy in system
 * calls (sockets, files, fsync), so figures from different runs compare only alongside these.
 */
export function speedProbe(): string {
  const fd = openSync('/proc/self/stat', 'r');
  let sys = Infinity;
  for (let round = 0; round < 5; round++) {
    const t = performance.now();
    for (let i = 0; i < 5000; i++) fstatSync(fd);
    sys = Math.min(sys, ((performance.now() - t) * 1000) / 5000);
  }
  closeSync(fd);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const data = Buffer.alloc(512, 1);
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t = performance.now();
    for (let i = 0; i < 40; i++) cryptoSign('sha256', data, privateKey);
    best = Math.min(best, (performance.now() - t) / 40);
  }
  return `speed probe: RSA-2048 sign ${best.toFixed(3)} ms, fstat ${sys.toFixed(2)} µs`;
}

/** Runs a command to completion; resolves with wall ms, stdout, stderr, code. */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ ms: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const t0 = performance.now();
    const c = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) => res({ ms: performance.now() - t0, code, stdout, stderr }));
  });
}

/** Files in Maildir new/ and cur/ folders below a directory (delivered messages). */
export function countMaildir(root: string): number {
  if (!existsSync(root)) return 0;
  let n = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else if (/\/(new|cur)$/.test(d)) n++;
    }
  };
  walk(root);
  return n;
}

/** Files directly or below a directory. */
export function countFiles(root: string): number {
  if (!existsSync(root)) return 0;
  let n = 0;
  for (const e of readdirSync(root, { recursive: true }) as string[]) {
    try {
      if (statSync(join(root, e)).isFile()) n++;
    } catch {}
  }
  return n;
}

export async function waitFor(fn: () => boolean | Promise<boolean>, ms: number, step = 100): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, step));
  }
  return fn();
}

export interface WrkResult {
  rps: number;
  /** Latency percentiles in ms. */
  p50: number;
  p90: number;
  p99: number;
  total: number;
  /** Answers that were not 2xx/3xx. */
  wrong: number;
  /** Socket errors (connect, read, write, timeout). */
  errors: number;
  /** CPU ms wrk itself used (with `cpu: true`). */
  cpuMs?: number;
}

/**
 * Runs wrk (one thread) against `url` and parses what it prints. `lua` is extra script (headers,
 * request()); `thinkMs` > 0 adds wrk's delay(): each connection waits a random time (exponential,
 * that mean) between an answer and its next request.
 */
export function runWrk(url: string, o: { connections: number; seconds: number; thinkMs?: number; lua?: string; cpu?: boolean }): WrkResult {
  const dir = mkdtempSync(join(tmpdir(), 'lb-wrk-'));
  try {
    const script = join(dir, 'wrk.lua');
    writeFileSync(script, (o.lua ?? '') + (o.thinkMs ? `delay = function() return math.floor(-math.log(1 - math.random()) * ${o.thinkMs}) end\n` : ''));
    const args = ['-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency', '-s', script, url];
    // With `cpu`, wrk runs under GNU time's -f: its user+system seconds follow wrk's own output.
    let out: string;
    let cpuMs: number | undefined;
    if (o.cpu) {
      const r = spawnSync('/usr/bin/time', ['-f', 'WRKCPU %U %S', 'wrk', ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr}`);
      out = r.stdout;
      const m = /WRKCPU ([\d.]+) ([\d.]+)/.exec(r.stderr);
      cpuMs = m ? (Number(m[1]) + Number(m[2])) * 1000 : undefined;
    } else out = execFileSync('wrk', args, { encoding: 'utf8' });
    const ms = (q: string) => {
      const m = new RegExp(`^\\s*${q}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
      if (!m) throw new Error(`wrk printed no ${q}% latency:\n${out}`);
      return Math.round(Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1) * 100) / 100;
    };
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    return {
      rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
      p50: ms('50'),
      p90: ms('90'),
      p99: ms('99'),
      total: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
      wrong: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
      errors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
      cpuMs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function table(rows: Record<string, string | number>[]): string {
  if (!rows.length) return '';
  const cols = Object.keys(rows[0]);
  const line = (vals: (string | number)[]) => `| ${vals.join(' | ')} |`;
  return [line(cols), line(cols.map(() => '---')), ...rows.map((r) => line(cols.map((c) => r[c] ?? '')))].join('\n');
}

export function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}
