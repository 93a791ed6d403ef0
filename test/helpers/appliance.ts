// Test harness: runs a real `letterbox serve` child process on free loopback ports with its own
// temporary data dir, and the real CLI against the same config.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, rmSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { ImapLogin } from '../../src/imap/append.ts';
import { MASTER_USER } from '../../src/dovecot/config.ts';
import { silentLogger } from '../../src/log.ts';
import { doveadmBinary } from '../../src/services/quota.ts';

export const APP_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(APP_DIR, 'src', 'cli.ts');

/**
 * Test ports come from below the kernel's ephemeral range: a port picked with listen(0) lies inside
 * that range, and any outgoing connection on the machine (a test's client socket, an appliance's
 * IMAP pool, the other test file running beside this one) may take it as its local port between
 * the pick and the appliance's listen — CI saw exactly that as EADDRINUSE. Outside the range only
 * a listener can take a port, and listeners here all get their ports from this function, which
 * reserves each one for every test process on the machine with an exclusive file holding its pid.
 */
const RESERVATIONS = join(tmpdir(), 'letterbox-test-ports');
const reserved: string[] = [];
let reservationsReady = false;
let rangeCache: [number, number] | undefined;

function testPortRange(): [number, number] {
  if (rangeCache) return rangeCache;
  let low = 32768;
  let high = 60999;
  try {
    [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number) as [number, number];
  } catch {
    // not Linux: keep the defaults
  }
  rangeCache = low - 1 - 20000 >= 2000 ? [20000, low - 1] : [high + 1, 65535];
  return rangeCache;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err: any) {
    return err.code === 'EPERM';
  }
}

/** Claims `port` for this process across every test process; false when another live one holds it. */
function reserve(port: number): boolean {
  const file = join(RESERVATIONS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o644 });
      reserved.push(file);
      return true;
    } catch (err: any) {
      if (err.code !== 'EEXIST') throw err;
      const owner = Number(readFileSync(file, 'utf8') || 0);
      if (owner === process.pid || (owner > 0 && alive(owner))) return false;
      rmSync(file, { force: true }); // left by a test process that is gone
    }
  }
  return false;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.unref();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/** A loopback port that nothing listens on, outside the ephemeral range, never handed out twice. */
export async function freePort(): Promise<number> {
  if (!reservationsReady) {
    reservationsReady = true;
    mkdirSync(RESERVATIONS, { recursive: true, mode: 0o1777 });
    process.once('exit', () => reserved.forEach((f) => rmSync(f, { force: true })));
  }
  const [lo, hi] = testPortRange();
  for (let tries = 0; tries < 1000; tries++) {
    const port = lo + Math.floor(Math.random() * (hi - lo + 1));
    if (reserve(port) && (await bindable(port))) return port;
  }
  throw new Error(`no free test port in ${lo}-${hi}`);
}

