import { promises as dnsp } from 'node:dns';
import { LetterboxError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { BoundedMap } from '../util/bounded-map.ts';

/**
 * The one DNS resolver of the process, built from `dns.servers` and passed to everything that
 * looks names up (mailauth, the outbound router, reverse lookups, domain verification).
 * Same signature as dns.promises.resolve, which is what mailauth expects.
 */
export type ResolveFn = (name: string, rrtype?: string) => Promise<any>;

export interface Resolver {
  resolve: ResolveFn;
  reverse(ip: string): Promise<string[]>;
}

export interface ResolverOptions {
  servers: string[];
  timeoutMs: number;
  clock: Clock;
  /**
   * The longest an answer is reused. Node's resolver exposes TTLs only for A/AAAA (those are cached
   * for min(TTL, cacheMs)); for TXT/MX/PTR it does not, so the cap is kept at 60 s, below the TTL
   * of practically every SPF/DKIM/DMARC record, which keeps answers within their TTL.
   */
  cacheMs?: number;
  negativeCacheMs?: number;
}

export function createResolver(o: ResolverOptions): Resolver {
  const r = new dnsp.Resolver({ timeout: o.timeoutMs, tries: 2 });
  if (o.servers.length) r.setServers(o.servers.map(normalizeServer));
  const cacheMs = o.cacheMs ?? 60_000;
  const negMs = o.negativeCacheMs ?? 30_000;
  const cache = new BoundedMap<string, { until: number; value?: unknown; error?: unknown }>(10_000);

  const resolve: ResolveFn = async (name, rrtype = 'A') => {
    const key = `${rrtype}:${name.toLowerCase()}`;
    const hit = cache.get(key);
    const now = o.clock.now();
    if (hit && hit.until > now) {
      if (hit.error) throw hit.error;
      return hit.value;
    }
    try {
      let value: any;
      let ttlMs = cacheMs;
      if (rrtype === 'A' || rrtype === 'AAAA') {
        const withTtl = (await (rrtype === 'A' ? r.resolve4(name, { ttl: true }) : r.resolve6(name, { ttl: true }))) as { address: string; ttl: number }[];
        value = withTtl.map((x) => x.address);
        ttlMs = Math.min(cacheMs, ...withTtl.map((x) => x.ttl * 1000));
      } else {
        value = await (r.resolve as any)(name, rrtype);
      }
      if (ttlMs > 0) cache.set(key, { until: now + ttlMs, value });
      return value;
    } catch (err: any) {
      // Only definite answers are cached; timeouts and server failures are retried next time.
      if ((err?.code === 'ENOTFOUND' || err?.code === 'ENODATA') && negMs > 0) cache.set(key, { until: now + negMs, error: err });
      throw err;
    }
  };
  return {
    resolve,
    reverse: (ip) => r.reverse(ip),
  };
}

function normalizeServer(s: string): string {
  // "ip", "ip:port", "[v6]:port", or a bare IPv6 address.
  if (/^\d+\.\d+\.\d+\.\d+(:\d+)?$/.test(s) || /^\[.+\](:\d+)?$/.test(s)) return s;
  if (s.includes(':')) return s; // bare IPv6
  throw new LetterboxError('config_error', `dns.servers: "${s}" is not an IP address or ip:port`);
}

/** DNS errors that mean "no such data" (a definite answer), as opposed to a failure to get one. */
export function isNoData(err: any): boolean {
  return err?.code === 'ENOTFOUND' || err?.code === 'ENODATA';
}
