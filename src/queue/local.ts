// Local recipients of outgoing mail: which Dovecot mailboxes (and external forward targets) an
// address in one of our domains stands for. Mailbox (plus-address kept for Dovecot's folder
// filing), alias (targets expanded, nested up to 5 levels), catch-all; else unknown.
import type { DB } from '../db/index.ts';
import { parseAddress, splitDetail } from '../util/address.ts';

export interface LocalExpansion {
  /** Addresses to hand to Dovecot over LMTP. */
  mailboxes: string[];
  /** External addresses (alias targets outside our domains) to queue. */
  external: string[];
  /** Disabled mailboxes among the targets (refused). */
  disabled: string[];
}

export function isLocalDomain(db: DB, domain: string): boolean {
  return !!db.prepare('SELECT 1 FROM domains WHERE name = ?').get(domain);
}

/** null when the address is in a local domain but nothing receives it. */
export function expandLocal(db: DB, address: string, depth = 0): LocalExpansion | null {
  const a = parseAddress(address);
  const { base } = splitDetail(a);
  const mb = db.prepare('SELECT disabled FROM mailboxes WHERE address = ?').get(base.address) as { disabled: number } | undefined;
  if (mb) return mb.disabled ? { mailboxes: [], external: [], disabled: [base.address] } : { mailboxes: [a.address], external: [], disabled: [] };
  const alias = (db.prepare('SELECT targets FROM aliases WHERE address = ?').pluck().get(a.address) ??
    db.prepare('SELECT targets FROM aliases WHERE address = ?').pluck().get(base.address) ??
    db.prepare('SELECT targets FROM aliases WHERE address = ?').pluck().get(`*@${a.domain}`)) as string | undefined;
  if (!alias || depth >= 5) return null;
  const out: LocalExpansion = { mailboxes: [], external: [], disabled: [] };
  for (const t of JSON.parse(alias) as string[]) {
    const ta = parseAddress(t);
    if (isLocalDomain(db, ta.domain)) {
      const sub = expandLocal(db, ta.address, depth + 1);
      if (sub) (out.mailboxes.push(...sub.mailboxes), out.external.push(...sub.external), out.disabled.push(...sub.disabled));
    } else out.external.push(ta.address);
  }
  out.mailboxes = [...new Set(out.mailboxes)];
  out.external = [...new Set(out.external)];
  return out.mailboxes.length || out.external.length || out.disabled.length ? out : null;
}
