import { existsSync } from 'node:fs';
import { LetterboxError } from '../errors.ts';
import { isoNow } from '../clock.ts';
import { newId } from '../util/ids.ts';
import { displayDomain, normalizeDomain } from '../util/address.ts';
import { dkimKeyPath, generateDkimKey, writeDkimKey, type DkimAlgorithm } from '../dkim/keys.ts';
import { recordsForDomain, type DnsRecord } from '../dns/records.ts';
import { mtaStsPolicy, mtaStsRecordId } from '../mtasts/index.ts';
import { clientSettings } from '../autoconfig/settings.ts';
import { syncUsersFile } from '../dovecot/sync.ts';
import { endSessions } from './sessions.ts';
import type { ServiceContext } from './context.ts';
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';

export interface DkimKeyInfo {
  selector: string;
  algorithm: DkimAlgorithm;
  publicKey: string;
  privateKeyPath: string;
  /** Signing now (state 'active'). */
  active: boolean;
  /** Rotation (src/dkim/rotate.ts): pending (published, not yet signing), active, retiring (published for the grace period), removed. */
  state: 'pending' | 'active' | 'retiring' | 'removed';
}

export interface Domain {
  id: string;
  name: string;
  unicodeName: string;
  outboundEnabled: boolean;
  createdAt: string;
  lastVerifiedAt: string | null;
  mailboxCount: number;
  aliasCount: number;
  catchAll: string[] | null;
  dkim: DkimKeyInfo[];
}

interface DomainRow {
  id: string;
  name: string;
  unicode_name: string;
  outbound_enabled: number;
  created_at: string;
  last_verified_at: string | null;
}

function toDomain(ctx: ServiceContext, r: DomainRow): Domain {
  const { db } = ctx;
  const keys = db
    .prepare('SELECT selector, algorithm, public_key, private_key_path, active, state FROM dkim_keys WHERE domain_id = ? ORDER BY algorithm DESC, created_at')
    .all(r.id) as { selector: string; algorithm: DkimAlgorithm; public_key: string; private_key_path: string; active: number; state: DkimKeyInfo['state'] }[];
  const catchAll = db.prepare('SELECT targets FROM aliases WHERE address = ?').pluck().get(`*@${r.name}`) as string | undefined;
  return {
    id: r.id,
    name: r.name,
    unicodeName: r.unicode_name,
    outboundEnabled: r.outbound_enabled === 1,
    createdAt: r.created_at,
    lastVerifiedAt: r.last_verified_at,
    mailboxCount: db.prepare('SELECT count(*) FROM mailboxes WHERE domain_id = ?').pluck().get(r.id) as number,
    aliasCount: db.prepare("SELECT count(*) FROM aliases WHERE domain_id = ? AND address NOT LIKE '*@%'").pluck().get(r.id) as number,
    catchAll: catchAll ? JSON.parse(catchAll) : null,
    dkim: keys.map((k) => ({ selector: k.selector, algorithm: k.algorithm, publicKey: k.public_key, privateKeyPath: k.private_key_path, active: k.active === 1, state: k.state })),
  };
}

/** Finds a domain by id or by name (any case, Unicode or A-label). */
export function findDomain(ctx: ServiceContext, idOrName: string): Domain | null {
  let row = ctx.db.prepare('SELECT * FROM domains WHERE id = ?').get(idOrName) as DomainRow | undefined;
  if (!row) {
    let name: string;
    try {
      name = normalizeDomain(idOrName);
    } catch {
      return null;
    }
    row = ctx.db.prepare('SELECT * FROM domains WHERE name = ?').get(name) as DomainRow | undefined;
  }
  return row ? toDomain(ctx, row) : null;
}

export function getDomain(ctx: ServiceContext, idOrName: string): Domain {
  const d = findDomain(ctx, idOrName);
  if (!d) throw new LetterboxError('not_found', `no domain "${idOrName}"; see 'letterbox domain list'`);
  return d;
}

export function listDomains(ctx: ServiceContext, opts: { names?: string[] } = {}): Domain[] {
  const rows = ctx.db.prepare('SELECT * FROM domains ORDER BY name').all() as DomainRow[];
  return rows.filter((r) => !opts.names || opts.names.includes(r.name)).map((r) => toDomain(ctx, r));
}

