import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { LetterboxError } from '../errors.ts';

// The daemon runs under a tiny shell guard whose stdin is a pipe from this process: when Letterbox
// exits for any reason, even SIGKILL, the pipe closes and the guard stops the daemon, so it is
// never left orphaned (Node has no PR_SET_PDEATHSIG). "$@" is the daemon and its args.
const GUARD = `
exec 3<&0 </dev/null
"$@" &
d=$!
trap 'kill -TERM $d 2>/dev/null' TERM INT
( read -r _ <&3; kill -TERM $d 2>/dev/null ) &
w=$!
wait $d; rc=$?
while kill -0 $d 2>/dev/null; do wait $d; rc=$?; done
kill $w 2>/dev/null; wait $w 2>/dev/null
`;
// With `processGroup`, the guard leads its own process group (spawned detached): once the daemon's
// main process is gone, whatever it left in the group (rspamd workers whose main process was
// SIGKILLed keep serving otherwise) is stopped too, TERM then KILL.
const GROUP_STOP = `trap '' TERM
g=$(ps -o pid= -g $$ 2>/dev/null)
for p in $g; do [ "$p" = $$ ] || kill -TERM $p 2>/dev/null; done
for p in $g; do
  [ "$p" = $$ ] && continue
  n=0; while [ $n -lt 50 ] && kill -0 $p 2>/dev/null; do sleep 0.1; n=$((n+1)); done
  kill -KILL $p 2>/dev/null
done
`;

/** The guard's script: with `processGroup`, it also stops what the daemon left in its group. Pure. */
export function guardScript(processGroup: boolean): string {
  return GUARD + (processGroup ? GROUP_STOP : '') + 'exit $rc\n';
}

/**
 * The wait before restarting a daemon that exited unexpectedly: 1 s, 2 s, 4 s … 30 s, counted
 * again from 1 s once it had been up for over a minute. `restarts` are those since that reset. Pure.
 */
export function restartBackoff(restarts: number, upForMs: number): { delayMs: number; restarts: number } {
  const before = upForMs > 60000 ? 0 : restarts;
  return { delayMs: Math.min(30000, 1000 * 2 ** before), restarts: before + 1 };
}

export interface SupervisedOptions {
  /** Short name for logs and metrics ("rspamd", "redis"): the log lines' component. */
  name: string;
  /** The daemon's name in log messages and errors ("Dovecot"); default `name`. */
  label?: string;
  command: string;
  args: string[];
  /** Working directory: one the daemon's user can enter (it may not enter Letterbox's own). */
  cwd?: string;
  /** Run as this uid/gid (when Letterbox runs as root); omitted = as Letterbox itself. */
  uid?: number;
  gid?: number;
  /** True once the daemon serves requests (polled during start and after each restart). */
  ready(): Promise<boolean>;
  readyTimeoutMs: number;
  /** How a line the daemon printed maps to a log level. */
  levelOf?(line: string): 'error' | 'warn' | 'info' | 'debug';
  log: Logger;
  /** Called after each restart once the daemon is ready again. */
  onReady?(): void;
  /** Run the guard in a process group of its own and stop what the daemon leaves in it (default true). */
  processGroup?: boolean;
  /** How often readiness is polled (default 100 ms). */
  pollMs?: number;
  /** The error text when the daemon is not ready in time (default: "<label> was not ready within N ms"). */
  notReadyText?(timeoutMs: number): string;
}

/**
 * A supervised child daemon: started in the foreground, restarted with exponential backoff (1 s …
 * 30 s, reset after a minute up) when it exits unexpectedly, stopped (SIGTERM, then SIGKILL after
 * 8 s) on shutdown, never orphaned.
 */
export class SupervisedProcess {
  private child: ChildProcess | null = null;
  private stopping = false;
  private restarts = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly o: SupervisedOptions;
  /** True while the daemon runs and answered its readiness probe. */
  running = false;
  /** Unexpected exits followed by a restart, since start (metrics). */
  restartCount = 0;

  constructor(o: SupervisedOptions) {
    this.o = o;
  }

  private get label(): string {
    return this.o.label ?? this.o.name;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Starts the daemon and resolves once it is ready. */
  async start(): Promise<void> {
    this.stopping = false;
    this.spawn();
    await this.waitReady(this.o.readyTimeoutMs);
  }

  private spawn(): void {
    const processGroup = this.o.processGroup ?? true;
    const child = spawn('/bin/sh', ['-c', guardScript(processGroup), 'guard', this.o.command, ...this.o.args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(processGroup ? { detached: true } : {}),
      ...(this.o.cwd ? { cwd: this.o.cwd } : {}),
      ...(this.o.uid !== undefined ? { uid: this.o.uid, gid: this.o.gid } : {}),
    });
    this.child = child;
    this.startedAt = Date.now();
    const clog = this.o.log.child({ component: this.o.name });
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        if (!line.trim()) return;
        const level = this.o.levelOf?.(line) ?? 'info';
        clog[level]({ [this.o.name]: line.slice(0, 2000) }, this.o.name);
      });
    }
    child.stdin!.on('error', () => {});
    child.on('error', (err) => clog.error({ err: err.message }, `${this.label} could not be started`));
    child.on('exit', (code, signal) => {
      this.running = false;
      if (this.child === child) this.child = null;
      if (this.stopping) return;
      const next = restartBackoff(this.restarts, Date.now() - this.startedAt);
      this.restarts = next.restarts;
      this.restartCount++;
      clog.error({ code, signal, restartInMs: next.delayMs }, `${this.label} exited unexpectedly; restarting`);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (this.stopping) return;
        this.spawn();
        this.waitReady(this.o.readyTimeoutMs).then(
          () => this.o.onReady?.(),
          (err) => clog.error({ err: err.message }, `${this.label} did not become ready after restart`),
        );
      }, next.delayMs);
      this.restartTimer.unref();
    });
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const child = this.child;
    while (Date.now() < deadline) {
      if (this.stopping) return;
      if (!child || child.exitCode !== null || child.signalCode !== null || this.child !== child) {
        throw new LetterboxError('unavailable', `${this.label} exited during start-up; see the "${this.o.name}" lines in the log`);
      }
      if (await this.o.ready().catch(() => false)) {
        this.running = true;
        this.o.log.info({ pid: child.pid, component: this.o.name, ms: Date.now() - this.startedAt }, `${this.label} ready`);
        return;
      }
      await sleep(this.o.pollMs ?? 100);
    }
    throw new LetterboxError('unavailable', this.o.notReadyText?.(timeoutMs) ?? `${this.label} was not ready within ${timeoutMs} ms`);
  }

  /** Stops the daemon and waits for it to exit (SIGKILL after 8 s). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.running = false;
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
