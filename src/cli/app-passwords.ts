// `letterbox app-password add|ls|rm ADDR ...` and `letterbox app-password require ADDR [--off]`:
// device (app) passwords (src/services/app-passwords.ts, the same as the API's).
import type { Command } from 'commander';
import { table, withContext, type CliHelpers } from './shared.ts';
import { getMailbox } from '../services/mailboxes.ts';
import { createAppPassword, listMailboxAppPasswords, revokeAppPassword, setRequireAppPasswords } from '../services/app-passwords.ts';

export function appPasswordCommands(program: Command, { print }: CliHelpers): void {
  const ap = program.command('app-password').description("a mailbox's device (app) passwords for IMAP, ManageSieve and SMTP");
  ap.command('add <address> <name>')
    .description('create one for a device; the password is printed once')
    .action((address: string, name: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const r = createAppPassword(ctx, getMailbox(ctx, address), name);
        print(cmd, r, `app password for ${address} (${r.name}), shown only now:\n\n  ${r.password}\n\nEnter it in the device's mail app instead of the main password.\n`);
      }),
    );
  ap.command('ls <address>')
    .alias('list')
    .description('list them (name, created, last used)')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const r = listMailboxAppPasswords(ctx, getMailbox(ctx, address));
        const rows = r.appPasswords.map((a) => ({ id: a.id, name: a.name, created: a.createdAt, last_used: a.lastUsed ? `${a.lastUsed.at} ${a.lastUsed.ip ?? ''} ${a.lastUsed.protocol ?? ''}`.trim() : 'never' }));
        print(cmd, r, `${r.requireAppPasswords ? 'main password refused on IMAP/ManageSieve/SMTP (app passwords required)\n' : ''}${table(rows, ['id', 'name', 'created', 'last_used'])}`);
      }),
    );
  ap.command('rm <address> <id-or-name>')
    .description('revoke one (and end the open IMAP sessions of the mailbox)')
    .action((address: string, idOrName: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const r = revokeAppPassword(ctx, getMailbox(ctx, address), idOrName);
        print(cmd, r, `revoked ${r.name} (${r.id}) of ${address}\n`);
      }),
    );
  ap.command('require <address>')
    .description('refuse the main password on IMAP, ManageSieve and SMTP (--off: allow it again)')
    .option('--off', 'allow the main password again')
    .action((address: string, o: { off?: boolean }, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const r = setRequireAppPasswords(ctx, getMailbox(ctx, address), !o.off);
        print(cmd, r, r.requireAppPasswords ? `${address}: only app passwords log in now\n` : `${address}: the main password logs in again\n`);
      }),
    );
}
