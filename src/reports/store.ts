// The only module that runs SQL on the report tables (migrations 0900_dmarc_reports.sql, 0902_tls_reports.sql).
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import { newId } from '../util/ids.ts';
import type { DmarcPolicyPublished, DmarcRecord, DmarcReport } from './dmarc.ts';
import type { TlsPolicyResult, TlsReport } from './tlsrpt.ts';

export interface StoredReportInput {
  domainId: string;
  receivedAt: string;
  mailFrom: string;
  remoteIp: string;
  messageId: string | null;
  /** The attachment as received (packed), or null. */
  raw: Buffer | null;
}

/** What a stored report looks like in lists (the API and CLI). */
export interface DmarcReportInfo {
  id: string;
  receivedAt: string;
  status: 'accepted' | 'rejected';
  reason: string | null;
  orgName: string | null;
  orgEmail: string | null;
  reportId: string | null;
  begin: string | null;
  end: string | null;
  policy: DmarcPolicyPublished | null;
  errors: string[];
  messages: number;
  mailFrom: string;
  remoteIp: string;
}

const iso = (unix: number) => new Date(unix * 1000).toISOString();

/**
 * Stores a parsed report and its records in one transaction (the database runs with synchronous =
 * FULL: the commit is on disk when this returns). A report already stored (same reporter and
 * report_id for the domain) is not stored again: returns duplicate.
 */
