import { LetterboxError } from '../errors.ts';
import { isoNow } from '../clock.ts';
import { newId } from '../util/ids.ts';
import { stmt } from '../db/stmt.ts';
import { readCache } from '../db/read-cache.ts';
import { parseAddress } from '../util/address.ts';
import { checkNewAddress } from './local-part.ts';
import { checkPasswordPolicy, generatePassword, hashPassword } from '../auth/passwords.ts';
import { syncUsersFile } from '../dovecot/sync.ts';
import { endSessions } from './sessions.ts';
import { parseSize } from '../config/schema.ts';
import { findDomain } from './domains.ts';
import type { ServiceContext } from './context.ts';

export interface Mailbox {
  id: string;
  address: string;
  domain: string;
  domainId: string;
  quotaBytes: number; // 0 = unlimited
  disabled: boolean;
  tags: string[];
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  address: string;
  domain_id: string;
  domain: string;
  quota_bytes: number;
  disabled: number;
  tags: string;
  created_at: string;
  updated_at: string;
}

// The columns a Mailbox is made of (not the password hash: reads never need it).
const SELECT = 'SELECT m.id, m.address, m.domain_id, m.quota_bytes, m.disabled, m.tags, m.created_at, m.updated_at, d.name AS domain FROM mailboxes m JOIN domains d ON d.id = m.domain_id';

