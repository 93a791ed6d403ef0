// DNSSEC-aware lookups for DANE (RFC 7672): Node's resolver does not expose the AD ("authentic
// data") bit of an answer, so the few lookups whose security matters (MX, A/AAAA of an MX host,
// TLSA) are asked here directly of the configured resolver, with EDNS0 DO=1, over UDP (TCP when the
// answer is truncated). dns-packet builds and parses the messages; the validation itself is the
// resolver's (the local unbound): we only read its verdict (AD set, or SERVFAIL for a bogus answer).
import { createSocket } from 'node:dgram';
import { connect as tcpConnect, isIP } from 'node:net';
import { promises as dnsp } from 'node:dns';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import type { Clock } from '../clock.ts';
import { BoundedMap } from '../util/bounded-map.ts';

/** The verdict of one lookup. `secure`: the resolver set AD (it validated the answer, or the denial). */
export type SecureLookup<T = any> =
  /** `cname`: the name the answer was found at, when the asked name is an alias (CNAME chain followed by the resolver). */
  | { status: 'ok'; secure: boolean; records: T[]; cname?: string }
  | { status: 'nodata' | 'nxdomain'; secure: boolean }
  /** SERVFAIL: from a validating resolver, a bogus (or unverifiable) answer. */
  | { status: 'servfail' }
  /** No answer at all (timeout, refused, network). */
  | { status: 'error'; message: string };

export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  data: Buffer;
}

export interface SecureResolver {
  lookup(name: string, type: 'MX' | 'A' | 'AAAA' | 'TLSA' | 'DNSKEY' | 'SOA'): Promise<SecureLookup>;
  tlsa(name: string): Promise<SecureLookup<TlsaRecord>>;
  /** The server asked ("host:port"). */
  readonly server: { host: string; port: number };
}

export interface SecureResolverOptions {
  /** dns.servers; the first is asked. Empty: the system's first resolver. */
  servers: string[];
  timeoutMs: number;
  clock: Clock;
  /** Longest an answer is reused (default 60 s; capped by its TTL). 0: no cache (doctor). */
  cacheMs?: number;
}

/** "ip", "ip:port", "[v6]:port" or a bare IPv6 address → host and port (53 by default). Pure. */
export function parseServer(s: string): { host: string; port: number } {
  const m6 = /^\[(.+)\](?::(\d+))?$/.exec(s);
  if (m6) return { host: m6[1], port: m6[2] ? Number(m6[2]) : 53 };
  const m4 = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(s);
  if (m4) return { host: m4[1], port: m4[2] ? Number(m4[2]) : 53 };
  if (isIP(s) === 6) return { host: s, port: 53 };
  throw new Error(`not a DNS server address: ${s}`);
}

/** Decide: the verdict of a DNS response for `type` (answers of other types, e.g. RRSIG or CNAME, are left out). Pure. */
export function verdictOf(res: { rcode?: string; flags?: number; answers?: any[]; questions?: any[] }, type: string): SecureLookup {
  const secure = ((res.flags ?? 0) & dnsPacket.AUTHENTIC_DATA) !== 0;
  const rcode = res.rcode ?? 'NOERROR';
  if (rcode === 'SERVFAIL') return { status: 'servfail' };
  if (rcode === 'NXDOMAIN') return { status: 'nxdomain', secure };
  if (rcode !== 'NOERROR') return { status: 'error', message: `resolver answered ${rcode}` };
  const records = (res.answers ?? []).filter((a) => a.type === type).map((a) => a.data);
  if (!records.length) return { status: 'nodata', secure };
  // Follow the CNAME chain from the question's name (bounded: a loop ends it).
  const norm = (n: unknown) => String(n).toLowerCase().replace(/\.$/, '');
  const alias = new Map<string, string>();
  for (const a of res.answers ?? []) if (a.type === 'CNAME') alias.set(norm(a.name), norm(a.data));
  let name = norm(res.questions?.[0]?.name ?? '');
  for (let i = 0; i < 16 && alias.has(name); i++) name = alias.get(name)!;
  return alias.size && name ? { status: 'ok', secure, records, cname: name } : { status: 'ok', secure, records };
}

