// Report messages (DMARC aggregate, RFC 7489; SMTP TLS, RFC 8460) arriving at a domain's report addresses on the MX (the MX hands the whole
// transaction here instead of to local delivery; src/smtp/inbound/server.ts): read with a size
// limit, the report attachment found (mailparser), unpacked (./unpack.ts), parsed (./dmarc.ts, ./tlsrpt.ts) and
// stored (./store.ts) before the 250. A report that cannot be read is stored as rejected with the
// reason and still answered 250 (the reporter could do nothing better with a bounce); only a
// failure to store answers 451, so the reporter retries and nothing is lost.
import type { Readable } from 'node:stream';
import type { SimpleParserOptions } from 'mailparser';
import { isoNow } from '../clock.ts';
import { LetterboxError, isLetterboxError } from '../errors.ts';
import { internalFailure, newRef, reply, SmtpReply } from '../mail/reply.ts';
import { parseRecipient } from '../routing/resolve.ts';
import { domainIdByName } from '../services/domains.ts';
import type { ServiceContext } from '../services/context.ts';
import { unpack, type UnpackLimits } from './unpack.ts';
import { parseReport, type ParseLimits } from './parse.ts';
import { pruneDmarcReports, pruneTlsReports, saveDmarcReport, saveRejectedDmarcReport, saveRejectedTlsReport, saveTlsReport, type StoredReportInput } from './store.ts';

export type ReportKind = 'dmarc' | 'tlsrpt';

/** A recipient that is one of our report addresses. */
export interface ReportTarget {
  kind: ReportKind;
  address: string;
  domain: string;
  domainId: string;
}

/** The report address `address` is, or null (then it is routed as usual). Reads the domains table. */
export function matchReportAddress(ctx: Pick<ServiceContext, 'db' | 'config'>, address: string): ReportTarget | null {
  const { dmarc_address: dmarc, tls_address: tls } = ctx.config.reports;
  if (!dmarc && !tls) return null;
  const p = parseRecipient(address);
  if (p instanceof SmtpReply) return null;
  const kind: ReportKind | null = dmarc && p.local === dmarc ? 'dmarc' : tls && p.local === tls ? 'tlsrpt' : null;
  if (!kind) return null;
  const domainId = domainIdByName(ctx.db, p.domain);
  return domainId ? { kind, address: `${p.local}@${p.domain}`, domain: p.domain, domainId } : null;
}

/**
 * Which kind of report unpacked bytes are: JSON is a TLS report (RFC 8460), XML a DMARC report;
 * anything else is read as the kind the address receives (and then rejected with the parser's reason).
 */
export function reportKindOf(data: Buffer, fallback: ReportKind): ReportKind {
  const head = data.subarray(0, 256).toString('utf8').replace(/^\uFEFF/, '').trimStart();
  if (head.startsWith('{')) return 'tlsrpt';
  if (head.startsWith('<')) return 'dmarc';
  return fallback;
}

/**
 * RCPT: a transaction carries either report recipients or other mail, never both (they are handled
 * by different paths). The second kind gets 452 4.5.3, which tells the client to send those
 * recipients in a new transaction (RFC 5321 §4.5.3.1.10). Pure.
 */
export function reportMixRefusal(o: { mailRecipients: number; reportRecipients: number; isReport: boolean }): SmtpReply | null {
  if (o.isReport ? o.mailRecipients > 0 : o.reportRecipients > 0) return reply(452, '4.5.3', 'Too many recipients: send report addresses in a transaction of their own');
  return null;
}

/** Reads the DATA stream into memory, up to `max` bytes (then the rest is drained and 552 thrown). */
async function readLimited(stream: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  let over = false;
  for await (const c of stream as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) over = true; // keep reading (and dropping) so the client gets our answer
    else chunks.push(c);
  }
  if (over || (stream as any).sizeExceeded) throw reply(552, '5.3.4', `Message too big for a report address: the limit is ${max} bytes`);
  return Buffer.concat(chunks);
}

