// CLI: letterbox serve and letterbox init.
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { createLogger, logFormat } from '../log.ts';
import { runInit } from '../init.ts';
import type { CliHelpers, CommandModule, Globals } from './shared.ts';

export const systemCommands: CommandModule = (program: Command, { print, io }: CliHelpers): void => {
  program
    .command('serve')
    .description('run the appliance in the foreground until SIGTERM/SIGINT')
    .action(async (_o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as Globals;
      const config = loadConfig({ path: g.config });
      const format = logFormat(process.stdout.isTTY === true, config.log.format);
      const log = createLogger({ level: config.log.level, format });
      const { serve } = await import('../main.ts');
      // With human-readable logs (a terminal), say what to do next once ready.
      const banner = format === 'pretty' ? (text: string) => void process.stdout.write(text) : undefined;
      await serve(config, log, { banner });
      // Everything is stopped and flushed; don't wait for stray handles (e.g. pipes still held by
      // Dovecot's exiting children) to close on their own.
      log.flush?.();
      setTimeout(() => process.exit(0), 50).unref();
    });

  program
    .command('init')
    .description('write a config file, secrets, a self-signed certificate and Dovecot config (idempotent)')
    .option('--hostname <name>', 'the server name (EHLO, certificate, MX target)')
    .option('--ip <address...>', 'a public IP of this server (repeatable)')
    .option('--data-dir <dir>', 'where state lives (default /var/lib/letterbox, or ./data with --dev)')
    .option('--dev', 'development ports (10000 + standard) on 127.0.0.1')
    .action(async (o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as Globals;
      const r = await runInit({ path: g.config, hostname: o.hostname, ips: o.ip ?? [], dataDir: o.dataDir, dev: !!o.dev });
      print(cmd, r, r.actions.map((a) => `${a}\n`).join('') + `config: ${r.configPath}\n`);
    });
};
