// Device (app) passwords: generation, hashing and name rules. Pure.
//
// An app password is 28 characters of base32 (a-z, 2-7) drawn from crypto.randomBytes: 140 bits of
// entropy, shown in groups of four. With that much entropy a slow password hash buys nothing (no
// guess list or brute force gets anywhere near 2^140 candidates), so each is stored as a plain
// SHA-256: Dovecot computes the same hash (%{sha256:password}) to find and check it, and a login
// costs microseconds instead of Argon2id's ~35 ms of CPU.
import { createHash, randomBytes } from 'node:crypto';
import { LetterboxError } from '../errors.ts';

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
export const APP_PASSWORD_CHARS = 28;

/** A new app password: "xxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx" (140 random bits; the dashes are part of it). */
export function generateAppPassword(random: (n: number) => Buffer = randomBytes): string {
  const bytes = random(APP_PASSWORD_CHARS);
  let s = '';
  for (let i = 0; i < APP_PASSWORD_CHARS; i++) s += B32[bytes[i] & 31];
  return s.match(/.{4}/g)!.join('-');
}

/** The stored form: lower-case hex SHA-256 of the exact string (what Dovecot's %{sha256:password} gives). */
export function hashAppPassword(password: string): string {
  return createHash('sha256').update(password, 'utf8').digest('hex');
}

/** Could `password` be an app password at all (so a main password never costs a lookup)? */
export function looksLikeAppPassword(password: string): boolean {
  return /^[a-z2-7]{4}(-[a-z2-7]{4}){6}$/.test(password);
}

/** A device name: 1-64 printable characters, trimmed. */
export function checkAppPasswordName(name: unknown): string {
  const n = typeof name === 'string' ? name.trim() : '';
  if (!n || n.length > 64 || /[\p{Cc}\p{Cf}]/u.test(n)) {
    throw new LetterboxError('validation_error', 'name: 1-64 printable characters, e.g. "Alice\'s phone"', { issues: [{ path: 'name', message: '1-64 printable characters' }] });
  }
  return n;
}

/** Whether a last-used stamp is due: at most one write a minute per app password. */
export function lastUsedDue(previous: string | null, now: number): boolean {
  return previous === null || Date.parse(previous) <= now - 60_000;
}
