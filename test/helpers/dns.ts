// A real authoritative DNS server on loopback UDP (and TCP for large answers) for tests, serving
// records the test sets and changes at run time. Unknown names answer NXDOMAIN; a known name without
// the asked type answers NOERROR with no data (NODATA), like a real server. `stop()` simulates a DNS
// outage (queries then time out).
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import dnsPacket from 'dns-packet';
import { freePort } from './appliance.ts';

export type RecordType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'PTR' | 'CNAME' | 'SRV';
export interface TestRecord {
  type: RecordType;
  name: string;
  /** A/AAAA/PTR/CNAME: string; MX: { preference, exchange }; TXT: string (split at 255) or string[]; SRV: { priority, weight, port, target } */
  data: any;
  ttl?: number;
}

export class TestDns {
  port = 0;
  private udp: Socket | null = null;
  private tcp: Server | null = null;
  private records: TestRecord[] = [];
  /** When true, the server receives queries but never answers (a hung resolver). */
  silent = false;
  queries: { name: string; type: string }[] = [];

  /** The value for config `dns.servers`. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  add(...rs: TestRecord[]): this {
    this.records.push(...rs.map((r) => ({ ...r, name: r.name.toLowerCase().replace(/\.$/, '') })));
    return this;
  }
  remove(name: string, type?: RecordType): this {
    const n = name.toLowerCase();
    this.records = this.records.filter((r) => !(r.name === n && (!type || r.type === type)));
    return this;
  }
  clear(): this {
    this.records = [];
    return this;
  }
  /** Convenience: TXT value, MX, A. */
  txt(name: string, value: string) {
    return this.add({ type: 'TXT', name, data: value });
  }
  mx(name: string, exchange: string, preference = 10) {
    return this.add({ type: 'MX', name, data: { preference, exchange } });
  }
  a(name: string, ip: string) {
    return this.add({ type: ip.includes(':') ? 'AAAA' : 'A', name, data: ip });
  }

  private answer(buf: Buffer): Buffer | null {
    let q: any;
    try {
      q = dnsPacket.decode(buf);
    } catch {
      return null;
    }
    const question = q.questions?.[0];
    if (!question) return null;
    const name = String(question.name).toLowerCase().replace(/\.$/, '');
    this.queries.push({ name, type: question.type });
    const known = this.records.filter((r) => r.name === name);
    const answers = known
      .filter((r) => r.type === question.type || (r.type === 'CNAME' && question.type !== 'CNAME'))
      .map((r) => {
        let data = r.data;
        if (r.type === 'TXT') {
          const s: string[] = Array.isArray(data) ? data : [];
          if (!Array.isArray(data)) for (let i = 0; i < String(data).length; i += 255) s.push(String(data).slice(i, i + 255));
          data = s.map((x) => Buffer.from(x));
        }
        return { type: r.type, name: question.name, ttl: r.ttl ?? 300, class: 'IN', data };
      });
    return dnsPacket.encode({
      type: 'response',
      id: q.id,
      // rcode lives in the low 4 bits of flags: 3 = NXDOMAIN.
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (q.flags & dnsPacket.RECURSION_DESIRED) | (known.length === 0 && !this.records.some((r) => r.name.endsWith('.' + name)) ? 3 : 0),
      questions: q.questions,
      answers,
    } as any);
  }

  async start(): Promise<this> {
    this.port = await freePort();
    this.udp = createSocket('udp4');
    this.udp.on('message', (msg, rinfo) => {
      if (this.silent) return;
      const out = this.answer(msg);
      if (out) this.udp!.send(out, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => this.udp!.bind(this.port, '127.0.0.1', () => r()));
    this.tcp = createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const len = buf.readUInt16BE(0);
          const out = this.silent ? null : this.answer(buf.subarray(2, 2 + len));
          buf = buf.subarray(2 + len);
          if (out) {
            const l = Buffer.alloc(2);
            l.writeUInt16BE(out.length);
            sock.write(Buffer.concat([l, out]));
          }
        }
      });
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => this.tcp!.listen(this.port, '127.0.0.1', () => r()));
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.udp ? this.udp.close(() => r()) : r()));
    await new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r()));
    this.udp = null;
    this.tcp = null;
  }
}
