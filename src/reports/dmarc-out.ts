// DMARC aggregate reports we send (RFC 7489 §7.2, appendix C): what our MX concluded about each
// message from a domain with a DMARC record (recorded at acceptance while reports.dmarc_send is
// on), grouped into report records, and the report XML. Pure functions except noteDmarcEvaluation,
// which writes the one row through the store.
import { XMLBuilder } from 'fast-xml-parser';
import { isIPv6 } from 'node:net';
import { canonicalIp } from './ip.ts';
import type { DB } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { insertDmarcEvaluation, type DmarcEvaluationRow } from './out-store.ts';

export type Disposition = 'none' | 'quarantine' | 'reject';

export interface DmarcEvaluation {
  at: number;
  headerFrom: string;
  policyDomain: string;
  sourceIp: string;
  envelopeFrom: string;
  envelopeTo: string | null;
  disposition: Disposition;
  dkimAligned: 'pass' | 'fail';
  spfAligned: 'pass' | 'fail';
  reason: string | null;
  dkim: { domain: string; selector: string | null; result: string }[];
  spf: { domain: string; result: string };
  policy: { p: string; sp: string; pct: number; adkim: string; aspf: string; fo: string };
}

/**
 * Decide: the evaluation to record for one message, from mailauth's result and what our policy did
 * (decision: 'accept' | 'quarantine' | 'reject' and its reason). Null when no DMARC record applied
 * (result none, or a temporary error: the message was not accepted then). Pure.
 */
export function dmarcEvaluationOf(
  auth: any,
  m: { ip: string; mailFrom: string; rcptDomain: string | null; action: string; reason: string; at: number },
): DmarcEvaluation | null {
  const dm = auth?.dmarc;
  const result = dm?.status?.result;
  if (result !== 'pass' && result !== 'fail') return null;
  const headerFrom = String(dm.status?.header?.from ?? dm.domain ?? '').toLowerCase();
  if (!headerFrom) return null;
  const record = dm.record ?? {};
  const byDmarc = /^dmarc=fail/.test(m.reason);
  const disposition: Disposition = byDmarc && (m.action === 'reject' || m.action === 'quarantine') ? m.action : 'none';
  // Our configuration applied less than the policy asked (smtp.dmarc_reject = "quarantine").
  const reason = result === 'fail' && dm.policy === 'reject' && disposition === 'quarantine' ? 'local_policy' : null;
  const mailFrom = m.mailFrom.includes('@') ? m.mailFrom.slice(m.mailFrom.lastIndexOf('@') + 1).toLowerCase() : '';
  const spfRes = auth?.spf;
  return {
    at: m.at,
    headerFrom,
    policyDomain: String(dm.policyDomain ?? dm.status?.header?.d ?? headerFrom).toLowerCase(),
    sourceIp: canonicalIp(m.ip) ?? m.ip,
    envelopeFrom: mailFrom,
    envelopeTo: m.rcptDomain,
    disposition,
    dkimAligned: dm.alignment?.dkim?.result ? 'pass' : 'fail',
    spfAligned: dm.alignment?.spf?.result ? 'pass' : 'fail',
    reason,
    dkim: (auth?.dkim?.results ?? [])
      .filter((r: any) => r?.signingDomain)
      .map((r: any) => ({ domain: String(r.signingDomain).toLowerCase(), selector: r.selector ?? null, result: dkimResult(r.status?.result) })),
    spf: { domain: String(spfRes?.domain ?? (mailFrom || headerFrom)).toLowerCase(), result: spfResult(spfRes?.status?.result) },
    policy: {
      p: dispositionOf(dm.p ?? record.p),
      sp: dispositionOf(dm.sp ?? record.sp ?? dm.p ?? record.p),
      pct: Number.isInteger(Number(record.pct)) ? Number(record.pct) : 100,
      adkim: record.adkim === 's' ? 's' : 'r',
      aspf: record.aspf === 's' ? 's' : 'r',
      fo: typeof record.fo === 'string' && record.fo ? record.fo : '0',
    },
  };
}

const DKIM_RESULTS = new Set(['none', 'pass', 'fail', 'policy', 'neutral', 'temperror', 'permerror']);
const SPF_RESULTS = new Set(['none', 'neutral', 'pass', 'fail', 'softfail', 'temperror', 'permerror']);
const dkimResult = (r: unknown) => (DKIM_RESULTS.has(String(r)) ? String(r) : 'neutral');
const spfResult = (r: unknown) => (SPF_RESULTS.has(String(r)) ? String(r) : 'none');
const dispositionOf = (p: unknown): string => (p === 'reject' || p === 'quarantine' ? p : 'none');

