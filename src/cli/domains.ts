// CLI: letterbox domain add|list|show|rm and letterbox dns.
import type { Command } from 'commander';
import type { ServiceContext } from '../services/context.ts';
import { addDomain, domainRecords, getDomain, listDomains, removeDomain, type Domain } from '../services/domains.ts';
import { toZone } from '../dns/records.ts';
import { table, withContext, type CliHelpers, type CommandModule, type Globals } from './shared.ts';

function recordsText(d: Domain, ctx: ServiceContext): string {
  const rows = domainRecords(ctx, d).map((r) => ({ type: r.type, name: r.name, value: r.type === 'SRV' ? `${r.priority} ${r.weight} ${r.port} ${r.value}` : r.priority !== undefined ? `${r.priority} ${r.value}` : r.value }));
  return table(rows, ['type', 'name', 'value']);
}

export const domainCommands: CommandModule = (program: Command, { print, io }: CliHelpers): void => {
  const domain = program.command('domain').description('manage domains');
  domain
    .command('add <domain>')
    .description('add a domain (creates DKIM keys) and print the DNS records to publish')
    .action((name: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const d = await addDomain(ctx, name);
        print(cmd, { ...d, records: domainRecords(ctx, d) }, `added ${d.name} (${d.id})\n\nPublish these DNS records:\n${recordsText(d, ctx)}`);
      }),
    );
  domain
    .command('list')
    .description('list domains')
    .action((_o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const ds = listDomains(ctx);
        print(cmd, ds, table(ds.map((d) => ({ ...d, outbound: d.outboundEnabled ? 'enabled' : 'suspended', mailboxes: d.mailboxCount })), ['name', 'id', 'mailboxes', 'outbound', 'createdAt']));
      }),
    );
  domain
    .command('show <domain>')
    .description('show a domain and its DNS records')
    .action((name: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const d = getDomain(ctx, name);
        const text =
          `name:      ${d.name}${d.unicodeName !== d.name ? ` (${d.unicodeName})` : ''}\nid:        ${d.id}\nmailboxes: ${d.mailboxCount}\naliases:   ${d.aliasCount}\n` +
          `catch-all: ${d.catchAll ? d.catchAll.join(', ') : '-'}\noutbound:  ${d.outboundEnabled ? 'enabled' : 'suspended'}\ncreated:   ${d.createdAt}\n` +
          `dkim:      ${d.dkim.map((k) => `${k.selector} (${k.algorithm})`).join(', ')}\n\n${recordsText(d, ctx)}`;
        print(cmd, { ...d, records: domainRecords(ctx, d) }, text);
      }),
    );
  domain
    .command('rm <domain>')
    .description('remove a domain (refused while it has mailboxes unless --force; stored mail stays on disk)')
    .option('--force', 'also remove its mailboxes and aliases')
    .action((name: string, o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const d = removeDomain(ctx, name, { force: !!o.force });
        print(cmd, { removed: d }, `removed ${d.name}${d.mailboxCount ? ` and its ${d.mailboxCount} mailbox(es); their mail stays under ${ctx.config.data_dir}/mail/${d.name}/` : ''}\n`);
      }),
    );

  program
    .command('dns <domain>')
    .description('the DNS records to publish for a domain')
    .option('--zone', 'as a BIND zone-file snippet')
    .action((name: string, o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const d = getDomain(ctx, name);
        const records = domainRecords(ctx, d);
        if (o.zone && !(cmd.optsWithGlobals() as Globals).json) io.out(toZone(records));
        else print(cmd, { domain: d.name, records, zone: toZone(records) }, recordsText(d, ctx));
      }),
    );
};