export function saveDmarcReport(db: DB, input: StoredReportInput, report: DmarcReport): { id: string; duplicate: boolean } {
  return db
    .transaction(() => {
      const existing = stmt(db, "SELECT id FROM dmarc_reports WHERE domain_id = ? AND org_name = ? AND report_id = ? AND status = 'accepted'", { pluck: true }).get(input.domainId, report.orgName, report.reportId) as string | undefined;
      if (existing) return { id: existing, duplicate: true };
      const id = newId('dmr');
      const messages = report.records.reduce((n, r) => n + r.count, 0);
      stmt(
        db,
        `INSERT INTO dmarc_reports (id, domain_id, received_at, status, reason, mail_from, remote_ip, message_id, org_name, org_email, report_id, begin_at, end_at, policy, errors, messages, raw)
         VALUES (?, ?, ?, 'accepted', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(id, input.domainId, input.receivedAt, input.mailFrom, input.remoteIp, input.messageId, report.orgName, report.email, report.reportId, iso(report.begin), iso(report.end), JSON.stringify(report.policy), JSON.stringify(report.errors), messages, input.raw);
      const ins = stmt(db, 'INSERT INTO dmarc_report_records (report_id, source_ip, count, disposition, dkim, spf, header_from, envelope_from, envelope_to, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
      for (const r of report.records) {
        ins.run(id, r.sourceIp, r.count, r.disposition, r.dkim, r.spf, r.headerFrom, r.envelopeFrom, r.envelopeTo, JSON.stringify({ reasons: r.reasons, dkimResults: r.dkimResults, spfResults: r.spfResults }));
      }
      return { id, duplicate: false };
    })
    .immediate();
}

/** Stores a report that could not be read, with the reason (and what was attached, for a look by hand). */
export function saveRejectedDmarcReport(db: DB, input: StoredReportInput, reason: string): string {
  const id = newId('dmr');
  stmt(
    db,
    `INSERT INTO dmarc_reports (id, domain_id, received_at, status, reason, mail_from, remote_ip, message_id, raw)
     VALUES (?, ?, ?, 'rejected', ?, ?, ?, ?, ?)`,
  ).run(id, input.domainId, input.receivedAt, reason.slice(0, 500), input.mailFrom, input.remoteIp, input.messageId, input.raw);
  return id;
}

interface ReportRow {
  id: string;
  received_at: string;
  status: 'accepted' | 'rejected';
  reason: string | null;
  org_name: string | null;
  org_email: string | null;
  report_id: string | null;
  begin_at: string | null;
  end_at: string | null;
  policy: string | null;
  errors: string | null;
  messages: number;
  mail_from: string;
  remote_ip: string;
}

const toInfo = (r: ReportRow): DmarcReportInfo => ({
  id: r.id,
  receivedAt: r.received_at,
  status: r.status,
  reason: r.reason,
  orgName: r.org_name,
  orgEmail: r.org_email,
  reportId: r.report_id,
  begin: r.begin_at,
  end: r.end_at,
  policy: r.policy ? JSON.parse(r.policy) : null,
  errors: r.errors ? JSON.parse(r.errors) : [],
  messages: r.messages,
  mailFrom: r.mail_from,
  remoteIp: r.remote_ip,
});

/** The domain's reports received since `since` (ISO), newest first, accepted and rejected. */
export function listDmarcReports(db: DB, domainId: string, since: string, limit = 1000): DmarcReportInfo[] {
  const rows = stmt(
    db,
    `SELECT id, received_at, status, reason, org_name, org_email, report_id, begin_at, end_at, policy, errors, messages, mail_from, remote_ip
       FROM dmarc_reports WHERE domain_id = ? AND coalesce(end_at, received_at) >= ? ORDER BY received_at DESC, id LIMIT ?`,
  ).all(domainId, since, limit) as ReportRow[];
  return rows.map(toInfo);
}

/** The records of the domain's accepted reports whose period ends at or after `since`, grouped by report. */
export function dmarcRecordsSince(db: DB, domainId: string, since: string): { orgName: string; records: DmarcRecord[] }[] {
  const rows = stmt(
    db,
    `SELECT r.id, r.org_name, x.source_ip, x.count, x.disposition, x.dkim, x.spf, x.header_from, x.envelope_from, x.envelope_to, x.detail
       FROM dmarc_reports r JOIN dmarc_report_records x ON x.report_id = r.id
      WHERE r.domain_id = ? AND r.status = 'accepted' AND r.end_at >= ? ORDER BY r.id`,
  ).all(domainId, since) as { id: string; org_name: string; source_ip: string; count: number; disposition: string; dkim: string | null; spf: string | null; header_from: string | null; envelope_from: string | null; envelope_to: string | null; detail: string }[];
  const out = new Map<string, { orgName: string; records: DmarcRecord[] }>();
  for (const r of rows) {
    let rep = out.get(r.id);
    if (!rep) out.set(r.id, (rep = { orgName: r.org_name, records: [] }));
    const d = JSON.parse(r.detail);
    rep.records.push({ sourceIp: r.source_ip, count: r.count, disposition: r.disposition, dkim: r.dkim, spf: r.spf, headerFrom: r.header_from, envelopeFrom: r.envelope_from, envelopeTo: r.envelope_to, reasons: d.reasons ?? [], dkimResults: d.dkimResults ?? [], spfResults: d.spfResults ?? [] });
  }
  return [...out.values()];
}

/** Removes the domain's reports received before `before` (ISO): the retention. Returns how many. */
export function pruneDmarcReports(db: DB, domainId: string, before: string): number {
  return stmt(db, 'DELETE FROM dmarc_reports WHERE domain_id = ? AND received_at < ?').run(domainId, before).changes;
}

// ---- TLS reports (RFC 8460) -----------------------------------------------------------------------

export interface TlsReportInfo {
  id: string;
  receivedAt: string;
  status: 'accepted' | 'rejected';
  reason: string | null;
  orgName: string | null;
  contact: string | null;
  reportId: string | null;
  begin: string | null;
  end: string | null;
  successful: number;
  failed: number;
  mailFrom: string;
  remoteIp: string;
}

/** Stores a parsed TLS report (one row; its policies as JSON). A duplicate (same reporter and report-id) is not stored again. */
export function saveTlsReport(db: DB, input: StoredReportInput, report: TlsReport): { id: string; duplicate: boolean } {
  return db
    .transaction(() => {
      const existing = stmt(db, "SELECT id FROM tls_reports WHERE domain_id = ? AND org_name = ? AND report_id = ? AND status = 'accepted'", { pluck: true }).get(input.domainId, report.orgName, report.reportId) as string | undefined;
      if (existing) return { id: existing, duplicate: true };
      const id = newId('tlr');
      const ok = report.policies.reduce((n, p) => n + p.successful, 0);
      const bad = report.policies.reduce((n, p) => n + p.failed, 0);
      stmt(
        db,
        `INSERT INTO tls_reports (id, domain_id, received_at, status, reason, mail_from, remote_ip, message_id, org_name, contact, report_id, begin_at, end_at, successful, failed, policies, raw)
         VALUES (?, ?, ?, 'accepted', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(id, input.domainId, input.receivedAt, input.mailFrom, input.remoteIp, input.messageId, report.orgName, report.contact, report.reportId, report.begin, report.end, ok, bad, JSON.stringify(report.policies), input.raw);
      return { id, duplicate: false };
    })
    .immediate();
}

export function saveRejectedTlsReport(db: DB, input: StoredReportInput, reason: string): string {
  const id = newId('tlr');
  stmt(db, "INSERT INTO tls_reports (id, domain_id, received_at, status, reason, mail_from, remote_ip, message_id, raw) VALUES (?, ?, ?, 'rejected', ?, ?, ?, ?, ?)")
    .run(id, input.domainId, input.receivedAt, reason.slice(0, 500), input.mailFrom, input.remoteIp, input.messageId, input.raw);
  return id;
}

/** The domain's TLS reports received since `since` (by period end, or arrival for rejected ones), newest first. */
export function listTlsReports(db: DB, domainId: string, since: string, limit = 1000): TlsReportInfo[] {
  const rows = stmt(
    db,
    `SELECT id, received_at, status, reason, org_name, contact, report_id, begin_at, end_at, successful, failed, mail_from, remote_ip
       FROM tls_reports WHERE domain_id = ? AND coalesce(end_at, received_at) >= ? ORDER BY received_at DESC, id LIMIT ?`,
  ).all(domainId, since, limit) as any[];
  return rows.map((r) => ({
    id: r.id, receivedAt: r.received_at, status: r.status, reason: r.reason, orgName: r.org_name, contact: r.contact, reportId: r.report_id,
    begin: r.begin_at, end: r.end_at, successful: r.successful, failed: r.failed, mailFrom: r.mail_from, remoteIp: r.remote_ip,
  }));
}

/** The policies of the domain's accepted TLS reports whose period ends at or after `since`. */
export function tlsPoliciesSince(db: DB, domainId: string, since: string): { orgName: string; policies: TlsPolicyResult[] }[] {
  const rows = stmt(db, "SELECT org_name, policies FROM tls_reports WHERE domain_id = ? AND status = 'accepted' AND end_at >= ? ORDER BY id").all(domainId, since) as { org_name: string; policies: string }[];
  return rows.map((r) => ({ orgName: r.org_name, policies: JSON.parse(r.policies) }));
}

export function pruneTlsReports(db: DB, domainId: string, before: string): number {
  return stmt(db, 'DELETE FROM tls_reports WHERE domain_id = ? AND received_at < ?').run(domainId, before).changes;
}
