// Stores messages in mailboxes with IMAP APPEND, logged in to Dovecot as the master user — the same
// door as the reading pool (pool.ts), so quota, flags and UIDs are Dovecot's own.
//
// Why not imapflow here (it serves every read): on the API send path an APPEND through imapflow cost
// ~2.5 ms of CPU, a third of a whole send (measured with bench/api.ts). APPEND needs only the
// greeting, LOGIN and one command, so this speaks that much IMAP itself (RFC 9051 §6.2.3, §6.3.12;
// literals without round trips: LITERAL+, RFC 7888, which Dovecot always offers), over one TLS
// connection per mailbox. Concurrent APPENDs to one folder are batched: while one APPEND command is
// out, the messages that arrive meanwhile wait and then go together as one MULTIAPPEND (RFC 3502),
// which Dovecot saves in one transaction (one uidlist update and index sync for the batch instead of
// one per message: the per-message Dovecot cost that paced API sends). MULTIAPPEND is all or
// nothing, so a refused batch stores none of its messages and each is then tried alone, which keeps
// one message's refusal (over quota) from failing the others.
import { connect, type TLSSocket } from 'node:tls';
import { LetterboxError } from '../errors.ts';
import type { Logger } from '../log.ts';

/** Where the appliance's own IMAP clients connect and how they log in (as Dovecot's master user). */
export interface ImapLogin {
  host: string;
  port: number;
  /** TLS server name (the certificate's name: config.hostname). */
  servername: string;
  /** Trusted CAs: the system's plus the appliance's own (possibly self-signed) certificate. */
  ca: string[];
  masterUser: string;
  masterPassword: string;
  /** False while Dovecot is known to be down (then 503 at once instead of a failed connection). */
  isUp?: () => boolean;
  log: Logger;
}

export interface AppenderOptions extends ImapLogin {
  /** Sessions open at once, all mailboxes together; at the limit an idle one is closed, or the caller waits. */
  maxConnections?: number;
  /** Sessions of one mailbox (a busy mailbox's APPENDs spread over them); default 1. */
  maxPerMailbox?: number;
  idleTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Longest wait for Dovecot's answer to one command; then the connection is dropped. */
  commandTimeoutMs?: number;
  /** Longest wait for a free connection slot. */
  acquireTimeoutMs?: number;
}

export interface AppendResult {
  uid: number | null;
  uidValidity: number | null;
}

/** A message waiting to go out in the next APPEND command of its session. */
interface Queued {
  folder: string;
  message: Buffer;
  flags: string[];
  /** Sent in a command of its own (its batch was refused: find out which message it was). */
  alone: boolean;
  resolve(r: AppendResult): void;
  reject(err: Error): void;
}

/** Most messages, and most bytes, in one MULTIAPPEND. */
const BATCH_MAX = 50;
const BATCH_BYTES = 8 * 1024 * 1024;

/** The UIDs of an APPENDUID uid-set ("7", "7:9", "7,9:10"; RFC 4315), in order; null if malformed. */
export function uidSet(set: string): number[] | null {
  const out: number[] = [];
  for (const part of set.split(',')) {
    const m = /^(\d+)(?::(\d+))?$/.exec(part);
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    // RFC 3501 allows a range either way round; the UIDs of a MULTIAPPEND ascend in message order.
    for (let u = Math.min(a, b); u <= Math.max(a, b); u++) {
      out.push(u);
      if (out.length > 100_000) return null;
    }
  }
  return out;
}

interface Pending {
  tag: string;
  resolve(r: { status: string; code: string; text: string }): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** A tagged completion: `TAG OK|NO|BAD [CODE] text`. */
export function parseTagged(line: string): { tag: string; status: string; code: string; text: string } | null {
  const m = /^([^\s*+]\S*) (OK|NO|BAD)(?:$| (?:\[([^\]]*)\] ?)?(.*)$)/i.exec(line);
  return m ? { tag: m[1], status: m[2].toUpperCase(), code: m[3] ?? '', text: m[4] ?? '' } : null;
}

/** A flag as IMAP writes it: a system flag (\\Seen) or a keyword atom; anything else is refused. */
const FLAG = /^\\?[A-Za-z0-9$_.:-]{1,64}$/;

/** An IMAP literal of `s`, non-synchronizing (LITERAL+): safe for any bytes, needs no quoting rules. */
function literal(s: string | Buffer): Buffer[] {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  return [Buffer.from(`{${b.length}+}\r\n`), b];
}

