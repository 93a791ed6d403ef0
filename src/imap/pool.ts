// A pool of IMAP connections to Dovecot, logged in as the master user for one mailbox each
// (`user@domain*letterbox`), so the API sees exactly what mail clients see. Logins cost an Argon2
// verification (~35 ms) in Dovecot's auth process, so connections are kept and reused: at most
// `maxPerMailbox` per mailbox and `maxTotal` in all; idle ones close after `idleTimeoutMs`; a caller
// waits at most `acquireTimeoutMs` for one (then 503). IMAP failures become 502 `imap_error`.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { ImapFlow } from 'imapflow';
import { ImapAppender, type ImapLogin } from './append.ts';
import { LetterboxError, isLetterboxError } from '../errors.ts';
import { parseHostPort } from '../config/schema.ts';
import type { AppContext } from '../context.ts';
import type { Component } from '../server.ts';
import type { Logger } from '../log.ts';

export interface ImapPoolOptions extends ImapLogin {
  maxPerMailbox?: number;
  maxTotal?: number;
  idleTimeoutMs?: number;
  acquireTimeoutMs?: number;
  connectTimeoutMs?: number;
}

interface Conn {
  address: string;
  client: ImapFlow;
  busy: boolean;
  idleTimer: NodeJS.Timeout | null;
}

interface Waiter {
  address: string;
  resolve(c: Conn): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout;
}

export class ImapPool {
  private readonly o: Required<Omit<ImapPoolOptions, 'log' | 'isUp'>> & { log: Logger; isUp?: () => boolean };
  private readonly conns = new Set<Conn>();
  /** Connections being opened, per mailbox (they count against the limits). */
  private readonly opening = new Map<string, number>();
  private waiters: Waiter[] = [];
  private closed = false;
  logins = 0;

  constructor(o: ImapPoolOptions) {
    this.o = { maxPerMailbox: 2, maxTotal: 20, idleTimeoutMs: 60_000, acquireTimeoutMs: 10_000, connectTimeoutMs: 10_000, ...o };
  }

  stats(): { open: number; busy: number; idle: number; waiting: number } {
    let busy = 0;
    for (const c of this.conns) if (c.busy) busy++;
    return { open: this.conns.size, busy, idle: this.conns.size - busy, waiting: this.waiters.length };
  }

  /** Runs `fn` with a logged-in connection for `address`; errors other than LetterboxErrors become imap_error. */
  async with<T>(address: string, fn: (client: ImapFlow) => Promise<T>): Promise<T> {
    const conn = await this.acquire(address);
    try {
      return await fn(conn.client);
    } catch (err: any) {
      if (isLetterboxError(err)) throw err;
      throw new LetterboxError('imap_error', `IMAP error for ${address}: ${imapMessage(err)}`, undefined, { cause: err });
    } finally {
      this.release(conn);
    }
  }

  private count(address: string): number {
    let n = this.opening.get(address) ?? 0;
    for (const c of this.conns) if (c.address === address) n++;
    return n;
  }

  private total(): number {
    let n = this.conns.size;
    for (const v of this.opening.values()) n += v;
    return n;
  }

  private takeIdle(address: string): Conn | null {
    for (const c of this.conns) {
      if (c.address === address && !c.busy) {
        if (!c.client.usable) {
          this.drop(c);
          continue;
        }
        c.busy = true;
        if (c.idleTimer) clearTimeout(c.idleTimer);
        c.idleTimer = null;
        return c;
      }
    }
    return null;
  }

  /** Closes an idle connection of another mailbox to make room; false when there is none. */
  private evictIdle(): boolean {
    for (const c of this.conns) {
      if (!c.busy) {
        this.drop(c);
        return true;
      }
    }
    return false;
  }

  /** Tries to get a connection now: an idle one, or a new one within the limits. null = must wait. */
  private tryAcquire(address: string): Promise<Conn> | null {
    const idle = this.takeIdle(address);
    if (idle) return Promise.resolve(idle);
    if (this.count(address) >= this.o.maxPerMailbox) return null;
    if (this.total() >= this.o.maxTotal && !this.evictIdle()) return null;
    return this.open(address);
  }

