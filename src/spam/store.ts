// The only module that runs SQL on the spam tables (migrations 0600_spam.sql, 1000_spam_greylist.sql).
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import type { SpamOverride } from './policy.ts';

export type SpamScope = 'domain' | 'mailbox';

export function getOverride(db: DB, scope: SpamScope, targetId: string): SpamOverride | null {
  const r = stmt(db, 'SELECT mode, reject, junk, greylist, greylisting FROM spam_settings WHERE scope = ? AND target_id = ?').get(scope, targetId) as SpamOverride | undefined;
  return r ?? null;
}

/** The domain and mailbox overrides for one mailbox, in one query. */
export function overridesFor(db: DB, mailboxId: string): { domain: SpamOverride | null; mailbox: SpamOverride | null } {
  const rows = stmt(
    db,
    `SELECT s.scope, s.mode, s.reject, s.junk, s.greylist, s.greylisting FROM spam_settings s
       WHERE (s.scope = 'mailbox' AND s.target_id = ?)
          OR (s.scope = 'domain' AND s.target_id = (SELECT domain_id FROM mailboxes WHERE id = ?))`,
  ).all(mailboxId, mailboxId) as (SpamOverride & { scope: SpamScope })[];
  const pick = (scope: SpamScope) => {
    const r = rows.find((x) => x.scope === scope);
    return r ? { mode: r.mode, reject: r.reject, junk: r.junk, greylist: r.greylist, greylisting: r.greylisting } : null;
  };
  return { domain: pick('domain'), mailbox: pick('mailbox') };
}

export function setOverride(db: DB, scope: SpamScope, targetId: string, o: SpamOverride, now: string): void {
  if (o.mode === null && o.reject === null && o.junk === null && o.greylist === null && o.greylisting === null) {
    stmt(db, 'DELETE FROM spam_settings WHERE scope = ? AND target_id = ?').run(scope, targetId);
    return;
  }
  stmt(
    db,
    `INSERT INTO spam_settings (scope, target_id, mode, reject, junk, greylist, greylisting, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (scope, target_id) DO UPDATE SET mode = excluded.mode, reject = excluded.reject, junk = excluded.junk,
         greylist = excluded.greylist, greylisting = excluded.greylisting, updated_at = excluded.updated_at`,
  ).run(scope, targetId, o.mode, o.reject, o.junk, o.greylist, o.greylisting, now);
}

/**
 * True when a DMARC pass from this domain was seen before `now`; records this one. last_seen is kept
 * to the day: a domain already seen today is not written again, so the MX does not pay a SQLite
 * commit (an fsync, synchronous = FULL) for every message from a known sender.
 */
export function seenDomainBefore(db: DB, domain: string, now: string): boolean {
  const last = stmt(db, 'SELECT last_seen FROM spam_seen_domains WHERE domain = ?', { pluck: true }).get(domain) as string | undefined;
  if (last !== undefined && last.slice(0, 10) === now.slice(0, 10)) return true;
  stmt(db, 'INSERT INTO spam_seen_domains (domain, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT (domain) DO UPDATE SET last_seen = excluded.last_seen').run(domain, now, now);
  return last !== undefined;
}
