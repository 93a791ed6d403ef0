// CLI: letterbox dmarc report D [--days N] [--no-ptr].
import type { Command } from 'commander';
import { table, withContext, type CliHelpers } from '../cli/shared.ts';
import { LetterboxError } from '../errors.ts';
import { createResolver } from '../dns/resolver.ts';
import { dmarcView, type DmarcView } from './view.ts';

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
}