/** Adds a domain with two DKIM keys (RSA-2048 and Ed25519, dated selectors). */
export async function addDomain(ctx: ServiceContext, input: string): Promise<Domain> {
  const name = normalizeDomain(input);
  if (findDomain(ctx, name)) throw new LetterboxError('conflict', `domain ${name} already exists`);
  const now = new Date(ctx.clock.now());
  const keys = await Promise.all((['rsa', 'ed25519'] as const).map((a) => generateDkimKey(a, now)));
  const id = newId('dom');
  const created = isoNow(ctx.clock);
  const written: { selector: string; path: string; k: (typeof keys)[number] }[] = [];
  for (const k of keys) {
    // A domain removed and re-added in the same month must not reuse a published selector.
    let selector = k.selector;
    for (let n = 2; existsSync(dkimKeyPath(ctx.config.data_dir, name, selector)); n++) selector = `${k.selector}${n}`;
    const path = dkimKeyPath(ctx.config.data_dir, name, selector);
    writeDkimKey(path, k.privateKeyPem);
    written.push({ selector, path, k });
  }
  ctx.db.transaction(() => {
    if (ctx.db.prepare('SELECT 1 FROM domains WHERE name = ?').get(name)) throw new LetterboxError('conflict', `domain ${name} already exists`);
    ctx.db.prepare('INSERT INTO domains (id, name, unicode_name, created_at) VALUES (?, ?, ?, ?)').run(id, name, displayDomain(name), created);
    for (const w of written) {
      ctx.db
        .prepare('INSERT INTO dkim_keys (id, domain_id, selector, algorithm, private_key_path, public_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(newId('dk'), id, w.selector, w.k.algorithm, w.path, w.k.publicKey, created);
    }
  }).immediate();
  ctx.log.info({ domain: name, id }, 'domain added');
  return getDomain(ctx, id);
}

/**
 * Removes a domain. Refused while it has mailboxes unless force. With force its mailboxes and aliases
 * go too (they can no longer log in or receive), but their stored mail stays on disk under
 * data_dir/mail/<domain>/ and is served again if the domain and mailboxes are re-created.
 */
export function removeDomain(ctx: ServiceContext, idOrName: string, opts: { force?: boolean } = {}): Domain {
  const d = getDomain(ctx, idOrName);
  if (d.mailboxCount > 0 && !opts.force) {
    throw new LetterboxError('conflict', `domain ${d.name} still has ${d.mailboxCount} mailbox(es); remove them first or use --force (mail stays on disk)`);
  }
  // Their open IMAP sessions end too, as when a mailbox is removed on its own.
  const addresses = (ctx.db.prepare('SELECT address FROM mailboxes WHERE domain_id = ?').all(d.id) as { address: string }[]).map((r) => r.address);
  ctx.db.transaction(() => {
    ctx.db.prepare('DELETE FROM aliases WHERE domain_id = ?').run(d.id);
    ctx.db.prepare('DELETE FROM mailboxes WHERE domain_id = ?').run(d.id);
    ctx.db.prepare('DELETE FROM dkim_keys WHERE domain_id = ?').run(d.id);
    ctx.db.prepare('DELETE FROM domains WHERE id = ?').run(d.id);
    syncUsersFile(ctx.db, ctx.config.data_dir);
  }).immediate();
  ctx.log.info({ domain: d.name, id: d.id, force: !!opts.force }, 'domain removed');
  for (const a of addresses) endSessions(ctx, a);
  return d;
}

export function setOutbound(ctx: ServiceContext, idOrName: string, enabled: boolean): Domain {
  const d = getDomain(ctx, idOrName);
  ctx.db.prepare('UPDATE domains SET outbound_enabled = ? WHERE id = ?').run(enabled ? 1 : 0, d.id);
  return getDomain(ctx, d.id);
}

export function domainRecords(ctx: ServiceContext, d: Domain): DnsRecord[] {
  return recordsForDomain({
    domain: d.name,
    hostname: ctx.config.hostname,
    ips: ctx.config.ips,
    // Pending keys (published before they sign) and retiring ones (published for the grace period) too.
    dkim: d.dkim.filter((k) => k.state !== 'removed'),
    mtaStsId:
      ctx.config.acme.enabled && ctx.config.acme.mta_sts_mode !== 'none'
        ? mtaStsRecordId(mtaStsPolicy({ mode: ctx.config.acme.mta_sts_mode, mx: [ctx.config.hostname], maxAge: ctx.config.acme.mta_sts_max_age }))
        : null,
    clientPorts: clientSettings(ctx.config),
    autoconfig: ctx.config.acme.enabled,
    sourceIps: ctx.config.outbound.source_ips,
    reportAddresses: { dmarc: ctx.config.reports.dmarc_address, tls: ctx.config.reports.tls_address },
  });
}

/**
 * One page of domains in name order, after `after` (a name), at most `limit`; `names` restricts the
 * set (API keys limited to some domains). The API's list; the CLI lists everything.
 */
export function listDomainsPage(ctx: ServiceContext, opts: { after?: string; limit: number; names?: string[] | null }): Domain[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (opts.after !== undefined) (where.push('name > ?'), args.push(opts.after));
  if (opts.names) (where.push('name IN (SELECT value FROM json_each(?))'), args.push(JSON.stringify(opts.names)));
  const sql = `SELECT * FROM domains${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY name LIMIT ?`;
  return (ctx.db.prepare(sql).all(...args, opts.limit) as DomainRow[]).map((r) => toDomain(ctx, r));
}

/** Stores the result of a DNS verification; `verifiedAt` (all records correct) sets last_verified_at. */
export function saveVerification(ctx: ServiceContext, id: string, result: unknown, verifiedAt: string | null): void {
  if (verifiedAt) ctx.db.prepare('UPDATE domains SET verification = ?, last_verified_at = ? WHERE id = ?').run(JSON.stringify(result), verifiedAt, id);
  else ctx.db.prepare('UPDATE domains SET verification = ? WHERE id = ?').run(JSON.stringify(result), id);
}

/** The id of a domain by its A-label name (routing's hot path: cached statement). */
export function domainIdByName(db: DB, name: string): string | undefined {
  return stmt(db, 'SELECT id FROM domains WHERE name = ?', { pluck: true }).get(name) as string | undefined;
}
