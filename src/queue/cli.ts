// CLI: letterbox queue list|show|retry|rm, letterbox suppression list|add|rm, letterbox limits.
// The running server notices changes at its next poll (outbound.poll_interval_ms, 1 s by default).
import type { Command } from 'commander';
import { withContext, table, type CliHelpers } from '../cli/shared.ts';
import { LetterboxError } from '../errors.ts';
import { Spool } from '../spool/index.ts';
import { normalizeDomain, parseAddress } from '../util/address.ts';
import { getMailbox } from '../services/mailboxes.ts';
import { getDomain, setOutbound } from '../services/domains.ts';
import { listQueue, getQueueEntry, retryQueue, removeQueueEntry, listSuppressions, addSuppression, removeSuppression } from './store.ts';
import { setLimits, effectiveCaps } from '../services/sending-limits.ts';

const STATUSES = ['queued', 'inflight', 'delivered', 'bounced', 'cancelled'];

/** Decide: the statuses `queue list --status` asks for ('all' = every one); an unknown one is a validation error. */
export function queueStatuses(asked: string[] | undefined): string[] | undefined {
  const status = asked?.includes('all') ? STATUSES : asked;
  for (const s of status ?? []) if (!STATUSES.includes(s)) throw new LetterboxError('validation_error', `unknown status "${s}": use ${STATUSES.join(', ')} or all`);
  return status;
}

/** Decide: `queue show` as text, the entry and then every attempt with its transcript. */
export function queueEntryText(e: ReturnType<typeof getQueueEntry>): string {
  const lines = [
    `id:          ${e.id}`,
    `status:      ${e.status}`,
    `from:        ${e.from || '<>'}`,
    `recipient:   ${e.recipient}`,
    `message-id:  ${e.messageIdHeader ?? '-'}`,
    `origin:      ${e.origin}${e.sandbox ? ' (sandbox)' : ''}`,
    `size:        ${e.size}`,
    `created:     ${e.createdAt}`,
    `attempts:    ${e.attempts}`,
    `next:        ${e.nextAttemptAt ?? '-'}`,
    `last reply:  ${e.lastReply ?? '-'}`,
    '',
    ...e.attemptLog.flatMap((a) => [
      `${a.at}  ${a.outcome}  mx=${a.mx ?? '-'} ip=${a.ip ?? '-'} source=${a.sourceIp ?? '-'} tls=${a.tlsVersion ?? 'none'} ${a.tlsCipher ?? ''}`,
      `  ${a.reply ?? ''}`,
      ...(a.transcript ? a.transcript.split('\n').map((l) => `    ${l}`) : []),
    ]),
  ];
  return lines.join('\n') + '\n';
}

/**
 * Decide: the cap changes `letterbox limits` asks for — a number (0 = unlimited), "default"
 * (null: inherit), or nothing (left alone); anything else is a validation error.
 */
export function capsChange(opts: { messagesPerHour?: string; recipientsPerDay?: string; recipientsPerMessage?: string }): Record<string, number | null> {
  const val = (v: string | undefined) => {
    if (v === undefined) return undefined;
    if (v === 'default') return null;
    if (Number.isInteger(Number(v)) && Number(v) >= 0) return Number(v);
    throw new LetterboxError('validation_error', `invalid cap "${v}": a number (0 = unlimited) or "default"`);
  };
  const change: Record<string, number | null> = {};
  for (const [o, k] of [['messagesPerHour', 'max_messages_per_hour'], ['recipientsPerDay', 'max_recipients_per_day'], ['recipientsPerMessage', 'max_recipients_per_message']] as const) {
    const v = val(opts[o]);
    if (v !== undefined) change[k] = v;
  }
  return change;
}

export function queueCommands(program: Command, helpers: CliHelpers): void {
  queueGroup(program, helpers);
  suppressionCommands(program, helpers);
  outboundCommands(program, helpers);
  limitsCommand(program, helpers);
}

