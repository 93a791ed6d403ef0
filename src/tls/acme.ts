// Certificates from an ACME CA (RFC 8555) with HTTP-01 challenges answered by Letterbox itself on
// port 80. The CA's directory URL is configuration (acme.directory_url), and the issuer is an
// interface, so tests run the real acme-client against a local CA.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, chmodSync, chownSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { LetterboxError } from '../errors.ts';

// ---- HTTP-01 ------------------------------------------------------------------------------------

/** Pending HTTP-01 challenges: token → key authorization. */
export class ChallengeStore {
  private readonly m = new Map<string, string>();
  set(token: string, keyAuthorization: string): void {
    this.m.set(token, keyAuthorization);
  }
  get(token: string): string | undefined {
    return this.m.get(token);
  }
  delete(token: string): void {
    this.m.delete(token);
  }
  get size(): number {
    return this.m.size;
  }
}

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/**
 * Answers GET /.well-known/acme-challenge/<token> from the store (RFC 8555 §8.3). Returns false when
 * the request is not a challenge request, so other handlers may answer it.
 */
export function handleChallenge(store: ChallengeStore, req: IncomingMessage, res: ServerResponse): boolean {
  const path = (req.url ?? '').split('?')[0];
  if (!path.startsWith(CHALLENGE_PREFIX)) return false;
  const token = path.slice(CHALLENGE_PREFIX.length);
  const value = /^[A-Za-z0-9_-]{1,256}$/.test(token) && (req.method === 'GET' || req.method === 'HEAD') ? store.get(token) : undefined;
  if (value === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('no such challenge\n');
  } else {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(value) }).end(req.method === 'HEAD' ? undefined : value);
  }
  return true;
}

// ---- issuing ------------------------------------------------------------------------------------

export interface IssuedCertificate {
  /** PEM chain: leaf first. */
  cert: string;
  key: string;
}

export interface CertificateIssuer {
  issue(names: string[]): Promise<IssuedCertificate>;
}

export interface AcmeIssuerOptions {
  directoryUrl: string;
  email: string;
  /** PEM file holding the ACME account key; created (0600) on first use. */
  accountKeyPath: string;
  store: ChallengeStore;
  /** acme-client polling (tests shorten it). */
  backoff?: { attempts?: number; minMs?: number; maxMs?: number };
}

function writeAtomic(path: string, data: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/**
 * acme-client, loaded on first use: it costs ~38 MB RSS once imported (bench/README.md "Memory"),
 * and an appliance without [acme] never issues a certificate.
 */
async function acmeClient(): Promise<typeof import('acme-client')> {
  return (await import('acme-client')).default;
}

async function accountKey(path: string): Promise<string> {
  if (existsSync(path)) return readFileSync(path, 'utf8');
  const acme = await acmeClient();
  const key = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
  writeAtomic(path, key, 0o600);
  return key;
}

/** The real issuer: acme-client's auto mode, HTTP-01 only, challenges put in the store. */
export function acmeIssuer(o: AcmeIssuerOptions): CertificateIssuer {
  return {
    async issue(names) {
      if (names.length === 0) throw new LetterboxError('validation_error', 'no names to certify');
      const acme = await acmeClient();
      const client = new acme.Client({
        directoryUrl: o.directoryUrl,
        accountKey: await accountKey(o.accountKeyPath),
        backoffAttempts: o.backoff?.attempts ?? 10,
        backoffMin: o.backoff?.minMs ?? 3000,
        backoffMax: o.backoff?.maxMs ?? 30000,
      });
      const [key, csr] = await acme.crypto.createCsr({ commonName: names[0], altNames: names }, await acme.crypto.createPrivateEcdsaKey('P-256'));
      const cert = await client.auto({
        csr,
        email: o.email || undefined,
        termsOfServiceAgreed: true,
        challengePriority: ['http-01'],
        // The CA validates anyway; a self-check would need this host's public DNS and port 80 from here.
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
          if (challenge.type !== 'http-01') throw new Error(`unsupported challenge ${challenge.type}`);
          o.store.set((challenge as any).token, keyAuthorization);
        },
        challengeRemoveFn: async (_authz, challenge) => {
          o.store.delete((challenge as any).token);
        },
      });
      return { cert, key: key.toString() };
    },
  };
}

/**
 * Installs a certificate and key without a moment where a reader sees a missing file: each is
 * written to a temporary file, fsynced and renamed over the old one (key first, then the chain).
 * The old pair is kept as *.previous.
 */
export function installCertificate(certPath: string, keyPath: string, issued: IssuedCertificate): void {
  const x = new X509Certificate(issued.cert);
  if (!x.checkPrivateKey(createPrivateKey(issued.key))) throw new LetterboxError('internal_error', 'the issued certificate does not match its key');
  const owner = existsSync(certPath) ? statSync(certPath) : null;
  for (const [p, mode] of [[keyPath, 0o600], [certPath, 0o644]] as const) {
    if (existsSync(p)) writeAtomic(`${p}.previous`, readFileSync(p, 'utf8'), mode);
  }
  writeAtomic(keyPath, issued.key, 0o600);
  writeAtomic(certPath, issued.cert, 0o644);
  if (owner && process.getuid?.() === 0) {
    for (const p of [keyPath, certPath]) chownSync(p, owner.uid, owner.gid);
  }
}

// ---- renewal ------------------------------------------------------------------------------------

export interface CertificateState {
  names: string[];
  issuer: string;
  notAfter: number;
  selfSigned: boolean;
}

export function readCertificate(certPath: string): CertificateState | null {
  let x: X509Certificate;
  try {
    x = new X509Certificate(readFileSync(certPath));
  } catch {
    return null;
  }
  const names = (x.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  return { names, issuer: x.issuer, notAfter: Date.parse(x.validTo), selfSigned: x.issuer === x.subject && x.verify(x.publicKey) };
}

/** Whether to (re)issue now, and why. */
export function renewalDue(state: CertificateState | null, wanted: string[], now: number, daysBefore: number): { due: boolean; reason: string } {
  if (!state) return { due: true, reason: 'no readable certificate' };
  if (state.selfSigned) return { due: true, reason: 'the certificate is self-signed' };
  const missing = wanted.filter((n) => !state.names.includes(n.toLowerCase()));
  if (missing.length) return { due: true, reason: `the certificate does not cover ${missing.join(', ')}` };
  const left = state.notAfter - now;
  if (left < daysBefore * 86400000) return { due: true, reason: `it expires in ${Math.max(0, Math.floor(left / 86400000))} days` };
  return { due: false, reason: `valid until ${new Date(state.notAfter).toISOString()}` };
}

/** After the n-th consecutive failure (1, 2, ...): 5 min, 10 min, 20 min ... capped at 12 h. */
export function retryDelayMs(failures: number): number {
  return Math.min(12 * 3600000, 5 * 60000 * 2 ** Math.max(0, failures - 1));
}

export function accountKeyPath(dataDir: string): string {
  return join(dataDir, 'secrets', 'acme-account.pem');
}
