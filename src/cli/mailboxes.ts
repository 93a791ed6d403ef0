// CLI: letterbox mailbox add|list|show|passwd|set|enable|disable|rm.
import { Option, type Command } from 'commander';
import { addMailbox, getMailbox, listMailboxes, removeMailbox, updateMailbox, type Mailbox } from '../services/mailboxes.ts';
import { fmtSize, readPasswordStdin, table, withContext, type CliHelpers, type CommandModule } from './shared.ts';

export const mailboxCommands: CommandModule = (program: Command, { print, io }: CliHelpers): void => {
  const mailbox = program.command('mailbox').description('manage mailboxes');
  const mbxRow = (m: Mailbox) => ({ ...m, quota: fmtSize(m.quotaBytes), status: m.disabled ? 'disabled' : 'active' });
  mailbox
    .command('add <address>')
    .description('create a mailbox; without --password a strong one is generated and printed once')
    .option('--password <password>', 'at least 12 characters')
    .option('--password-stdin', 'read the password from standard input')
    .option('--quota <size>', 'e.g. 500M, 2G (0 = unlimited)')
    .option('--tag <tag...>', 'tags')
    .option('--disable', 'create it disabled')
    .action((address: string, o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const password = o.passwordStdin ? readPasswordStdin() : o.password;
        const r = await addMailbox(ctx, { address, password, quota: o.quota, tags: o.tag, disabled: !!o.disable });
        print(
          cmd,
          { ...r.mailbox, ...(r.generatedPassword ? { password: r.generatedPassword } : {}) },
          `added ${r.mailbox.address} (${r.mailbox.id}), quota ${fmtSize(r.mailbox.quotaBytes)}\n` +
            (r.generatedPassword ? `password: ${r.generatedPassword}\n(shown once: store it now)\n` : ''),
        );
      }),
    );
  mailbox
    .command('list')
    .description('list mailboxes')
    .option('--domain <domain>')
    .option('--tag <tag...>', 'only mailboxes with all these tags')
    .option('--status <status>', 'active or disabled')
    .action((o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const ms = listMailboxes(ctx, { domain: o.domain, tags: o.tag, status: o.status });
        print(cmd, ms, table(ms.map(mbxRow), ['address', 'id', 'quota', 'status', 'tags']));
      }),
    );
  mailbox
    .command('show <address>')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const m = getMailbox(ctx, address);
        print(cmd, m, table([mbxRow(m)], ['address', 'id', 'quota', 'status', 'tags', 'createdAt']));
      }),
    );
  mailbox
    .command('passwd <address>')
    .description('set a new password; without --password a strong one is generated and printed once')
    .option('--password <password>')
    .option('--password-stdin', 'read the password from standard input')
    .action((address: string, o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const { generatePassword } = await import('../auth/passwords.ts');
        const given = o.passwordStdin ? readPasswordStdin() : o.password;
        const password = given ?? generatePassword();
        const m = await updateMailbox(ctx, address, { password });
        print(cmd, { ...m, ...(given ? {} : { password }) }, `password changed for ${m.address}\n${given ? '' : `password: ${password}\n(shown once: store it now)\n`}`);
      }),
    );
  mailbox
    .command('set <address>')
    .description('change quota, tags, or enable/disable')
    .option('--quota <size>')
    .option('--tag <tag...>', 'replace the tags')
    .addOption(new Option('--disable', 'refuse logins and inbound mail').conflicts('enable'))
    .option('--enable', 'allow again')
    .action((address: string, o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const m = await updateMailbox(ctx, address, { quota: o.quota, tags: o.tag, disabled: o.disable ? true : o.enable ? false : undefined });
        print(cmd, m, table([mbxRow(m)], ['address', 'id', 'quota', 'status', 'tags']));
      }),
    );
  for (const [name, disabled] of [['disable', true], ['enable', false]] as const) {
    mailbox
      .command(`${name} <address>`)
      .description(disabled ? 'refuse logins and inbound mail (mail is kept)' : 'allow logins and inbound mail again')
      .action((address: string, _o, cmd: Command) =>
        withContext(cmd, async (ctx) => {
          const m = await updateMailbox(ctx, address, { disabled });
          print(cmd, m, `${m.address} ${disabled ? 'disabled' : 'enabled'}\n`);
        }),
      );
  }
  mailbox
    .command('rm <address>')
    .description('remove a mailbox (its stored mail stays on disk)')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const m = removeMailbox(ctx, address);
        print(cmd, { removed: m }, `removed ${m.address}; its mail stays under ${ctx.config.data_dir}/mail/${m.domain}/\n`);
      }),
    );
};
