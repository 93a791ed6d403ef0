// The web console's tables (migration 1300): administrators, their passkeys, one-time invitations,
// login challenges, server-side sessions and the audit log. The only module of the console that
// runs SQL. Secrets (invitation tokens, session ids) are random 256-bit values stored as SHA-256
// hashes, so a copy of the database opens no session.
import { createHash, randomBytes } from 'node:crypto';
import type { ServiceContext } from '../services/context.ts';
import { stmt } from '../db/stmt.ts';
import { newId } from '../util/ids.ts';
import { LetterboxError } from '../errors.ts';

type Ctx = Pick<ServiceContext, 'db' | 'clock'>;

export interface ConsoleAdmin {
  id: string;
  name: string;
  createdAt: string;
}

export interface Credential {
  id: string;
  adminId: string;
  publicKey: Uint8Array;
  counter: number;
  transports: string[];
}

export interface Session {
  adminId: string;
  adminName: string;
  csrf: string;
  expiresAt: string;
  lastSeenAt: string;
}

export interface AuditEntry {
  id: number;
  at: string;
  admin: string;
  action: string;
  target: string | null;
  ip: string;
  detail: unknown;
}

/** Session lifetime: idle for at most `idleMs`, and never longer than `absoluteMs` after login. */
export interface SessionPolicy {
  idleMs: number;
  absoluteMs: number;
}

export const DEFAULT_SESSION_POLICY: SessionPolicy = { idleMs: 30 * 60_000, absoluteMs: 12 * 3600_000 };
export const INVITE_TTL_MS = 24 * 3600_000;
const CHALLENGE_TTL_MS = 5 * 60_000;

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashSecret(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Decide: is a session still alive at `now` (neither idle too long nor past its absolute end)? Pure. */
export function sessionAlive(s: { expiresAt: string; lastSeenAt: string }, now: number, p: SessionPolicy): boolean {
  return Date.parse(s.expiresAt) > now && Date.parse(s.lastSeenAt) + p.idleMs > now;
}

/** An admin name: 1–64 letters, digits, dot, dash, underscore or @ (it appears in the audit log). */
export function checkAdminName(name: string): string {
  const n = name.trim();
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(n)) throw new LetterboxError('validation_error', `admin name "${name}": use 1 to 64 letters, digits, ".", "_", "-" or "@"`);
  return n;
}

/**
 * Creates the admin if new and a one-time invitation for it; returns the token (shown once, in the
 * link). An existing admin gets a new invitation too (a second passkey, or a lost one replaced).
 */
export function createInvite(ctx: Ctx, name: string, ttlMs = INVITE_TTL_MS): { token: string; admin: ConsoleAdmin; expiresAt: string } {
  const n = checkAdminName(name);
  const now = ctx.clock.now();
  return ctx.db.transaction(() => {
    let admin = stmt(ctx.db, 'SELECT id, name, created_at AS createdAt FROM console_admins WHERE name = ?').get(n) as ConsoleAdmin | undefined;
    if (!admin) {
      admin = { id: newId('adm'), name: n, createdAt: iso(now) };
      stmt(ctx.db, 'INSERT INTO console_admins (id, name, created_at) VALUES (?, ?, ?)').run(admin.id, admin.name, admin.createdAt);
    }
    const token = newSecret();
    const expiresAt = iso(now + ttlMs);
    stmt(ctx.db, 'INSERT INTO console_invites (token_hash, admin_id, created_at, expires_at) VALUES (?, ?, ?, ?)').run(hashSecret(token), admin.id, iso(now), expiresAt);
    return { token, admin, expiresAt };
  })();
}

/** The admin an unused, unexpired invitation is for, or null. */
export function findInvite(ctx: Ctx, token: string): { admin: ConsoleAdmin; challenge: string | null } | null {
  const r = stmt(ctx.db, `SELECT a.id, a.name, a.created_at AS createdAt, i.challenge FROM console_invites i JOIN console_admins a ON a.id = i.admin_id
    WHERE i.token_hash = ? AND i.used_at IS NULL AND i.expires_at > ?`).get(hashSecret(token), iso(ctx.clock.now())) as (ConsoleAdmin & { challenge: string | null }) | undefined;
  return r ? { admin: { id: r.id, name: r.name, createdAt: r.createdAt }, challenge: r.challenge } : null;
}

export function setInviteChallenge(ctx: Ctx, token: string, challenge: string): void {
  stmt(ctx.db, 'UPDATE console_invites SET challenge = ? WHERE token_hash = ?').run(challenge, hashSecret(token));
}

/** Uses the invitation up and stores the new passkey, in one transaction; false when the invitation was used meanwhile. */
export function redeemInvite(ctx: Ctx, token: string, cred: Credential): boolean {
  const now = iso(ctx.clock.now());
  return ctx.db.transaction(() => {
    const r = stmt(ctx.db, 'UPDATE console_invites SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?').run(now, hashSecret(token), now);
    if (r.changes !== 1) return false;
    stmt(ctx.db, 'INSERT INTO console_credentials (id, admin_id, public_key, counter, transports, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(
      cred.id, cred.adminId, Buffer.from(cred.publicKey), cred.counter, JSON.stringify(cred.transports), now);
    return true;
  })();
}

