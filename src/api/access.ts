import { LetterboxError } from '../errors.ts';
import { findDomain, type Domain } from '../services/domains.ts';
import { findMailbox, type Mailbox } from '../services/mailboxes.ts';
import { findAlias, type Alias } from '../services/aliases.ts';
import { normalizeDomain } from '../util/address.ts';
import type { ApiKey } from '../auth/apikeys.ts';
import type { ApiRequest } from './types.ts';
import type { ThreadContext } from '../context.ts';

/**
 * Domain restriction of API keys: a key limited to some domains sees and changes only those; for
 * anything else it gets exactly the 404 a missing resource gives, so it learns nothing about it.
 */
export function canSeeDomain(key: ApiKey | null, domain: string): boolean {
  return !key?.domains || key.domains.includes(domain);
}

/** The domain list filter for a key: null = no restriction. */
export function keyDomains(key: ApiKey | null): string[] | null {
  return key?.domains ?? null;
}

export function visibleDomain(req: ApiRequest<any, any, any, ThreadContext>, idOrName: string): Domain {
  const d = findDomain(req.app, idOrName);
  if (!d || !canSeeDomain(req.key, d.name)) throw new LetterboxError('not_found', `no domain "${idOrName}"; see GET /api/v1/domains`);
  return d;
}

export function visibleMailbox(req: ApiRequest<any, any, any, ThreadContext>, idOrAddress: string): Mailbox {
  const m = findMailbox(req.app, idOrAddress);
  if (!m || !canSeeDomain(req.key, m.domain)) throw new LetterboxError('not_found', `no mailbox "${idOrAddress}"; see GET /api/v1/mailboxes`);
  return m;
}

export function visibleAlias(req: ApiRequest<any, any, any, ThreadContext>, idOrAddress: string): Alias {
  const a = findAlias(req.app, idOrAddress);
  if (!a || !canSeeDomain(req.key, a.domain)) throw new LetterboxError('not_found', `no alias "${idOrAddress}"; see GET /api/v1/aliases`);
  return a;
}

/** For creating things in a domain: the domain of `address` must exist and be visible to the key. */
export function requireVisibleDomainOf(req: ApiRequest<any, any, any, ThreadContext>, address: string): Domain {
  const at = address.lastIndexOf('@');
  let name: string;
  try {
    name = normalizeDomain(at >= 0 ? address.slice(at + 1) : address);
  } catch {
    throw new LetterboxError('validation_error', `invalid address "${address}": expected user@domain`);
  }
  const d = findDomain(req.app, name);
  if (!d || !canSeeDomain(req.key, d.name)) {
    throw new LetterboxError('not_found', `domain ${name} is not set up here; add it first with POST /api/v1/domains`);
  }
  return d;
}
