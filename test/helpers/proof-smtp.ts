// A raw SMTP client over a real socket for tests that must control every byte: sends exactly what
// it is given (no address normalisation, no dot-stuffing unless asked) and reads replies, including
// multi-line ones. Also used by the chaos test as a tiny "real MTA" sender with retries.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface Reply {
  code: number;
  /** All lines joined with \n, without the codes. */
  text: string;
  lines: string[];
}

export class RawSmtp {
  private sock: Socket | TLSSocket;
  private buf = '';
  private waiters: ((r: Reply | Error) => void)[] = [];
  private pending: Reply[] = [];
  private failure: Error | null = null;
  closed = false;
  /** Complete lines the server sent that are not SMTP reply lines (fuzz tests require none). */
  readonly malformed: string[] = [];

  private constructor(sock: Socket | TLSSocket) {
    this.sock = sock;
    this.attach();
  }

  private attach() {
    this.sock.setEncoding('latin1');
    this.sock.on('data', (d: string) => this.onData(d));
    this.sock.on('error', (err) => this.fail(err));
    this.sock.on('close', () => {
      this.closed = true;
      this.fail(new Error('connection closed'));
    });
  }

  private fail(err: Error) {
    if (!this.failure) this.failure = err;
    const ws = this.waiters.splice(0);
    for (const w of ws) w(err);
  }

  private onData(d: string) {
    this.buf += d;
    for (;;) {
      // A complete reply ends with a line "ddd<SP>..." (or "ddd" alone).
      const m = /^((?:\d{3}-[^\n]*\n)*)(\d{3})(?: [^\n]*)?\r?\n/.exec(this.buf);
      if (!m) {
        // A complete line that is neither "ddd-…" nor "ddd …" is garbage: record and drop it, so that
        // it cannot sit in the buffer unseen while the replies after it wait behind it.
        const cont = /^(?:\d{3}-[^\n]*\n)*/.exec(this.buf)![0];
        const rest = this.buf.slice(cont.length);
        const nl = rest.indexOf('\n');
        if (nl === -1) break; // the next line is not complete yet
        this.malformed.push(rest.slice(0, nl).replace(/\r$/, ''));
        this.buf = cont + rest.slice(nl + 1);
        continue;
      }
      const raw = m[0];
      this.buf = this.buf.slice(raw.length);
      const lines = raw.split(/\r?\n/).filter(Boolean);
      const r: Reply = { code: Number(m[2]), lines, text: lines.map((l) => l.slice(4)).join('\n') };
      const w = this.waiters.shift();
      if (w) w(r);
      else this.pending.push(r);
    }
  }

