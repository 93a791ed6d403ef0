// The verdicts our MX reached for each message it delivered (SPF, DKIM, DMARC, ARC and, when the
// spam scan fills it, spam), stored at delivery under the id of the X-Letterbox-Id header it adds.
// The messages API serves these: nothing a sender writes into a header can change them.
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import { commitWithoutFsync } from '../db/group-commit.ts';

/** The header Letterbox adds at acceptance (any copy that came with the message is removed first). */
export const VERDICT_ID_HEADER = 'X-Letterbox-Id';

export interface AuthVerdicts {
  /** Our host name: the authserv-id of the Authentication-Results header we wrote. */
  authservId: string;
  spf: { result: string; domain: string | null };
  dkim: { result: string; domain: string | null; selector: string | null }[];
  dmarc: { result: string; domain: string | null; policy: string | null };
  arc: { result: string };
  /** The Authentication-Results header we wrote, unfolded (for display). */
  header: string;
}

export interface Verdicts {
  auth: AuthVerdicts;
  /** The spam verdict (shape owned by the spam scan), or null when the message was not scanned. */
  spam: unknown | null;
}

export interface StoredVerdicts extends Verdicts {
  id: string;
  /** The mailboxes the message was delivered to; a copy found in another mailbox is not trusted. */
  mailboxIds: string[];
  createdAt: number;
}

/**
 * Stores (or replaces) the verdicts of message `id`. Written before the LMTP hand-off, without an
 * fsync of its own: the mail is not accepted yet, and a row lost in a power cut only makes the API
 * fall back to reading our own Authentication-Results header. `spam` left out keeps a stored one.
 */
export function saveVerdicts(db: DB, id: string, v: { auth: AuthVerdicts; spam?: unknown; mailboxIds?: string[]; now?: number }): void {
  commitWithoutFsync(db, () => {
    stmt(
      db,
      `INSERT INTO message_verdicts (id, mailbox_ids, auth, spam, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET mailbox_ids = excluded.mailbox_ids, auth = excluded.auth, spam = coalesce(excluded.spam, message_verdicts.spam)`,
    ).run(id, JSON.stringify(v.mailboxIds ?? []), JSON.stringify(v.auth), v.spam === undefined || v.spam === null ? null : JSON.stringify(v.spam), v.now ?? Date.now());
  });
}

/** Sets the spam verdict of a stored message (false when there is no row for `id`). */
export function saveSpamVerdict(db: DB, id: string, spam: unknown): boolean {
  return stmt(db, 'UPDATE message_verdicts SET spam = ? WHERE id = ?').run(JSON.stringify(spam), id).changes > 0;
}

export function getVerdicts(db: DB, id: string): StoredVerdicts | null {
  const r = stmt(db, 'SELECT id, mailbox_ids, auth, spam, created_at FROM message_verdicts WHERE id = ?').get(id) as
    | { id: string; mailbox_ids: string; auth: string; spam: string | null; created_at: number }
    | undefined;
  if (!r) return null;
  return { id: r.id, mailboxIds: JSON.parse(r.mailbox_ids), auth: JSON.parse(r.auth), spam: r.spam === null ? null : JSON.parse(r.spam), createdAt: r.created_at };
}

/** Removes rows older than `before` (ms); returns how many. */
export function pruneVerdicts(db: DB, before: number): number {
  return stmt(db, 'DELETE FROM message_verdicts WHERE created_at < ?').run(before).changes;
}

/** The AuthVerdicts of a mailauth `authenticate()` result (what our MX concluded). */
export function authVerdictsOf(auth: any, authservId: string): AuthVerdicts {
  const spf = auth?.spf;
  const dm = auth?.dmarc;
  const arc = auth?.arc;
  return {
    authservId,
    spf: { result: String(spf?.status?.result ?? 'none'), domain: spf?.domain ?? null },
    dkim: (auth?.dkim?.results ?? []).map((r: any) => ({ result: String(r?.status?.result ?? 'none'), domain: r?.signingDomain ?? null, selector: r?.selector ?? null })),
    dmarc: { result: String(dm?.status?.result ?? 'none'), domain: dm?.domain ?? dm?.status?.header?.from ?? null, policy: dm?.policy ?? null },
    arc: { result: String(arc?.status?.result ?? 'none') },
    header: String(auth?.headers ?? '')
      .split(/\r\n(?![ \t])/)
      .find((h: string) => /^authentication-results:/i.test(h))
      ?.replace(/^authentication-results:\s*/i, '')
      .replace(/\r\n[ \t]+/g, ' ')
      .trim() ?? '',
  };
}
