import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { LetterboxError } from '../errors.ts';

// `dovecot -F` runs under a tiny shell guard whose stdin is a pipe from this process: when Letterbox
// exits for any reason, even SIGKILL, the pipe closes and the guard stops Dovecot, so no Dovecot is
// ever left orphaned. (Node has no PR_SET_PDEATHSIG.)
const GUARD = `
exec 3<&0 </dev/null
"$0" -F -c "$1" &
d=$!
trap 'kill -TERM $d 2>/dev/null' TERM INT
( read -r _ <&3; kill -TERM $d 2>/dev/null ) &
w=$!
wait $d; rc=$?
while kill -0 $d 2>/dev/null; do wait $d; rc=$?; done
kill $w 2>/dev/null
exit $rc
`;

export interface SupervisorOptions {
  binary: string;
  configPath: string;
  baseDir: string;
  /** Host and port to probe for readiness (the first IMAP listener). */
  probe: { host: string; port: number };
  lmtpSocket: string;
  log: Logger;
}

export class DovecotSupervisor {
  private child: ChildProcess | null = null;
  private stopping = false;
  private restarts = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly o: SupervisorOptions;
  running = false;
  /** Unexpected exits followed by a restart, since start (metrics). */
  restartCount = 0;

  constructor(o: SupervisorOptions) {
    this.o = o;
  }

  /** Starts Dovecot and resolves once it accepts connections. */
  async start(): Promise<void> {
    if (!existsSync(this.o.binary)) {
      throw new LetterboxError('unavailable', `Dovecot not found at ${this.o.binary}: install it (apt-get install dovecot-imapd dovecot-lmtpd dovecot-sieve, or run install.sh) or set dovecot.binary`);
    }
    await this.stopStale();
    this.spawn();
    await this.waitReady(15000);
  }

  /** A master left by an earlier run (e.g. after a crash) holds the base_dir: stop it first. */
  private async stopStale(): Promise<void> {
    const pidFile = join(this.o.baseDir, 'master.pid');
    let pid: number;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      return;
    }
    if (!pid || !alive(pid)) return;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return;
    }
    if (!cmd.includes('dovecot') || !cmd.includes(this.o.configPath)) return;
    this.o.log.warn({ pid }, 'stopping a Dovecot left running by an earlier run');
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }

  private spawn(): void {
    const child = spawn('/bin/sh', ['-c', GUARD, this.o.binary, this.o.configPath], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.startedAt = Date.now();
    const dlog = this.o.log.child({ component: 'dovecot' });
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        if (!line.trim()) return;
        const level = /\b(Fatal|Panic|Error):/.test(line) ? 'error' : /\bWarning:/.test(line) ? 'warn' : 'info';
        dlog[level]({ dovecot: line }, 'dovecot');
      });
    }
    child.stdin!.on('error', () => {});
    child.on('exit', (code, signal) => {
      this.running = false;
      if (this.child === child) this.child = null;
      if (this.stopping) return;
      const upFor = Date.now() - this.startedAt;
      if (upFor > 60000) this.restarts = 0;
      const delay = Math.min(30000, 1000 * 2 ** this.restarts);
      this.restarts++;
      this.restartCount++;
      this.o.log.error({ code, signal, restartInMs: delay }, 'Dovecot exited unexpectedly; restarting');
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (!this.stopping) {
          this.spawn();
          this.waitReady(15000).catch((err) => this.o.log.error({ err: err.message }, 'Dovecot did not become ready after restart'));
        }
      }, delay);
      this.restartTimer.unref();
    });
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const child = this.child;
    while (Date.now() < deadline) {
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        throw new LetterboxError('unavailable', 'Dovecot exited during start-up; see the dovecot lines in the log');
      }
      if (existsSync(this.o.lmtpSocket) && (await canConnect(this.o.probe.host, this.o.probe.port))) {
        this.running = true;
        this.o.log.info({ pid: child.pid }, 'Dovecot ready');
        return;
      }
      await sleep(50);
    }
    throw new LetterboxError('unavailable', `Dovecot did not accept connections on ${this.o.probe.host}:${this.o.probe.port} within ${timeoutMs} ms`);
  }

  /** Stops Dovecot and waits for it to exit (SIGKILL after 8 s). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.stdin!.on('error', () => {}); // the child may already be gone: EPIPE is not an error here
    child.stdin!.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(timer);
    child.stdout?.destroy();
    child.stderr?.destroy();
  }
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
