// Sender-address authorization: which addresses an authenticated mailbox may send as.
import type { DB } from '../db/index.ts';
import { aliasesOnlyTo } from '../services/aliases.ts';
import { parseAddress, splitDetail } from '../util/address.ts';

export interface OwnedAddresses {
  mailbox: string; // the mailbox's own address
  aliases: string[]; // aliases whose only target is the mailbox
}

/** Pure: is `address` the mailbox itself (plus-addresses included) or one of its own aliases? */
export function isAuthorizedSender(address: string, owned: OwnedAddresses): boolean {
  let a;
  try {
    a = parseAddress(address);
  } catch {
    return false;
  }
  const base = splitDetail(a).base.address;
  return base === owned.mailbox || owned.aliases.includes(a.address) || owned.aliases.includes(base);
}

/** Aliases that point only to this mailbox (a catch-all never counts: it would cover every address). */
export function ownedAddresses(db: DB, mailboxAddress: string): OwnedAddresses {
  const aliases = aliasesOnlyTo(db, mailboxAddress);
  return { mailbox: mailboxAddress, aliases };
}
