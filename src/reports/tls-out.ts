// SMTP TLS reports we send (RFC 8460): the TLS outcomes of our outbound attempts in one UTC day,
// per recipient (policy) domain, as the JSON report of §4.4. Pure functions.
import type { TlsAttemptRow } from './out-store.ts';

export interface TlsReportPolicyInfo {
  /** For 'sts': the cached policy (its lines become policy-string, its mx patterns mx-host). */
  sts?: { mode: string; mx: string[]; maxAge: number } | null;
}

/** Decide: attempts → one TLS session per connection (the rows of one attempt for several recipients count once). Pure. */
export function tlsSessions(rows: TlsAttemptRow[]): TlsAttemptRow[] {
  const seen = new Set<string>();
  return rows.filter((r) => {
    const key = `${r.message_id}|${r.at}|${r.ip}|${r.mx}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The RFC 8460 §4.4 report for one policy domain. `sessions`: that domain's sessions (tlsSessions).
 * Pure.
 */
export function tlsReportJson(
  meta: { organizationName: string; contactInfo: string; reportId: string; begin: number; end: number },
  domain: string,
  sessions: TlsAttemptRow[],
  info: TlsReportPolicyInfo,
): Record<string, unknown> {
  const byPolicy = new Map<string, TlsAttemptRow[]>();
  for (const s of sessions) byPolicy.set(s.tls_policy, [...(byPolicy.get(s.tls_policy) ?? []), s]);
  const policies = [...byPolicy.entries()].map(([type, list]) => {
    const failures = new Map<string, { 'result-type': string; 'sending-mta-ip'?: string; 'receiving-mx-hostname'?: string; 'receiving-ip'?: string; 'failed-session-count': number }>();
    for (const s of list) {
      if (s.tls_result === 'success') continue;
      const key = JSON.stringify([s.tls_result, s.source_ip, s.mx, s.ip]);
      const f = failures.get(key);
      if (f) f['failed-session-count']++;
      else
        failures.set(key, {
          'result-type': s.tls_result,
          ...(s.source_ip ? { 'sending-mta-ip': s.source_ip } : {}),
          ...(s.mx ? { 'receiving-mx-hostname': s.mx } : {}),
          ...(s.ip ? { 'receiving-ip': s.ip } : {}),
          'failed-session-count': 1,
        });
    }
    const successful = list.filter((s) => s.tls_result === 'success').length;
    const sts = type === 'sts' ? info.sts : null;
    const policy: Record<string, unknown> = { 'policy-type': type, 'policy-domain': domain };
    if (sts) {
      policy['policy-string'] = ['version: STSv1', `mode: ${sts.mode}`, ...sts.mx.map((m) => `mx: ${m}`), `max_age: ${sts.maxAge}`];
      policy['mx-host'] = sts.mx;
    }
    return {
      policy,
      summary: { 'total-successful-session-count': successful, 'total-failure-session-count': list.length - successful },
      ...(failures.size ? { 'failure-details': [...failures.values()] } : {}),
    };
  });
  return {
    'organization-name': meta.organizationName,
    'date-range': { 'start-datetime': isoSeconds(meta.begin), 'end-datetime': isoSeconds(meta.end) },
    'contact-info': meta.contactInfo,
    'report-id': meta.reportId,
    policies,
  };
}

/** RFC 3339 date-time without fractions, UTC. */
const isoSeconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** RFC 8460 §5.1 file name: submitter!policy-domain!begin!end!unique-id.json.gz (seconds). Pure. */
export function tlsReportFilename(submitter: string, domain: string, begin: number, end: number, unique: string): string {
  return `${submitter}!${domain}!${Math.floor(begin / 1000)}!${Math.floor(end / 1000)}!${unique}.json.gz`;
}
