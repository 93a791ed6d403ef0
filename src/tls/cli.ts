// CLI: letterbox tls status — the certificate in use and what ACME would do with it.
import type { Command } from 'commander';
import type { Globals, CliHelpers } from '../cli/shared.ts';
import { loadConfig } from '../config/load.ts';
import { readCertificate, renewalDue } from './acme.ts';

export function tlsCommands(program: Command, { print }: CliHelpers): void {
  const tls = program.command('tls').description('TLS certificates');
  tls
    .command('status')
    .description('the certificate in use: names, issuer, expiry, and whether ACME renews it')
    .action((_o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as Globals;
      const config = loadConfig({ path: g.config });
      const state = readCertificate(config.tls.cert);
      const now = Date.now();
      const due = renewalDue(state, [config.hostname], now, config.acme.renew_days_before);
      const out = {
        cert: config.tls.cert,
        key: config.tls.key,
        names: state?.names ?? [],
        issuer: state?.issuer ?? null,
        notAfter: state ? new Date(state.notAfter).toISOString() : null,
        daysLeft: state ? Math.floor((state.notAfter - now) / 86400000) : null,
        selfSigned: state?.selfSigned ?? null,
        acme: { enabled: config.acme.enabled, email: config.acme.email, directoryUrl: config.acme.directory_url, renewDaysBefore: config.acme.renew_days_before },
        renewal: config.acme.enabled ? (due.due ? `due: ${due.reason}` : `not due: ${due.reason}`) : 'ACME disabled: renew it yourself',
      };
      const text = state
        ? `certificate: ${out.cert}\nnames:       ${out.names.join(', ')}\nissuer:      ${String(out.issuer).replace(/\n/g, ', ')}${out.selfSigned ? ' (self-signed)' : ''}\n` +
          `expires:     ${out.notAfter} (${out.daysLeft} days)\nacme:        ${config.acme.enabled ? `enabled (${config.acme.directory_url})` : 'disabled'}\nrenewal:     ${out.renewal}\n`
        : `no readable certificate at ${config.tls.cert}: run 'letterbox init' or enable [acme]\n`;
      print(cmd, out, text);
    });
}
