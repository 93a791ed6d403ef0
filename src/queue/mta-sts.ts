// MTA-STS (RFC 8461): discover the policy id in DNS (through the one resolver), fetch the policy
// over HTTPS from mta-sts.<domain> with certificate validation, cache it for max_age, and say which
// MX hosts may be used. Policy parsing and MX matching are mailauth's.
import https from 'node:https';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { createRequire } from 'node:module';
import type { Resolver } from '../dns/resolver.ts';
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import { BoundedMap } from '../util/bounded-map.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { TlsFailureType } from './tls-outcome.ts';

const require = createRequire(import.meta.url);
const sts = require('mailauth/lib/mta-sts.js') as {
  resolvePolicy(domain: string, opts: { resolver?: unknown }): Promise<string | false>;
  parsePolicy(text: string): { mode: string; mx?: string[]; maxAge?: number };
  validateMx(mx: string, policy: { mode: string; mx: string[] }): { valid: boolean };
};

export interface StsPolicy {
  id: string;
  mode: 'enforce' | 'testing' | 'none';
  mx: string[];
  maxAge: number; // seconds
  expiresAt: number; // ms
}

export interface MtaStsOptions {
  resolver: Resolver;
  /** Where policies are kept across restarts (table mta_sts_policies); memory only when absent. */
  db?: DB;
  clock: Clock;
  log: Logger;
  /** 443 in production; tests point it at a local HTTPS server. */
  port: number;
  /** Extra trusted CA certificates (PEM). */
  ca?: string;
  timeoutMs?: number;
}

export class MtaSts {
  /**
   * Policies by domain; null: the database has none (only this process writes them), so it is not
   * asked again. Bounded: every recipient domain gets an entry; a dropped one is read again.
   */
  private cache = new BoundedMap<string, StsPolicy | null>(10_000);
  private o: MtaStsOptions;
  private ca: string[] | undefined;
  constructor(o: MtaStsOptions) {
    this.o = o;
    this.ca = o.ca ? [...rootCertificates, o.ca] : undefined;
  }

  /** The policy that applies to `domain` now, or null when none (or mode none). */
  async policyFor(domain: string): Promise<StsPolicy | null> {
    return (await this.lookup(domain)).policy;
  }

  /**
   * The policy that applies now, and for TLS reporting (RFC 8460 §4.3.2) why a published policy
   * could not be used: 'sts-policy-fetch-error' (HTTPS fetch failed), 'sts-webpki-invalid' (the
   * policy host's certificate did not validate), 'sts-policy-invalid' (not a valid policy); null
   * when there is no failure or a cached policy still applies.
   */
  async lookup(domain: string): Promise<{ policy: StsPolicy | null; failure: TlsFailureType | null }> {
    const now = this.o.clock.now();
    const cached = this.cache.has(domain) ? this.cache.get(domain) : this.load(domain);
    const valid = cached && cached.expiresAt > now ? cached : null;
    let id: string | false;
    try {
      id = await sts.resolvePolicy(domain, { resolver: this.o.resolver.resolve as any });
    } catch (err: any) {
      this.o.log.debug({ domain, err: err.message }, 'MTA-STS TXT lookup failed');
      return { policy: valid && valid.mode !== 'none' ? valid : null, failure: null };
    }
    if (!id) return { policy: valid && valid.mode !== 'none' ? valid : null, failure: null };
    if (valid && valid.id === id) return { policy: valid.mode === 'none' ? null : valid, failure: null };
    let failure: TlsFailureType = 'sts-policy-fetch-error';
    try {
      const text = await this.fetch(domain).catch((err: any) => {
        if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(String(err?.code ?? ''))) failure = 'sts-webpki-invalid';
        throw err;
      });
      failure = 'sts-policy-invalid';
      const p = sts.parsePolicy(text) as any;
      const maxAge = Math.min(Number(p.maxAge) || 86400, 31557600);
      const policy: StsPolicy = { id, mode: p.mode, mx: p.mx ?? [], maxAge, expiresAt: now + maxAge * 1000 };
      this.cache.set(domain, policy);
      this.save(domain, policy);
      return { policy: policy.mode === 'none' ? null : policy, failure: null };
    } catch (err: any) {
      // RFC 8461 5.1: a valid cached policy keeps applying when a new one cannot be fetched.
      this.o.log.warn({ domain, err: err.message }, 'MTA-STS policy fetch failed');
      const still = valid && valid.mode !== 'none' ? valid : null;
      return { policy: still, failure: still ? null : failure };
    }
  }

  private load(domain: string): StsPolicy | null {
    const r = this.o.db ? (stmt(this.o.db, 'SELECT id, mode, mx, max_age, expires_at FROM mta_sts_policies WHERE domain = ?').get(domain) as any) : undefined;
    if (!r) {
      this.cache.set(domain, null);
      return null;
    }
    const p: StsPolicy = { id: r.id, mode: r.mode, mx: JSON.parse(r.mx), maxAge: r.max_age, expiresAt: r.expires_at };
    this.cache.set(domain, p);
    return p;
  }

  private save(domain: string, p: StsPolicy): void {
    if (this.o.db)
      stmt(this.o.db, 'INSERT INTO mta_sts_policies (domain, id, mode, mx, max_age, expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(domain) DO UPDATE SET id = excluded.id, mode = excluded.mode, mx = excluded.mx, max_age = excluded.max_age, expires_at = excluded.expires_at')
      .run(domain, p.id, p.mode, JSON.stringify(p.mx), p.maxAge, p.expiresAt);
  }

  /** Is `mx` allowed by the policy? */
  static allows(policy: StsPolicy | null, mx: string): boolean {
    if (!policy || policy.mode !== 'enforce') return true;
    return sts.validateMx(mx, { mode: policy.mode, mx: policy.mx } as any).valid;
  }

  private fetch(domain: string): Promise<string> {
    const host = `mta-sts.${domain}`;
    const resolver = this.o.resolver;
    return new Promise((resolve, reject) => {
      const req = https.get(
        {
          host,
          servername: host,
          port: this.o.port,
          path: '/.well-known/mta-sts.txt',
          ca: this.ca,
          timeout: this.o.timeoutMs ?? 60000,
          agent: false,
          // Resolve the policy host through the appliance's resolver, not the system's.
          lookup: ((name: string, opts: any, cb: any) => {
            if (isIP(name)) return cb(null, opts?.all ? [{ address: name, family: isIP(name) }] : name, isIP(name));
            resolver
              .resolve(name, 'A')
              .then((addrs: string[]) => (opts?.all ? cb(null, addrs.map((address) => ({ address, family: 4 }))) : cb(null, addrs[0], 4)))
              .catch((e: any) => cb(e));
          }) as any,
        },
        (res) => {
          // RFC 8461 3.3: HTTP redirects are not followed; only 200 counts.
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`policy host answered HTTP ${res.statusCode}`));
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 65536) req.destroy(new Error('policy larger than 64 KB'));
            else chunks.push(c);
          });
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('policy fetch timed out')));
      req.on('error', reject);
    });
  }
}
