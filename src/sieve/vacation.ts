// The vacation reply (RFC 5230) as a structured object: validated here, turned into a Sieve script
// (pure) that Dovecot runs before the user's own active script (sieve_before, see
// src/dovecot/selfservice.ts), and written under the mailbox's home.
import { chownSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { LetterboxError } from '../errors.ts';
import { VACATION_SCRIPT } from '../dovecot/selfservice.ts';

const oneLine = (max: number) => z.string().min(1).max(max).refine((s) => !/[\r\n\0]/.test(s), { message: 'must be one line' });
const isoDate = z
  .string()
  .max(40)
  .refine((s) => /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) && Number.isFinite(Date.parse(s)), {
    message: 'expected an ISO 8601 date or date-time, e.g. "2026-12-24" or "2026-12-24T08:00:00+01:00"',
  });

/** What the API and CLI accept (limits that depend on the config are checked in checkVacation). */
export const VacationBody = z.strictObject({
  enabled: z.boolean().default(true).describe('false keeps the settings but sends no replies.'),
  subject: oneLine(200).describe('Subject of the reply.'),
  text: z.string().min(1).max(1024 * 1024).describe('Plain-text reply (sieve.vacation_max_text bytes at most, with html).'),
  html: z.string().min(1).max(1024 * 1024).optional().describe('Optional HTML version of the reply (sent as multipart/alternative).'),
  from: z.string().max(320).optional().describe("The reply's From: the mailbox's address (default) or one of its own aliases."),
  start: isoDate.optional().describe('Replies start at this time (a date alone means 00:00 UTC); none = now.'),
  end: isoDate.optional().describe('Replies stop after this time (a date alone means the end of that day, UTC); none = until removed.'),
  days: z.number().int().min(1).max(90).optional().describe('At most one reply per sender in this many days (default sieve.vacation_default_days).'),
});
export type VacationInput = z.output<typeof VacationBody>;

/** The stored, normalized settings. */
export interface VacationSettings {
  enabled: boolean;
  subject: string;
  text: string;
  html: string | null;
  from: string;
  /** UTC, "YYYY-MM-DDTHH:MM:SSZ" (the form Sieve's currentdate gives for iso8601 with :zone "+0000"). */
  start: string | null;
  end: string | null;
  days: number;
}

const utc = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Validates against the config and the mailbox's own addresses; normalizes dates to UTC. */
export function checkVacation(
  input: VacationInput,
  o: { mailbox: string; owned: (address: string) => boolean; maxText: number; minDays: number; defaultDays: number },
): VacationSettings {
  const size = Buffer.byteLength(input.text) + Buffer.byteLength(input.html ?? '');
  if (size > o.maxText) throw new LetterboxError('validation_error', `body.text: the reply is ${size} bytes; the limit is ${o.maxText} (sieve.vacation_max_text)`);
  const from = (input.from ?? o.mailbox).trim().toLowerCase();
  if (!o.owned(from)) throw new LetterboxError('validation_error', `body.from: ${from} is not ${o.mailbox} or one of its own aliases`);
  const days = input.days ?? o.defaultDays;
  if (days < o.minDays) throw new LetterboxError('validation_error', `body.days: at least ${o.minDays} (sieve.vacation_min_days)`);
  const start = input.start ? Date.parse(input.start.length === 10 ? `${input.start}T00:00:00Z` : input.start) : null;
  const end = input.end ? Date.parse(input.end.length === 10 ? `${input.end}T23:59:59Z` : input.end) : null;
  if (start !== null && end !== null && end <= start) throw new LetterboxError('validation_error', 'body.end: must be after body.start');
  return {
    enabled: input.enabled,
    subject: input.subject,
    text: input.text,
    html: input.html ?? null,
    from,
    start: start === null ? null : utc(start),
    end: end === null ? null : utc(end),
    days,
  };
}

/** A Sieve quoted string (RFC 5228 §2.4.2: only " and \ are escaped; line breaks are allowed). */
export function sieveString(s: string): string {
  return `"${s.replace(/\r?\n/g, '\r\n').replace(/[\\"]/g, (c) => '\\' + c)}"`;
}

