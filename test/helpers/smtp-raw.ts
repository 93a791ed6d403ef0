// A raw SMTP client for tests that must send exact bytes (smuggling, relay tricks, limits):
// nodemailer normalises line endings and refuses odd addresses, which is what these tests probe.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface Reply {
  code: number;
  lines: string[];
  text: string; // all lines joined with \n, codes included
}

export class RawSmtp {
  private sock: Socket;
  private buf = '';
  private waiting: ((r: Reply | null) => void)[] = [];
  private replies: Reply[] = [];
  private partial: string[] = [];
  closed = false;

  private constructor(sock: Socket) {
    this.sock = sock;
    this.attach();
  }

  private attach() {
    this.sock.on('data', (d) => this.onData(d));
    this.sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w(null);
    });
    this.sock.on('error', () => {});
  }

  /** `localAddress` (e.g. 127.0.0.2: all of 127/8 is loopback) lets a test act as several clients. */
  static async open(port: number, host = '127.0.0.1', localAddress?: string): Promise<{ client: RawSmtp; greeting: Reply | null }> {
    const sock = connect({ port, host, ...(localAddress ? { localAddress } : {}) });
    await new Promise<void>((res, rej) => {
      sock.once('connect', () => res());
      sock.once('error', rej);
    });
    const client = new RawSmtp(sock);
    const greeting = await client.read();
    return { client, greeting };
  }

  private onData(d: Buffer) {
    this.buf += d.toString('utf8');
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) !== -1) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      this.partial.push(line);
      if (/^\d{3}-/.test(line)) continue;
      const r: Reply = { code: Number(line.slice(0, 3)), lines: this.partial, text: this.partial.join('\n') };
      this.partial = [];
      const w = this.waiting.shift();
      if (w) w(r);
      else this.replies.push(r);
    }
  }

  /** The next reply, or null when the server closed the connection. */
  read(timeoutMs = 30000): Promise<Reply | null> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.resolve(null);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('no SMTP reply in time')), timeoutMs);
      this.waiting.push((x) => {
        clearTimeout(t);
        res(x);
      });
    });
  }

  /** Replies already received and not read (to prove nothing extra was answered). */
  get unread(): number {
    return this.replies.length;
  }

  write(data: string | Buffer) {
    this.sock.write(data);
  }

  async cmd(line: string): Promise<Reply | null> {
    this.sock.write(line + '\r\n');
    return this.read();
  }

  /** STARTTLS, then the rest of the session runs over TLS. */
  async starttls(ca: string, servername: string): Promise<void> {
    const r = await this.cmd('STARTTLS');
    if (r?.code !== 220) throw new Error(`STARTTLS refused: ${r?.text}`);
    this.sock.removeAllListeners('data');
    this.sock.removeAllListeners('close');
    const tls = tlsConnect({ socket: this.sock, ca, servername });
    await new Promise<void>((res, rej) => {
      tls.once('secureConnect', () => res());
      tls.once('error', rej);
    });
    this.sock = tls;
    this.attach();
  }

  /** MAIL FROM, RCPT TOs, DATA, then `body` as raw bytes (caller supplies the final terminator). */
  async sendRaw(from: string, to: string[], body: string | Buffer): Promise<{ rcpt: (Reply | null)[]; data: Reply | null }> {
    const mail = await this.cmd(`MAIL FROM:<${from}>`);
    if (mail?.code !== 250) throw new Error(`MAIL refused: ${mail?.text}`);
    const rcpt: (Reply | null)[] = [];
    for (const t of to) rcpt.push(await this.cmd(`RCPT TO:<${t}>`));
    const go = await this.cmd('DATA');
    if (go?.code !== 354) return { rcpt, data: go };
    this.sock.write(body);
    return { rcpt, data: await this.read() };
  }

  async close() {
    if (!this.closed) {
      try {
        this.sock.write('QUIT\r\n');
      } catch {}
    }
    this.sock.destroy();
  }
}
