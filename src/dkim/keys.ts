import { generateKeyPair } from 'node:crypto';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const genKeyPair = promisify(generateKeyPair);

export type DkimAlgorithm = 'rsa' | 'ed25519';

export interface GeneratedKey {
  selector: string;
  algorithm: DkimAlgorithm;
  privateKeyPem: string;
  /** The DNS p= value: base64 SPKI DER for RSA, base64 of the raw 32-byte key for Ed25519 (RFC 8463). */
  publicKey: string;
}

/** Dated selectors, e.g. lb202611r (RSA) and lb202611e (Ed25519), so keys can be rotated by month. */
export function selectorFor(algorithm: DkimAlgorithm, now: Date): string {
  const ym = `${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
  return `lb${ym}${algorithm === 'rsa' ? 'r' : 'e'}`;
}

export async function generateDkimKey(algorithm: DkimAlgorithm, now: Date): Promise<GeneratedKey> {
  if (algorithm === 'rsa') {
    const { privateKey, publicKey } = await genKeyPair('rsa', { modulusLength: 2048 });
    return {
      selector: selectorFor('rsa', now),
      algorithm,
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      publicKey: (publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64'),
    };
  }
  const { privateKey, publicKey } = await genKeyPair('ed25519');
  const der = publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
  return {
    selector: selectorFor('ed25519', now),
    algorithm,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKey: der.subarray(der.length - 32).toString('base64'),
  };
}

export function dkimKeyPath(dataDir: string, domain: string, selector: string): string {
  return join(dataDir, 'dkim', domain, `${selector}.pem`);
}

export function writeDkimKey(path: string, pem: string): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  writeFileSync(path, pem, { mode: 0o600, flag: 'wx' });
}

export function readDkimKey(path: string): string {
  return readFileSync(path, 'utf8');
}

/** The TXT value to publish at <selector>._domainkey.<domain>. */
export function dkimTxt(algorithm: DkimAlgorithm, publicKey: string): string {
  return `v=DKIM1; k=${algorithm}; p=${publicKey}`;
}
