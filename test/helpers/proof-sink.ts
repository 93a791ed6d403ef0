// A minimal remote MX for the proof tests (relay battery, chaos): plain SMTP on loopback, no TLS,
// accepts everything and records envelope + message. Optionally refuses with 4xx for a while.
import { SMTPServer } from 'smtp-server';
import { freePort } from './appliance.ts';

export interface SinkMessage {
  from: string;
  to: string[];
  data: Buffer;
}

export class ProofSink {
  port = 0;
  received: SinkMessage[] = [];
  /** When set, DATA is answered with this temporary failure (the message is not recorded). */
  tempfail: string | null = null;
  private server: SMTPServer | null = null;

  async start(): Promise<this> {
    this.port = await freePort();
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      size: 100 * 1024 * 1024,
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          if (this.tempfail) {
            const e = new Error(this.tempfail) as Error & { responseCode: number };
            e.responseCode = 451;
            return cb(e);
          }
          this.received.push({
            from: (session.envelope.mailFrom && session.envelope.mailFrom.address) || '',
            to: session.envelope.rcptTo.map((r) => r.address),
            data: Buffer.concat(chunks),
          });
          cb();
        });
      },
    });
    this.server.on('error', () => {});
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', () => r()));
    return this;
  }

  /** Messages whose content contains `token`. */
  find(token: string): SinkMessage[] {
    return this.received.filter((m) => m.data.includes(token));
  }

  async stop(): Promise<void> {
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = null;
  }
}
