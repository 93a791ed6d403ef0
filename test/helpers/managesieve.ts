// A ManageSieve (RFC 5804) client spoken raw, for the ManageSieve tests on Dovecot 2.3 (test/sieve.test.ts)
// and 2.4 (test/debian13/): responses are read up to the next OK/NO/BYE line.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export class ManageSieve {
  sock: Socket | TLSSocket;
  buf = '';
  waiters: (() => void)[] = [];
  constructor(sock: Socket) {
    this.sock = sock;
    this.listen();
  }
  private listen() {
    this.sock.on('data', (d) => {
      this.buf += d.toString('utf8');
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async response(): Promise<{ status: string; text: string; lines: string[] }> {
    for (;;) {
      const lines = this.buf.split('\r\n');
      const i = lines.findIndex((l, n) => n < lines.length - 1 && /^(OK|NO|BYE)\b/.test(l));
      if (i >= 0) {
        const got = lines.slice(0, i + 1);
        const rest = lines.slice(i + 1).join('\r\n');
        const lit = /\{(\d+)\}$/.exec(got[i]); // the response text as a literal: NO {129}\r\n<129 octets>\r\n
        if (lit) {
          const n = Number(lit[1]);
          if (Buffer.byteLength(rest) < n + 2) {
            await new Promise<void>((r) => (this.waiters.push(r), setTimeout(r, 200)));
            continue;
          }
          const text = Buffer.from(rest).subarray(0, n).toString('utf8');
          this.buf = Buffer.from(rest).subarray(n + 2).toString('utf8');
          return { status: got[i].split(' ')[0], text: `${got[i]} ${text}`, lines: [...got, text] };
        }
        this.buf = rest;
        return { status: got[i].split(' ')[0], text: got[i], lines: got };
      }
      await new Promise<void>((r) => (this.waiters.push(r), setTimeout(r, 200)));
    }
  }
  cmd(line: string) {
    this.sock.write(line + '\r\n');
    return this.response();
  }
  async starttls(ca: string, servername: string) {
    const r = await this.cmd('STARTTLS');
    assert.equal(r.status, 'OK', r.text);
    this.sock.removeAllListeners('data');
    this.sock = tlsConnect({ socket: this.sock as Socket, ca, servername });
    await new Promise<void>((res, rej) => (this.sock.once('secureConnect', () => res()), this.sock.once('error', rej)));
    this.buf = '';
    this.listen();
    return this.response(); // capabilities again, after TLS
  }
}
