import { isoNow } from '../clock.ts';
import { recordEvent } from '../events/record.ts';
import { isNoData, type ResolveFn } from '../dns/resolver.ts';
import { dkimTxt } from '../dkim/keys.ts';
import { spfUnauthorised, type SpfMiss } from '../mail/spf.ts';
import type { DnsRecord } from '../dns/records.ts';
import { domainRecords, getDomain, saveVerification } from './domains.ts';
import { advanceRotation, retireExpired } from '../dkim/rotate.ts';
import type { ServiceContext } from './context.ts';

export interface RecordCheck {
  purpose: 'mx' | 'spf' | 'helo-spf' | 'dkim' | 'dmarc' | 'srv';
  type: 'MX' | 'TXT' | 'SRV';
  name: string;
  /** What should be published (the value `letterbox dns` prints). */
  expected: string;
  /** What the DNS answered (MX as "priority exchange", TXT strings joined). */
  found: string[];
  ok: boolean;
  /** Why it is not ok; null when ok. */
  problem: string | null;
  /**
   * false for records that help mail clients but not mail delivery (the RFC 6186 SRV records): a
   * wrong one is reported but does not make the domain's verification fail.
   */
  required: boolean;
}

export interface Verification {
  domain: string;
  /** true when every required record is correct. */
  ok: boolean;
  checkedAt: string;
  /** When every record was last found correct (this run or an earlier one). */
  lastVerifiedAt: string | null;
  records: RecordCheck[];
  /** When this verification moved a DKIM rotation on: keys that started signing, keys retiring, keys removed. */
  rotation?: { activated: string[]; retiring: string[]; graceUntil: string | null; removed: string[] };
}

export type Lookup = { values: any[]; error: string | null };

async function lookup(resolve: ResolveFn, name: string, type: string): Promise<Lookup> {
  try {
    return { values: (await resolve(name, type)) ?? [], error: null };
  } catch (err: any) {
    if (isNoData(err)) return { values: [], error: null };
    return { values: [], error: `DNS lookup of ${type} ${name} failed (${err?.code ?? err?.message ?? err}); try again later` };
  }
}

const txtValues = (l: Lookup): string[] => l.values.map((chunks: string[] | string) => (Array.isArray(chunks) ? chunks.join('') : String(chunks)));
const dot = (s: string) => s.toLowerCase().replace(/\.$/, '');

/** The tag=value pairs of a DKIM/DMARC-style record (keys lower-case, whitespace removed from values). */
export function tags(record: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of record.split(';')) {
    const i = part.indexOf('=');
    if (i > 0) m.set(part.slice(0, i).trim().toLowerCase(), part.slice(i + 1).replace(/\s+/g, ''));
  }
  return m;
}

type Check = Omit<RecordCheck, 'required'> & { required?: boolean };

// ---- Decide: each record's lookup judged against what should be published (pure) ----

/** MX: one of the domain's MX records points at this server. */
export function judgeMx(l: Lookup, domain: string, hostname: string, expected: DnsRecord): Check {
  const found = l.values.map((v: any) => `${v.priority} ${dot(v.exchange)}`);
  const ok = !l.error && l.values.some((v: any) => dot(v.exchange) === hostname);
  return {
    purpose: 'mx', type: 'MX', name: domain, expected: `${expected.priority} ${expected.value}`, found, ok,
    problem: ok ? null : l.error ?? (found.length ? `no MX record points to ${hostname}` : 'no MX record published'),
  };
}

/**
 * SPF, first step: exactly one v=spf1 record. Returns the finished check when that already fails,
 * else null (then spfJudged decides from the evaluator's answer).
 */
export function judgeSpfRecords(l: Lookup, domain: string, expected: DnsRecord): { base: Omit<Check, 'ok' | 'problem'>; failed: Check | null } {
  const found = txtValues(l).filter((t) => /^v=spf1(\s|$)/i.test(t));
  const base = { purpose: 'spf' as const, type: 'TXT' as const, name: domain, expected: expected.value, found };
  if (l.error) return { base, failed: { ...base, ok: false, problem: l.error } };
  if (found.length === 0) return { base, failed: { ...base, ok: false, problem: 'no SPF record (v=spf1) published' } };
  if (found.length > 1) return { base, failed: { ...base, ok: false, problem: 'more than one SPF record published (receivers treat that as an error); merge them into one' } };
  return { base, failed: null };
}

/** SPF, second step: every address of ours authorised (misses from the one SPF evaluator, src/mail/spf.ts). */
export function spfJudged(base: Omit<Check, 'ok' | 'problem'>, misses: readonly SpfMiss[]): Check {
  const ok = misses.length === 0;
  return { ...base, ok, problem: ok ? null : `the SPF record does not authorize ${misses.map((m) => `${m.ip} (${m.result})`).join(', ')}` };
}