/** Attachments that may hold a report, by content (zip, gzip, XML) or name; the body when none. */
async function reportParts(message: Buffer): Promise<{ parts: Buffer[]; messageId: string | null }> {
  const { simpleParser } = await import('mailparser');
  const parsed = await simpleParser(message, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, maxHtmlLengthToParse: 0 } as SimpleParserOptions);
  const looksLikeReport = (name: string, type: string, data: Buffer) =>
    (data.length >= 4 && data.readUInt32LE(0) === 0x04034b50) ||
    (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) ||
    /\.(xml|zip|gz|gzip|json)$/i.test(name) ||
    /(xml|zip|gzip|json|tlsrpt)/i.test(type);
  const parts = parsed.attachments.filter((a) => looksLikeReport(a.filename ?? '', a.contentType ?? '', a.content)).map((a) => a.content);
  // Some reporters put the XML (or JSON) in the body itself.
  if (parts.length === 0 && parsed.text && /^\s*(<\?xml|<([a-z0-9]+:)?feedback[\s>]|\{\s*")/i.test(parsed.text)) parts.push(Buffer.from(parsed.text.trim(), 'utf8'));
  return { parts, messageId: parsed.messageId ?? null };
}

export interface ReportSession {
  id: string;
  remoteAddress: string;
}

/**
 * Receives one report message for `targets` (all report addresses; normally one) and returns the
 * 250 text, or throws the SmtpReply to answer.
 */
export async function receiveReports(ctx: ServiceContext, stream: Readable, session: ReportSession, mailFrom: string, targets: ReportTarget[]): Promise<string> {
  const cfg = ctx.config.reports;
  const log = ctx.log.child({ component: 'reports', session: session.id });
  const message = await readLimited(stream, cfg.max_message_size);
  const limits: UnpackLimits = { maxBytes: cfg.max_unpacked_size, maxRatio: cfg.max_ratio };
  const parseLimits: ParseLimits = { timeoutMs: 120_000, heapMb: 512 };
  let parts: Buffer[] = [];
  let messageId: string | null = null;
  let unreadable: string | null = null;
  try {
    ({ parts, messageId } = await reportParts(message));
  } catch (err: any) {
    unreadable = `message could not be parsed (${err?.message ?? err})`;
  }
  const receivedAt = isoNow(ctx.clock);
  const base = (t: ReportTarget, raw: Buffer | null): StoredReportInput => ({ domainId: t.domainId, receivedAt, mailFrom, remoteIp: session.remoteAddress, messageId, raw });
  const saveRejected = (kind: ReportKind, t: ReportTarget, raw: Buffer | null, reason: string) => {
    log.warn({ domain: t.domain, kind, from: mailFrom, ip: session.remoteAddress, reason }, 'report rejected');
    return kind === 'dmarc' ? saveRejectedDmarcReport(ctx.db, base(t, raw), reason) : saveRejectedTlsReport(ctx.db, base(t, raw), reason);
  };
  const stored: string[] = [];
  try {
    if (unreadable || parts.length === 0) {
      const reason = unreadable ?? 'no report attachment (zip, gzip, XML or JSON) in the message';
      for (const t of targets) stored.push(saveRejected(t.kind, t, message.subarray(0, 64 * 1024), reason));
    }
    // Each attachment is one report (normally there is one); at most a few are read.
    for (const raw of parts.slice(0, 5)) {
      let kind = targets[0].kind;
      let target = targets[0];
      try {
        const data = (await unpack(raw, limits)).data;
        kind = reportKindOf(data, targets[0].kind);
        target = targets.find((t) => t.kind === kind) ?? targets[0];
        // A report is about the domain it was sent for, or one of its subdomains.
        const about = (domain: string) => {
          const match = targets.find((t) => domain === t.domain || domain.endsWith('.' + t.domain));
          if (!match) throw new LetterboxError('validation_error', `report is about ${domain}, not ${[...new Set(targets.map((t) => t.domain))].join(', ')}`);
          return match;
        };
        if (kind === 'dmarc') {
          const report = await parseReport('dmarc', data, parseLimits);
          target = about(report.policy.domain);
          const r = saveDmarcReport(ctx.db, base(target, raw), report);
          stored.push(r.id);
          log.info({ domain: target.domain, id: r.id, org: report.orgName, reportId: report.reportId, records: report.records.length, duplicate: r.duplicate }, r.duplicate ? 'DMARC report already stored' : 'DMARC report stored');
        } else {
          const report = await parseReport('tlsrpt', data, parseLimits);
          for (const p of report.policies) target = about(p.policyDomain);
          const r = saveTlsReport(ctx.db, base(target, raw), report);
          stored.push(r.id);
          log.info({ domain: target.domain, id: r.id, org: report.orgName, reportId: report.reportId, policies: report.policies.length, duplicate: r.duplicate }, r.duplicate ? 'TLS report already stored' : 'TLS report stored');
        }
      } catch (err: any) {
        if (!isLetterboxError(err) || err.code !== 'validation_error') throw err;
        stored.push(saveRejected(kind, target, raw, err.message));
      }
    }
    // Retention: older reports of these domains go (cheap, indexed; no job needed).
    const cutoff = new Date(ctx.clock.now() - cfg.retention).toISOString();
    for (const t of targets) {
      pruneDmarcReports(ctx.db, t.domainId, cutoff);
      pruneTlsReports(ctx.db, t.domainId, cutoff);
    }
  } catch (err: any) {
    if (err instanceof SmtpReply) throw err;
    const ref = newRef();
    log.error({ ref, err: err?.message ?? String(err) }, 'could not store a report; answered 451');
    throw internalFailure(ref);
  }
  return `OK: report received (${stored.join(', ')})`;
}
