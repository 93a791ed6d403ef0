import { LetterboxError } from '../errors.ts';
import { isoNow } from '../clock.ts';
import { newId } from '../util/ids.ts';
import { parseAddress } from '../util/address.ts';
import { checkNewAddress } from './local-part.ts';
import { findDomain } from './domains.ts';
import type { ServiceContext } from './context.ts';
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';

export interface Alias {
  id: string;
  address: string; // '*@domain' for the catch-all
  domain: string;
  domainId: string;
  targets: string[];
  catchAll: boolean;
  createdAt: string;
}

interface Row {
  id: string;
  address: string;
  domain_id: string;
  domain: string;
  targets: string;
  created_at: string;
}

const SELECT = 'SELECT a.*, d.name AS domain FROM aliases a JOIN domains d ON d.id = a.domain_id';

function toAlias(r: Row): Alias {
  return { id: r.id, address: r.address, domain: r.domain, domainId: r.domain_id, targets: JSON.parse(r.targets), catchAll: r.address.startsWith('*@'), createdAt: r.created_at };
}

export function findAlias(ctx: ServiceContext, idOrAddress: string): Alias | null {
  let row = ctx.db.prepare(`${SELECT} WHERE a.id = ?`).get(idOrAddress) as Row | undefined;
  if (!row && idOrAddress.includes('@')) {
    try {
      row = ctx.db.prepare(`${SELECT} WHERE a.address = ?`).get(parseAddress(idOrAddress, { allowWildcard: true }).address) as Row | undefined;
    } catch {
      return null;
    }
  }
  return row ? toAlias(row) : null;
}

export function getAlias(ctx: ServiceContext, idOrAddress: string): Alias {
  const a = findAlias(ctx, idOrAddress);
  if (!a) throw new LetterboxError('not_found', `no alias "${idOrAddress}"; see 'letterbox alias list'`);
  return a;
}

export function listAliases(ctx: ServiceContext, f: { domain?: string; domains?: string[] } = {}): Alias[] {
  return (ctx.db.prepare(`${SELECT} ORDER BY a.address`).all() as Row[])
    .map(toAlias)
    .filter((a) => (!f.domain || a.domain === f.domain) && (!f.domains || f.domains.includes(a.domain)));
}

/**
 * Adds an alias: address → one or more targets (local mailboxes, other aliases, or external
 * addresses, which are forwarded). `*@domain` is the domain's catch-all. Re-adding replaces targets
 * only with `replace`.
 */
export function addAlias(ctx: ServiceContext, address: string, targets: string[], opts: { replace?: boolean } = {}): Alias {
  checkNewAddress(address, { kind: 'alias', catchAll: true });
  const addr = parseAddress(address, { allowWildcard: true });
  const domain = findDomain(ctx, addr.domain);
  if (!domain) throw new LetterboxError('not_found', `domain ${addr.domain} is not set up here; add it first with 'letterbox domain add ${addr.domain}'`);
  if (targets.length === 0) throw new LetterboxError('validation_error', 'an alias needs at least one target address');
  if (targets.length > 100) throw new LetterboxError('validation_error', 'an alias may have at most 100 targets');
  const normalized = [...new Set(targets.map((t) => parseAddress(t).address))];
  if (normalized.includes(addr.address)) throw new LetterboxError('validation_error', `alias ${addr.address} cannot point to itself`);
  let id: string = newId('als');
  ctx.db.transaction(() => {
    if (ctx.db.prepare('SELECT 1 FROM mailboxes WHERE address = ?').get(addr.address)) {
      throw new LetterboxError('conflict', `${addr.address} is a mailbox; an alias cannot shadow it`);
    }
    const existing = ctx.db.prepare('SELECT id FROM aliases WHERE address = ?').pluck().get(addr.address) as string | undefined;
    if (existing && !opts.replace) throw new LetterboxError('conflict', `alias ${addr.address} already exists`);
    if (existing) {
      id = existing;
      ctx.db.prepare('UPDATE aliases SET targets = ? WHERE id = ?').run(JSON.stringify(normalized), id);
    } else {
      ctx.db.prepare('INSERT INTO aliases (id, domain_id, address, targets, created_at) VALUES (?, ?, ?, ?, ?)').run(id, domain.id, addr.address, JSON.stringify(normalized), isoNow(ctx.clock));
    }
  }).immediate();
  ctx.log.info({ alias: addr.address, targets: normalized.length }, 'alias saved');
  return getAlias(ctx, id);
}

export function removeAlias(ctx: ServiceContext, idOrAddress: string): Alias {
  const a = getAlias(ctx, idOrAddress);
  ctx.db.prepare('DELETE FROM aliases WHERE id = ?').run(a.id);
  ctx.log.info({ alias: a.address }, 'alias removed');
  return a;
}

/** One page of aliases in address order (the API's list), optionally for one domain or a set of them. */
export function listAliasesPage(ctx: ServiceContext, f: { domain?: string; domains?: string[] | null; after?: string; limit: number }): Alias[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (f.domain) (where.push('d.name = ?'), args.push(f.domain));
  if (f.domains) (where.push('d.name IN (SELECT value FROM json_each(?))'), args.push(JSON.stringify(f.domains)));
  if (f.after !== undefined) (where.push('a.address > ?'), args.push(f.after));
  const sql = `${SELECT}${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY a.address LIMIT ?`;
  return (ctx.db.prepare(sql).all(...args, f.limit) as Row[]).map(toAlias);
}

/** Aliases whose only target is this mailbox (a catch-all never counts: it would cover every address). */
export function aliasesOnlyTo(db: DB, mailboxAddress: string): string[] {
  return stmt(db, "SELECT address FROM aliases WHERE targets = ? AND address NOT LIKE '*@%'", { pluck: true }).all(JSON.stringify([mailboxAddress])) as string[];
}

/** An alias's targets as stored (a JSON array), if the alias exists (routing's hot path). */
export function aliasTargetsJson(db: DB, address: string): string | undefined {
  return stmt(db, 'SELECT targets FROM aliases WHERE address = ?', { pluck: true }).get(address) as string | undefined;
}
