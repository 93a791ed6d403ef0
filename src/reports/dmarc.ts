// DMARC aggregate reports (RFC 7489 §7.2 and appendix C): the XML document → a typed report, and
// the per-source summary the API and CLI show. Pure functions; the XML is read with fast-xml-parser
// (checked for well-formedness first), never with regular expressions.
//
// Reporters differ: a default namespace or prefixed elements (urn:ietf:params:xml:ns:dmarc-2.0),
// optional elements left out (email, envelope_from, selector, adkim/aspf/sp/pct/fo), values in
// other case or with whitespace, one or many <record>, <dkim> and <spf>. All of those are read; a
// document without the required parts (report_metadata with org_name, report_id and date_range,
// policy_published with domain and p, records with source_ip and count) is refused with the reason.
import { canonicalIp } from './ip.ts';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { LetterboxError } from '../errors.ts';

export interface DmarcPolicyPublished {
  domain: string;
  adkim: string | null;
  aspf: string | null;
  p: string;
  sp: string | null;
  pct: number | null;
  fo: string | null;
}

export interface DmarcRecord {
  sourceIp: string;
  count: number;
  /** policy_evaluated: what the receiver did and the DMARC-aligned results. */
  disposition: string;
  dkim: string | null;
  spf: string | null;
  reasons: { type: string; comment: string | null }[];
  headerFrom: string | null;
  envelopeFrom: string | null;
  envelopeTo: string | null;
  /** auth_results: the raw (not necessarily aligned) results. */
  dkimResults: { domain: string; selector: string | null; result: string }[];
  spfResults: { domain: string; scope: string | null; result: string }[];
}

export interface DmarcReport {
  orgName: string;
  email: string | null;
  reportId: string;
  /** The reporting period, Unix seconds (UTC). */
  begin: number;
  end: number;
  errors: string[];
  policy: DmarcPolicyPublished;
  records: DmarcRecord[];
}

const rejected = (reason: string) => new LetterboxError('validation_error', reason);

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false, // values stay strings: report_id "0012" is not a number
  trimValues: true,
  processEntities: false, // only the five predefined entities matter; DOCTYPEs are refused below
  ignoreDeclaration: true,
  ignorePiTags: true,
  maxNestedTags: 20,
}); // repeated elements (record, dkim, spf, reason, error) come as one value or an array: arr() reads both

const str = (v: unknown): string | null => {
  if (v === undefined || v === null) return null;
  if (typeof v === 'object') return null; // an element where text was expected
  const s = String(v).trim();
  return s === '' ? null : s;
};
const lower = (v: unknown): string | null => str(v)?.toLowerCase() ?? null;
const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined || v === null || v === '' ? [] : [v]);
/** The five predefined XML entities (processEntities is off, so they are decoded here). */
const unescape = (s: string | null) => s && s.replace(/&(lt|gt|quot|apos|amp);/g, (_m, e: string) => ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' })[e]!);

function integer(v: unknown, what: string): number {
  const s = str(v);
  if (s === null || !/^\d{1,15}$/.test(s)) throw rejected(`${what} is not a non-negative integer (${s === null ? 'missing' : JSON.stringify(s.slice(0, 40))})`);
  return Number(s);
}

/** Parses a DMARC aggregate report document. Throws LetterboxError('validation_error') with the reason. */
export function parseDmarcReport(data: Buffer | string): DmarcReport {
  let xml = typeof data === 'string' ? data : data.toString('utf8');
  if (xml.charCodeAt(0) === 0xfeff) xml = xml.slice(1);
  // Reports never carry a DOCTYPE; one is how entity-expansion attacks (billion laughs) start.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw rejected('XML with a DOCTYPE or entity declaration refused');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw rejected(`malformed XML: ${valid.err.msg} (line ${valid.err.line})`);
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml);
  } catch (err: any) {
    throw rejected(`malformed XML: ${err?.message ?? err}`);
  }
  const fb = doc.feedback;
  if (!fb || typeof fb !== 'object') throw rejected('not a DMARC aggregate report: no <feedback> root element');
  const feedback = obj(fb);
  const meta = obj(feedback.report_metadata);
  const orgName = unescape(str(meta.org_name));
  const reportId = unescape(str(meta.report_id));
  if (!orgName) throw rejected('report_metadata has no org_name');
  if (!reportId) throw rejected('report_metadata has no report_id');
  const range = obj(meta.date_range);
  const begin = integer(range.begin, 'date_range begin');
  const end = integer(range.end, 'date_range end');
  if (end < begin) throw rejected('date_range ends before it begins');
  const pp = obj(feedback.policy_published);
  const domain = lower(pp.domain)?.replace(/\.$/, '');
  if (!domain) throw rejected('policy_published has no domain');
  const p = lower(pp.p);
  if (!p) throw rejected('policy_published has no policy (p)');
  const pctText = str(pp.pct);
  const policy: DmarcPolicyPublished = {
    domain,
    adkim: lower(pp.adkim),
    aspf: lower(pp.aspf),
    p,
    sp: lower(pp.sp),
    pct: pctText !== null && /^\d{1,3}$/.test(pctText) ? Number(pctText) : null,
    fo: str(pp.fo),
  };
  const records = arr(feedback.record).map((r, i) => parseRecord(obj(r), i + 1));
  if (records.length === 0) throw rejected('report has no <record>');
  return {
    orgName,
    email: unescape(str(meta.email)),
    reportId,
    begin,
    end,
    errors: arr(meta.error).map((e) => unescape(str(e))).filter((e): e is string => !!e),
    policy,
    records,
  };
}