const list = (xs: string[]) => `[${xs.map(sieveString).join(', ')}]`;

/** The MIME entity for a reply with an HTML version (vacation :mime). */
function mimeReason(text: string, html: string): string {
  const boundary = 'lb-vacation-' + Buffer.from(text + html).toString('base64url').slice(0, 16).replace(/[^A-Za-z0-9]/g, 'x');
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64').replace(/.{76}/g, '$&\r\n');
  return [
    `Content-Type: multipart/alternative; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: base64',
    '',
    b64(text),
    `--${boundary}`,
    'Content-Type: text/html; charset=utf-8',
    'Content-Transfer-Encoding: base64',
    '',
    b64(html),
    `--${boundary}--`,
    '',
  ].join('\r\n');
}

/**
 * The generated script. Besides Pigeonhole's own rules (no reply to the null sender, to
 * Auto-Submitted or Precedence: bulk/list/junk mail, to mailer-daemon/owner-/-request senders, or
 * twice to one sender within :days), it checks those explicitly, and never answers list mail or the
 * mailbox's own addresses. Pure.
 */
export function vacationScript(v: VacationSettings, own: string[]): string {
  const conds = [
    ...(v.start ? [`currentdate :zone "+0000" :value "ge" "iso8601" ${sieveString(v.start)}`] : []),
    ...(v.end ? [`currentdate :zone "+0000" :value "le" "iso8601" ${sieveString(v.end)}`] : []),
    'not envelope :is "from" ""',
    `not envelope :is "from" ${list(own)}`,
    'not exists ["list-id", "list-post", "list-unsubscribe", "list-help", "list-owner"]',
    'not header :comparator "i;ascii-casemap" :is "precedence" ["bulk", "list", "junk"]',
    'anyof (not exists "auto-submitted", header :comparator "i;ascii-casemap" :is "auto-submitted" "no")',
  ];
  const reason = v.html ? mimeReason(v.text, v.html) : v.text;
  return `# Generated by Letterbox from the mailbox's vacation settings (API: /mailboxes/{id}/vacation,
# CLI: letterbox vacation). Do not edit: it is rewritten on every change.
require ["vacation", "envelope", "date", "relational"];
if allof (
  ${conds.join(',\n  ')}
) {
  vacation :days ${v.days} :subject ${sieveString(v.subject)} :from ${sieveString(v.from)} :addresses ${list(own)}${v.html ? ' :mime' : ''}
    ${sieveString(reason)};
}
`;
}

/** Is the reply on now (enabled and inside its window)? */
export function vacationActive(v: VacationSettings, now: number): boolean {
  return v.enabled && (!v.start || Date.parse(v.start) <= now) && (!v.end || Date.parse(v.end) >= now);
}

/** The script's path under the mailbox's home (mail_home = mailRoot/domain/local). */
export function vacationPath(mailRoot: string, address: string): string {
  const at = address.lastIndexOf('@');
  return join(mailRoot, address.slice(at + 1), address.slice(0, at), VACATION_SCRIPT);
}

/**
 * Writes (or with null removes) the script, atomically, owned like the mail root (the mail uid
 * under a root master: Dovecot's delivery reads it and stores its compiled form next to it).
 */
export function writeVacationScript(mailRoot: string, address: string, script: string | null): void {
  const file = vacationPath(mailRoot, address);
  if (script === null) {
    rmSync(file, { force: true });
    rmSync(file.replace(/\.sieve$/, '.svbin'), { force: true });
    return;
  }
  const owner = statSync(mailRoot);
  const chown = (p: string) => {
    if (process.getuid?.() === 0) chownSync(p, owner.uid, owner.gid);
  };
  // Create the missing folders one by one, each owned by the mail user (a home created here must
  // stay writable for Dovecot).
  const missing: string[] = [];
  for (let d = dirname(file); !existsSync(d); d = dirname(d)) missing.unshift(d);
  for (const d of missing) {
    mkdirSync(d, { mode: 0o700 });
    chown(d);
  }
  const tmp = `${file}.tmp${process.pid}`;
  writeFileSync(tmp, script, { mode: 0o600 });
  chown(tmp);
  renameSync(tmp, file);
}