/** One logged-in session for one mailbox. */
class Session {
  readonly address: string;
  private readonly o: Required<Omit<AppenderOptions, 'isUp' | 'log'>> & { log: Logger };
  private readonly socket: TLSSocket;
  private buf: Buffer = Buffer.alloc(0);
  /** A response line being assembled across literals. */
  private partial = '';
  private skip = 0;
  private readonly pending: Pending[] = [];
  /** Messages waiting for the APPEND command that is out to be answered. */
  private readonly queue: Queued[] = [];
  private appending = false;
  /** APPENDs accepted and not yet answered, including those waiting for the login. */
  private inFlight = 0;
  /** close() was asked while APPENDs were in flight: LOGOUT once they are answered. */
  private draining: (() => void) | null = null;
  private next = 1;
  private idleTimer: NodeJS.Timeout | null = null;
  private greetedOnce = false;
  private greeted: Promise<void>;
  private ready: Promise<void>;
  closed = false;
  private onGreeting!: (caps: string) => void;
  private readonly onClosed: () => void;
  private readonly onIdle: () => void;

  private readonly onCommand: () => void;

  constructor(address: string, o: Session['o'], on: { closed: () => void; idle: () => void; command: () => void }) {
    this.address = address;
    this.o = o;
    this.onClosed = on.closed;
    this.onIdle = on.idle;
    this.onCommand = on.command;
    this.socket = connect({ host: o.host, port: o.port, servername: o.servername, ca: o.ca, minVersion: 'TLSv1.2' });
    this.socket.setNoDelay(true);
    const connectTimer = setTimeout(() => this.fail(new Error(`no IMAP greeting within ${o.connectTimeoutMs} ms`)), o.connectTimeoutMs);
    this.greeted = new Promise<void>((resolve, reject) => {
      this.onGreeting = (caps) => {
        clearTimeout(connectTimer);
        if (!/\bLITERAL\+/i.test(caps)) reject(new Error('the IMAP server does not offer LITERAL+'));
        else resolve();
      };
      this.socket.once('close', () => reject(new Error('connection closed before the greeting')));
    });
    this.greeted.catch(() => clearTimeout(connectTimer));
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(new Error('connection closed')));
    this.ready = this.greeted.then(() =>
      this.command([Buffer.from('LOGIN '), ...literal(`${address}*${o.masterUser}`), Buffer.from(' '), ...literal(o.masterPassword)]).then((r) => {
        if (r.status !== 'OK') throw new Error(`login refused: ${r.text}`);
      }),
    );
    this.ready.catch((err) => this.fail(err));
  }

  /** APPENDs in flight on this session (also those still waiting for the login). */
  get load(): number {
    return this.inFlight;
  }

  /** Counts an APPEND about to be made (before any await, so the session is not taken for idle). */
  reserve(): this {
    this.inFlight++;
    return this;
  }

  /** One message to store; the caller reserved it first. It goes out in the next APPEND command. */
  async append(folder: string, message: Buffer, flags: string[]): Promise<AppendResult> {
    try {
      await this.ready;
      return await new Promise<AppendResult>((resolve, reject) => {
        if (this.closed) throw new Error('connection closed');
        this.queue.push({ folder, message, flags, alone: false, resolve, reject });
        this.flush();
      });
    } finally {
      if (--this.inFlight === 0 && !this.closed) {
        if (this.draining) this.logout();
        else {
          this.idleTimer = setTimeout(() => void this.close(), this.o.idleTimeoutMs);
          this.idleTimer.unref();
          this.onIdle();
        }
      }
    }
  }

  /**
   * Sends the next APPEND command unless one is out: the first waiting message together with the
   * others waiting for the same folder (up to BATCH_MAX messages and BATCH_BYTES).
   */
  private flush(): void {
    if (this.appending || this.closed || !this.queue.length) return;
    const first = this.queue[0];
    const batch: Queued[] = [];
    let bytes = 0;
    for (let i = 0; i < this.queue.length && batch.length < BATCH_MAX; ) {
      const q = this.queue[i];
      const fits = batch.length === 0 || (!first.alone && !q.alone && q.folder === first.folder && bytes + q.message.length <= BATCH_BYTES);
      if (!fits) {
        i++;
        continue;
      }
      batch.push(q);
      bytes += q.message.length;
      this.queue.splice(i, 1);
      if (first.alone) break;
    }
    const parts: Buffer[] = [Buffer.from('APPEND '), ...literal(first.folder)];
    for (const q of batch) parts.push(Buffer.from(` (${q.flags.join(' ')}) `), ...literal(q.message));
    this.appending = true;
    this.onCommand();
    this.command(parts).then(
      (r) => {
        this.settle(batch, r);
        // The next command waits for the callers just answered (and the I/O of this turn) to queue
        // their next messages, so that it carries them all rather than only the first to arrive.
        setImmediate(() => {
          this.appending = false;
          this.flush();
        });
      },
      (err: Error) => {
        this.appending = false;
        for (const q of batch) q.reject(err);
      },
    );
  }

  private settle(batch: Queued[], r: { status: string; code: string; text: string }): void {
    if (r.status !== 'OK' && batch.length > 1) {
      // All or nothing (RFC 3502): none of them was stored. Each goes again on its own, first.
      for (const q of batch) q.alone = true;
      this.queue.unshift(...batch);
      return;
    }
    if (r.status !== 'OK') {
      batch[0].reject(new LetterboxError('imap_error', `APPEND to ${batch[0].folder} for ${this.address} refused: ${r.code ? `[${r.code}] ` : ''}${r.text}`));
      return;
    }
    const m = /^APPENDUID (\d+) (\S+)$/i.exec(r.code);
    const uids = m ? uidSet(m[2]) : null;
    const ok = uids !== null && uids.length === batch.length;
    batch.forEach((q, i) => q.resolve({ uid: ok ? uids[i] : null, uidValidity: ok ? Number(m![1]) : null }));
  }

  private command(parts: Buffer[]): Promise<{ status: string; code: string; text: string }> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    const tag = `L${this.next++}`;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`no answer to an IMAP command within ${this.o.commandTimeoutMs} ms`)), this.o.commandTimeoutMs);
      this.pending.push({ tag, resolve, reject, timer });
      this.socket.write(Buffer.concat([Buffer.from(tag + ' '), ...parts, Buffer.from('\r\n')]));
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      if (this.skip > 0) {
        // The bytes of a literal inside an untagged response: not needed here.
        const n = Math.min(this.skip, this.buf.length);
        this.skip -= n;
        this.buf = this.buf.subarray(n);
        if (this.skip > 0) return;
      }
      const eol = this.buf.indexOf('\r\n');
      if (eol < 0) return;
      const line = this.buf.toString('utf8', 0, eol);
      this.buf = this.buf.subarray(eol + 2);
      const lit = /\{(\d+)\+?\}$/.exec(line);
      if (lit) {
        this.partial += line;
        this.skip = Number(lit[1]);
        continue;
      }
      this.onLine(this.partial + line);
      this.partial = '';
    }
  }

  private onLine(line: string): void {
    if (line.startsWith('* ')) {
      if (/^\* OK\b/i.test(line) && !this.greetedOnce) {
        this.greetedOnce = true;
        this.onGreeting(line);
      } else if (/^\* BYE\b/i.test(line)) this.fail(new Error(`Dovecot closed the session: ${line.slice(6)}`));
      return;
    }
    if (line.startsWith('+')) return; // continuation: not asked for (every literal is LITERAL+)
    const t = parseTagged(line);
    const p = this.pending[0];
    if (!t || !p || t.tag !== p.tag) {
      this.fail(new Error(`unexpected IMAP response: ${line.slice(0, 200)}`));
      return;
    }
    this.pending.shift();
    clearTimeout(p.timer);
    p.resolve(t);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.draining?.();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    for (const q of this.queue.splice(0)) q.reject(err);
    this.socket.destroy();
    this.onClosed();
  }

  /**
   * Ends the session: at once when idle, else after the APPENDs in flight are answered (Dovecot may
   * already have stored them: failing them would make callers retry into duplicates), waiting at
   * most `graceMs` before cutting the connection.
   */
  close(graceMs = 2000): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.inFlight === 0) {
      this.logout();
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.fail(new Error(`shutting down: no answer within ${graceMs} ms`)), graceMs);
      timer.unref();
      const prev = this.draining;
      this.draining = () => {
        clearTimeout(timer);
        prev?.();
        resolve();
      };
    });
  }

  private logout(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const drained = this.draining;
    this.draining = null;
    this.socket.end(`L${this.next++} LOGOUT\r\n`);
    this.socket.setTimeout(1000, () => this.socket.destroy());
    this.onClosed();
    drained?.();
  }
}

