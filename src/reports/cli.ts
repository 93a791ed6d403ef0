// CLI: letterbox dmarc report D [--days N] [--no-ptr]; letterbox tlsrpt report D [--days N].
import type { Command } from 'commander';
import { table, withContext, type CliHelpers } from '../cli/shared.ts';
import { LetterboxError } from '../errors.ts';
import { createResolver } from '../dns/resolver.ts';
import { dmarcView, tlsView, type DmarcView, type TlsView } from './view.ts';
import { DkimSigner } from '../dkim/sign.ts';
import { Spool } from '../spool/index.ts';
import { prepareEnqueue, insertEnqueued } from '../queue/enqueue.ts';
import { runReportsOut } from './send-out.ts';
import { listReportsSent } from './out-store.ts';

function days(s: string): number {
  if (!/^\d{1,4}$/.test(s) || Number(s) < 1) throw new LetterboxError('validation_error', `--days: expected a number of days (1-3650), not "${s}"`);
  return Math.min(Number(s), 3650);
}

const pct = (n: number, of: number) => (of ? `${Math.round((100 * n) / of)}%` : '-');

export function dmarcText(v: DmarcView): string {
  const s = v.summary;
  const head =
    `${v.domain}: DMARC aggregate reports, last ${v.days} days (reports address: ${v.address ?? 'not configured (reports.dmarc_address)'})\n` +
    `${s.reports} report(s), ${s.messages} message(s): ${s.dmarcPass} passed DMARC (${pct(s.dmarcPass, s.messages)}), ${s.dmarcFail} failed` +
    (v.rejected ? `; ${v.rejected} report(s) rejected` : '') + '\n\n';
  const rows = s.sources.map((x) => ({
    source: x.sourceIp,
    ptr: x.ptr,
    messages: x.messages,
    dkim: `${x.dkimAligned} (${pct(x.dkimAligned, x.messages)})`,
    spf: `${x.spfAligned} (${pct(x.spfAligned, x.messages)})`,
    fail: x.dmarcFail,
    disposition: [x.disposition.none && `none ${x.disposition.none}`, x.disposition.quarantine && `quarantine ${x.disposition.quarantine}`, x.disposition.reject && `reject ${x.disposition.reject}`].filter(Boolean).join(', '),
    flag: x.failing ? 'FAILING' : 'ok',
  }));
  const failing = s.sources.filter((x) => x.failing);
  const note = failing.length
    ? `\n${failing.length} source(s) fail DMARC alignment: if one is yours (a newsletter service, another server), authorise it in SPF or have it sign with DKIM for ${v.domain}; if not, someone is sending as ${v.domain}.\n`
    : '';
  const rejected = v.reports.filter((r) => r.status === 'rejected');
  const rej = rejected.length ? `\nRejected reports:\n${table(rejected.map((r) => ({ received: r.receivedAt, from: r.mailFrom || '<>', reason: r.reason })), ['received', 'from', 'reason'])}` : '';
  return head + table(rows, ['source', 'ptr', 'messages', 'dkim', 'spf', 'fail', 'disposition', 'flag']) + note + rej;
}

export function tlsText(v: TlsView): string {
  const s = v.summary;
  const total = s.successful + s.failed;
  const head =
    `${v.domain}: SMTP TLS reports, last ${v.days} days (reports address: ${v.address ?? 'not configured (reports.tls_address)'})\n` +
    `${s.reports} report(s), ${total} TLS session(s): ${s.successful} succeeded, ${s.failed} failed (${pct(s.failed, total)})` +
    (v.rejected ? `; ${v.rejected} report(s) rejected` : '') + '\n\n';
  const pol = table(s.policies.map((p) => ({ policy: p.policyType, domain: p.policyDomain, successful: p.successful, failed: p.failed, reporters: p.reporters })), ['policy', 'domain', 'successful', 'failed', 'reporters']);
  const fails = s.failures.length
    ? `\nFailures:\n${table(s.failures.map((f) => ({ result: f.resultType, mx: f.receivingMx, sessions: f.sessions, senders: f.sendingIps.slice(0, 3), reporters: f.reporters })), ['result', 'mx', 'sessions', 'senders', 'reporters'])}` +
      '\ncertificate-* results: renew or fix the certificate (letterbox tls status); starttls-not-supported: port 25 must offer STARTTLS; sts-*: the MTA-STS policy (letterbox doctor).\n'
    : '';
  const rejected = v.reports.filter((r) => r.status === 'rejected');
  const rej = rejected.length ? `\nRejected reports:\n${table(rejected.map((r) => ({ received: r.receivedAt, from: r.mailFrom || '<>', reason: r.reason })), ['received', 'from', 'reason'])}` : '';
  return head + pol + fails + rej;
}

