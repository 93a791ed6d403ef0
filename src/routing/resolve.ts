import type { DB } from '../db/index.ts';
import { domainIdByName } from '../services/domains.ts';
import { mailboxForRouting } from '../services/mailbox-queries.ts';
import { aliasTargetsJson } from '../services/aliases.ts';
import { forwardingRow } from '../services/forwarding-store.ts';
import { normalizeDomain } from '../util/address.ts';
import { SmtpReply, reply } from '../mail/reply.ts';
import { OWNER_ONLY_FOLDERS } from '../dovecot/config.ts';
import { srsReverse } from '../mail/srs.ts';

/**
 * Recipient resolution: one address in one of our domains → the places the message goes. The one
 * routing code path: the MX (at RCPT and for DSNs), submission and the API's send (at RCPT and when
 * delivering), the outbound queue (local delivery and its retries) and `/mailboxes/resolve` all use it.
 *
 * Pure apart from reading the database (domains, mailboxes, aliases) through a few prepared,
 * read-only statements; no other I/O. The service layer's find* functions load much more (DKIM keys,
 * counts) than the hot path needs, so the lookups here are lean equivalents.
 */
export type Target =
  | {
      kind: 'local';
      mailboxId: string;
      /** The mailbox address (user@domain, lower-case). */
      address: string;
      local: string;
      domain: string;
      /** Plus-address detail as the sender wrote it (folder names are case-sensitive), or null. */
      detail: string | null;
      quotaBytes: number;
    }
  | {
      kind: 'forward';
      /** External address the message is forwarded to. */
      address: string;
      /** Our domain that forwards (SRS and ARC are done in its name). */
      via: string;
      /** True for bounces returned to an SRS address: sent with the null sender, no SRS. */
      srsBounce?: boolean;
      /**
       * Set when the forward comes from a mailbox's own forwarding (PUT /mailboxes/:id/forwarding),
       * not an alias: the mailbox whose sending caps it counts against, and where the message is
       * stored instead when it must not be forwarded (loop guard, caps).
       */
      mailbox?: { id: string; address: string; local: string; domain: string; quotaBytes: number };
    };

export type Resolution = { ok: true; targets: Target[] } | { ok: false; reply: SmtpReply };

export interface ResolveOptions {
  /** The SRS secret (data_dir/secrets/srs) and clock (days) for SRS0 bounce addresses. */
  srsSecret: string;
  now: number;
  /** Our host name: the bare `RCPT TO:<postmaster>` (RFC 5321 4.5.1) means postmaster@ it or its parent domain. */
  hostname?: string;
  /** Maximum alias nesting. */
  maxDepth?: number;
}

// The three lookups of routing, from the tables' store modules (statements cached per connection).
function statements(db: DB) {
  return {
    domain: { get: (name: string) => domainIdByName(db, name) },
    mailbox: { get: (address: string) => mailboxForRouting(db, address) },
    alias: { get: (address: string) => aliasTargetsJson(db, address) },
    forwarding: { get: (mailboxId: string) => forwardingRow(db, mailboxId) },
  };
}