  async acquire(address: string): Promise<Conn> {
    if (this.closed) throw new LetterboxError('unavailable', 'the IMAP connection pool is closed (shutting down)');
    if (this.o.isUp && !this.o.isUp()) throw new LetterboxError('unavailable', 'Dovecot is not running (it is being restarted; see the log); retry shortly');
    const now = this.tryAcquire(address);
    if (now) return now;
    return new Promise<Conn>((resolve, reject) => {
      const w: Waiter = {
        address,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new LetterboxError('unavailable', `no IMAP connection for ${address} became free within ${this.o.acquireTimeoutMs} ms; retry shortly`));
        }, this.o.acquireTimeoutMs),
      };
      this.waiters.push(w);
    });
  }

  private async open(address: string): Promise<Conn> {
    this.opening.set(address, (this.opening.get(address) ?? 0) + 1);
    const opened = () => {
      const n = (this.opening.get(address) ?? 1) - 1;
      if (n <= 0) this.opening.delete(address);
      else this.opening.set(address, n);
      // A failed open frees capacity for someone waiting.
      queueMicrotask(() => this.pump());
    };
    // imapflow is loaded with the first IMAP session (~30 MB RSS, bench/README.md "Memory"): an
    // appliance whose API never reads mail does not pay for it.
    let Client: typeof ImapFlow;
    try {
      Client = (await import('imapflow')).ImapFlow;
    } catch (err) {
      opened();
      throw err;
    }
    const client = new Client({
      host: this.o.host,
      port: this.o.port,
      secure: true,
      servername: this.o.servername,
      tls: { ca: this.o.ca, servername: this.o.servername, minVersion: 'TLSv1.2' },
      auth: { user: `${address}*${this.o.masterUser}`, pass: this.o.masterPassword },
      logger: false,
      disableAutoIdle: true,
      connectionTimeout: this.o.connectTimeoutMs,
      greetingTimeout: this.o.connectTimeoutMs,
      socketTimeout: 5 * 60_000,
    } as any);
    client.on('error', (err: any) => this.o.log.debug({ component: 'imap-pool', mailbox: address, err: err?.message }, 'IMAP connection error'));
    try {
      await client.connect();
      this.logins++;
    } catch (err: any) {
      try {
        client.close();
      } catch {}
      throw new LetterboxError('imap_error', `cannot open an IMAP session for ${address}: ${imapMessage(err)}`, undefined, { cause: err });
    } finally {
      opened();
    }
    const conn: Conn = { address, client, busy: true, idleTimer: null };
    client.on('close', () => {
      this.conns.delete(conn);
      if (conn.idleTimer) clearTimeout(conn.idleTimer);
      this.pump();
    });
    this.conns.add(conn);
    if (this.closed) {
      this.drop(conn);
      throw new LetterboxError('unavailable', 'the IMAP connection pool is closed (shutting down)');
    }
    return conn;
  }

  private release(conn: Conn): void {
    conn.busy = false;
    if (this.closed || !conn.client.usable) {
      this.drop(conn);
      this.pump();
      return;
    }
    // Someone waiting for this mailbox gets it directly.
    const i = this.waiters.findIndex((w) => w.address === conn.address);
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      conn.busy = true;
      w.resolve(conn);
      return;
    }
    conn.idleTimer = setTimeout(() => this.drop(conn), this.o.idleTimeoutMs);
    conn.idleTimer.unref();
    this.pump();
  }

  /** Serves waiters in order when capacity appeared. */
  private pump(): void {
    if (this.closed) return;
    for (const w of [...this.waiters]) {
      const p = this.tryAcquire(w.address);
      if (!p) continue;
      this.waiters = this.waiters.filter((x) => x !== w);
      clearTimeout(w.timer);
      p.then(w.resolve, w.reject);
    }
  }

  private drop(conn: Conn): void {
    this.conns.delete(conn);
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    conn.idleTimer = null;
    const c = conn.client;
    if (c.usable) c.logout().catch(() => c.close());
    else {
      try {
        c.close();
      } catch {}
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new LetterboxError('unavailable', 'the IMAP connection pool is closed (shutting down)'));
    }
    this.waiters = [];
    const all = [...this.conns];
    this.conns.clear();
    await Promise.all(
      all.map(async (conn) => {
        if (conn.idleTimer) clearTimeout(conn.idleTimer);
        try {
          await Promise.race([conn.client.logout(), new Promise((r) => setTimeout(r, 1000).unref())]);
        } catch {}
        try {
          conn.client.close();
        } catch {}
      }),
    );
  }
}

/** The server's words for an IMAP failure (imapflow puts them in responseText). */
export function imapMessage(err: any): string {
  return String(err?.responseText || err?.response || err?.message || err || 'unknown error').slice(0, 300);
}

/** Where and how the appliance's own IMAP clients log in: the first listen.imap address, as master (null without one). */
export function imapLogin(app: Pick<AppContext, 'config' | 'dovecot' | 'supervisor' | 'log'>): ImapLogin | null {
  const listen = app.config.listen.imap[0];
  if (!listen) return null;
  const hp = parseHostPort(listen)!;
  const host = hp.host === '0.0.0.0' ? '127.0.0.1' : hp.host === '::' ? '::1' : hp.host;
  let own: string[] = [];
  try {
    own = [readFileSync(app.config.tls.cert, 'utf8')];
  } catch {}
  return {
    host,
    port: hp.port,
    servername: app.config.hostname,
    ca: [...rootCertificates, ...own],
    masterUser: app.dovecot.masterUser,
    masterPassword: app.dovecot.masterPassword,
    isUp: () => !app.supervisor || app.supervisor.running,
    log: app.log,
  };
}

/** Thrown when the API reaches for IMAP on an appliance without an IMAP listener. */
export function noImapListener(): LetterboxError {
  return new LetterboxError('unavailable', 'no IMAP listener is configured (listen.imap); reading mail over the API needs one');
}

/** Closes the context's pool and APPEND sessions at shutdown. Listed first among the components, so it is stopped last. */
export function createImapPoolComponent(app: AppContext): Component {
  return {
    name: 'imap-pool',
    async start() {},
    async stop() {
      if (!app.config.listen.imap[0]) return; // nothing was ever opened
      await app.imapAppender.close();
      await app.imapPool.close();
    },
  };
}