/**
 * DKIM: the selector publishes our public key with our algorithm. Active keys must be published; a
 * rotation's pending keys (signing switches to them once found) and retiring ones (kept for the
 * grace period) are reported without failing the domain.
 */
export function judgeDkim(l: Lookup, domain: string, k: { selector: string; algorithm: Parameters<typeof dkimTxt>[0]; publicKey: string; state?: 'pending' | 'active' | 'retiring' | 'removed' }): Check {
  const name = `${k.selector}._domainkey.${domain}`;
  const found = txtValues(l);
  const ok =
    !l.error &&
    found.some((t) => {
      const tg = tags(t);
      return tg.get('p') === k.publicKey && (tg.get('k') ?? 'rsa').toLowerCase() === k.algorithm && (tg.get('v') ?? 'DKIM1') === 'DKIM1';
    });
  const why = ok ? null : l.error ?? (found.length ? `the published key does not match selector ${k.selector} (${k.algorithm})` : `selector ${k.selector} is not published`);
  const stage = k.state === 'pending' ? ' (a new key of a rotation: signing switches to it once it is published)' : k.state === 'retiring' ? ' (a replaced key: keep it published until its grace period ends)' : '';
  return { purpose: 'dkim', type: 'TXT', name, expected: dkimTxt(k.algorithm, k.publicKey), found, ok, problem: why && why + stage, required: (k.state ?? 'active') === 'active' };
}

/**
 * SPF for one of our EHLO names, first step: exactly one v=spf1 record. Bounces and DSNs leave with
 * an empty envelope sender, so receivers check SPF against the HELO name. Not required for the
 * domain to verify (mail from the domain itself does not depend on it): reported as a warning.
 */
export function judgeHeloSpfRecords(l: Lookup, want: DnsRecord): { base: Omit<Check, 'ok' | 'problem'>; failed: Check | null } {
  const found = txtValues(l).filter((t) => /^v=spf1(\s|$)/i.test(t));
  const base = { purpose: 'helo-spf' as const, type: 'TXT' as const, name: want.name, expected: want.value, found, required: false };
  if (l.error) return { base, failed: { ...base, ok: false, problem: l.error } };
  if (found.length === 0) return { base, failed: { ...base, ok: false, problem: `no SPF record for the host name ${want.name}: bounces and DSNs (empty envelope sender) get SPF "none"` } };
  if (found.length > 1) return { base, failed: { ...base, ok: false, problem: 'more than one SPF record published at the host name; merge them into one' } };
  return { base, failed: null };
}

/** SPF for an EHLO name, second step: every address that sends with that name is authorised. */
export function heloSpfJudged(base: Omit<Check, 'ok' | 'problem'>, misses: readonly SpfMiss[]): Check {
  const ok = misses.length === 0;
  return { ...base, ok, problem: ok ? null : `the host name's SPF record does not authorize ${misses.map((m) => `${m.ip} (${m.result})`).join(', ')}` };
}

/** DMARC: exactly one v=DMARC1 record with a valid policy. */
export function judgeDmarc(l: Lookup, expected: DnsRecord): Check {
  const found = txtValues(l).filter((t) => /^v=DMARC1\s*(;|$)/i.test(t));
  const ok = !l.error && found.length === 1 && /^(none|quarantine|reject)$/i.test(tags(found[0]).get('p') ?? '');
  return {
    purpose: 'dmarc', type: 'TXT', name: expected.name, expected: expected.value, found, ok,
    problem: ok
      ? null
      : l.error ?? (found.length === 0 ? 'no DMARC record (v=DMARC1) published' : found.length > 1 ? 'more than one DMARC record published' : 'the DMARC record has no valid policy (p=none, quarantine or reject)'),
  };
}

/** RFC 6186/8314 SRV records: a mail client finds the server and port from the address alone (not required). */
export function judgeSrv(l: Lookup, want: DnsRecord): Check {
  const found = l.values.map((v: any) => `${v.priority} ${v.weight} ${v.port} ${dot(v.name ?? '') || '.'}`);
  const matches = (f: string) => {
    const [, , port, target] = f.split(' ');
    return want.value === '.' ? target === '.' : target === dot(want.value) && Number(port) === want.port;
  };
  const ok = !l.error && found.length > 0 && found.every(matches);
  return {
    purpose: 'srv', type: 'SRV', name: want.name, expected: `${want.priority} ${want.weight} ${want.port} ${want.value}`, found, ok, required: false,
    problem: ok
      ? null
      : l.error ?? (found.length === 0 ? 'not published (mail clients cannot find the server from the address alone)' : want.value === '.' ? 'should say the service is not offered (target ".")' : `should point at ${want.value} port ${want.port}`),
  };
}