export function createSecureResolver(o: SecureResolverOptions): SecureResolver {
  const server = o.servers[0] ? parseServer(o.servers[0]) : systemServer();
  const cacheMs = o.cacheMs ?? 60_000;
  const cache = new BoundedMap<string, { until: number; value: SecureLookup }>(10_000);

  const lookup = async (name: string, type: string): Promise<SecureLookup> => {
    const key = `${type}:${name.toLowerCase()}`;
    const now = o.clock.now();
    const hit = cache.get(key);
    if (hit && hit.until > now) return hit.value;
    let res: any;
    try {
      res = await query(server, name, type, o.timeoutMs);
    } catch (err: any) {
      return { status: 'error', message: err.message };
    }
    const v = verdictOf(res, type);
    // Only definite answers are cached, for at most their TTL; failures are asked again next time.
    if (cacheMs > 0 && v.status !== 'servfail' && v.status !== 'error') {
      const ttls = (res.answers ?? []).map((a: any) => Number(a.ttl) * 1000).filter((t: number) => t >= 0);
      const ttl = Math.min(v.status === 'ok' ? cacheMs : Math.min(cacheMs, 30_000), ...ttls);
      if (ttl > 0) cache.set(key, { until: now + ttl, value: v });
    }
    return v;
  };
  return {
    server,
    lookup: (name, type) => lookup(name, type),
    tlsa: async (name) => {
      const v = await lookup(name, 'TLSA');
      if (v.status !== 'ok') return v;
      return { ...v, records: v.records.map((r: any) => ({ usage: r.usage, selector: r.selector, matchingType: r.matchingType, data: Buffer.from(r.certificate) })) };
    },
  };
}

/** The system's first resolver (dns.servers empty); loopback when it cannot be read. */
function systemServer(): { host: string; port: number } {
  try {
    return parseServer(new dnsp.Resolver().getServers()[0] ?? '127.0.0.1');
  } catch {
    return { host: '127.0.0.1', port: 53 };
  }
}

/** One query with DO=1 and RD=1; UDP first, TCP when the answer is truncated. */
async function query(server: { host: string; port: number }, name: string, type: string, timeoutMs: number): Promise<any> {
  const id = randomInt(0, 65536);
  const packet = {
    type: 'query' as const,
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: type as any, name, class: 'IN' as const }],
    additionals: [{ type: 'OPT' as const, name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK } as any],
  };
  const buf = dnsPacket.encode(packet);
  const check = (res: any) => {
    if (res.id !== id || res.type !== 'response') throw new Error('mismatched DNS response');
    const q = res.questions?.[0];
    if (!q || String(q.name).toLowerCase().replace(/\.$/, '') !== name.toLowerCase().replace(/\.$/, '')) throw new Error('DNS response for another question');
    return res;
  };
  let res: any;
  try {
    res = check(await udp(server, buf, timeoutMs));
  } catch {
    res = null; // lost or garbled over UDP: ask once more, over TCP
  }
  if (!res || (res.flags & dnsPacket.TRUNCATED_RESPONSE) !== 0) res = check(await tcp(server, buf, timeoutMs));
  return res;
}

function udp(server: { host: string; port: number }, buf: Buffer, timeoutMs: number): Promise<any> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4');
    const timer = setTimeout(() => done(new Error(`DNS query to ${server.host}:${server.port} timed out`)), timeoutMs);
    const done = (err: Error | null, res?: any) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(res);
    };
    sock.on('error', (e) => done(e));
    sock.on('message', (msg) => {
      try {
        done(null, dnsPacket.decode(msg));
      } catch (e: any) {
        done(e);
      }
    });
    sock.send(buf, server.port, server.host);
  });
}

function tcp(server: { host: string; port: number }, buf: Buffer, timeoutMs: number): Promise<any> {
  return new Promise((resolve, reject) => {
    const sock = tcpConnect({ host: server.host, port: server.port });
    let acc = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error(`DNS query to ${server.host}:${server.port} (TCP) timed out`)), timeoutMs);
    const done = (err: Error | null, res?: any) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(res);
    };
    sock.on('error', (e) => done(e));
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(buf.length);
      sock.write(Buffer.concat([len, buf]));
    });
    sock.on('data', (d) => {
      acc = Buffer.concat([acc, d]);
      if (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        try {
          done(null, dnsPacket.decode(acc.subarray(2, 2 + acc.readUInt16BE(0))));
        } catch (e: any) {
          done(e);
        }
      }
    });
    sock.on('end', () => done(new Error('DNS server closed the TCP connection')));
  });
}