export interface Ports {
  mx: number;
  submission: number;
  submissions: number;
  imap: number;
  api: number;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Appliance {
  dir: string;
  /** The config's hostname (the name on its generated certificate). */
  hostname: string;
  dataDir: string;
  configPath: string;
  ports: Ports;
  logs: string[];
  process: ChildProcess;
  /** Runs the real CLI with this appliance's config. */
  cli(args: string[], opts?: { input?: string; env?: Record<string, string> }): Promise<CliResult>;
  /** Runs the CLI and parses --json output; throws with stderr on a non-zero exit. */
  cliJson<T = any>(args: string[], opts?: { input?: string }): Promise<T>;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the same appliance again (same config and data) after stop/kill. */
  restart(): Promise<void>;
  cleanup(): void;
}

export function runCli(configPath: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((res) => {
    const child = execFile(
      process.execPath,
      ['--disable-warning=ExperimentalWarning', CLI, '--config', configPath, ...args],
      { env: { ...process.env, ...opts.env }, maxBuffer: 20 * 1024 * 1024 },
      (err: any, stdout, stderr) => res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
    // A child that exits before reading its input must not turn into an EPIPE error here.
    child.stdin!.on('error', () => {});
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

/** The config of a test appliance in `dir`: state in dir/data, certificate in dir/certs, loopback ports. */
export function applianceToml(dir: string, ports: Ports, opts: { extraToml?: string; hostname?: string; dataDir?: string } = {}): string {
  return `hostname = "${opts.hostname ?? 'mail.letterbox.test'}"
data_dir = "${opts.dataDir ?? join(dir, 'data')}"
ips = ["127.0.0.1"]
[listen]
mx = ["127.0.0.1:${ports.mx}"]
submission = ["127.0.0.1:${ports.submission}"]
submissions = ["127.0.0.1:${ports.submissions}"]
imap = ["127.0.0.1:${ports.imap}"]
api = "127.0.0.1:${ports.api}"
[tls]
cert = "${join(dir, 'certs', 'fullchain.pem')}"
key = "${join(dir, 'certs', 'privkey.pem')}"
${opts.extraToml ?? ''}
${/^\[spam\]/m.test(opts.extraToml ?? '') ? '' : '# Spam filtering (rspamd) is tested in test/spam.test.ts; elsewhere it would add start-up time\n# and score the synthetic test mail.\n[spam]\nenabled = false\n'}`;
}

/** How long an appliance may take to say ready (a loaded 2-core machine needs more than an idle one). */
const READY_MS = Number(process.env.LB_TEST_READY_MS ?? 60000);

/** Extra TOML appended to the generated config (sections such as [smtp], [dns], [outbound]). */
/** `nodeArgs`: Node/V8 flags for the serve process (benchmarks: what src/bin/letterbox gives serve). */
/** `dataDir`: state somewhere else than dir/data (the power-loss test's FUSE mount). */
export async function startAppliance(opts: { extraToml?: string; hostname?: string; env?: Record<string, string>; nodeArgs?: string[]; ports?: Partial<Ports>; readyTimeoutMs?: number; dataDir?: string } = {}): Promise<Appliance> {
  const dir = mkdtempSync(join(tmpdir(), 'lbt-'));
  chmodSync(dir, 0o755); // Dovecot's mail uid must traverse into data/
  const ports: Ports = { mx: await freePort(), submission: await freePort(), submissions: await freePort(), imap: await freePort(), api: await freePort(), ...opts.ports };
  const dataDir = opts.dataDir ?? join(dir, 'data');
  const configPath = join(dir, 'letterbox.toml');
  writeFileSync(configPath, applianceToml(dir, ports, opts));
  const logs: string[] = [];
  let child!: ChildProcess;
  const launch = () =>
    new Promise<void>((res, rej) => {
      child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', ...(opts.nodeArgs ?? []), CLI, '--config', configPath, 'serve'], {
        // info, the production default (LETTERBOX_LOG_LEVEL is [log] level); a test may ask for more.
        env: { ...process.env, LETTERBOX_LOG_LEVEL: 'info', ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let ready = false;
      // Not ready in time: kill it, or the test file never ends (its after hook has no appliance to
      // stop, and the child's pipes keep the runner waiting past every test timeout).
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        rej(new Error(`appliance not ready after ${(opts.readyTimeoutMs ?? READY_MS) / 1000} s:\n${logs.slice(-30).join('\n')}`));
      }, opts.readyTimeoutMs ?? READY_MS);
      for (const s of [child.stdout!, child.stderr!]) {
        createInterface({ input: s }).on('line', (line) => {
          logs.push(line);
          if (!ready && line.includes('"letterbox ready"')) {
            ready = true;
            clearTimeout(timer);
            res();
          }
        });
      }
      child.once('exit', (code) => {
        if (!ready) {
          clearTimeout(timer);
          rej(new Error(`appliance exited with ${code} before ready:\n${logs.slice(-30).join('\n')}`));
        }
      });
    });
  await launch();
  const app: Appliance = {
    dir,
    hostname: opts.hostname ?? 'mail.letterbox.test',
    dataDir,
    configPath,
    ports,
    logs,
    get process() {
      return child;
    },
    cli: (args, o) => runCli(configPath, args, o),
    async cliJson(args, o) {
      const r = await runCli(configPath, ['--json', ...args], o);
      if (r.code !== 0) throw new Error(`letterbox ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      return exited;
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill(signal);
      await exited;
    },
    async restart() {
      await launch();
    },
    cleanup() {
      try {
        child.kill('SIGKILL');
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return app;
}

/** The certificate the appliance generated (tests trust it explicitly instead of disabling checks). */
export function applianceCert(app: Appliance): string {
  return readFileSync(join(app.dir, 'certs', 'fullchain.pem'), 'utf8');
}

/**
 * How the appliance's own IMAP clients log in to its Dovecot (the master user over TLS, its own
 * certificate trusted), for tests and benches that drive the appender or the reading pool directly.
 */
export function applianceImapLogin(app: Appliance): ImapLogin {
  return {
    host: '127.0.0.1',
    port: app.ports.imap,
    servername: app.hostname,
    ca: [applianceCert(app)],
    masterUser: MASTER_USER,
    masterPassword: readFileSync(join(app.dataDir, 'secrets', 'dovecot-master'), 'utf8').trim(),
    log: silentLogger(),
  };
}

/** doveadm against the appliance's Dovecot: exit code and output (never throws). */
export function doveadm(app: Appliance, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) =>
    execFile(doveadmBinary(process.env.LETTERBOX_DOVECOT_BINARY || '/usr/sbin/dovecot'), ['-c', join(app.dataDir, 'dovecot', 'dovecot.conf'), ...args], { timeout: 10000 }, (err: any, stdout, stderr) =>
      res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    ),
  );
}