/** Decide: the verification from the checks (ok when every required record is). */
export function verificationOf(domain: { name: string; lastVerifiedAt: string | null }, checks: readonly Check[], checkedAt: string): Verification {
  const records: RecordCheck[] = checks.map((r) => ({ ...r, required: r.required ?? true }));
  const ok = records.filter((r) => r.required).every((r) => r.ok);
  return { domain: domain.name, ok, checkedAt, lastVerifiedAt: ok ? checkedAt : domain.lastVerifiedAt, records };
}

/**
 * Checks a domain's published DNS against what it needs, with live lookups through `resolve` (the
 * configured resolvers; pass one without a cache so a fix shows at once): MX points at this server,
 * SPF authorizes every address in `ips` (the one SPF evaluator, src/mail/spf.ts: include:, mx, a
 * and redirect count), each active DKIM selector is published with our public key, and a DMARC policy exists.
 * Saves the result; when everything is correct sets lastVerifiedAt and records `domain.verified`.
 */
export async function verifyDomain(ctx: ServiceContext, resolve: ResolveFn, idOrName: string): Promise<Verification> {
  const d = getDomain(ctx, idOrName);
  const expected = domainRecords(ctx, d);
  const hostname = dot(ctx.config.hostname);
  const want = (purpose: DnsRecord['purpose']) => expected.find((r) => r.purpose === purpose)!;
  const dmarc = want('dmarc');
  // Gather (the lookups run in parallel), each judged as it arrives.
  const checks: Promise<Check>[] = [
    lookup(resolve, d.name, 'MX').then((l) => judgeMx(l, d.name, hostname, want('mx'))),
    lookup(resolve, d.name, 'TXT').then(async (l) => {
      const { base, failed } = judgeSpfRecords(l, d.name, want('spf'));
      return failed ?? spfJudged(base, await spfUnauthorised(resolve, d.name, ctx.config.ips, hostname));
    }),
    ...d.dkim.filter((k) => k.state !== 'removed').map((k) => lookup(resolve, `${k.selector}._domainkey.${d.name}`, 'TXT').then((l) => judgeDkim(l, d.name, k))),
    lookup(resolve, dmarc.name, 'TXT').then((l) => judgeDmarc(l, dmarc)),
    ...expected.filter((r) => r.type === 'SRV').map((srv) => lookup(resolve, srv.name, 'SRV').then((l) => judgeSrv(l, srv))),
    // The host name sends from every configured address; another EHLO name from its own.
    ...expected.filter((r) => r.purpose === 'helo-spf').map((w) =>
      lookup(resolve, w.name, 'TXT').then(async (l) => {
        const { base, failed } = judgeHeloSpfRecords(l, w);
        const ips = w.name === hostname ? ctx.config.ips : Object.entries(ctx.config.outbound.source_ips).filter(([, n]) => dot(n) === w.name).map(([ip]) => ip);
        return failed ?? heloSpfJudged(base, await spfUnauthorised(resolve, w.name, ips, w.name));
      }),
    ),
  ];
  const result = verificationOf(d, await Promise.all(checks), isoNow(ctx.clock));
  recordVerification(ctx, d, result);
  // DKIM rotation: switch to the pending keys once all are published; end expired grace periods.
  const published = new Set(result.records.filter((r) => r.purpose === 'dkim' && r.ok).map((r) => r.name.split('._domainkey.')[0]));
  const rotated = advanceRotation(ctx, d.id, published);
  const retired = retireExpired(ctx, d.id);
  if (rotated || retired.length) return { ...result, rotation: { activated: rotated?.activated ?? [], retiring: rotated?.retiring ?? [], graceUntil: rotated?.graceUntil ?? null, removed: retired.flatMap((r) => r.selectors) } };
  return result;
}

/** Act: save the result and record domain.verified or domain.verification_failed (one transaction). */
function recordVerification(ctx: ServiceContext, d: { id: string; name: string }, result: Verification): void {
  const { ok, checkedAt, records } = result;
  ctx.db.transaction(() => {
    saveVerification(ctx, d.id, result, ok ? checkedAt : null);
    if (ok) recordEvent(ctx.db, ctx.clock, { type: 'domain.verified', domain: d.name, data: { domainId: d.id, checkedAt } });
    else {
      const failing = records.filter((r) => !r.ok && r.required).map((r) => ({ purpose: r.purpose, name: r.name, problem: r.problem }));
      recordEvent(ctx.db, ctx.clock, { type: 'domain.verification_failed', domain: d.name, data: { domainId: d.id, checkedAt, failing } });
    }
  }).immediate();
  ctx.log.info({ domain: d.name, ok, failing: records.filter((r) => !r.ok).map((r) => r.name + ' ' + r.purpose) }, 'domain DNS verified');
}
