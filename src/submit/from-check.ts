// Author headers of outgoing mail (submission and API send): From and Sender must be exactly what
// a strict RFC 5322 parser reads — one From field holding exactly one mailbox, at most one Sender
// field holding one mailbox — or the message is refused (550 5.6.0 / API 400 validation_error).
// A header that parsers can read in different ways (an address in a display name followed by
// another, two addresses, a group) is never guessed at: the receiving side might guess otherwise
// and show a sender we did not authorize. The parser is the `email-addresses` package (an RFC 5322 /
// RFC 6532 grammar); nodemailer's addressparser, which fixups.ts uses, is lenient by design, so the
// address it finds must also be the one the strict parser finds.
import emailAddresses from 'email-addresses';
import { LetterboxError } from '../errors.ts';
import { fromAddresses, headerValue, type HeaderField } from './fixups.ts';

export type AuthorProblem = { field: 'From' | 'Sender'; reason: string } | null;

function oneMailbox(kind: 'From' | 'Sender', value: string): { address: string } | { reason: string } {
  const parsed = kind === 'From' ? emailAddresses.parseFrom({ input: value, rfc6532: true }) : emailAddresses.parseAddressList({ input: value, rfc6532: true });
  if (!parsed) return { reason: 'is not a valid RFC 5322 address list' };
  if (parsed.length !== 1) return { reason: `holds ${parsed.length} addresses; exactly one is allowed` };
  const [a] = parsed;
  if (a.type !== 'mailbox') return { reason: 'is a group; a single address is required' };
  return { address: a.address };
}

/** Pure: what is wrong with the From/Sender fields of a header block (null when nothing). */
export function authorProblem(fields: HeaderField[]): AuthorProblem {
  const from = fields.filter((f) => f.name === 'from');
  const sender = fields.filter((f) => f.name === 'sender');
  if (from.length === 0) return null; // "no From header" is reported by the caller
  if (from.length > 1) return { field: 'From', reason: `appears ${from.length} times; exactly one is allowed` };
  if (sender.length > 1) return { field: 'Sender', reason: `appears ${sender.length} times; at most one is allowed` };
  const f = oneMailbox('From', headerValue(from[0]));
  if ('reason' in f) return { field: 'From', reason: f.reason };
  const lenient = fromAddresses(from);
  if (lenient.length !== 1 || lenient[0].toLowerCase() !== f.address.toLowerCase()) return { field: 'From', reason: 'is ambiguous (parsers disagree on its address)' };
  if (sender.length === 1) {
    const s = oneMailbox('Sender', headerValue(sender[0]));
    if ('reason' in s) return { field: 'Sender', reason: s.reason };
  }
  return null;
}

/** Throws validation_error (SMTP 550 5.6.0) when From/Sender are malformed or ambiguous. */
export function checkAuthorHeaders(fields: HeaderField[]): void {
  const p = authorProblem(fields);
  if (p) throw new LetterboxError('validation_error', `the ${p.field} header ${p.reason}`, { smtp: '550 5.6.0' });
}