export function findCredential(ctx: Ctx, id: string): (Credential & { adminName: string }) | null {
  const r = stmt(ctx.db, `SELECT c.id, c.admin_id AS adminId, c.public_key AS publicKey, c.counter, c.transports, a.name AS adminName
    FROM console_credentials c JOIN console_admins a ON a.id = c.admin_id WHERE c.id = ?`).get(id) as any;
  return r ? { ...r, publicKey: new Uint8Array(r.publicKey), transports: JSON.parse(r.transports) } : null;
}

export function credentialUsed(ctx: Ctx, id: string, counter: number): void {
  stmt(ctx.db, 'UPDATE console_credentials SET counter = ?, last_used_at = ? WHERE id = ?').run(counter, iso(ctx.clock.now()), id);
}

/** A login challenge, kept under a random handle (its cookie) for five minutes. */
export function saveChallenge(ctx: Ctx, challenge: string): string {
  const handle = newSecret();
  const now = ctx.clock.now();
  stmt(ctx.db, 'DELETE FROM console_challenges WHERE expires_at <= ?').run(iso(now));
  stmt(ctx.db, 'INSERT INTO console_challenges (id_hash, challenge, expires_at) VALUES (?, ?, ?)').run(hashSecret(handle), challenge, iso(now + CHALLENGE_TTL_MS));
  return handle;
}

/** Takes a login challenge (once: it is deleted), or null when unknown or expired. */
export function takeChallenge(ctx: Ctx, handle: string): string | null {
  const h = hashSecret(handle);
  const r = stmt(ctx.db, 'DELETE FROM console_challenges WHERE id_hash = ? RETURNING challenge, expires_at AS expiresAt').get(h) as { challenge: string; expiresAt: string } | undefined;
  return r && Date.parse(r.expiresAt) > ctx.clock.now() ? r.challenge : null;
}

/** Opens a session; returns the cookie value (shown to the browser only) and the CSRF token. */
export function openSession(ctx: Ctx, adminId: string, ip: string, p: SessionPolicy): { id: string; csrf: string } {
  const id = newSecret();
  const csrf = newSecret();
  const now = ctx.clock.now();
  stmt(ctx.db, 'DELETE FROM console_sessions WHERE expires_at <= ?').run(iso(now));
  stmt(ctx.db, 'INSERT INTO console_sessions (id_hash, admin_id, csrf, created_at, expires_at, last_seen_at, ip) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
    hashSecret(id), adminId, csrf, iso(now), iso(now + p.absoluteMs), iso(now), ip);
  return { id, csrf };
}

/** The live session for a cookie value (its idle clock restarted), or null; an expired one is deleted. */
export function touchSession(ctx: Ctx, id: string, p: SessionPolicy): Session | null {
  const h = hashSecret(id);
  const s = stmt(ctx.db, `SELECT s.admin_id AS adminId, a.name AS adminName, s.csrf, s.expires_at AS expiresAt, s.last_seen_at AS lastSeenAt
    FROM console_sessions s JOIN console_admins a ON a.id = s.admin_id WHERE s.id_hash = ?`).get(h) as Session | undefined;
  if (!s) return null;
  const now = ctx.clock.now();
  if (!sessionAlive(s, now, p)) {
    stmt(ctx.db, 'DELETE FROM console_sessions WHERE id_hash = ?').run(h);
    return null;
  }
  // Written at most once a minute: a page view is not a write each time.
  if (Date.parse(s.lastSeenAt) + 60_000 <= now) stmt(ctx.db, 'UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ?').run(iso(now), h);
  return s;
}

export function closeSession(ctx: Ctx, id: string): void {
  stmt(ctx.db, 'DELETE FROM console_sessions WHERE id_hash = ?').run(hashSecret(id));
}

export function audit(ctx: Ctx, e: { admin: string; action: string; target?: string | null; ip: string; detail?: unknown }): void {
  stmt(ctx.db, 'INSERT INTO console_audit (at, admin, action, target, ip, detail) VALUES (?, ?, ?, ?, ?, ?)').run(
    iso(ctx.clock.now()), e.admin, e.action, e.target ?? null, e.ip, e.detail === undefined ? null : JSON.stringify(e.detail));
}

/** The audit log, newest first (before the id `before`, for paging). */
export function listAudit(ctx: Ctx, opts: { limit: number; before?: number }): AuditEntry[] {
  const rows = stmt(ctx.db, 'SELECT id, at, admin, action, target, ip, detail FROM console_audit WHERE id < ? ORDER BY id DESC LIMIT ?').all(opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit) as any[];
  return rows.map((r) => ({ ...r, detail: r.detail === null ? null : JSON.parse(r.detail) }));
}

export function adminCredentials(ctx: Ctx, adminId: string): { id: string; transports: string[] }[] {
  return (stmt(ctx.db, 'SELECT id, transports FROM console_credentials WHERE admin_id = ?').all(adminId) as { id: string; transports: string }[]).map((r) => ({ id: r.id, transports: JSON.parse(r.transports) }));
}