function parseRecord(r: Record<string, unknown>, n: number): DmarcRecord {
  const row = obj(r.row);
  const text = str(row.source_ip);
  const ip = text === null ? null : canonicalIp(text);
  if (!ip) throw rejected(`record ${n}: source_ip ${text === null ? 'missing' : JSON.stringify(text.slice(0, 60)) + ' is not an IP address'}`);
  const count = integer(row.count, `record ${n}: count`);
  const pe = obj(row.policy_evaluated);
  const ids = obj(r.identifiers);
  const auth = obj(r.auth_results);
  return {
    sourceIp: ip,
    count,
    disposition: lower(pe.disposition) ?? 'none',
    dkim: lower(pe.dkim),
    spf: lower(pe.spf),
    reasons: arr(pe.reason).map((x) => ({ type: lower(obj(x).type) ?? 'other', comment: unescape(str(obj(x).comment)) })),
    headerFrom: lower(ids.header_from),
    envelopeFrom: lower(ids.envelope_from),
    envelopeTo: lower(ids.envelope_to),
    dkimResults: arr(auth.dkim).map((x) => ({ domain: lower(obj(x).domain) ?? '', selector: str(obj(x).selector), result: lower(obj(x).result) ?? 'none' })),
    spfResults: arr(auth.spf).map((x) => ({ domain: lower(obj(x).domain) ?? '', scope: lower(obj(x).scope), result: lower(obj(x).result) ?? 'none' })),
  };
}

// ---- summary ------------------------------------------------------------------------------------

export interface SourceSummary {
  sourceIp: string;
  /** Reverse DNS of the source, when looked up (filled in by the caller). */
  ptr: string | null;
  messages: number;
  /** Messages whose DKIM result was DMARC-aligned and passing (policy_evaluated dkim=pass). */
  dkimAligned: number;
  spfAligned: number;
  /** Messages passing DMARC (DKIM or SPF aligned). */
  dmarcPass: number;
  dmarcFail: number;
  disposition: { none: number; quarantine: number; reject: number };
  headerFrom: string[];
  reporters: string[];
  /** True when any of its messages failed DMARC alignment: spoofing, or a sender you forgot to authorise. */
  failing: boolean;
}

export interface DmarcSummary {
  reports: number;
  messages: number;
  dmarcPass: number;
  dmarcFail: number;
  sources: SourceSummary[];
}

/** Per source IP over the given reports' records: most messages first. */
export function summarizeDmarc(reports: { orgName: string; records: DmarcRecord[] }[]): DmarcSummary {
  const by = new Map<string, SourceSummary & { hf: Set<string>; rp: Set<string> }>();
  let messages = 0;
  let pass = 0;
  for (const rep of reports) {
    for (const r of rep.records) {
      let s = by.get(r.sourceIp);
      if (!s) {
        s = { sourceIp: r.sourceIp, ptr: null, messages: 0, dkimAligned: 0, spfAligned: 0, dmarcPass: 0, dmarcFail: 0, disposition: { none: 0, quarantine: 0, reject: 0 }, headerFrom: [], reporters: [], failing: false, hf: new Set(), rp: new Set() };
        by.set(r.sourceIp, s);
      }
      const dk = r.dkim === 'pass';
      const sp = r.spf === 'pass';
      s.messages += r.count;
      if (dk) s.dkimAligned += r.count;
      if (sp) s.spfAligned += r.count;
      if (dk || sp) s.dmarcPass += r.count;
      else s.dmarcFail += r.count;
      const disp = r.disposition === 'quarantine' || r.disposition === 'reject' ? r.disposition : 'none';
      s.disposition[disp] += r.count;
      if (r.headerFrom) s.hf.add(r.headerFrom);
      s.rp.add(rep.orgName);
      messages += r.count;
      if (dk || sp) pass += r.count;
    }
  }
  const sources = [...by.values()]
    .map(({ hf, rp, ...s }) => ({ ...s, headerFrom: [...hf].sort(), reporters: [...rp].sort(), failing: s.dmarcFail > 0 }))
    .sort((a, b) => b.messages - a.messages || a.sourceIp.localeCompare(b.sourceIp));
  return { reports: reports.length, messages, dmarcPass: pass, dmarcFail: messages - pass, sources };
}
