// CLI: letterbox alias add|list|rm.
import type { Command } from 'commander';
import { addAlias, listAliases, removeAlias } from '../services/aliases.ts';
import { table, withContext, type CliHelpers, type CommandModule } from './shared.ts';

export const aliasCommands: CommandModule = (program: Command, { print, io }: CliHelpers): void => {
  const alias = program.command('alias').description('manage aliases, forwards and catch-alls (*@domain)');
  alias
    .command('add <address> <targets...>')
    .description('address → targets (local or external); *@domain is the catch-all')
    .option('--replace', 'replace the targets of an existing alias')
    .action((address: string, targets: string[], o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const a = addAlias(ctx, address, targets, { replace: !!o.replace });
        print(cmd, a, `${a.address} → ${a.targets.join(', ')}\n`);
      }),
    );
  alias
    .command('list')
    .option('--domain <domain>')
    .action((o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const as = listAliases(ctx, { domain: o.domain });
        print(cmd, as, table(as, ['address', 'id', 'targets']));
      }),
    );
  alias
    .command('rm <address>')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const a = removeAlias(ctx, address);
        print(cmd, { removed: a }, `removed ${a.address}\n`);
      }),
    );
};