/**
 * Stores messages over IMAP sessions: `maxPerMailbox` per mailbox (default 1), at most
 * `maxConnections` in all. One session per mailbox is the default on purpose: with batching, one
 * session stores over 1,000 messages a second (bench/imap-append.ts: 20 concurrent callers,
 * 4 KB messages; about 250 a second when each APPEND carried one message), while sessions of the same
 * mailbox in separate imap processes make each other reread the Maildir's uidlist after every save.
 */
export class ImapAppender {
  private readonly o: Session['o'];
  private readonly isUp?: () => boolean;
  private readonly sessions = new Map<string, Session[]>();
  private open = 0;
  private waiters: (() => void)[] = [];
  private closing = false;
  logins = 0;
  /** APPEND commands sent (each carries one message or a MULTIAPPEND batch). */
  appendCommands = 0;

  constructor(o: AppenderOptions) {
    const { isUp, ...rest } = o;
    this.isUp = isUp;
    this.o = { maxConnections: 20, maxPerMailbox: 1, idleTimeoutMs: 60_000, connectTimeoutMs: 10_000, commandTimeoutMs: 30_000, acquireTimeoutMs: 10_000, ...rest };
  }

  /** APPENDs `message` to `folder` of `address` with `flags`; failures are 502 imap_error / 503. */
  async append(address: string, folder: string, message: Buffer, flags: string[] = []): Promise<AppendResult> {
    const bad = flags.find((f) => !FLAG.test(f));
    if (bad !== undefined) throw new LetterboxError('validation_error', `invalid IMAP flag ${JSON.stringify(bad)}: a system flag such as \\Seen or a keyword of letters and digits`);
    const s = await this.session(address);
    try {
      return await s.append(folder, message, flags);
    } catch (err: any) {
      if (err instanceof LetterboxError) throw err;
      throw new LetterboxError('imap_error', `IMAP APPEND for ${address} failed: ${err?.message ?? err}`, undefined, { cause: err });
    }
  }

