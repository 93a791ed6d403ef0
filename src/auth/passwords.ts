import { hash, verify } from '@node-rs/argon2';
import { randomBytes } from 'node:crypto';
import { LetterboxError } from '../errors.ts';

// Argon2id with the OWASP baseline (19 MiB, t=2, p=1): Dovecot verifies this PHC string as-is under
// the {ARGON2ID} scheme (NOTES), and Dovecot's auth process hashes serially, so the cost is kept modest.
const ARGON2 = { memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;
export const SCHEME = '{ARGON2ID}';
export const MIN_PASSWORD_LENGTH = 12;

export async function hashPassword(password: string): Promise<string> {
  return SCHEME + (await hash(password, ARGON2));
}

/** Verifies a password against a stored "{ARGON2ID}$argon2id$..." hash. */
export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  if (!stored.startsWith(SCHEME)) return false;
  try {
    return await verify(stored.slice(SCHEME.length), password);
  } catch {
    return false;
  }
}

export function checkPasswordPolicy(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new LetterboxError('validation_error', `password too short: at least ${MIN_PASSWORD_LENGTH} characters (or omit it to have a strong one generated)`);
  }
  if (/[\r\n\0]/.test(password)) throw new LetterboxError('validation_error', 'password must not contain line breaks or NUL');
}

/** A strong generated password: 20 characters from an unambiguous alphabet (~115 bits). */
export function generatePassword(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  let out = '';
  while (out.length < 20) {
    for (const b of randomBytes(32)) {
      if (b < 224 && out.length < 20) out += alphabet[b % 56];
    }
  }
  return out;
}
