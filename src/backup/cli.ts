// CLI: letterbox backup [--to DIR] and letterbox restore FILE [--force] [--with-config].
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { withContext, type Globals, type CliHelpers } from '../cli/shared.ts';
import { loadConfig, resolveConfigPath } from '../config/load.ts';
import { createBackup, defaultBackupDir, restoreBackup } from './index.ts';

function configFile(source: string): string | null {
  return existsSync(source) ? source : null;
}

export function backupCommands(program: Command, { print }: CliHelpers): void {
  program
    .command('backup [dest]')
    .description('write one .tar.gz with a consistent copy of the database, secrets, DKIM keys, config, certificates and all mail')
    .option('--to <dir>', 'where to write it (default: <data_dir>/backups; copy it off this machine); same as DEST')
    .action((dest: string | undefined, o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await createBackup({ config: ctx.config, configPath: configFile(ctx.config.source), db: ctx.db, destDir: dest ?? o.to ?? defaultBackupDir(ctx.config) });
        print(cmd, { file: r.file, size: r.size, files: r.files, createdAt: r.manifest.createdAt }, `wrote ${r.file} (${(r.size / 1024 / 1024).toFixed(1)} MB, ${r.files} files)\nIt holds secrets and private keys: keep it somewhere safe, off this machine.\n`);
      }),
    );
  program
    .command('restore <file>')
    .description('verify a backup, then restore it into data_dir (the current data is moved aside, not deleted)')
    .option('--force', 'restore even though Letterbox seems to be running on this data')
    .option('--with-config', 'also replace the config file with the backed-up one')
    .action(async (file: string, o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as Globals;
      const config = loadConfig({ path: g.config });
      const configPath = resolveConfigPath(g.config, process.env);
      const r = await restoreBackup({ config, configPath, file, force: !!o.force, withConfig: !!o.withConfig });
      print(cmd, { restored: true, hostname: r.manifest.hostname, createdAt: r.manifest.createdAt, actions: r.actions }, r.actions.map((a) => `${a}\n`).join('') + 'Start Letterbox again (systemctl start letterbox) and run letterbox doctor.\n');
    });
}