// RFC 5321 dot-atom local part (plus any non-ASCII for SMTPUTF8). Quoted strings are refused.
const ATOM = /^[a-z0-9!#$&'*+/=?^_`{|}~\-\u0080-\uffff]+$/i;
// Characters that older MTAs interpret as routing (percent hack, bang paths, source routes, quoting).
const ROUTING = /[%!@:"\\\[\]<>,;\s()]/;
const DETAIL = /^[\p{L}\p{N} ._-]{1,64}$/u;
// bob+Sent@ is bob@ (INBOX): the owner-only folders are never a plus-address's folder (any case).
const OWNER_ONLY = new Set(OWNER_ONLY_FOLDERS.map((f) => f.toLowerCase()));

const relayDenied = () => reply(554, '5.7.1', 'Relay access denied: this server accepts mail only for its own domains');
const unknownUser = () => reply(550, '5.1.1', 'No such user here');

export interface ParsedRecipient {
  local: string; // lower-case, without the plus part
  /** Everything after the first '+', as written, or null. */
  plus: string | null;
  /** `plus` when it is usable as a folder name (original case: folder names are case-sensitive). */
  detail: string | null;
  domain: string; // A-label, lower-case
}

/**
 * Strict parse of an RCPT address (smtp-server already removed a source route). Anything that
 * could make an address route elsewhere is refused as relaying, never reinterpreted.
 */
export function parseRecipient(raw: string): ParsedRecipient | SmtpReply {
  const at = raw.lastIndexOf('@');
  if (at <= 0 || at === raw.length - 1) return reply(553, '5.1.3', 'Bad recipient address syntax');
  const rawLocal = raw.slice(0, at);
  const rawDomain = raw.slice(at + 1);
  // Address literals ([192.0.2.1]) and trailing dots are never our domains.
  if (rawDomain.startsWith('[') || rawDomain.endsWith('.')) return relayDenied();
  if (ROUTING.test(rawLocal)) return relayDenied();
  if (rawLocal.length > 64 || !rawLocal.split('.').every((a) => a.length > 0 && ATOM.test(a))) return reply(553, '5.1.3', 'Bad recipient address syntax');
  let domain: string;
  try {
    domain = normalizeDomain(rawDomain);
  } catch {
    return reply(553, '5.1.3', 'Bad recipient address syntax');
  }
  const plus = rawLocal.indexOf('+');
  const base = plus > 0 ? rawLocal.slice(0, plus) : rawLocal;
  const detail = plus > 0 ? rawLocal.slice(plus + 1) : null;
  const folder = detail && DETAIL.test(detail) && !OWNER_ONLY.has(detail.toLowerCase()) ? detail : null;
  return { local: base.toLowerCase(), plus: detail, detail: folder, domain };
}

/** Resolves one RCPT address. Aliases are expanded (loops detected); catch-alls apply last. */
export function resolveRecipient(db: DB, raw: string, opts: ResolveOptions): Resolution {
  const st = statements(db);
  if (raw.toLowerCase() === 'postmaster') {
    const h = (opts.hostname ?? '').toLowerCase();
    const domain = [h, h.slice(h.indexOf('.') + 1)].find((d) => d && st.domain.get(d) !== undefined);
    if (!domain) return { ok: false, reply: unknownUser() };
    raw = `postmaster@${domain}`;
  }
  const p = parseRecipient(raw);
  if (p instanceof SmtpReply) return { ok: false, reply: p };
  if (st.domain.get(p.domain) === undefined) return { ok: false, reply: relayDenied() };

  // Bounces coming back to an SRS address we created when forwarding.
  if (p.local.startsWith('srs0=')) {
    const original = srsReverse(`${p.local}${p.plus !== null ? '+' + p.plus : ''}@${p.domain}`, opts.srsSecret, opts.now);
    if (!original) return { ok: false, reply: unknownUser() };
    return { ok: true, targets: [{ kind: 'forward', address: original, via: p.domain, srsBounce: true }] };
  }

  const state = { loop: false, disabled: false };
  const out = new Map<string, Target>();
  // An alias may itself contain '+' (info+sales@): the exact address wins over plus-addressing.
  const exact = p.plus !== null && st.alias.get(`${p.local}+${p.plus.toLowerCase()}@${p.domain}`) !== undefined;
  if (exact) expand(st, `${p.local}+${p.plus!.toLowerCase()}`, p.domain, null, new Set(), 0, opts.maxDepth ?? 10, state, out, true);
  else expand(st, p.local, p.domain, p.detail, new Set(), 0, opts.maxDepth ?? 10, state, out, true);
  if (out.size > 0) return { ok: true, targets: [...out.values()] };
  if (state.loop) return { ok: false, reply: reply(550, '5.4.6', 'Alias loop detected') };
  if (state.disabled) return { ok: false, reply: reply(550, '5.2.1', 'Mailbox disabled, not accepting messages') };
  return { ok: false, reply: unknownUser() };
}

function expand(
  st: ReturnType<typeof statements>,
  local: string,
  domain: string,
  detail: string | null,
  seen: Set<string>,
  depth: number,
  maxDepth: number,
  state: { loop: boolean; disabled: boolean },
  out: Map<string, Target>,
  top: boolean,
): void {
  const address = `${local}@${domain}`;
  if (seen.has(address) || depth > maxDepth) {
    state.loop = true;
    return;
  }
  seen.add(address);
  const mbx = st.mailbox.get(address) as { id: string; disabled: number; quota_bytes: number } | undefined;
  if (mbx) {
    if (mbx.disabled) {
      state.disabled = true;
      return;
    }
    const key = `L:${mbx.id}:${top ? (detail ?? '') : ''}`;
    // The mailbox's own forwarding (issue #17): its targets, plus the mailbox itself with keepCopy.
    const fwd = st.forwarding.get(mbx.id);
    if (!fwd || fwd.keep_copy) {
      if (!out.has(key)) out.set(key, { kind: 'local', mailboxId: mbx.id, address, local, domain, detail: top ? detail : null, quotaBytes: mbx.quota_bytes });
    }
    if (fwd) {
      const mailbox = { id: mbx.id, address, local, domain, quotaBytes: mbx.quota_bytes };
      expandTargets(st, JSON.parse(fwd.targets) as string[], domain, seen, depth, maxDepth, state, out, mailbox);
    }
    return;
  }
  const targets = (st.alias.get(address) ?? st.alias.get(`*@${domain}`)) as string | undefined;
  if (targets === undefined) return;
  expandTargets(st, JSON.parse(targets) as string[], domain, seen, depth, maxDepth, state, out, undefined);
}

/** An alias's or a forwarding mailbox's targets: ours are expanded further, others forwarded. */
function expandTargets(
  st: ReturnType<typeof statements>,
  targets: string[],
  domain: string,
  seen: Set<string>,
  depth: number,
  maxDepth: number,
  state: { loop: boolean; disabled: boolean },
  out: Map<string, Target>,
  mailbox: Extract<Target, { kind: 'forward' }>['mailbox'],
): void {
  for (const t of targets) {
    const at = t.lastIndexOf('@');
    const tl = t.slice(0, at).toLowerCase();
    const td = t.slice(at + 1).toLowerCase();
    if (st.domain.get(td) !== undefined) {
      expand(st, tl, td, null, seen, depth + 1, maxDepth, state, out, false);
    } else if (!out.has(`F:${t}`)) {
      out.set(`F:${t}`, mailbox ? { kind: 'forward', address: t, via: domain, mailbox } : { kind: 'forward', address: t, via: domain });
    }
  }
}

/** Whether `domain` (A-label, lower-case) is one of ours. */
export function isLocalDomain(db: DB, domain: string): boolean {
  return statements(db).domain.get(domain) !== undefined;
}

/** The LMTP recipient for a local target: `user+Detail@domain` makes Dovecot file it into Detail. */
export function lmtpAddress(t: Extract<Target, { kind: 'local' }>): string {
  return t.detail ? `${t.local}+${t.detail}@${t.domain}` : t.address;
}

/** A successful resolution split by how it is delivered: LMTP recipients and external forward targets. */
export function splitTargets(targets: Target[]): { lmtp: string[]; forwards: string[] } {
  const lmtp: string[] = [];
  const forwards: string[] = [];
  for (const t of targets) (t.kind === 'local' ? lmtp.push(lmtpAddress(t)) : forwards.push(t.address));
  return { lmtp: [...new Set(lmtp)], forwards: [...new Set(forwards)] };
}
