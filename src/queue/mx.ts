// MX routing decisions (pure) and the DNS lookups that feed them.
import { isIP } from 'node:net';
import type { Resolver } from '../dns/resolver.ts';
import { isNoData } from '../dns/resolver.ts';
import { LetterboxError } from '../errors.ts';

export interface MxRecord {
  exchange: string;
  priority: number;
}

/** RFC 7505: a single MX with exchange "." (empty after normalisation) means "accepts no mail". */
export function isNullMx(records: MxRecord[]): boolean {
  return records.length === 1 && (records[0].exchange === '' || records[0].exchange === '.');
}

/** MX hosts by preference, random order among equal preferences (RFC 5321 5.1). */
export function orderMx(records: MxRecord[], rand: () => number): string[] {
  const keyed = records
    .filter((r) => r.exchange && r.exchange !== '.')
    .map((r) => ({ host: r.exchange.toLowerCase().replace(/\.$/, ''), pref: r.priority, k: rand() }));
  keyed.sort((a, b) => a.pref - b.pref || a.k - b.k);
  const seen = new Set<string>();
  return keyed.filter((r) => (seen.has(r.host) ? false : (seen.add(r.host), true))).map((r) => r.host);
}

export type Route =
  | { kind: 'nullmx' }
  | { kind: 'nxdomain' }
  /** `implicit`: no MX records, the domain's own A/AAAA is used (RFC 5321 5.1). */
  | { kind: 'hosts'; hosts: string[]; implicit: boolean };

/** Looks up where mail for `domain` goes. DNS failures (not definite answers) throw 'unavailable'. */
export async function resolveRoute(resolver: Resolver, domain: string, rand: () => number = Math.random): Promise<Route> {
  let mx: MxRecord[] = [];
  try {
    mx = await resolver.resolve(domain, 'MX');
  } catch (err: any) {
    if (err?.code === 'ENOTFOUND') return { kind: 'nxdomain' };
    if (!isNoData(err)) throw new LetterboxError('unavailable', `MX lookup for ${domain} failed (${err?.code ?? err?.message})`);
  }
  if (isNullMx(mx)) return { kind: 'nullmx' };
  if (mx.length === 0) return { kind: 'hosts', hosts: [domain], implicit: true };
  return { kind: 'hosts', hosts: orderMx(mx, rand), implicit: false };
}

/** The addresses of one MX host: IPv6 first unless IPv4 only (a failed family is just skipped). */
export async function resolveHost(resolver: Resolver, host: string, ipv4Only: boolean): Promise<string[]> {
  if (isIP(host)) return [host];
  const families = ipv4Only ? ['A'] : ['AAAA', 'A'];
  const out: string[] = [];
  let lastErr: any = null;
  for (const t of families) {
    try {
      out.push(...((await resolver.resolve(host, t)) as string[]));
    } catch (err: any) {
      if (!isNoData(err)) lastErr = err;
    }
  }
  if (out.length === 0 && lastErr) throw new LetterboxError('unavailable', `address lookup for ${host} failed (${lastErr?.code ?? lastErr?.message})`);
  return out;
}
