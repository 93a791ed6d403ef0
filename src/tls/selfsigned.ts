import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, chmodSync } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { isIP } from 'node:net';
import { LetterboxError } from '../errors.ts';

const run = promisify(execFile);

// Node's crypto can make keys but not X.509 certificates; openssl (always present where Dovecot
// is installed) makes the self-signed certificate, so no extra dependency is needed.
export async function ensureSelfSignedCert(opts: { cert: string; key: string; hostname: string; ips?: string[] }): Promise<boolean> {
  if (existsSync(opts.cert) && existsSync(opts.key)) return false;
  mkdirSync(dirname(opts.cert), { recursive: true, mode: 0o755 });
  mkdirSync(dirname(opts.key), { recursive: true, mode: 0o700 });
  const names = [...new Set([opts.hostname, 'localhost'])].map((n) => `DNS:${n}`);
  const ips = [...new Set(['127.0.0.1', '::1', ...(opts.ips ?? [])])].filter((i) => isIP(i)).map((i) => `IP:${i}`);
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '825',
      '-subj', `/CN=${opts.hostname}`, '-addext', `subjectAltName=${[...names, ...ips].join(',')}`,
      '-keyout', opts.key, '-out', opts.cert,
    ]);
  } catch (err: any) {
    throw new LetterboxError('internal_error', `could not create a self-signed certificate with openssl (${err.message}); install openssl or set tls.cert and tls.key`);
  }
  chmodSync(opts.key, 0o600);
  chmodSync(opts.cert, 0o644);
  return true;
}