  static connect(port: number, opts: { host?: string; tls?: boolean; ca?: string; timeoutMs?: number } = {}): Promise<RawSmtp> {
    return new Promise((res, rej) => {
      const host = opts.host ?? '127.0.0.1';
      const sock = opts.tls
        ? tlsConnect({ host, port, ca: opts.ca, servername: 'localhost', rejectUnauthorized: !!opts.ca })
        : netConnect({ host, port });
      const t = setTimeout(() => {
        sock.destroy();
        rej(new Error('connect timeout'));
      }, opts.timeoutMs ?? 15000);
      sock.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(t);
        res(new RawSmtp(sock));
      });
      sock.once('error', (e) => {
        clearTimeout(t);
        rej(e);
      });
    });
  }

  /** The next reply (the greeting first). Rejects on close or after timeoutMs. */
  read(timeoutMs = 30000): Promise<Reply> {
    const p = this.pending.shift();
    if (p) return Promise.resolve(p);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((res, rej) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        rej(new Error('reply timeout'));
      }, timeoutMs);
      const w = (r: Reply | Error) => {
        clearTimeout(t);
        r instanceof Error ? rej(r) : res(r);
      };
      this.waiters.push(w);
    });
  }

  write(data: string | Buffer): void {
    this.sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Sends one command line (CRLF appended) and reads its reply. */
  async cmd(line: string | Buffer, timeoutMs?: number): Promise<Reply> {
    this.write(typeof line === 'string' ? line + '\r\n' : Buffer.concat([line, Buffer.from('\r\n')]));
    return this.read(timeoutMs);
  }

  /** STARTTLS upgrade (after a 220 to the STARTTLS command). */
  async starttls(ca?: string): Promise<void> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.code} ${r.text}`);
    const plain = this.sock as Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => {});
    const secure = tlsConnect({ socket: plain, ca, servername: 'localhost', rejectUnauthorized: !!ca });
    await new Promise<void>((res, rej) => {
      secure.once('secureConnect', () => res());
      secure.once('error', rej);
    });
    this.sock = secure;
    this.attach();
  }

  /** Sends DATA's content (already CRLF-terminated lines) followed by <CRLF>.<CRLF>; dot-stuffs. */
  async data(message: string | Buffer, opts: { raw?: boolean; timeoutMs?: number } = {}): Promise<Reply> {
    const r = await this.cmd('DATA');
    if (r.code !== 354) return r;
    let body = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    if (!opts.raw) {
      let s = body.toString('latin1').replace(/\r?\n/g, '\r\n');
      s = s.replace(/^\./gm, '..');
      if (!s.endsWith('\r\n')) s += '\r\n';
      body = Buffer.from(s + '.\r\n', 'latin1');
    }
    this.write(body);
    return this.read(opts.timeoutMs ?? 60000);
  }

  close(): void {
    this.closed = true;
    try {
      this.sock.end();
      this.sock.destroy();
    } catch {}
  }

  async quit(): Promise<void> {
    try {
      await this.cmd('QUIT', 5000);
    } catch {}
    this.close();
  }

  /** Bytes received that do not (yet) form a complete line. */
  get leftover(): string {
    return this.buf;
  }

  get socket(): Socket | TLSSocket {
    return this.sock;
  }
}

/** AUTH PLAIN initial response. */
export function authPlain(user: string, pass: string): string {
  return 'AUTH PLAIN ' + Buffer.from(`\u0000${user}\u0000${pass}`, 'utf8').toString('base64');
}

/**
 * One MX transaction from someone@sender.example to `to` (the crash and power-loss tests): the DATA
 * reply code, or 0 when the connection failed or died before it.
 */
export async function mxTransaction(port: number, o: { to: string; subject: string; body?: string; timeoutMs?: number }): Promise<number> {
  let c: RawSmtp | null = null;
  try {
    c = await RawSmtp.connect(port);
    await c.read(o.timeoutMs ?? 10000);
    await c.cmd('EHLO sender.example');
    await c.cmd('MAIL FROM:<someone@sender.example>');
    await c.cmd(`RCPT TO:<${o.to}>`);
    const msg = `From: someone@sender.example\r\nTo: ${o.to}\r\nSubject: ${o.subject}\r\nMessage-ID: <${o.subject.replace(/\W/g, '')}@sender.example>\r\n\r\n${o.body ?? 'body\r\n'}`;
    return (await c.data(msg, { timeoutMs: o.timeoutMs ?? 30000 })).code;
  } catch {
    return 0;
  } finally {
    c?.close();
  }
}

/**
 * One authenticated submission on 465 from `user` to `to`: the DATA reply code, or 0 when the
 * connection failed, AUTH was refused or the connection died before the reply.
 */
export async function submitTransaction(port: number, o: { ca: string; user: string; pass: string; to: string; subject: string; timeoutMs?: number }): Promise<number> {
  let c: RawSmtp | null = null;
  try {
    c = await RawSmtp.connect(port, { tls: true, ca: o.ca });
    await c.read(o.timeoutMs ?? 10000);
    await c.cmd('EHLO client.example');
    if ((await c.cmd(authPlain(o.user, o.pass))).code !== 235) return 0;
    await c.cmd(`MAIL FROM:<${o.user}>`);
    await c.cmd(`RCPT TO:<${o.to}>`);
    return (await c.data(`From: ${o.user}\r\nTo: ${o.to}\r\nSubject: ${o.subject}\r\n\r\nbody\r\n`, { timeoutMs: o.timeoutMs ?? 30000 })).code;
  } catch {
    return 0;
  } finally {
    c?.close();
  }
}
