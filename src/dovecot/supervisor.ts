import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { LetterboxError } from '../errors.ts';
import { SupervisedProcess } from '../supervise/process.ts';

export interface SupervisorOptions {
  binary: string;
  configPath: string;
  baseDir: string;
  /** Host and port to probe for readiness (the first IMAP listener). */
  probe: { host: string; port: number };
  lmtpSocket: string;
  log: Logger;
}

/** The log level of a line Dovecot printed. Pure. */
export function dovecotLogLevel(line: string): 'error' | 'warn' | 'info' {
  return /\b(Fatal|Panic|Error):/.test(line) ? 'error' : /\bWarning:/.test(line) ? 'warn' : 'info';
}

/**
 * `dovecot -F` supervised like rspamd and Redis (src/supervise/process.ts: the guard that never
 * leaves it orphaned, restarts with backoff, stop), plus what is Dovecot's own: the binary must
 * exist, a master left by an earlier run is stopped first, and it is ready once the LMTP socket
 * exists and the first IMAP listener accepts connections. Dovecot's master stops its own processes,
 * so the guard runs in Letterbox's process group (processGroup: false), as it always did.
 */
export class DovecotSupervisor {
  private readonly o: SupervisorOptions;
  private readonly process: SupervisedProcess;

  constructor(o: SupervisorOptions) {
    this.o = o;
    this.process = new SupervisedProcess({
      name: 'dovecot',
      label: 'Dovecot',
      command: o.binary,
      args: ['-F', '-c', o.configPath],
      processGroup: false,
      levelOf: dovecotLogLevel,
      ready: async () => existsSync(o.lmtpSocket) && (await canConnect(o.probe.host, o.probe.port)),
      readyTimeoutMs: 15000,
      pollMs: 50,
      notReadyText: (ms) => `Dovecot did not accept connections on ${o.probe.host}:${o.probe.port} within ${ms} ms`,
      log: o.log,
    });
  }

  /** True while Dovecot runs and accepted a connection. */
  get running(): boolean {
    return this.process.running;
  }

  /** Unexpected exits followed by a restart, since start (metrics). */
  get restartCount(): number {
    return this.process.restartCount;
  }

  /** Starts Dovecot and resolves once it accepts connections. */
  async start(): Promise<void> {
    if (!existsSync(this.o.binary)) {
      throw new LetterboxError('unavailable', `Dovecot not found at ${this.o.binary}: install it (apt-get install dovecot-imapd dovecot-lmtpd dovecot-sieve, or run install.sh) or set dovecot.binary`);
    }
    await this.stopStale();
    await this.process.start();
  }

  /** Stops Dovecot and waits for it to exit (SIGKILL after 8 s). */
  stop(): Promise<void> {
    return this.process.stop();
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
