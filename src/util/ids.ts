import { randomBytes } from 'node:crypto';

/** Resource ids: a type prefix and 16 random base32 characters, e.g. mbx_3k9f2... */
export function newId(prefix: string): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = randomBytes(16);
  let s = '';
  for (const b of bytes) s += alphabet[b & 31];
  return `${prefix}_${s}`;
}
