// The daily run that sends the reports other domains ask for: DMARC aggregate reports (RFC 7489
// §7.2) to the rua= of each domain we received mail from, and SMTP TLS reports (RFC 8460) to the
// rua= of each domain we delivered to that publishes _smtp._tls. Each report is gzipped, put in a
// message From noreply-dmarc@ / noreply-tlsrpt@ one of our domains, DKIM-signed, and handed to the
// outbound queue (null envelope sender: a report never causes a bounce loop; a hard bounce
// suppresses the address like any other). reports_sent logs every report built, sent or skipped,
// so a second run for the same day sends nothing twice.
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { DB } from '../db/index.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import type { Clock } from '../clock.ts';
import type { ResolveFn } from '../dns/resolver.ts';
import type { EnqueueRequest } from '../queue/handoff.ts';
import { rfc5322Date } from '../mail/date.ts';
import { dsnSigningDomains } from '../mail/dsn.ts';
import { recordEvent } from '../events/record.ts';
import { dmarcReportFilename, dmarcReportXml, groupRecords } from './dmarc-out.ts';
import { tlsReportFilename, tlsReportJson, tlsSessions } from './tls-out.ts';
import {
  cachedStsPolicy,
  dmarcEvaluationsBetween,
  insertReportSent,
  isSuppressed,
  pruneReportsOut,
  reportAlreadyBuilt,
  reportSenderDomain,
  tlsAttemptsBetween,
  type DmarcEvaluationRow,
} from './out-store.ts';

const require = createRequire(import.meta.url);
// mailauth's DMARC policy discovery and Organizational Domain (DNS Tree Walk), the ones our MX's
// own DMARC evaluation uses, so the report goes where the evaluated policy says.
const dmarcRecords = require('mailauth/lib/dmarc/get-dmarc-record.js') as {
  createRecordLookup(resolver: ResolveFn, opts: { strict: boolean; warnings: Set<string> }): (name: string) => Promise<unknown>;
  discoverPolicy(domain: string, lookup: (name: string) => Promise<unknown>): Promise<{ record: any; recordDomain: string } | { record: false }>;
  getOrgDomain(domain: string, lookup: (name: string) => Promise<unknown>): Promise<string>;
};

export interface ReportsOutDeps {
  db: DB;
  config: Config;
  log: Logger;
  clock: Clock;
  resolve: ResolveFn;
  /** DKIM-Signature lines for `message` signed by `domain` ('' when it has no active keys). */
  dkimSignatures(domain: string, message: Buffer, now: Date): Promise<string>;
  /** The outbound queue (durable before it resolves). */
  enqueue(req: EnqueueRequest): Promise<{ id: string | null }>;
}

export interface Destination {
  address: string;
  /** Largest report the destination accepts (the "!10m" suffix), bytes; null = no limit given. */
  maxSize: number | null;
}

/** How long DMARC evaluations are kept after their day (a report can be rebuilt by hand meanwhile). */
const EVALUATIONS_KEPT_MS = 8 * 86_400_000;

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Decide: the mailto: destinations of a rua= value (other schemes ignored), with their size limits. Pure. */
export function parseRua(value: string): Destination[] {
  const out: Destination[] = [];
  for (const raw of value.split(',')) {
    const m = /^\s*mailto:([^!\s,]+@[^!\s,]+?)(?:!(\d+)([kmgt]?))?\s*$/i.exec(raw);
    if (!m) continue;
    let address: string;
    try {
      address = decodeURIComponent(m[1]).toLowerCase();
    } catch {
      continue;
    }
    if (!/^[^@\s]+@[a-z0-9.-]+\.[a-z0-9-]+$/i.test(address)) continue;
    out.push({ address, maxSize: m[2] ? Number(m[2]) * UNITS[(m[3] ?? '').toLowerCase()] : null });
  }
  return out;
}

