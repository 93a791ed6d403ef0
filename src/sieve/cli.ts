// `letterbox sieve list|get|put|rm|activate|deactivate ADDR ...` (the same doveadm-backed operations
// as the API, src/sieve/scripts.ts) and `letterbox vacation set|show|rm ADDR` (src/sieve/vacation-service.ts).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { table, withContext, type CliHelpers } from '../cli/shared.ts';
import { LetterboxError } from '../errors.ts';
import { getMailbox } from '../services/mailboxes.ts';
import { doveadmBinary } from '../services/quota.ts';
import { dovecotPaths } from '../dovecot/config.ts';
import type { ServiceContext } from '../services/context.ts';
import { VacationBody, type VacationInput } from './vacation.ts';
import { readVacation, removeVacation, setVacation, type VacationView } from './vacation-service.ts';
import { activateScript, checkLimits, checkScriptName, deactivateScripts, deleteScript, getScript, listScripts, putScript, type SieveTarget } from './scripts.ts';

function target(ctx: ServiceContext, address: string): SieveTarget {
  const m = getMailbox(ctx, address);
  return { doveadm: doveadmBinary(ctx.config.dovecot.binary), config: dovecotPaths(ctx.config.data_dir).config, user: m.address };
}

/** Decide: `vacation show` as text. Pure. */
export function vacationText(v: VacationView): string {
  return (
    `${v.active ? 'ACTIVE' : v.enabled ? 'enabled, outside its dates' : 'disabled'}: "${v.subject}" from ${v.from}, at most one reply per sender every ${v.days} day(s)` +
    `${v.start ? `, from ${v.start}` : ''}${v.end ? `, until ${v.end}` : ''}\n\n${v.text}${v.text.endsWith('\n') ? '' : '\n'}`
  );
}

/**
 * Decide: the vacation a `vacation set` asks for (the texts already read), validated by the API's
 * schema; a problem names its option. Pure.
 */
export function vacationFromOptions(o: { disabled?: boolean; subject: string; from?: string; start?: string; end?: string; days?: string }, text: string | undefined, html: string | undefined): VacationInput {
  if (!text) throw new LetterboxError('validation_error', 'give the reply with --text or --text-file');
  const parsed = VacationBody.safeParse({
    enabled: !o.disabled,
    subject: o.subject,
    text,
    ...(html !== undefined ? { html } : {}),
    ...(o.from ? { from: o.from } : {}),
    ...(o.start ? { start: o.start } : {}),
    ...(o.end ? { end: o.end } : {}),
    ...(o.days !== undefined ? { days: Number(o.days) } : {}),
  });
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new LetterboxError('validation_error', `--${String(i.path[0] ?? 'input')}: ${i.message}`);
  }
  return parsed.data;
}

export function sieveCommands(program: Command, helpers: CliHelpers): void {
  scriptCommands(program, helpers);
  vacationCommands(program, helpers);
}

/** letterbox sieve list|get|put|rm|activate|deactivate */
function scriptCommands(program: Command, { print }: CliHelpers): void {
  const sieve = program.command('sieve').description("a mailbox's Sieve filters (stored and compiled by Dovecot; needs `letterbox serve` running)");
  sieve
    .command('list <address>')
    .description('list the scripts; ACTIVE marks the one that runs')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const s = await listScripts(target(ctx, address));
        print(cmd, s, table(s.map((x) => ({ name: x.name, active: x.active ? 'ACTIVE' : '' })), ['name', 'active']));
      }),
    );
  sieve
    .command('get <address> <name>')
    .description("print a script's source")
    .action((address: string, name: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const script = await getScript(target(ctx, address), name);
        print(cmd, { name, script }, script);
      }),
    );
  sieve
    .command('put <address> <name> [file]')
    .description('store a script from FILE (or standard input); refused with the line of the error if it does not compile')
    .option('--activate', 'make it the active script')
    .action((address: string, name: string, file: string | undefined, o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        checkScriptName(name);
        let script: string;
        try {
          script = readFileSync(file && file !== '-' ? file : 0, 'utf8');
        } catch (err: any) {
          throw new LetterboxError('validation_error', `cannot read ${file ?? 'standard input'}: ${err.code ?? err.message}`);
        }
        const t = target(ctx, address);
        await checkLimits(t, name, script, { maxSize: ctx.config.sieve.max_script_size, maxScripts: ctx.config.sieve.max_scripts });
        await putScript(t, name, script, { activate: !!o.activate });
        print(cmd, { name, active: !!o.activate }, `stored ${name}${o.activate ? ' (active)' : ''} for ${t.user}\n`);
      }),
    );
  sieve
    .command('rm <address> <name>')
    .description('delete a script (the active one too: then no script runs)')
    .action((address: string, name: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const t = target(ctx, address);
        const was = (await listScripts(t)).find((s) => s.name === name);
        if (!was) throw new LetterboxError('not_found', `no Sieve script "${name}" for ${t.user}`);
        if (was.active) await deactivateScripts(t);
        await deleteScript(t, name);
        print(cmd, { name, removed: true }, `removed ${name}\n`);
      }),
    );
  sieve
    .command('activate <address> <name>')
    .description('make a script the active one')
    .action((address: string, name: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        await activateScript(target(ctx, address), name);
        print(cmd, { name, active: true }, `${name} is active\n`);
      }),
    );
  sieve
    .command('deactivate <address>')
    .description('no active script (mail is kept in INBOX)')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        await deactivateScripts(target(ctx, address));
        print(cmd, { active: null }, 'no script is active\n');
      }),
    );
}

/** letterbox vacation set|show|rm */
function vacationCommands(program: Command, { print }: CliHelpers): void {
  const vacation = program.command('vacation').description("a mailbox's vacation (out-of-office) reply");
  const show = vacationText;
  const readText = (file: string) => {
    try {
      return readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (err: any) {
      throw new LetterboxError('validation_error', `cannot read ${file}: ${err.code ?? err.message}`);
    }
  };
  vacation
    .command('set <address>')
    .description('set (or replace) the vacation reply')
    .requiredOption('--subject <subject>', 'subject of the reply')
    .option('--text <text>', 'the reply text')
    .option('--text-file <file>', 'read the reply text from a file (- for standard input)')
    .option('--html-file <file>', 'an HTML version of the reply')
    .option('--from <address>', "the reply's From (the mailbox or one of its own aliases)")
    .option('--start <date>', 'ISO date or date-time replies start')
    .option('--end <date>', 'ISO date or date-time replies end')
    .option('--days <n>', 'at most one reply per sender in this many days')
    .option('--disabled', 'store it switched off')
    .action((address: string, o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const text = o.textFile ? readText(o.textFile) : o.text;
        const body = vacationFromOptions(o, text, text && o.htmlFile ? readText(o.htmlFile) : undefined);
        const v = setVacation(ctx, getMailbox(ctx, address), body);
        print(cmd, v, show(v));
      }),
    );
  vacation
    .command('show <address>')
    .description('print the vacation reply')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const v = readVacation(ctx, getMailbox(ctx, address));
        print(cmd, v, show(v));
      }),
    );
  vacation
    .command('rm <address>')
    .description('remove the vacation reply')
    .action((address: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const v = removeVacation(ctx, getMailbox(ctx, address));
        print(cmd, v, `removed the vacation reply of ${address}\n`);
      }),
    );
}
