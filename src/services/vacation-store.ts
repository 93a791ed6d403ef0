// The vacation settings of mailboxes (table mailbox_vacations): the only SQL of the vacation feature.
import { isoNow } from '../clock.ts';
import type { ServiceContext } from './context.ts';

export interface StoredVacation<T> {
  mailboxId: string;
  settings: T;
  updatedAt: string;
}

export function getVacation<T>(ctx: ServiceContext, mailboxId: string): StoredVacation<T> | null {
  const r = ctx.db.prepare('SELECT mailbox_id, settings, updated_at FROM mailbox_vacations WHERE mailbox_id = ?').get(mailboxId) as
    | { mailbox_id: string; settings: string; updated_at: string }
    | undefined;
  return r ? { mailboxId: r.mailbox_id, settings: JSON.parse(r.settings) as T, updatedAt: r.updated_at } : null;
}

export function saveVacation<T>(ctx: ServiceContext, mailboxId: string, settings: T): StoredVacation<T> {
  const updatedAt = isoNow(ctx.clock);
  ctx.db
    .prepare('INSERT INTO mailbox_vacations (mailbox_id, settings, updated_at) VALUES (?, ?, ?) ON CONFLICT(mailbox_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at')
    .run(mailboxId, JSON.stringify(settings), updatedAt);
  return { mailboxId, settings, updatedAt };
}

export function deleteVacation(ctx: ServiceContext, mailboxId: string): boolean {
  return ctx.db.prepare('DELETE FROM mailbox_vacations WHERE mailbox_id = ?').run(mailboxId).changes > 0;
}

/** Every stored vacation with its mailbox address (for rewriting the scripts at start). */
export function listVacations<T>(ctx: ServiceContext): (StoredVacation<T> & { address: string })[] {
  const rows = ctx.db.prepare('SELECT v.mailbox_id, v.settings, v.updated_at, m.address FROM mailbox_vacations v JOIN mailboxes m ON m.id = v.mailbox_id').all() as {
    mailbox_id: string;
    settings: string;
    updated_at: string;
    address: string;
  }[];
  return rows.map((r) => ({ mailboxId: r.mailbox_id, settings: JSON.parse(r.settings) as T, updatedAt: r.updated_at, address: r.address }));
}