function toMailbox(r: Row): Mailbox {
  return {
    id: r.id,
    address: r.address,
    domain: r.domain,
    domainId: r.domain_id,
    quotaBytes: r.quota_bytes,
    disabled: r.disabled === 1,
    tags: r.tags === '[]' ? [] : JSON.parse(r.tags),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export function parseQuota(q: string | number | undefined | null, fallback: number): number {
  if (q === undefined || q === null) return fallback;
  const n = typeof q === 'number' ? q : parseSize(q);
  if (!Number.isFinite(n) || n < 0) throw new LetterboxError('validation_error', `invalid quota "${q}": use a size such as 500M or 2G (0 = unlimited)`);
  return n;
}

function checkTags(tags: string[]): string[] {
  for (const t of tags) {
    if (!/^[\w.:-]{1,64}$/.test(t)) throw new LetterboxError('validation_error', `invalid tag "${t}": letters, digits, _ . : - only, at most 64`);
  }
  return [...new Set(tags)];
}

export function findMailbox(ctx: ServiceContext, idOrAddress: string): Mailbox | null {
  // Ids never contain "@" and addresses always do: one indexed lookup either way.
  let key = idOrAddress;
  const column = idOrAddress.includes('@') ? 'address' : 'id';
  if (column === 'address') {
    try {
      key = parseAddress(idOrAddress).address;
    } catch {
      return null;
    }
  }
  // Up to 50,000 rows (~20 MB per API thread): room for 10,000+ mailboxes looked up by id and by address.
  const row = readCache<Row>(ctx.db, 'mailbox', 50_000).get(key, () => stmt(ctx.db, `${SELECT} WHERE m.${column} = ?`).get(key) as Row | undefined);
  // A new Mailbox each time: callers may change what they get without touching the cache.
  return row ? toMailbox(row) : null;
}

export function getMailbox(ctx: ServiceContext, idOrAddress: string): Mailbox {
  const m = findMailbox(ctx, idOrAddress);
  if (!m) throw new LetterboxError('not_found', `no mailbox "${idOrAddress}"; see 'letterbox mailbox list'`);
  return m;
}

export interface ListFilter {
  domain?: string;
  tags?: string[];
  status?: 'active' | 'disabled';
  domains?: string[]; // restriction (API keys limited to some domains)
  /** Addresses starting with this text (lower-cased; a range on the address index, not a scan). */
  search?: string;
  /** Pagination (API): addresses after this one, at most `limit` of them. */
  after?: string;
  limit?: number;
}

export function listMailboxes(ctx: ServiceContext, f: ListFilter = {}): Mailbox[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (f.domain) {
    where.push('d.name = ?');
    args.push(f.domain);
  }
  if (f.status) where.push(f.status === 'disabled' ? 'm.disabled = 1' : 'm.disabled = 0');
  for (const t of f.tags ?? []) {
    where.push('EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)');
    args.push(t);
  }
  if (f.domains) {
    where.push(`d.name IN (SELECT value FROM json_each(?))`);
    args.push(JSON.stringify(f.domains));
  }
  if (f.search) {
    where.push("m.address >= ? AND m.address < ? || char(1114111)");
    args.push(f.search.toLowerCase(), f.search.toLowerCase());
  }
  if (f.after !== undefined) {
    where.push('m.address > ?');
    args.push(f.after);
  }
  let sql = `${SELECT}${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY m.address`;
  if (f.limit !== undefined) {
    sql += ' LIMIT ?';
    args.push(f.limit);
  }
  const rows = readCache<Row[]>(ctx.db, 'mailbox-lists', 200).get(`${sql}\u0000${JSON.stringify(args)}`, () => stmt(ctx.db, sql).all(...args) as Row[]);
  return rows!.map(toMailbox);
}

export interface AddMailboxInput {
  address: string;
  password?: string;
  quota?: string | number;
  tags?: string[];
  disabled?: boolean;
}

/** Creates a mailbox. Without a password, a strong one is generated and returned (shown once). */
export async function addMailbox(ctx: ServiceContext, input: AddMailboxInput): Promise<{ mailbox: Mailbox; generatedPassword: string | null }> {
  checkNewAddress(input.address, { kind: 'mailbox' });
  const addr = parseAddress(input.address);
  const domain = findDomain(ctx, addr.domain);
  if (!domain) throw new LetterboxError('not_found', `domain ${addr.domain} is not set up here; add it first with 'letterbox domain add ${addr.domain}'`);
  const quota = parseQuota(input.quota, ctx.config.dovecot.default_quota);
  const tags = checkTags(input.tags ?? []);
  let password = input.password ?? null;
  let generated: string | null = null;
  if (password === null) password = generated = generatePassword();
  else checkPasswordPolicy(password);
  const hash = await hashPassword(password);
  const id = newId('mbx');
  const now = isoNow(ctx.clock);
  ctx.db.transaction(() => {
    if (ctx.db.prepare('SELECT 1 FROM mailboxes WHERE address = ?').get(addr.address)) {
      throw new LetterboxError('conflict', `mailbox ${addr.address} already exists`);
    }
    if (ctx.db.prepare('SELECT 1 FROM aliases WHERE address = ?').get(addr.address)) {
      throw new LetterboxError('conflict', `${addr.address} is an alias; remove the alias first`);
    }
    ctx.db
      .prepare('INSERT INTO mailboxes (id, domain_id, local_part, address, password_hash, quota_bytes, disabled, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(id, domain.id, addr.local, addr.address, hash, quota, input.disabled ? 1 : 0, JSON.stringify(tags), now, now);
    syncUsersFile(ctx.db, ctx.config.data_dir);
  }).immediate();
  ctx.log.info({ mailbox: addr.address, id }, 'mailbox added');
  return { mailbox: getMailbox(ctx, id), generatedPassword: generated };
}

export interface UpdateMailboxInput {
  password?: string;
  quota?: string | number;
  disabled?: boolean;
  tags?: string[];
}

/** Changes a mailbox; Dovecot sees the change within about a second (no restart). */
export async function updateMailbox(ctx: ServiceContext, idOrAddress: string, input: UpdateMailboxInput): Promise<Mailbox> {
  const m = getMailbox(ctx, idOrAddress);
  let hash: string | undefined;
  if (input.password !== undefined) {
    checkPasswordPolicy(input.password);
    hash = await hashPassword(input.password);
  }
  const quota = input.quota !== undefined ? parseQuota(input.quota, 0) : undefined;
  const tags = input.tags !== undefined ? checkTags(input.tags) : undefined;
  ctx.db.transaction(() => {
    const sets: string[] = ['updated_at = ?'];
    const args: unknown[] = [isoNow(ctx.clock)];
    if (hash !== undefined) (sets.push('password_hash = ?'), args.push(hash));
    if (quota !== undefined) (sets.push('quota_bytes = ?'), args.push(quota));
    if (input.disabled !== undefined) (sets.push('disabled = ?'), args.push(input.disabled ? 1 : 0));
    if (tags !== undefined) (sets.push('tags = ?'), args.push(JSON.stringify(tags)));
    const r = ctx.db.prepare(`UPDATE mailboxes SET ${sets.join(', ')} WHERE id = ?`).run(...args, m.id);
    if (r.changes === 0) throw new LetterboxError('not_found', `no mailbox "${idOrAddress}"`);
    syncUsersFile(ctx.db, ctx.config.data_dir);
  }).immediate();
  ctx.log.info({ mailbox: m.address, changed: Object.keys(input) }, 'mailbox updated');
  if (hash !== undefined || input.disabled === true) endSessions(ctx, m.address);
  return getMailbox(ctx, m.id);
}

/** Removes a mailbox from the database and Dovecot's users file. Its stored mail stays on disk. */
export function removeMailbox(ctx: ServiceContext, idOrAddress: string): Mailbox {
  const m = getMailbox(ctx, idOrAddress);
  ctx.db.transaction(() => {
    ctx.db.prepare('DELETE FROM mailboxes WHERE id = ?').run(m.id);
    syncUsersFile(ctx.db, ctx.config.data_dir);
  }).immediate();
  ctx.log.info({ mailbox: m.address, id: m.id }, 'mailbox removed');
  endSessions(ctx, m.address);
  return m;
}