/** Decide: the tags of a TXT tag list ("v=TLSRPTv1; rua=..."), names lower-cased. Pure. */
export function parseTags(txt: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const part of txt.split(';')) {
    const i = part.indexOf('=');
    if (i > 0) tags[part.slice(0, i).trim().toLowerCase()] = part.slice(i + 1).trim();
  }
  return tags;
}

/** The UTC day reported: `date` (YYYY-MM-DD) or the day before `now`, as [begin, end) in ms. Pure. */
export function reportPeriod(now: number, date?: string): { begin: number; end: number } {
  let begin: number;
  if (date) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
    begin = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : NaN;
    if (!Number.isFinite(begin) || new Date(begin).toISOString().slice(0, 10) !== date) throw new Error(`expected a date YYYY-MM-DD, not "${date}"`);
  } else {
    const d = new Date(now - 86_400_000);
    begin = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  }
  return { begin, end: begin + 86_400_000 };
}

/**
 * The report message (pure): a text part and the gzipped report as an attachment. multipart/report
 * with report-type=tlsrpt for TLS reports (RFC 8460 §5.3), with its TLS-Report-* headers. Written
 * by hand because nodemailer's composer cannot set multipart/report and its report-type parameter.
 */
export function reportMessage(o: {
  kind: 'dmarc' | 'tls';
  from: string;
  to: string;
  domain: string;
  submitter: string;
  reportId: string;
  filename: string;
  gz: Buffer;
  now: Date;
  messageId: string;
  boundary: string;
  text: string;
}): Buffer {
  const tls = o.kind === 'tls';
  const head = [
    `From: ${o.from}`,
    `To: ${o.to}`,
    `Subject: Report Domain: ${o.domain} Submitter: ${o.submitter} Report-ID: <${o.reportId}>`,
    `Date: ${rfc5322Date(o.now)}`,
    `Message-ID: ${o.messageId}`,
    'MIME-Version: 1.0',
    ...(tls ? [`TLS-Report-Domain: ${o.domain}`, `TLS-Report-Submitter: ${o.submitter}`] : []),
    `Content-Type: ${tls ? 'multipart/report; report-type="tlsrpt"' : 'multipart/mixed'}; boundary="${o.boundary}"`,
    'Auto-Submitted: auto-generated',
  ];
  const b64 = o.gz.toString('base64').replace(/.{76}/g, '$&\r\n').replace(/\r\n$/, '');
  const type = tls ? 'application/tlsrpt+gzip' : 'application/gzip';
  const body = [
    `--${o.boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
    '',
    o.text,
    `--${o.boundary}`,
    `Content-Type: ${type}; name="${o.filename}"`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${o.filename}"`,
    '',
    b64,
    `--${o.boundary}--`,
    '',
  ];
  return Buffer.from([...head, '', ...body].join('\r\n'), 'utf8');
}

export interface RunSummary {
  period: { begin: string; end: string };
  sent: { kind: string; domain: string; destination: string; reportId: string; records: number; size: number }[];
  skipped: { kind: string; domain: string; destination: string; reason: string }[];
}

/** One report to send: what it is about, where it goes, and how to build it once the sender is known. */
interface PendingReport {
  kind: 'dmarc' | 'tls';
  domain: string;
  dest: Destination;
  reportId: string;
  records: number;
  build: (from: string) => { gz: Buffer; filename: string; text: string };
}

/** The state of one run: its period, what it did so far, and the counters its rate limits read. */
interface ReportRun {
  deps: ReportsOutDeps;
  period: { begin: number; end: number };
  summary: RunSummary;
  hostname: string;
  senderDomain: string | null;
  perDestination: Map<string, number>;
  total: number;
}

/**
 * Decide: why a report may not be sent now (rate limits, no sender, a suppressed destination), or
 * null when it may. Pure.
 */
export function reportGate(o: { senderDomain: string | null; total: number; sentToDestination: number; suppressed: boolean; maxPerRun: number; maxPerDestination: number }): string | null {
  if (!o.senderDomain) return 'no domain of ours to send from';
  if (o.total >= o.maxPerRun) return `rate limit: reports.max_per_run (${o.maxPerRun}) reached`;
  if (o.sentToDestination >= o.maxPerDestination) return `rate limit: reports.max_per_destination (${o.maxPerDestination}) reached for this address`;
  if (o.suppressed) return 'destination suppressed (it hard-bounced before)';
  return null;
}

