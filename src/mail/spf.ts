import { spf } from 'mailauth/lib/spf/index.js';
import type { ResolveFn } from '../dns/resolver.ts';

/**
 * The one SPF evaluator (RFC 7208): mailauth's. The MX runs it inside mailauth's authenticate()
 * for every inbound message (src/smtp/inbound/deliver.ts); domain verification
 * (src/services/verify.ts) and the doctor (src/doctor/index.ts) ask it here whether a domain's
 * policy authorises our own addresses, so include:, a, mx, redirect=, macros and the lookup limits
 * count the same way everywhere.
 */

/** An address the SPF policy of `domain` does not authorise, and the result it got (fail, softfail, neutral, none...). */
export interface SpfMiss {
  ip: string;
  result: string;
}

/** The SPF result for mail from `postmaster@domain` sent from `ip` by `helo`. */
export async function spfResult(o: { domain: string; ip: string; helo: string; resolver: ResolveFn }): Promise<string> {
  const r = await spf({ ip: o.ip, sender: `postmaster@${o.domain}`, helo: o.helo, mta: o.helo, resolver: o.resolver } as any);
  return (r as any).status?.result ?? 'temperror';
}

/** Which of `ips` the SPF policy of `domain` does not authorise (empty when it authorises them all). */
export async function spfUnauthorised(resolver: ResolveFn, domain: string, ips: readonly string[], helo: string): Promise<SpfMiss[]> {
  const misses: SpfMiss[] = [];
  for (const ip of ips) {
    const result = await spfResult({ domain, ip, helo, resolver });
    if (result !== 'pass') misses.push({ ip, result });
  }
  return misses;
}
