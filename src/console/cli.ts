// CLI: letterbox admin invite NAME — a one-time link that registers a passkey for a console admin
// (the admin is created on first invitation); letterbox admin audit — the console's audit log.
import type { Command } from 'commander';
import { parseHostPort } from '../config/schema.ts';
import { table, withContext, type CliHelpers, type CommandModule } from '../cli/shared.ts';
import { createInvite, listAudit, INVITE_TTL_MS } from './store.ts';

export const adminCommands: CommandModule = (program: Command, { print }: CliHelpers): void => {
  const admin = program.command('admin').description('web console administrators');
  admin
    .command('invite <name>')
    .description('print a one-time link (valid 24 hours) that registers a passkey for console admin NAME')
    .action((name: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const inv = createInvite(ctx, name, INVITE_TTL_MS);
        const port = parseHostPort(ctx.config.listen.api)?.port ?? 8025;
        const url = `http://localhost:${port}/console/invite?token=${inv.token}`;
        print(
          cmd,
          { admin: inv.admin.name, url, expiresAt: inv.expiresAt },
          `Invitation for console admin ${inv.admin.name} (one use, valid until ${inv.expiresAt}):\n\n  ${url}\n\n` +
            `Open it in a browser on your own computer through an SSH tunnel to this server:\n  ssh -L ${port}:127.0.0.1:${port} root@${ctx.config.hostname}\n`,
        );
      }),
    );
  admin
    .command('audit')
    .description('the console audit log (who did what, when, from where), newest first')
    .option('--limit <n>', 'how many entries', '50')
    .action((o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const rows = listAudit(ctx, { limit: Math.max(1, Math.min(1000, Number(o.limit) || 50)) });
        print(cmd, rows, table(rows, ['at', 'admin', 'action', 'target', 'ip']));
      }),
    );
};
