// What the API (GET /domains/:id/dmarc-reports) and the CLI (letterbox dmarc report) show: the
// per-source summary of a domain's DMARC reports over the last N days, with each source's reverse
// DNS name looked up (aggregate reports carry only the IP), and the reports themselves.
import type { ServiceContext } from '../services/context.ts';
import { getDomain } from '../services/domains.ts';
import { summarizeDmarc, type DmarcSummary } from './dmarc.ts';
import { summarizeTls, type TlsSummary } from './tlsrpt.ts';
import { dmarcRecordsSince, listDmarcReports, listTlsReports, tlsPoliciesSince, type DmarcReportInfo, type TlsReportInfo } from './store.ts';

export interface DmarcView {
  domain: string;
  /** The reports address published in the domain's DMARC record (rua=), or null when not configured. */
  address: string | null;
  days: number;
  since: string;
  summary: DmarcSummary;
  /** Reports received in the period (newest first, at most 200), accepted and rejected. */
  reports: DmarcReportInfo[];
  rejected: number;
}

/** Reverse lookup of one IP: the first name, or null (no PTR, or the lookup failed or took too long). */
export type ReverseFn = (ip: string) => Promise<string[]>;

/** Sources whose PTR is looked up (the busiest first); the rest are shown without. */
const PTR_LOOKUPS = 50;

export async function dmarcView(ctx: ServiceContext, idOrName: string, o: { days: number; reverse?: ReverseFn | null }): Promise<DmarcView> {
  const d = getDomain(ctx, idOrName);
  const since = new Date(ctx.clock.now() - o.days * 86_400_000).toISOString();
  const summary = summarizeDmarc(dmarcRecordsSince(ctx.db, d.id, since));
  const reverse = o.reverse;
  if (reverse) {
    await Promise.all(
      summary.sources.slice(0, PTR_LOOKUPS).map(async (s) => {
        try {
          s.ptr = (await reverse(s.sourceIp))[0]?.replace(/\.$/, '') ?? null;
        } catch {
          s.ptr = null;
        }
      }),
    );
  }
  const reports = listDmarcReports(ctx.db, d.id, since, 200);
  const local = ctx.config.reports.dmarc_address;
  return { domain: d.name, address: local ? `${local}@${d.name}` : null, days: o.days, since, summary, reports, rejected: reports.filter((r) => r.status === 'rejected').length };
}

export interface TlsView {
  domain: string;
  /** The address in the domain's TLS-RPT record (rua=), or null when not configured. */
  address: string | null;
  days: number;
  since: string;
  summary: TlsSummary;
  reports: TlsReportInfo[];
  rejected: number;
}

/** The domain's TLS reports (RFC 8460) over the last `days`: sessions per policy, failures by type and MX. */
export function tlsView(ctx: ServiceContext, idOrName: string, o: { days: number }): TlsView {
  const d = getDomain(ctx, idOrName);
  const since = new Date(ctx.clock.now() - o.days * 86_400_000).toISOString();
  const summary = summarizeTls(tlsPoliciesSince(ctx.db, d.id, since));
  const reports = listTlsReports(ctx.db, d.id, since, 200);
  const local = ctx.config.reports.tls_address;
  return { domain: d.name, address: local ? `${local}@${d.name}` : null, days: o.days, since, summary, reports, rejected: reports.filter((r) => r.status === 'rejected').length };
}
