// CLI: letterbox spam show|set|learn|stat.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { withContext, type CliHelpers } from '../cli/shared.ts';
import { LetterboxError } from '../errors.ts';
import { getSpamSettings, learnedFor, learnMessage, setSpamSettings, spamStat, type SpamPatch, type SpamSettingsView } from './manage.ts';

function describe(v: SpamSettingsView): string {
  const o = v.override;
  const show = (x: unknown) => (x === null ? 'inherit' : String(x));
  return [
    `${v.scope}:  ${v.name}`,
    `stored:   mode=${show(o.mode)} reject=${show(o.reject)} junk=${show(o.junk)} greylisting=${show(o.greylisting)} greylist=${show(o.greylist)}`,
    `applies:  mode=${v.effective.mode} reject=${v.effective.reject} junk=${v.effective.junk} greylisting=${v.effective.greylisting} greylist=${v.effective.greylist}`,
  ].join('\n') + '\n';
}

function num(name: string, s: string | undefined): number | null | undefined {
  if (s === undefined) return undefined;
  if (s === 'inherit') return null;
  const n = Number(s);
  if (!Number.isFinite(n)) throw new LetterboxError('validation_error', `--${name}: expected a score such as 6 or 15, or "inherit"`);
  return n;
}

export function spamCommands(program: Command, { print }: CliHelpers): void {
  const spam = program.command('spam').description('spam filtering (rspamd): per-domain and per-mailbox settings, learning');
  spam
    .command('show <mailbox-or-domain>')
    .description('the spam settings stored for and applying to a mailbox or domain')
    .action((ref, _o, cmd) => withContext(cmd, (ctx) => {
      const v = getSpamSettings(ctx, ref);
      print(cmd, { data: v }, describe(v));
    }));
  spam
    .command('set <mailbox-or-domain>')
    .description('set spam filtering for a mailbox or domain (values "inherit" to fall back)')
    .option('--off', 'never scan: everything goes to INBOX')
    .option('--on', 'scan (the default)')
    .option('--inherit-mode', 'take on/off from the domain or config')
    .option('--reject <score>', 'refuse at or above this score')
    .option('--junk <score>', 'deliver to Junk at or above this score')
    .option('--greylist <score>', 'greylist new senders at or above this score')
    .option('--greylisting <on|off|inherit>', 'greylisting for this mailbox or domain')
    .action((ref, opts, cmd) => withContext(cmd, (ctx) => {
      if ([opts.off, opts.on, opts.inheritMode].filter(Boolean).length > 1) throw new LetterboxError('validation_error', 'give at most one of --on, --off, --inherit-mode');
      const patch: SpamPatch = {};
      if (opts.off) patch.mode = 'off';
      if (opts.on) patch.mode = 'on';
      if (opts.inheritMode) patch.mode = null;
      const reject = num('reject', opts.reject);
      const junk = num('junk', opts.junk);
      if (reject !== undefined) patch.reject = reject;
      if (junk !== undefined) patch.junk = junk;
      const greylist = num('greylist', opts.greylist);
      if (greylist !== undefined) patch.greylist = greylist;
      if (opts.greylisting !== undefined) {
        if (!['on', 'off', 'inherit'].includes(opts.greylisting)) throw new LetterboxError('validation_error', '--greylisting: expected on, off or inherit');
        patch.greylisting = opts.greylisting === 'inherit' ? null : opts.greylisting;
      }
      const v = setSpamSettings(ctx, ref, patch);
      print(cmd, { data: v }, describe(v));
    }));
  spam
    .command('learn <mailbox>')
    .description("train the mailbox's Bayes filter with a message file (- for stdin)")
    .option('--spam', 'the message is spam')
    .option('--ham', 'the message is not spam')
    .argument('<file>')
    .action((ref, file, opts, cmd) => withContext(cmd, async (ctx) => {
      if (!!opts.spam === !!opts.ham) throw new LetterboxError('validation_error', 'give exactly one of --spam or --ham');
      let message: Buffer;
      try {
        message = readFileSync(file === '-' ? 0 : file);
      } catch (err: any) {
        throw new LetterboxError('validation_error', `cannot read ${file}: ${err.code ?? err.message}`);
      }
      const r = await learnMessage(ctx, ref, opts.spam ? 'spam' : 'ham', message);
      print(cmd, { data: r }, r.learned ? `learned as ${r.kind} for ${r.mailbox}\n` : `not learned for ${r.mailbox}: ${r.detail}\n`);
    }));
  spam
    .command('stat [mailbox]')
    .description("rspamd's learned counts (for one mailbox: its own Bayes statistics)")
    .action((ref, _o, cmd) => withContext(cmd, async (ctx) => {
      if (ref) {
        const l = await learnedFor(ctx, ref);
        return print(cmd, { data: l }, `${l.mailbox}: learned ${l.spam} spam, ${l.ham} ham\n`);
      }
      const s = await spamStat(ctx);
      print(cmd, { data: s }, `scanned: ${s.scanned}\nlearned: ${s.learned}\n` + s.statfiles.map((f) => `${f.symbol}: learned ${f.learned}, users ${f.users}`).join('\n') + '\n');
    }));
}