  /** Sessions open now (all mailboxes). */
  get size(): number {
    return this.open;
  }

  private async session(address: string): Promise<Session> {
    for (;;) {
      if (this.closing) throw new LetterboxError('unavailable', 'the IMAP appender is closed (shutting down)');
      if (this.isUp && !this.isUp()) throw new LetterboxError('unavailable', 'Dovecot is not running (it is being restarted; see the log); retry shortly');
      const mine = this.sessions.get(address) ?? [];
      // The least loaded session of this mailbox; a free one is used as it is.
      let best: Session | undefined;
      for (const s of mine) if (!s.closed && (!best || s.load < best.load)) best = s;
      if (best && (best.load === 0 || mine.length >= this.o.maxPerMailbox)) return best.reserve();
      if (this.open < this.o.maxConnections) return this.start(address).reserve();
      if (best) return best.reserve(); // no room for another: queue behind the others
      // Make room by closing a session with nothing in flight; else wait for one to end or go idle.
      let idle: Session | undefined;
      for (const list of this.sessions.values()) idle ??= list.find((s) => s.load === 0);
      if (idle) void idle.close();
      else await this.slot();
    }
  }

  private start(address: string): Session {
    const s: Session = new Session(address, this.o, {
      closed: () => {
        const list = this.sessions.get(address);
        const i = list ? list.indexOf(s) : -1;
        if (i >= 0) {
          list!.splice(i, 1);
          this.open--;
          if (!list!.length) this.sessions.delete(address);
        }
        this.waiters.shift()?.();
      },
      // A session with nothing in flight can be closed to make room for a waiting caller.
      idle: () => this.waiters.shift()?.(),
      command: () => this.appendCommands++,
    });
    const list = this.sessions.get(address);
    if (list) list.push(s);
    else this.sessions.set(address, [s]);
    this.open++;
    this.logins++;
    return s;
  }

  private slot(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== go);
        reject(new LetterboxError('unavailable', `all ${this.o.maxConnections} IMAP append sessions stayed busy for ${this.o.acquireTimeoutMs} ms; retry shortly`));
      }, this.o.acquireTimeoutMs);
      const go = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(go);
    });
  }

  /** At shutdown: new APPENDs are refused; those in flight are answered first (at most `graceMs`). */
  async close(graceMs = 2000): Promise<void> {
    this.closing = true;
    for (const w of this.waiters.splice(0)) w();
    await Promise.all([...this.sessions.values()].flat().map((s) => s.close(graceMs)));
    this.sessions.clear();
  }
}
