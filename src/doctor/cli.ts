// CLI: letterbox doctor [--json] [--timeout-ms N]. Exits 1 when a check fails (warnings do not).
import type { Command } from 'commander';
import { withContext, type CliHelpers } from '../cli/shared.ts';
import { LetterboxError } from '../errors.ts';
import { createResolver } from '../dns/resolver.ts';
import { listDomains, domainRecords } from '../services/domains.ts';
import { runDoctor, formatReport, DEFAULT_DNSBLS, DEFAULT_OUTBOUND_PROBE, DEFAULT_NTP, DEFAULT_DANE_PROBE } from './index.ts';

export function doctorCommands(program: Command, { print }: CliHelpers): void {
  program
    .command('doctor')
    .description('check ports, TLS, DNS, reverse DNS, Dovecot, disk, database and queue; print each problem with its fix')
    .option('--timeout-ms <n>', 'per-listener probe timeout', '3000')
    .option('--outbound-probe <host:port>', `SMTP server to reach to prove outbound mail works ('' to skip; default: the smarthost, else ${DEFAULT_OUTBOUND_PROBE})`)
    .option('--ntp <host:port>', `SNTP server for the clock-skew check ('' to skip; default ${DEFAULT_NTP})`)
    .option('--dane-probe <name>', `a DNSSEC-signed name the resolver must validate for DANE ('' to skip; default ${DEFAULT_DANE_PROBE}, the root)`)
    .option('--dnsbl <lists>', `comma-separated DNS blocklists to check the IPs against ('' to skip; default ${DEFAULT_DNSBLS.join(',')})`)
    .action((o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const resolver = createResolver({ servers: ctx.config.dns.servers, timeoutMs: ctx.config.dns.timeout_ms, clock: ctx.clock });
        const domains = listDomains(ctx).map((d) => ({ name: d.name, records: domainRecords(ctx, d), dkimStates: Object.fromEntries(d.dkim.map((k) => [k.selector, k.state])) }));
        const report = await runDoctor({ config: ctx.config, db: ctx.db, resolver, domains, now: () => ctx.clock.now(), timeoutMs: Number(o.timeoutMs) || 3000, outboundProbe: o.outboundProbe, ntp: o.ntp, daneProbe: o.daneProbe, dnsbls: o.dnsbl === undefined ? DEFAULT_DNSBLS : String(o.dnsbl).split(',').map((x: string) => x.trim()).filter(Boolean) });
        print(cmd, report, formatReport(report));
        if (!report.ok) throw new LetterboxError('unavailable', `doctor found ${report.failures} problem(s); see the fixes above`);
      }),
    );
}