export function reportCommands(program: Command, { print }: CliHelpers): void {
  const dmarc = program.command('dmarc').description('DMARC aggregate reports received for your domains');
  dmarc
    .command('report <domain>')
    .description('summarise the DMARC reports received: per sending source, messages, SPF/DKIM alignment, disposition; flags sources failing alignment')
    .option('--days <n>', 'reports whose period ended in the last N days', '30')
    .option('--no-ptr', 'do not look up the reverse DNS name of each source')
    .action((domain: string, o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const reverse = o.ptr === false ? null : createResolver({ servers: ctx.config.dns.servers, timeoutMs: ctx.config.dns.timeout_ms, clock: ctx.clock }).reverse;
        const v = await dmarcView(ctx, domain, { days: days(o.days), reverse });
        print(cmd, v, dmarcText(v));
      }),
    );
  const tlsrpt = program.command('tlsrpt').description('SMTP TLS reports (RFC 8460) received for your domains');
  tlsrpt
    .command('report <domain>')
    .description('summarise the TLS reports received: TLS sessions to this server that succeeded and failed, failures by type and MX')
    .option('--days <n>', 'reports whose period ended in the last N days', '30')
    .action((domain: string, o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const v = tlsView(ctx, domain, { days: days(o.days) });
        print(cmd, v, tlsText(v));
      }),
    );
  const reports = program.command('reports').description('DMARC aggregate and TLS reports Letterbox sends to other domains (reports.dmarc_send, reports.tls_send)');
  reports
    .command('send')
    .description('build and queue the reports of one UTC day now (default: yesterday; the daily job does this at 00:23 UTC); a report already built for that day is not sent again')
    .option('--date <YYYY-MM-DD>', 'the UTC day to report')
    .option('--kind <kind>', 'dmarc or tls (default: both that are switched on)')
    .action((o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        if (o.kind && o.kind !== 'dmarc' && o.kind !== 'tls') throw new LetterboxError('validation_error', `--kind: expected dmarc or tls, not "${o.kind}"`);
        if (o.date && !/^\d{4}-\d{2}-\d{2}$/.test(o.date)) throw new LetterboxError('validation_error', `--date: expected YYYY-MM-DD, not "${o.date}"`);
        const r = ctx.config.reports;
        if (!r.dmarc_send && !r.tls_send) throw new LetterboxError('validation_error', 'sending reports is off: set [reports] dmarc_send = true and/or tls_send = true');
        const resolver = createResolver({ servers: ctx.config.dns.servers, timeoutMs: ctx.config.dns.timeout_ms, clock: ctx.clock });
        const dkim = new DkimSigner(ctx.db, ctx.log);
        const spool = new Spool(ctx.config.data_dir);
        // The running server's queue picks the rows up at its next poll (outbound.poll_interval_ms).
        const s = await runReportsOut(
          {
            ...ctx,
            resolve: resolver.resolve,
            dkimSignatures: (d, m, now) => dkim.signatures(d, m, now),
            enqueue: async (req) => {
              const p = await prepareEnqueue(spool, req);
              ctx.db.transaction(() => insertEnqueued(ctx.db, ctx.clock, p))();
              return { id: p.msgId };
            },
          },
          { ...(o.date ? { date: o.date } : {}), ...(o.kind ? { kinds: [o.kind] } : {}) },
        );
        const text =
          `Reports for ${s.period.begin.slice(0, 10)} (UTC): ${s.sent.length} queued, ${s.skipped.length} skipped\n` +
          (s.sent.length ? table(s.sent, ['kind', 'domain', 'destination', 'records', 'size']) : '') +
          (s.skipped.length ? `Skipped:\n${table(s.skipped, ['kind', 'domain', 'destination', 'reason'])}` : '');
        print(cmd, s, text);
      }),
    );
  reports
    .command('sent')
    .description('the reports built in the last N days: queued or skipped (with the reason)')
    .option('--days <n>', 'built in the last N days', '30')
    .option('--kind <kind>', 'dmarc or tls')
    .action((o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const list = listReportsSent(ctx.db, { kind: o.kind, since: ctx.clock.now() - days(o.days) * 86_400_000, limit: 1000 });
        const rows = list.map((x) => ({ ...x, day: new Date(x.beginAt).toISOString().slice(0, 10), built: new Date(x.createdAt).toISOString() }));
        print(cmd, list, table(rows, ['day', 'kind', 'domain', 'destination', 'status', 'records', 'size', 'reason']));
      }),
    );
}
