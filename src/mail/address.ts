import { domainToASCII, domainToUnicode } from 'node:url';
import { LetterboxError } from '../errors.ts';

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
// RFC 5322 atext, plus any non-ASCII character (SMTPUTF8 local parts); dots only between atoms.
const ATOM = /^[a-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\uffff]+$/i;

/** Lower-case A-label form of a domain (IDN → punycode), or a validation_error saying what is wrong. */
export function normalizeDomain(input: string): string {
  const trimmed = input.trim().replace(/\.$/, '');
  const ascii = domainToASCII(trimmed.toLowerCase());
  if (!ascii) throw new LetterboxError('validation_error', `invalid domain name "${input}"`);
  const labels = ascii.split('.');
  if (ascii.length > 253 || labels.length < 2 || !labels.every((l) => LABEL.test(l)) || /^\d+$/.test(labels[labels.length - 1])) {
    throw new LetterboxError('validation_error', `invalid domain name "${input}": expected a name such as example.com`);
  }
  return ascii;
}

export function displayDomain(ascii: string): string {
  return domainToUnicode(ascii) || ascii;
}

export interface Address {
  local: string; // lower-case
  domain: string; // A-label, lower-case
  address: string; // local@domain
}

/** Parses and normalizes user@domain. Local parts compare case-insensitively, so they are lower-cased. */
export function parseAddress(input: string, opts: { allowWildcard?: boolean } = {}): Address {
  const s = input.trim();
  const at = s.lastIndexOf('@');
  if (at <= 0 || at === s.length - 1) {
    throw new LetterboxError('validation_error', `invalid address "${input}": expected user@domain`);
  }
  const local = s.slice(0, at).toLowerCase();
  const domain = normalizeDomain(s.slice(at + 1));
  if (local === '*' && !opts.allowWildcard) {
    throw new LetterboxError('validation_error', `"${input}" is the catch-all form; it is only valid as an alias address`);
  }
  if (local !== '*') {
    if (local.length > 64 || !local.split('.').every((a) => a.length > 0 && ATOM.test(a))) {
      throw new LetterboxError('validation_error', `invalid address "${input}": the part before @ has a character that is not allowed or a misplaced dot`);
    }
  }
  return { local, domain, address: `${local}@${domain}` };
}

/** The mailbox a plus address belongs to: bob+lists@x → { base: bob@x, detail: 'lists' }. */
export function splitDetail(addr: Address, delimiter = '+'): { base: Address; detail: string | null } {
  const i = addr.local.indexOf(delimiter);
  if (i <= 0) return { base: addr, detail: null };
  const local = addr.local.slice(0, i);
  return { base: { local, domain: addr.domain, address: `${local}@${addr.domain}` }, detail: addr.local.slice(i + 1) };
}
