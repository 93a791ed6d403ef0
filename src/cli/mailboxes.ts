// CLI: letterbox mailbox add|list|show|passwd|set|enable|disable|rm.
// One function per subcommand (the option parsing is commander's); the texts are pure functions.
import { Option, type Command } from 'commander';
import { addMailbox, getMailbox, listMailboxes, removeMailbox, updateMailbox, type Mailbox } from '../services/mailboxes.ts';
import { fmtSize, readPasswordStdin, table, withContext, type CliHelpers, type CommandModule } from './shared.ts';

export const mailboxCommands: CommandModule = (program: Command, h: CliHelpers): void => {
  const mailbox = program.command('mailbox').description('manage mailboxes');
  addCommand(mailbox, h);
  listCommand(mailbox, h);
  showCommand(mailbox, h);
  passwdCommand(mailbox, h);
  setCommand(mailbox, h);
  for (const disabled of [true, false]) enableCommand(mailbox, h, disabled);
  rmCommand(mailbox, h);
};

/** A mailbox as a table row. Pure. */
export function mailboxRow(m: Mailbox) {
  return { ...m, quota: fmtSize(m.quotaBytes), status: m.disabled ? 'disabled' : 'active' };
}

/** What `mailbox add` prints: the mailbox, and a generated password once. Pure. */
export function addedOutput(m: Mailbox, generatedPassword: string | null | undefined): { json: object; text: string } {
  return {
    json: { ...m, ...(generatedPassword ? { password: generatedPassword } : {}) },
    text: `added ${m.address} (${m.id}), quota ${fmtSize(m.quotaBytes)}\n` + (generatedPassword ? `password: ${generatedPassword}\n(shown once: store it now)\n` : ''),
  };
}

/** What `mailbox passwd` prints: a generated password once, never a given one. Pure. */
export function passwdOutput(m: Mailbox, password: string, given: boolean): { json: object; text: string } {
  return {
    json: { ...m, ...(given ? {} : { password }) },
    text: `password changed for ${m.address}\n${given ? '' : `password: ${password}\n(shown once: store it now)\n`}`,
  };
}

/** `mailbox set`'s --disable / --enable as the change to make (neither: no change). Pure. */
export function disabledChange(o: { disable?: boolean; enable?: boolean }): boolean | undefined {
  return o.disable ? true : o.enable ? false : undefined;
}

function addCommand(mailbox: Command, { print }: CliHelpers): void {
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
        const out = addedOutput(r.mailbox, r.generatedPassword);
        print(cmd, out.json, out.text);
      }),
    );
}

function listCommand(mailbox: Command, { print }: CliHelpers): void {
  mailbox
    .command('list')
    .description('list mailboxes')
    .option('--domain <domain>')
    .option('--tag <tag...>', 'only mailboxes with all these tags')
    .option('--status <status>', 'active or disabled')
    .action((o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const ms = listMailboxes(ctx, { domain: o.domain, tags: o.tag, status: o.status });
        print(cmd, ms, table(ms.map(mailboxRow), ['address', 'id', 'quota', 'status', 'tags']));
      }),
    );
}

function showCommand(mailbox: Command, { print }: CliHelpers): void {
  mailbox
    .command('show <address>')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const m = getMailbox(ctx, address);
        print(cmd, m, table([mailboxRow(m)], ['address', 'id', 'quota', 'status', 'tags', 'createdAt']));
      }),
    );
}

function passwdCommand(mailbox: Command, { print }: CliHelpers): void {
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
        const out = passwdOutput(m, password, !!given);
        print(cmd, out.json, out.text);
      }),
    );
}

function setCommand(mailbox: Command, { print }: CliHelpers): void {
  mailbox
    .command('set <address>')
    .description('change quota, tags, or enable/disable')
    .option('--quota <size>')
    .option('--tag <tag...>', 'replace the tags')
    .addOption(new Option('--disable', 'refuse logins and inbound mail').conflicts('enable'))
    .option('--enable', 'allow again')
    .action((address: string, o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const m = await updateMailbox(ctx, address, { quota: o.quota, tags: o.tag, disabled: disabledChange(o) });
        print(cmd, m, table([mailboxRow(m)], ['address', 'id', 'quota', 'status', 'tags']));
      }),
    );
}

/** `mailbox disable` (disabled = true) or `mailbox enable`. */
function enableCommand(mailbox: Command, { print }: CliHelpers, disabled: boolean): void {
  mailbox
    .command(`${disabled ? 'disable' : 'enable'} <address>`)
    .description(disabled ? 'refuse logins and inbound mail (mail is kept)' : 'allow logins and inbound mail again')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const m = await updateMailbox(ctx, address, { disabled });
        print(cmd, m, `${m.address} ${disabled ? 'disabled' : 'enabled'}\n`);
      }),
    );
}

function rmCommand(mailbox: Command, { print }: CliHelpers): void {
  mailbox
    .command('rm <address>')
    .description('remove a mailbox (its stored mail stays on disk)')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const m = removeMailbox(ctx, address);
        print(cmd, { removed: m }, `removed ${m.address}; its mail stays under ${ctx.config.data_dir}/mail/${m.domain}/\n`);
      }),
    );
}
