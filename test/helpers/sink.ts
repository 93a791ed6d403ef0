// A receiving SMTP server on loopback playing the remote MX: STARTTLS with a test certificate,
// per-recipient behaviours, and a record of everything received.
import { SMTPServer } from 'smtp-server';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './appliance.ts';

export interface Received {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  helo: string;
  remoteAddress: string;
  session: string; // smtp-server session id: equal for messages sent over one reused connection
}

export type RcptBehaviour = 'ok' | 'temp-once' | 'temp' | 'perm';

/** A self-signed certificate (CA:TRUE, so it can be trusted as its own CA) for the given names. */
export function testCert(names: string[]): { key: string; cert: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lbt-cert-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${names[0]}`,
    '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), dir };
}

export class Sink {
  port = 0;
  received: Received[] = [];
  /** DATA transmissions that were never answered (the 'hang-once' behaviour). */
  unanswered: Received[] = [];
  rcpt = new Map<string, RcptBehaviour>();
  /** Recipients whose first DATA is received but never answered (simulates a crash window). */
  hangOnce = new Set<string>();
  private seen = new Map<string, number>();
  private server: SMTPServer | null = null;
  private waiters: (() => void)[] = [];
  onHang: (() => void) | null = null;

  private tls: { key: string; cert: string };
  constructor(tls: { key: string; cert: string }) {
    this.tls = tls;
  }

  async start(): Promise<this> {
    this.port = await freePort();
    this.server = new SMTPServer({
      key: this.tls.key,
      cert: this.tls.cert,
      authOptional: true,
      disableReverseLookup: true,
      logger: false,
      size: 50 * 1024 * 1024,
      closeTimeout: 1000,
      onRcptTo: (addr, _s, cb) => {
        const a = addr.address.toLowerCase();
        const b = this.rcpt.get(a) ?? 'ok';
        const n = (this.seen.get(a) ?? 0) + 1;
        this.seen.set(a, n);
        if (b === 'perm') return cb(Object.assign(new Error('5.1.1 <' + a + '>: user unknown'), { responseCode: 550 }));
        if (b === 'temp' || (b === 'temp-once' && n === 1)) return cb(Object.assign(new Error('4.2.0 try again later'), { responseCode: 451 }));
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const r: Received = {
            from: (session.envelope.mailFrom as any)?.address ?? '',
            to: session.envelope.rcptTo.map((x) => x.address.toLowerCase()),
            data: Buffer.concat(chunks),
            secure: session.secure,
            helo: session.hostNameAppearsAs,
            remoteAddress: session.remoteAddress,
            session: session.id,
          };
          const hang = r.to.find((t) => this.hangOnce.has(t));
          if (hang) {
            this.hangOnce.delete(hang);
            this.unanswered.push(r);
            this.onHang?.();
            return; // never answered
          }
          this.received.push(r);
          for (const w of this.waiters.splice(0)) w();
          cb();
        });
      },
    });
    this.server.on('error', () => {});
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', () => r()));
    return this;
  }

  /** Waits until `pred` holds for the received messages (no fixed sleeps). */
  async waitFor(pred: (r: Received[]) => boolean, timeoutMs = 30000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!pred(this.received)) {
      if (Date.now() > until) throw new Error(`sink: condition not met after ${timeoutMs} ms; received ${this.received.length}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 250).unref();
      });
    }
  }

  for(rcpt: string): Received[] {
    return this.received.filter((r) => r.to.includes(rcpt.toLowerCase()));
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  static cleanupCert(dir: string) {
    rmSync(dir, { recursive: true, force: true });
  }
}
