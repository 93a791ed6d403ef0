// Which mailbox and alias names Letterbox accepts (README "Domains, mailboxes and aliases").
//
// The local part must be an ASCII dot-atom made of letters, digits, "." "_" and "-" only: that is
// the set every hop handles — Dovecot's default auth_username_chars (IMAP LOGIN, SMTP AUTH through
// its auth service, LMTP user lookup), the Maildir path under data_dir/mail/<domain>/<user>, IMAP
// LIST patterns (no * or %), and mail clients. Names outside it were accepted before and then
// could never log in or receive mail (RCPT 250, then 451 at DATA for days). Non-ASCII local parts
// (SMTPUTF8) are refused: the whole path (Dovecot lookups, IMAP login) does not handle them. With
// ASCII only there is nothing to normalise (NFC) and the only look-alikes left are upper/lower
// case, which are folded (Bob@ and bob@ are one mailbox).
import { LetterboxError } from '../errors.ts';

const ALLOWED = /^[a-z0-9._-]$/i;

/** How to name a character in an error message: "/" for printable ASCII, else U+XXXX with what it is. */
export function describeChar(ch: string): string {
  const cp = ch.codePointAt(0)!;
  if (cp >= 0x21 && cp <= 0x7e) return `"${ch}"`;
  const hex = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  let what = 'a non-ASCII character';
  if (/[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/.test(ch)) what = 'a bidirectional text control';
  else if (/\p{Cc}/u.test(ch)) what = 'a control character';
  else if (/[\u00ad\u034f\u180e\u200b-\u200d\u2060-\u2064\ufeff]/.test(ch) || /\p{Cf}/u.test(ch)) what = 'an invisible character';
  else if (/\p{Z}/u.test(ch) || ch === ' ') what = 'a space';
  else if (cp > 0x7f) what = `"${ch.normalize('NFC')}", not ASCII`;
  return `${hex} (${what})`;
}

/**
 * Checks the address a mailbox or alias is created with, as given (before any trimming), and
 * throws a validation_error naming the first character or rule it breaks. `*` alone is allowed as
 * an alias's catch-all local part when `catchAll` is set.
 */
export function checkNewAddress(input: string, opts: { kind: 'mailbox' | 'alias'; catchAll?: boolean }): void {
  const at = input.lastIndexOf('@');
  const local = at > 0 ? input.slice(0, at) : input;
  const domain = at > 0 ? input.slice(at + 1) : '';
  const bad = (why: string) => new LetterboxError('validation_error', `invalid ${opts.kind} address ${JSON.stringify(input)}: ${why}`);
  if (opts.catchAll && local === '*') return checkDomainChars(domain, bad);
  for (const ch of local) {
    if (ALLOWED.test(ch)) continue;
    // An alias is matched by its exact address before any plus-address split, so info+sales@ can
    // be an alias; a mailbox named bob+tag@ could never be reached (mail to it goes to bob@).
    if (ch === '+' && opts.kind === 'alias') continue;
    if (ch === '+') throw bad('"+" is the plus-address delimiter (bob+tag@ is delivered to bob@)');
    throw bad(`the name before @ has ${describeChar(ch)}; use only letters a-z, digits, ".", "_" and "-"`);
  }
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) throw bad('a dot at the start or end of the name before @, or two dots in a row');
  if (local.length > 64) throw bad('the name before @ is longer than 64 characters');
  checkDomainChars(domain, bad);
}

function checkDomainChars(domain: string, bad: (why: string) => LetterboxError): void {
  // IDNs are fine (they become A-labels); spaces, controls, invisible and bidi characters are not.
  for (const ch of domain) {
    if (/[\p{C}\p{Z}\s]/u.test(ch) || /[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u2060\ufeff]/.test(ch)) throw bad(`the domain has ${describeChar(ch)}`);
  }
}
