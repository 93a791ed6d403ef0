// `letterbox forward ADDR --to X [--to Y] [--no-copy]`, `letterbox forward show|rm ADDR`: a
// mailbox's forwarding (src/forwarding/service.ts, the same as the API's).
import type { Command } from 'commander';
import { withContext, type CliHelpers } from '../cli/shared.ts';
import { LetterboxError } from '../errors.ts';
import { getMailbox } from '../services/mailboxes.ts';
import { readForwarding, removeForwarding, setForwarding, type ForwardingView } from './service.ts';

const show = (address: string, f: ForwardingView) => `${address} forwards to ${f.targets.join(', ')}${f.keepCopy ? ' (and keeps a copy)' : ' (no copy kept)'}\n`;

export function forwardingCommands(program: Command, { print }: CliHelpers): void {
  const forward = program
    .command('forward')
    .description("a mailbox's forwarding: `forward ADDR --to X [--to Y] [--no-copy]`, `forward show ADDR`, `forward rm ADDR`")
    .argument('[address]', 'the mailbox')
    .option('--to <address>', 'forward to this address (repeat for several)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--no-copy', 'do not keep a copy in the mailbox')
    .action((address: string | undefined, o: { to: string[]; copy: boolean }, cmd: Command) =>
      withContext(cmd, (ctx) => {
        if (!address) throw new LetterboxError('validation_error', 'give the mailbox: letterbox forward ADDR --to TARGET');
        if (o.to.length === 0) throw new LetterboxError('validation_error', 'give at least one --to TARGET (or `letterbox forward rm ADDR` to stop forwarding)');
        const f = setForwarding(ctx, getMailbox(ctx, address), { targets: o.to, keepCopy: o.copy });
        print(cmd, f, show(address, f));
      }),
    );
  forward
    .command('show <address>')
    .description('print the forwarding of a mailbox')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const f = readForwarding(ctx, getMailbox(ctx, address));
        print(cmd, f, show(address, f));
      }),
    );
  forward
    .command('rm <address>')
    .description('stop forwarding')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const f = removeForwarding(ctx, getMailbox(ctx, address));
        print(cmd, f, `${address} no longer forwards\n`);
      }),
    );
}
