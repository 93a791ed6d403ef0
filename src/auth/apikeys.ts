import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { LetterboxError } from '../errors.ts';
import { isoNow } from '../clock.ts';
import { newId } from '../util/ids.ts';
import { normalizeDomain } from '../util/address.ts';
import { parseScopes } from './scopes.ts';
import type { ServiceContext } from '../services/context.ts';
import { readCache, type ReadCache } from '../db/read-cache.ts';
import { BoundedMap } from '../util/bounded-map.ts';
import { parseDurationWithUnit } from '../config/schema.ts';

/**
 * API keys: `lb_live_` or `lb_test_` followed by 32 random bytes in base64url (43 characters).
 * Only the SHA-256 hash of the whole secret is stored, with a display prefix (the first 8
 * characters of the random part) that is also the lookup index; the hash is then compared in
 * constant time. Keys are created only from the CLI.
 */
export type KeyMode = 'live' | 'test';

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  mode: KeyMode;
  scopes: string[];
  /** Domains (A-labels) the key is restricted to; null = every domain. */
  domains: string[] | null;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

interface Row {
  id: string;
  name: string;
  prefix: string;
  hash: string;
  mode: KeyMode;
  scopes: string;
  domains: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export const KEY_PATTERN = /^lb_(live|test)_([A-Za-z0-9_-]{43})$/;

function toKey(r: Row): ApiKey {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    mode: r.mode,
    scopes: JSON.parse(r.scopes),
    domains: r.domains === null ? null : JSON.parse(r.domains),
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    lastUsedAt: r.last_used_at,
  };
}

/** What is stored of a key's secret (and compared when it is presented): its SHA-256. */
function secretDigest(secret: string): Buffer {
  return hash('sha256', secret, 'buffer');
}

/** An expiry given as a duration from now ("90d") or an ISO 8601 date/time; must be in the future. */
export function parseExpiry(input: string, now: number): string {
  // The config's duration grammar; a bare number is not taken as a duration here.
  const d = parseDurationWithUnit(input);
  let at: number;
  if (Number.isFinite(d)) at = now + d;
  else {
    at = /^\d{4}-\d{2}-\d{2}/.test(input.trim()) ? Date.parse(input.trim()) : Number.NaN;
    if (!Number.isFinite(at)) throw new LetterboxError('validation_error', `invalid expiry "${input}": use a duration such as 90d, 12h, 2w, 1y or an ISO date such as 2027-01-31`);
  }
  if (!(d > 0) && at <= now) throw new LetterboxError('validation_error', `expiry "${input}" is not in the future`);
  return new Date(at).toISOString();
}

export interface CreateKeyInput {
  name: string;
  scopes: string[];
  test?: boolean;
  /** ISO time, already parsed (see parseExpiry). */
  expiresAt?: string | null;
  domains?: string[] | null;
}