/** letterbox queue list|show|retry|rm */
function queueGroup(program: Command, { print }: CliHelpers): void {
  const queue = program.command('queue').description('the outbound queue');
  queue
    .command('list')
    .description('entries waiting for delivery (or --status ...)')
    .option('--status <s...>', `filter by status (${STATUSES.join(', ')}, all)`)
    .option('--domain <d>', 'recipient domain')
    .option('--limit <n>', 'at most n entries', '100')
    .option('--cursor <id>', 'continue after this entry')
    .action((opts, cmd) =>
      withContext(cmd, (ctx) => {
        const status = queueStatuses(opts.status);
        const r = listQueue(ctx.db, { status, domain: opts.domain, limit: Number(opts.limit), cursor: opts.cursor });
        const rows = r.entries.map((e) => ({ id: e.id, status: e.status, from: e.from || '<>', recipient: e.recipient, attempts: e.attempts, next: e.nextAttemptAt, last: e.lastReply?.slice(0, 60) }));
        print(cmd, { data: r.entries, nextCursor: r.nextCursor }, table(rows, ['id', 'status', 'from', 'recipient', 'attempts', 'next', 'last']) + (r.nextCursor ? `more: --cursor ${r.nextCursor}\n` : ''));
      }),
    );
  queue
    .command('show <id>')
    .description('one entry with every delivery attempt')
    .action((id, _o, cmd) =>
      withContext(cmd, (ctx) => {
        const e = getQueueEntry(ctx.db, id);
        print(cmd, { data: e }, queueEntryText(e));
      }),
    );
  queue
    .command('retry [id]')
    .description('try again now: one entry, --all, or --domain D')
    .option('--all', 'every waiting entry')
    .option('--domain <d>', 'every waiting entry for this recipient domain')
    .action((id, opts, cmd) =>
      withContext(cmd, (ctx) => {
        if (!id && !opts.all && !opts.domain) throw new LetterboxError('validation_error', 'name a queue id, --all or --domain D');
        const n = retryQueue(ctx.db, ctx.clock.now(), { id, all: opts.all, domain: opts.domain });
        print(cmd, { data: { retried: n } }, `${n} entr${n === 1 ? 'y' : 'ies'} will be retried now\n`);
      }),
    );
  queue
    .command('rm <id>')
    .description('cancel a waiting entry (no bounce is sent)')
    .action((id, _o, cmd) =>
      withContext(cmd, async (ctx) => {
        const r = removeQueueEntry(ctx.db, ctx.clock.now(), id);
        if (r.spoolToRemove) await new Spool(ctx.config.data_dir).remove(r.spoolToRemove);
        print(cmd, { data: r.entry }, `removed ${id} (${r.entry.recipient})\n`);
      }),
    );
}

/** letterbox suppression list|add|rm */
function suppressionCommands(program: Command, { print }: CliHelpers): void {
  const sup = program.command('suppression').description('recipients suppressed after a hard bounce, per sending domain');
  sup
    .command('list [domain]')
    .action((domain, _o, cmd) =>
      withContext(cmd, (ctx) => {
        const rows = listSuppressions(ctx.db, domain);
        print(cmd, { data: rows }, table(rows, ['domain', 'address', 'reason', 'code', 'createdAt']));
      }),
    );
  sup
    .command('add <domain> <address>')
    .action((domain, address, _o, cmd) =>
      withContext(cmd, (ctx) => {
        const d = getDomain(ctx, domain).name;
        const a = parseAddress(address).address;
        addSuppression(ctx.db, { domain: d, address: a, reason: 'manual', createdAt: new Date(ctx.clock.now()).toISOString() });
        print(cmd, { data: { domain: d, address: a } }, `${a} suppressed for ${d}\n`);
      }),
    );
  sup
    .command('rm <domain> <address>')
    .action((domain, address, _o, cmd) =>
      withContext(cmd, (ctx) => {
        removeSuppression(ctx.db, normalizeDomain(domain), parseAddress(address).address);
        print(cmd, { data: { domain, address } }, `${address} is no longer suppressed for ${domain}\n`);
      }),
    );
}

/** letterbox outbound suspend|resume <domain> */
function outboundCommands(program: Command, { print }: CliHelpers): void {
  const outbound = program.command('outbound').description("suspend or resume a domain's outbound mail");
  for (const [name, enabled] of [['suspend', false], ['resume', true]] as const) {
    outbound
      .command(`${name} <domain>`)
      .description(enabled ? 'allow the domain to send again' : 'refuse submission and API sends from the domain (mail already queued still goes out)')
      .action((domain, _o, cmd) =>
        withContext(cmd, (ctx) => {
          const d = setOutbound(ctx, domain, enabled);
          print(cmd, { data: d }, `outbound mail for ${d.name} ${enabled ? 'resumed' : 'suspended'}\n`);
        }),
      );
  }
}

/** letterbox limits <target>: show or set sending caps. */
function limitsCommand(program: Command, { print }: CliHelpers): void {
  program
    .command('limits <target>')
    .description('show or set sending caps of a mailbox (user@domain) or a domain; "default" inherits')
    .option('--messages-per-hour <n>')
    .option('--recipients-per-day <n>')
    .option('--recipients-per-message <n>')
    .action((target, opts, cmd) =>
      withContext(cmd, (ctx) => {
        const key = target.includes('@') ? `mailbox:${getMailbox(ctx, target).id}` : `domain:${getDomain(ctx, target).name}`;
        const change = capsChange(opts);
        if (Object.keys(change).length) setLimits(ctx.db, key, change);
        const caps = target.includes('@') ? effectiveCaps(ctx.db, ctx.config, getMailbox(ctx, target)) : effectiveCaps(ctx.db, ctx.config, { id: '', domain: getDomain(ctx, target).name });
        print(cmd, { data: caps }, `messages per hour:      ${caps.messagesPerHour || 'unlimited'}\nrecipients per day:     ${caps.recipientsPerDay || 'unlimited'}\nrecipients per message: ${caps.recipientsPerMessage}\n`);
      }),
    );
}