/** One daily run for the period (default: the UTC day before now). Never throws for one report's failure. */
export async function runReportsOut(deps: ReportsOutDeps, o: { date?: string; kinds?: ('dmarc' | 'tls')[] } = {}): Promise<RunSummary> {
  const cfg = deps.config.reports;
  const now = deps.clock.now();
  const period = reportPeriod(now, o.date);
  const hostname = deps.config.hostname.toLowerCase();
  const run: ReportRun = {
    deps,
    period,
    summary: { period: { begin: new Date(period.begin).toISOString(), end: new Date(period.end).toISOString() }, sent: [], skipped: [] },
    hostname,
    senderDomain: reportSenderDomain(deps.db, dsnSigningDomains(hostname, null)),
    perDestination: new Map(),
    total: 0,
  };
  const kinds = o.kinds ?? ['dmarc', 'tls'];
  if (kinds.includes('dmarc') && cfg.dmarc_send) await runDmarcReports(run);
  if (kinds.includes('tls') && cfg.tls_send) await runTlsReports(run);
  // Evaluations are only needed until their day is reported (kept a week, for `reports send --date`);
  // the log of what was sent is kept for reports.retention.
  pruneReportsOut(deps.db, Math.min(period.begin, now - EVALUATIONS_KEPT_MS), now - cfg.retention);
  return run.summary;
}

/** Builds, signs and queues one report, or records why it was skipped. */
async function sendReport(run: ReportRun, r: PendingReport): Promise<void> {
  const { deps, period, summary, hostname, senderDomain } = run;
  const cfg = deps.config.reports;
  const base = { id: r.reportId, kind: r.kind, domain: r.domain, destination: r.dest.address, beginAt: period.begin, endAt: period.end, records: r.records, createdAt: deps.clock.now() };
  const skip = (reason: string, size = 0) => {
    summary.skipped.push({ kind: r.kind, domain: r.domain, destination: r.dest.address, reason });
    insertReportSent(deps.db, { ...base, status: 'skipped', reason, size, queueMessageId: null });
    deps.log.info({ component: 'reports', kind: r.kind, domain: r.domain, destination: r.dest.address, reason }, 'report not sent');
  };
  if (reportAlreadyBuilt(deps.db, r.kind, r.domain, r.dest.address, period.begin)) return;
  const n = run.perDestination.get(r.dest.address) ?? 0;
  const gate = reportGate({ senderDomain, total: run.total, sentToDestination: n, suppressed: !!senderDomain && isSuppressed(deps.db, senderDomain, r.dest.address), maxPerRun: cfg.max_per_run, maxPerDestination: cfg.max_per_destination });
  if (gate || !senderDomain) return skip(gate ?? 'no domain of ours to send from');
  const from = `noreply-${r.kind === 'dmarc' ? 'dmarc' : 'tlsrpt'}@${senderDomain}`;
  const built = r.build(from);
  const at = new Date(deps.clock.now());
  const messageId = `<${r.reportId}@${hostname}>`;
  const message = reportMessage({ kind: r.kind, from, to: r.dest.address, domain: r.domain, submitter: hostname, reportId: r.reportId, filename: built.filename, gz: built.gz, now: at, messageId, boundary: `lb-report-${randomBytes(8).toString('hex')}`, text: built.text });
  const limit = Math.min(cfg.max_report_size, r.dest.maxSize ?? Infinity);
  if (message.length > limit) return skip(`report too large (${message.length} bytes; the limit is ${limit})`, built.gz.length);
  const sig = await deps.dkimSignatures(senderDomain, message, at);
  if (!sig) return skip(`${senderDomain} has no active DKIM key (reports must be DKIM-signed)`, built.gz.length);
  const signed = Buffer.concat([Buffer.from(sig, 'binary'), message]);
  const q = await deps.enqueue({ message: signed, from: '', recipients: [r.dest.address], mailboxId: null, sendingDomain: senderDomain, messageId, origin: 'report' });
  insertReportSent(deps.db, { ...base, status: 'queued', reason: null, size: built.gz.length, queueMessageId: q.id });
  recordEvent(deps.db, deps.clock, { type: 'report.sent', domain: senderDomain, messageId, data: { kind: r.kind, reportDomain: r.domain, destination: r.dest.address, reportId: r.reportId, records: r.records, size: built.gz.length, queueMessageId: q.id } });
  run.perDestination.set(r.dest.address, n + 1);
  run.total++;
  summary.sent.push({ kind: r.kind, domain: r.domain, destination: r.dest.address, reportId: r.reportId, records: r.records, size: built.gz.length });
}