export function createApiKey(ctx: ServiceContext, input: CreateKeyInput): { key: ApiKey; secret: string } {
  const name = input.name.trim();
  if (!name || name.length > 100) throw new LetterboxError('validation_error', 'a key needs a name of 1 to 100 characters (--name)');
  const scopes = parseScopes(input.scopes);
  const domains = input.domains ? [...new Set(input.domains.map((d) => normalizeDomain(d)))].sort() : null;
  if (domains && domains.length === 0) throw new LetterboxError('validation_error', '--domains needs at least one domain');
  const mode: KeyMode = input.test ? 'test' : 'live';
  const random = randomBytes(32).toString('base64url');
  const secret = `lb_${mode}_${random}`;
  const id = newId('key');
  ctx.db
    .prepare('INSERT INTO api_keys (id, name, prefix, hash, mode, scopes, domains, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
    .run(id, name, random.slice(0, 8), secretDigest(secret).toString('hex'), mode, JSON.stringify(scopes), domains ? JSON.stringify(domains) : null, isoNow(ctx.clock), input.expiresAt ?? null);
  ctx.log.info({ keyId: id, name, mode, scopes, domains }, 'API key created');
  return { key: getApiKey(ctx, id), secret };
}

export function listApiKeys(ctx: ServiceContext): ApiKey[] {
  return (ctx.db.prepare('SELECT * FROM api_keys ORDER BY created_at, id').all() as Row[]).map(toKey);
}

/** By id, or by display prefix when that is unambiguous. */
export function getApiKey(ctx: ServiceContext, idOrPrefix: string): ApiKey {
  const row = ctx.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(idOrPrefix) as Row | undefined;
  if (row) return toKey(row);
  const byPrefix = ctx.db.prepare('SELECT * FROM api_keys WHERE prefix = ?').all(idOrPrefix) as Row[];
  if (byPrefix.length === 1) return toKey(byPrefix[0]);
  if (byPrefix.length > 1) throw new LetterboxError('conflict', `prefix ${idOrPrefix} matches ${byPrefix.length} keys; use the key id`);
  throw new LetterboxError('not_found', `no API key "${idOrPrefix}"; see 'letterbox key list'`);
}

export function revokeApiKey(ctx: ServiceContext, idOrPrefix: string): ApiKey {
  const k = getApiKey(ctx, idOrPrefix);
  if (!k.revokedAt) ctx.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(isoNow(ctx.clock), k.id);
  ctx.log.info({ keyId: k.id, name: k.name }, 'API key revoked');
  return getApiKey(ctx, k.id);
}

interface Candidate {
  hash: Buffer;
  expiresAt: number | null;
  /** Shared by every request made with the key until the database changes: read it, never change it. */
  key: ApiKey;
}

function candidate(r: Row): Candidate {
  return { hash: Buffer.from(r.hash, 'hex'), expiresAt: r.expires_at ? Date.parse(r.expires_at) : null, key: Object.freeze(toKey(r)) };
}

export type AuthResult = { ok: true; key: ApiKey } | { ok: false; reason: string };

/**
 * Checks a presented secret. Every failure (malformed, unknown, revoked, expired) is a plain
 * failure; the reason is for the log and the error message, never a hint about other keys.
 */
export class KeyVerifier {
  private readonly ctx: ServiceContext;
  private readonly byPrefix;
  private readonly touch;
  /** last_used_at is written at most once a minute per key, so reads do not turn into writes. */
  private readonly touched = new BoundedMap<string, number>(10_000);

  /**
   * Keys by display prefix, as fresh as the database (a revocation shows on the next request),
   * each with its hash as bytes, its expiry as a number and its ApiKey built once per change.
   */
  private readonly rows: ReadCache<Candidate[]>;

  constructor(ctx: ServiceContext) {
    this.ctx = ctx;
    this.rows = readCache<Candidate[]>(ctx.db, 'api-keys', 1000);
    this.byPrefix = ctx.db.prepare('SELECT * FROM api_keys WHERE prefix = ?');
    this.touch = ctx.db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?');
  }

  verify(secret: string): AuthResult {
    const m = KEY_PATTERN.exec(secret);
    if (!m) return { ok: false, reason: 'malformed API key: expected lb_live_… or lb_test_… followed by 43 characters' };
    const presented = secretDigest(secret);
    let found: Candidate | undefined;
    const prefix = m[2].slice(0, 8);
    const candidates = this.rows.get(prefix, () => {
      const rows = this.byPrefix.all(prefix) as Row[];
      return rows.length ? rows.map(candidate) : undefined;
    }) ?? [];
    for (const c of candidates) {
      // Constant-time comparison of the hashes (every candidate is compared).
      if (timingSafeEqual(presented, c.hash) && c.key.mode === m[1]) found = c;
    }
    if (!found) return { ok: false, reason: 'unknown API key' };
    const now = this.ctx.clock.now();
    const { key } = found;
    if (key.revokedAt) return { ok: false, reason: 'this API key was revoked' };
    if (found.expiresAt !== null && found.expiresAt <= now) return { ok: false, reason: 'this API key has expired' };
    const last = this.touched.get(key.id) ?? 0;
    if (now - last > 60_000) {
      this.touched.set(key.id, now);
      try {
        this.touch.run(new Date(now).toISOString(), key.id);
      } catch (err: any) {
        this.ctx.log.warn({ keyId: key.id, err: err.message }, 'could not record API key use');
      }
    }
    return { ok: true, key };
  }
}
