// The letterbox command: composes the command modules (each adds its subcommands) and maps errors
// to exit codes. Shared helpers live in src/cli/shared.ts; nothing imports this file.
import { Command, CommanderError } from 'commander';
import { isLetterboxError } from './errors.ts';
import { EXIT_CONFIG, cliHelpers, type CliIO, type CommandModule } from './cli/shared.ts';
import { systemCommands } from './cli/system.ts';
import { domainCommands } from './cli/domains.ts';
import { mailboxCommands } from './cli/mailboxes.ts';
import { aliasCommands } from './cli/aliases.ts';
import { queueCommands } from './queue/cli.ts';
import { apiCommands } from './api/cli.ts';
import { doctorCommands } from './doctor/cli.ts';
import { backupCommands } from './backup/cli.ts';
import { tlsCommands } from './tls/cli.ts';
import { spamCommands } from './spam/cli.ts';
import { sieveCommands } from './sieve/cli.ts';
import { reportCommands } from './reports/cli.ts';
import { dkimCommands } from './dkim/cli.ts';
import { forwardingCommands } from './forwarding/cli.ts';
import { appPasswordCommands } from './cli/app-passwords.ts';
import { adminCommands } from './console/cli.ts';

export { EXIT_CONFIG, type CliIO } from './cli/shared.ts';

/** The command modules, in help order. */
const commandModules: CommandModule[] = [systemCommands, domainCommands, mailboxCommands, aliasCommands, queueCommands, apiCommands, doctorCommands, backupCommands, tlsCommands, spamCommands, sieveCommands,
  forwardingCommands, appPasswordCommands, reportCommands, dkimCommands, adminCommands];

export function buildProgram(io: CliIO): Command {
  const program = new Command('letterbox')
    .description('Letterbox: a self-hosted, all-in-one mail server')
    .option('--config <path>', 'config file (default: $LETTERBOX_CONFIG, /etc/letterbox/letterbox.toml, ./letterbox.toml, development defaults)')
    .option('--json', 'machine-readable output')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  const helpers = cliHelpers(io);
  for (const add of commandModules) add(program, helpers);
  return program;
}

/** Runs the CLI; returns the exit code. */
export async function runCli(argv: string[], io: CliIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Promise<number> {
  const program = buildProgram(io);
  const wantsJson = argv.includes('--json');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 64;
    if (isLetterboxError(err)) {
      if (wantsJson) io.err(JSON.stringify({ error: { code: err.code, message: err.message } }) + '\n');
      else io.err(`letterbox: ${err.message}\n`);
      return err.code === 'config_error' ? EXIT_CONFIG : err.code === 'validation_error' || err.code === 'not_found' || err.code === 'conflict' ? 2 : 1;
    }
    const e = err as Error;
    io.err(`letterbox: unexpected error: ${e?.stack ?? String(err)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  process.umask(0o027); // database, keys and generated files: never world-readable
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