/** Runs `fn` for one domain's reports; a failure is logged and recorded, and the run goes on. */
async function guarded(run: ReportRun, what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err: any) {
    run.deps.log.error({ component: 'reports', what, err: err?.message ?? String(err) }, 'building or sending a report failed');
    run.summary.skipped.push({ kind: what.split(':')[0], domain: what.split(':')[1] ?? '', destination: '', reason: `error: ${err?.message ?? String(err)}` });
  }
}

/** Decide: the policy_published of a report from the domain's DMARC record now (the last evaluation's where it says nothing). Pure. */
export function publishedPolicy(domain: string, rec: Record<string, any>, last: { p?: string; sp?: string }) {
  return {
    domain,
    p: rec.p ?? last.p,
    sp: rec.sp ?? rec.p ?? last.sp,
    pct: Number.isInteger(Number(rec.pct)) ? Number(rec.pct) : 100,
    adkim: rec.adkim === 's' ? 's' : 'r',
    aspf: rec.aspf === 's' ? 's' : 'r',
    fo: typeof rec.fo === 'string' && rec.fo ? rec.fo : '0',
  };
}

/** DMARC aggregate reports: one per policy domain seen in the period and rua= destination. */
async function runDmarcReports(run: ReportRun): Promise<void> {
  const { deps, period, summary, hostname } = run;
  const byDomain = new Map<string, DmarcEvaluationRow[]>();
  for (const row of dmarcEvaluationsBetween(deps.db, period.begin, period.end)) byDomain.set(row.policy_domain, [...(byDomain.get(row.policy_domain) ?? []), row]);
  const lookup = dmarcRecords.createRecordLookup(deps.resolve, { strict: false, warnings: new Set() });
  for (const [domain, rows] of byDomain) {
    await guarded(run, `dmarc:${domain}`, async () => {
      const found = await dmarcRecords.discoverPolicy(domain, lookup);
      if (!found.record || typeof found.record.rua !== 'string') return;
      const records = groupRecords(rows);
      const policy = publishedPolicy(domain, found.record, JSON.parse(rows[rows.length - 1].policy));
      for (const dest of parseRua(found.record.rua)) {
        const reportId = `${Math.floor(period.begin / 1000)}.${randomBytes(6).toString('hex')}.${domain}`;
        const external = await externalDenied(deps.resolve, lookup, domain, dest.address);
        if (external) {
          if (!reportAlreadyBuilt(deps.db, 'dmarc', domain, dest.address, period.begin)) {
            summary.skipped.push({ kind: 'dmarc', domain, destination: dest.address, reason: external });
            insertReportSent(deps.db, { id: reportId, kind: 'dmarc', domain, destination: dest.address, beginAt: period.begin, endAt: period.end, status: 'skipped', reason: external, records: records.length, size: 0, queueMessageId: null, createdAt: deps.clock.now() });
          }
          continue;
        }
        const begin = Math.floor(period.begin / 1000);
        const end = Math.floor(period.end / 1000) - 1;
        await sendReport(run, {
          kind: 'dmarc',
          domain,
          dest,
          reportId,
          records: records.length,
          build: (from) => ({
            gz: gzipSync(dmarcReportXml({ orgName: hostname, email: from, reportId, begin, end }, policy, records)),
            filename: dmarcReportFilename(hostname, domain, begin, end),
            text: `DMARC aggregate report for ${domain} from ${hostname}: ${rows.length} message(s) received between ${summary.period.begin} and ${summary.period.end} (RFC 7489).\r\n`,
          }),
        });
      }
    });
  }
}

