import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { loadConfig } from './config/load.ts';
import type { Config } from './config/schema.ts';
import { LetterboxError, isLetterboxError } from './errors.ts';
import { createLogger, type Logger } from './log.ts';
import { systemClock } from './clock.ts';
import { openDatabase, dbPath } from './db/index.ts';
import type { ServiceContext } from './services/context.ts';
import { addDomain, domainRecords, getDomain, listDomains, removeDomain, type Domain } from './services/domains.ts';
import { addMailbox, getMailbox, listMailboxes, removeMailbox, updateMailbox, type Mailbox } from './services/mailboxes.ts';
import { addAlias, listAliases, removeAlias } from './services/aliases.ts';
import { toZone } from './dns/records.ts';
import { runInit } from './init.ts';
import { extraCommands } from './cli-extra.ts';

export const EXIT_CONFIG = 78;

export interface Globals {
  config?: string;
  json?: boolean;
}

export interface CliIO {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** Opens the config, a stderr logger and the database for a one-shot command. */
export function openContext(g: Globals): ServiceContext & { close(): void } {
  const config = loadConfig({ path: g.config });
  const log = createLogger({ level: process.env.LETTERBOX_LOG_LEVEL ?? 'warn', destination: process.stderr as any });
  const db = openDatabase(dbPath(config.data_dir), { log, clock: systemClock });
  return { db, config, log, clock: systemClock, close: () => db.close() };
}

export function withContext<T>(cmd: Command, fn: (ctx: ServiceContext, g: Globals) => Promise<T> | T): Promise<T> {
  const g = cmd.optsWithGlobals() as Globals;
  const ctx = openContext(g);
  return Promise.resolve()
    .then(() => fn(ctx, g))
    .finally(() => ctx.close());
}

export function table(rows: object[], cols: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell((r as any)[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...rows.map((r) => line(cols.map((c) => cell((r as any)[c]))))].join('\n') + '\n';
}

function fmtSize(n: number): string {
  if (!n) return 'unlimited';
  for (const [u, m] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) if (n >= m && n % m === 0) return `${n / m}${u}`;
  return `${n}B`;
}

function recordsText(d: Domain, ctx: ServiceContext): string {
  const rows = domainRecords(ctx, d).map((r) => ({ type: r.type, name: r.name, value: r.type === 'SRV' ? `${r.priority} ${r.weight} ${r.port} ${r.value}` : r.priority !== undefined ? `${r.priority} ${r.value}` : r.value }));
  return table(rows, ['type', 'name', 'value']);
}

function readPasswordStdin(): string {
  const s = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  if (!s) throw new LetterboxError('validation_error', 'no password on standard input');
  return s;
}

export function buildProgram(io: CliIO): Command {
  const program = new Command('letterbox')
    .description('Letterbox: a self-hosted, all-in-one mail server')
    .option('--config <path>', 'config file (default: $LETTERBOX_CONFIG, /etc/letterbox/letterbox.toml, ./letterbox.toml, development defaults)')
    .option('--json', 'machine-readable output')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  const print = (cmd: Command, json: unknown, text: string) => {
    io.out((cmd.optsWithGlobals() as Globals).json ? JSON.stringify(json, null, 2) + '\n' : text);
  };

  program
    .command('serve')
    .description('run the appliance in the foreground until SIGTERM/SIGINT')
    .action(async (_o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as Globals;
      const config = loadConfig({ path: g.config });
      const log = createLogger({ level: config.log.level });
      const { serve } = await import('./main.ts');
      await serve(config, log);
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

  // ---- domains
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

  // ---- mailboxes
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
        const { generatePassword } = await import('./auth/passwords.ts');
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

  // ---- aliases
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

  for (const add of extraCommands) add(program, { print, io });
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

export type { Config, Logger };

if (import.meta.main) {
  process.umask(0o027); // database, keys and generated files: never world-readable
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
