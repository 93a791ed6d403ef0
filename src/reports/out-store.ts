// The SQL of the reports we send (migration 1100): DMARC evaluations recorded at acceptance, the
// TLS outcomes of outbound attempts, and the log of reports built (reports_sent).
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import { commitWithoutFsync } from '../db/group-commit.ts';
import type { DmarcEvaluation } from './dmarc-out.ts';

export interface DmarcEvaluationRow {
  at: number;
  header_from: string;
  policy_domain: string;
  source_ip: string;
  envelope_from: string | null;
  envelope_to: string | null;
  disposition: string;
  dkim_aligned: string;
  spf_aligned: string;
  reason: string | null;
  dkim: string;
  spf: string;
  policy: string;
}

/** Written before the reply, without an fsync of its own (a row lost in a power cut costs one report line, never mail). */
export function insertDmarcEvaluation(db: DB, e: DmarcEvaluation): void {
  commitWithoutFsync(db, () => {
    stmt(
      db,
      `INSERT INTO dmarc_evaluations (at, header_from, policy_domain, source_ip, envelope_from, envelope_to, disposition, dkim_aligned, spf_aligned, reason, dkim, spf, policy)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(e.at, e.headerFrom, e.policyDomain, e.sourceIp, e.envelopeFrom, e.envelopeTo, e.disposition, e.dkimAligned, e.spfAligned, e.reason, JSON.stringify(e.dkim), JSON.stringify(e.spf), JSON.stringify(e.policy));
  });
}

/** Evaluations in [begin, end) (ms), in time order. */
export function dmarcEvaluationsBetween(db: DB, begin: number, end: number): DmarcEvaluationRow[] {
  return stmt(db, 'SELECT at, header_from, policy_domain, source_ip, envelope_from, envelope_to, disposition, dkim_aligned, spf_aligned, reason, dkim, spf, policy FROM dmarc_evaluations WHERE at >= ? AND at < ? ORDER BY id').all(begin, end) as DmarcEvaluationRow[];
}

export interface TlsAttemptRow {
  domain: string;
  message_id: string;
  at: number;
  mx: string | null;
  ip: string | null;
  source_ip: string | null;
  tls_policy: string;
  tls_result: string;
}

/** Outbound attempts with a TLS outcome in [begin, end) (ms). */
export function tlsAttemptsBetween(db: DB, begin: number, end: number): TlsAttemptRow[] {
  return stmt(
    db,
    `SELECT q.domain, q.message_id, a.at, a.mx, a.ip, a.source_ip, a.tls_policy, a.tls_result
     FROM outbound_attempts a JOIN outbound_queue q ON q.id = a.queue_id
     WHERE a.tls_policy IS NOT NULL AND a.at >= ? AND a.at < ? ORDER BY a.id`,
  ).all(begin, end) as TlsAttemptRow[];
}

/** The cached MTA-STS policy text of a domain (for the report's policy-string), or null. */
export function cachedStsPolicy(db: DB, domain: string): { id: string; mode: string; mx: string[]; maxAge: number } | null {
  const r = stmt(db, 'SELECT id, mode, mx, max_age FROM mta_sts_policies WHERE domain = ?').get(domain) as { id: string; mode: string; mx: string; max_age: number } | undefined;
  return r ? { id: r.id, mode: r.mode, mx: JSON.parse(r.mx), maxAge: r.max_age } : null;
}

export interface ReportSent {
  id: string;
  kind: 'dmarc' | 'tls';
  domain: string;
  destination: string;
  beginAt: number;
  endAt: number;
  status: 'queued' | 'skipped';
  reason: string | null;
  records: number;
  size: number;
  queueMessageId: string | null;
  createdAt: number;
}

/** True when a report for this domain, destination and period was already built (sent or skipped). */
export function reportAlreadyBuilt(db: DB, kind: string, domain: string, destination: string, beginAt: number): boolean {
  return !!stmt(db, 'SELECT 1 FROM reports_sent WHERE kind = ? AND domain = ? AND destination = ? AND begin_at = ?').get(kind, domain, destination, beginAt);
}

export function insertReportSent(db: DB, r: ReportSent): void {
  stmt(
    db,
    `INSERT OR IGNORE INTO reports_sent (id, kind, domain, destination, begin_at, end_at, status, reason, records, size, queue_message_id, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(r.id, r.kind, r.domain, r.destination, r.beginAt, r.endAt, r.status, r.reason, r.records, r.size, r.queueMessageId, r.createdAt);
}

export function listReportsSent(db: DB, o: { kind?: string; since: number; limit: number }): ReportSent[] {
  const rows = stmt(db, `SELECT * FROM reports_sent WHERE created_at >= ? ${o.kind ? 'AND kind = ?' : ''} ORDER BY created_at DESC, id LIMIT ?`).all(
    ...(o.kind ? [o.since, o.kind, o.limit] : [o.since, o.limit]),
  ) as any[];
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind,
    domain: r.domain,
    destination: r.destination,
    beginAt: r.begin_at,
    endAt: r.end_at,
    status: r.status,
    reason: r.reason,
    records: r.records,
    size: r.size,
    queueMessageId: r.queue_message_id,
    createdAt: r.created_at,
  }));
}

/** True when `address` is on `domain`'s suppression list (a hard bounce earlier). */
export function isSuppressed(db: DB, domain: string, address: string): boolean {
  return !!stmt(db, 'SELECT 1 FROM suppressions WHERE domain = ? AND address = ?').get(domain, address.toLowerCase());
}

/** The domain reports are sent from: the first parent of the host name that is one of ours, else the oldest domain; null with none. */
export function reportSenderDomain(db: DB, candidates: string[]): string | null {
  for (const c of candidates) if (stmt(db, 'SELECT 1 FROM domains WHERE name = ?').get(c)) return c;
  return (stmt(db, 'SELECT name FROM domains ORDER BY created_at, name LIMIT 1', { pluck: true }).get() as string | undefined) ?? null;
}

/** Removes evaluations older than `evaluationsBefore` and report log rows older than `logBefore` (ms). */
export function pruneReportsOut(db: DB, evaluationsBefore: number, logBefore: number): number {
  return stmt(db, 'DELETE FROM dmarc_evaluations WHERE at < ?').run(evaluationsBefore).changes + stmt(db, 'DELETE FROM reports_sent WHERE created_at < ?').run(logBefore).changes;
}