/** TLS reports (RFC 8460): one per recipient domain that publishes _smtp._tls and rua= destination. */
async function runTlsReports(run: ReportRun): Promise<void> {
  const { deps, period, summary, hostname } = run;
  const byDomain = new Map<string, ReturnType<typeof tlsSessions>>();
  for (const s of tlsSessions(tlsAttemptsBetween(deps.db, period.begin, period.end))) byDomain.set(s.domain, [...(byDomain.get(s.domain) ?? []), s]);
  for (const [domain, sessions] of byDomain) {
    await guarded(run, `tls:${domain}`, async () => {
      const rua = await tlsRptRua(deps.resolve, domain);
      if (!rua) return;
      for (const dest of parseRua(rua)) {
        const unique = randomBytes(8).toString('hex');
        const reportId = `${new Date(period.begin).toISOString().slice(0, 10)}.${unique}@${hostname}`;
        await sendReport(run, {
          kind: 'tls',
          domain,
          dest,
          reportId,
          records: sessions.length,
          build: (from) => ({
            gz: gzipSync(JSON.stringify(tlsReportJson({ organizationName: hostname, contactInfo: from, reportId, begin: period.begin, end: period.end - 1000 }, domain, sessions, { sts: cachedStsPolicy(deps.db, domain) }))),
            filename: tlsReportFilename(hostname, domain, period.begin, period.end, unique),
            text: `SMTP TLS report for ${domain} from ${hostname}: ${sessions.length} TLS session(s) between ${summary.period.begin} and ${summary.period.end} (RFC 8460).\r\n`,
          }),
        });
      }
    });
  }
}

/**
 * RFC 7489 §7.1: a rua address outside the policy domain's Organizational Domain must have agreed
 * to receive its reports (a TXT record "v=DMARC1" at <policy-domain>._report._dmarc.<rua-domain>).
 * Returns why the destination is refused, or null when it may be sent to.
 */
async function externalDenied(resolve: ResolveFn, lookup: (name: string) => Promise<unknown>, policyDomain: string, address: string): Promise<string | null> {
  const ruaDomain = address.slice(address.lastIndexOf('@') + 1);
  const [a, b] = await Promise.all([dmarcRecords.getOrgDomain(policyDomain, lookup), dmarcRecords.getOrgDomain(ruaDomain, lookup)]);
  if (a === b) return null;
  const name = `${policyDomain}._report._dmarc.${ruaDomain}`;
  let txts: string[][] = [];
  try {
    txts = await resolve(name, 'TXT');
  } catch (err: any) {
    if (!['ENOTFOUND', 'ENODATA'].includes(err?.code)) throw err;
  }
  if (txts.some((t) => /^v\s*=\s*DMARC1\s*(;|$)/i.test(t.join('')))) return null;
  return `external destination not authorised: no "v=DMARC1" TXT record at ${name} (RFC 7489 §7.1)`;
}

/** The rua= of the domain's TLS-RPT record (_smtp._tls TXT "v=TLSRPTv1; rua=..."), or null. */
async function tlsRptRua(resolve: ResolveFn, domain: string): Promise<string | null> {
  let txts: string[][] = [];
  try {
    txts = await resolve(`_smtp._tls.${domain}`, 'TXT');
  } catch (err: any) {
    if (['ENOTFOUND', 'ENODATA'].includes(err?.code)) return null;
    throw err;
  }
  const recs = txts.map((t) => t.join('')).filter((t) => /^v\s*=\s*TLSRPTv1\s*(;|$)/.test(t));
  if (recs.length !== 1) return null; // RFC 8460 §3: more than one record = none
  return parseTags(recs[0]).rua ?? null;
}