/** Records the evaluation (never throws: a report row must not cost a message). */
export function noteDmarcEvaluation(db: DB, log: Logger, e: DmarcEvaluation | null): void {
  if (!e) return;
  try {
    insertDmarcEvaluation(db, e);
  } catch (err: any) {
    log.warn({ component: 'reports', err: err?.message ?? String(err) }, 'could not record the DMARC evaluation for the aggregate report');
  }
}

export interface DmarcReportRecord {
  sourceIp: string;
  count: number;
  disposition: string;
  dkimAligned: string;
  spfAligned: string;
  reason: string | null;
  headerFrom: string;
  envelopeFrom: string;
  envelopeTo: string | null;
  dkim: { domain: string; selector: string | null; result: string }[];
  spf: { domain: string; result: string };
}

/** Decide: the report records of one policy domain: rows grouped by source IP, disposition, results and identifiers, with counts. Pure. */
export function groupRecords(rows: DmarcEvaluationRow[]): DmarcReportRecord[] {
  const groups = new Map<string, DmarcReportRecord>();
  for (const r of rows) {
    const key = JSON.stringify([r.source_ip, r.disposition, r.dkim_aligned, r.spf_aligned, r.reason, r.header_from, r.envelope_from, r.envelope_to, r.dkim, r.spf]);
    const g = groups.get(key);
    if (g) g.count++;
    else
      groups.set(key, {
        sourceIp: r.source_ip,
        count: 1,
        disposition: r.disposition,
        dkimAligned: r.dkim_aligned,
        spfAligned: r.spf_aligned,
        reason: r.reason,
        headerFrom: r.header_from,
        envelopeFrom: r.envelope_from ?? '',
        envelopeTo: r.envelope_to,
        dkim: JSON.parse(r.dkim),
        spf: JSON.parse(r.spf),
      });
  }
  return [...groups.values()].sort((a, b) => b.count - a.count || a.sourceIp.localeCompare(b.sourceIp));
}

/** RFC 7489 appendix C's IPAddress type accepts IPv6 only written out in full (eight groups). Pure. */
export function schemaIp(ip: string): string {
  if (!isIPv6(ip)) return ip;
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.toLowerCase()).join(':');
}

export interface DmarcReportMeta {
  orgName: string;
  email: string;
  reportId: string;
  begin: number; // seconds
  end: number; // seconds
}

/** The aggregate report document (RFC 7489 appendix C, no namespace as most reporters send it). Pure. */
export function dmarcReportXml(meta: DmarcReportMeta, policy: { domain: string } & DmarcEvaluation['policy'], records: DmarcReportRecord[]): string {
  const doc = {
    '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' },
    feedback: {
      version: '1.0',
      report_metadata: { org_name: meta.orgName, email: meta.email, report_id: meta.reportId, date_range: { begin: meta.begin, end: meta.end } },
      policy_published: { domain: policy.domain, adkim: policy.adkim, aspf: policy.aspf, p: policy.p, sp: policy.sp, pct: policy.pct, fo: policy.fo },
      record: records.map((r) => ({
        row: {
          source_ip: schemaIp(r.sourceIp),
          count: r.count,
          policy_evaluated: { disposition: r.disposition, dkim: r.dkimAligned, spf: r.spfAligned, ...(r.reason ? { reason: { type: r.reason } } : {}) },
        },
        identifiers: { ...(r.envelopeTo ? { envelope_to: r.envelopeTo } : {}), envelope_from: r.envelopeFrom, header_from: r.headerFrom },
        auth_results: {
          ...(r.dkim.length ? { dkim: r.dkim.map((d) => ({ domain: d.domain, ...(d.selector ? { selector: d.selector } : {}), result: d.result })) } : {}),
          spf: { domain: r.spf.domain, scope: 'mfrom', result: r.spf.result },
        },
      })),
    },
  };
  return new XMLBuilder({ ignoreAttributes: false, format: true, suppressEmptyNode: false, processEntities: true }).build(doc);
}

/** The RFC 7489 §7.2.1.1 file name: receiver!policy-domain!begin!end.xml.gz. Pure. */
export function dmarcReportFilename(receiver: string, domain: string, begin: number, end: number): string {
  return `${receiver}!${domain}!${begin}!${end}.xml.gz`;
}
