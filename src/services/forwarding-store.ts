// The forwarding settings of mailboxes (table mailbox_forwarding): the only SQL of the feature.
import { isoNow } from '../clock.ts';
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import type { ServiceContext } from './context.ts';

export interface StoredForwarding {
  mailboxId: string;
  targets: string[];
  keepCopy: boolean;
  updatedAt: string;
}

/** Routing's hot path: a mailbox's forwarding row as stored, if it has one. */
export function forwardingRow(db: DB, mailboxId: string): { targets: string; keep_copy: number } | undefined {
  return stmt(db, 'SELECT targets, keep_copy FROM mailbox_forwarding WHERE mailbox_id = ?').get(mailboxId) as { targets: string; keep_copy: number } | undefined;
}

export function getForwarding(ctx: ServiceContext, mailboxId: string): StoredForwarding | null {
  const r = ctx.db.prepare('SELECT targets, keep_copy, updated_at FROM mailbox_forwarding WHERE mailbox_id = ?').get(mailboxId) as
    | { targets: string; keep_copy: number; updated_at: string }
    | undefined;
  return r ? { mailboxId, targets: JSON.parse(r.targets) as string[], keepCopy: r.keep_copy === 1, updatedAt: r.updated_at } : null;
}

export function saveForwarding(ctx: ServiceContext, mailboxId: string, targets: string[], keepCopy: boolean): StoredForwarding {
  const updatedAt = isoNow(ctx.clock);
  ctx.db
    .prepare(
      'INSERT INTO mailbox_forwarding (mailbox_id, targets, keep_copy, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(mailbox_id) DO UPDATE SET targets = excluded.targets, keep_copy = excluded.keep_copy, updated_at = excluded.updated_at',
    )
    .run(mailboxId, JSON.stringify(targets), keepCopy ? 1 : 0, updatedAt);
  return { mailboxId, targets, keepCopy, updatedAt };
}

export function deleteForwarding(ctx: ServiceContext, mailboxId: string): boolean {
  return ctx.db.prepare('DELETE FROM mailbox_forwarding WHERE mailbox_id = ?').run(mailboxId).changes > 0;
}
