// SMTP TLS reports (RFC 8460 §4): the JSON document → a typed report, and the summary the API and
// CLI show. Pure functions. Senders that deliver to us report, per day, how many TLS sessions with
// our MX succeeded and which failed and why (certificate expired or not matching, STARTTLS not
// offered, an MTA-STS policy that could not be fetched...).
import { LetterboxError } from '../errors.ts';
import { canonicalIp } from './ip.ts';

export interface TlsFailure {
  resultType: string;
  sendingMtaIp: string | null;
  receivingMxHostname: string | null;
  receivingMxHelo: string | null;
  receivingIp: string | null;
  failedSessionCount: number;
  additionalInformation: string | null;
  failureReasonCode: string | null;
}

export interface TlsPolicyResult {
  policyType: string; // sts, tlsa, no-policy-found
  policyDomain: string;
  policyString: string[];
  mxHost: string[];
  successful: number;
  failed: number;
  failures: TlsFailure[];
}

export interface TlsReport {
  orgName: string;
  contact: string | null;
  reportId: string;
  /** The reporting period (ISO 8601, as the reporter wrote it, normalised to UTC). */
  begin: string;
  end: string;
  policies: TlsPolicyResult[];
}

const rejected = (reason: string) => new LetterboxError('validation_error', reason);
const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const str = (v: unknown, max = 1000): string | null => (typeof v === 'string' && v.trim() !== '' ? v.trim().slice(0, max) : typeof v === 'number' ? String(v) : null);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map((x) => str(x)).filter((x): x is string => x !== null).slice(0, 100) : []);

function count(v: unknown, what: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw rejected(`${what} is not a non-negative integer`);
  return v;
}

function time(v: unknown, what: string): string {
  const s = str(v);
  const t = s === null ? Number.NaN : Date.parse(s);
  if (!Number.isFinite(t)) throw rejected(`${what} is not a date-time (${s === null ? 'missing' : JSON.stringify(s.slice(0, 40))})`);
  return new Date(t).toISOString();
}

/** Parses an RFC 8460 report. Throws LetterboxError('validation_error') with the reason. */
export function parseTlsReport(data: Buffer | string): TlsReport {
  let text = typeof data === 'string' ? data : data.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err: any) {
    throw rejected(`malformed JSON: ${err?.message ?? err}`);
  }
  const r = obj(doc);
  if (Object.keys(r).length === 0) throw rejected('not a TLS report: the document is not a JSON object');
  const orgName = str(r['organization-name'], 200);
  const reportId = str(r['report-id'], 200);
  if (!orgName) throw rejected('organization-name missing');
  if (!reportId) throw rejected('report-id missing');
  const range = obj(r['date-range']);
  const begin = time(range['start-datetime'], 'date-range start-datetime');
  const end = time(range['end-datetime'], 'date-range end-datetime');
  if (end < begin) throw rejected('date-range ends before it starts');
  if (!Array.isArray(r.policies) || r.policies.length === 0) throw rejected('policies missing or empty');
  if (r.policies.length > 1000) throw rejected('too many policies');
  const policies = r.policies.map((p, i): TlsPolicyResult => {
    const pol = obj(obj(p).policy);
    const sum = obj(obj(p).summary);
    const type = str(pol['policy-type'], 40)?.toLowerCase();
    const domain = str(pol['policy-domain'], 253)?.toLowerCase().replace(/\.$/, '');
    if (!type) throw rejected(`policies[${i}]: policy-type missing`);
    if (!domain) throw rejected(`policies[${i}]: policy-domain missing`);
    const details = obj(p)['failure-details'];
    if (details !== undefined && !Array.isArray(details)) throw rejected(`policies[${i}]: failure-details is not a list`);
    return {
      policyType: type,
      policyDomain: domain,
      policyString: strings(pol['policy-string']),
      mxHost: strings(pol['mx-host']),
      successful: count(sum['total-successful-session-count'], `policies[${i}] total-successful-session-count`),
      failed: count(sum['total-failure-session-count'], `policies[${i}] total-failure-session-count`),
      failures: ((details as unknown[] | undefined) ?? []).slice(0, 1000).map((f, j) => {
        const d = obj(f);
        const ip = str(d['sending-mta-ip'], 60);
        const rip = str(d['receiving-ip'], 60);
        return {
          resultType: str(d['result-type'], 60)?.toLowerCase() ?? 'unknown',
          sendingMtaIp: ip ? canonicalIp(ip) : null,
          receivingMxHostname: str(d['receiving-mx-hostname'], 253)?.toLowerCase().replace(/\.$/, '') ?? null,
          receivingMxHelo: str(d['receiving-mx-helo'], 253),
          receivingIp: rip ? canonicalIp(rip) : null,
          failedSessionCount: count(d['failed-session-count'], `policies[${i}] failure-details[${j}] failed-session-count`),
          additionalInformation: str(d['additional-information'], 500),
          failureReasonCode: str(d['failure-reason-code'], 200),
        };
      }),
    };
  });
  return { orgName, contact: str(r['contact-info'], 200), reportId, begin, end, policies };
}

// ---- summary ------------------------------------------------------------------------------------

export interface TlsSummary {
  reports: number;
  successful: number;
  failed: number;
  /** Per policy (type and domain). */
  policies: { policyType: string; policyDomain: string; successful: number; failed: number; reporters: string[] }[];
  /** Failures grouped by result type and receiving MX: what to fix, most sessions first. */
  failures: { resultType: string; receivingMx: string | null; sessions: number; sendingIps: string[]; reporters: string[] }[];
}

export function summarizeTls(reports: { orgName: string; policies: TlsPolicyResult[] }[]): TlsSummary {
  const pol = new Map<string, TlsSummary['policies'][number] & { rp: Set<string> }>();
  const fail = new Map<string, TlsSummary['failures'][number] & { ips: Set<string>; rp: Set<string> }>();
  let ok = 0;
  let bad = 0;
  for (const rep of reports) {
    for (const p of rep.policies) {
      const k = `${p.policyType}\u0000${p.policyDomain}`;
      let e = pol.get(k);
      if (!e) pol.set(k, (e = { policyType: p.policyType, policyDomain: p.policyDomain, successful: 0, failed: 0, reporters: [], rp: new Set() }));
      e.successful += p.successful;
      e.failed += p.failed;
      e.rp.add(rep.orgName);
      ok += p.successful;
      bad += p.failed;
      for (const f of p.failures) {
        const fk = `${f.resultType}\u0000${f.receivingMxHostname ?? ''}`;
        let x = fail.get(fk);
        if (!x) fail.set(fk, (x = { resultType: f.resultType, receivingMx: f.receivingMxHostname, sessions: 0, sendingIps: [], reporters: [], ips: new Set(), rp: new Set() }));
        x.sessions += f.failedSessionCount;
        if (f.sendingMtaIp) x.ips.add(f.sendingMtaIp);
        x.rp.add(rep.orgName);
      }
    }
  }
  return {
    reports: reports.length,
    successful: ok,
    failed: bad,
    policies: [...pol.values()].map(({ rp, ...e }) => ({ ...e, reporters: [...rp].sort() })).sort((a, b) => b.successful + b.failed - (a.successful + a.failed)),
    failures: [...fail.values()].map(({ ips, rp, ...x }) => ({ ...x, sendingIps: [...ips].sort().slice(0, 20), reporters: [...rp].sort() })).sort((a, b) => b.sessions - a.sessions),
  };
}
