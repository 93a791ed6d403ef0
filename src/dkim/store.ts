// SQL on dkim_keys for key rotation (migrations 0001 and 0901). Adding a domain's first keys and
// removing them with the domain stay in src/services/domains.ts.
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import { newId } from '../util/ids.ts';
import type { DkimAlgorithm } from './keys.ts';

export type DkimKeyState = 'pending' | 'active' | 'retiring' | 'removed';

export interface DkimKeyRow {
  id: string;
  domainId: string;
  selector: string;
  algorithm: DkimAlgorithm;
  privateKeyPath: string;
  publicKey: string;
  state: DkimKeyState;
  createdAt: string;
  activatedAt: string | null;
  retiredAt: string | null;
  removedAt: string | null;
}

const COLS = 'id, domain_id AS domainId, selector, algorithm, private_key_path AS privateKeyPath, public_key AS publicKey, state, created_at AS createdAt, activated_at AS activatedAt, retired_at AS retiredAt, removed_at AS removedAt';

/** Every key of a domain, whatever its state: oldest first. */
export function keysOf(db: DB, domainId: string): DkimKeyRow[] {
  return stmt(db, `SELECT ${COLS} FROM dkim_keys WHERE domain_id = ? ORDER BY created_at, algorithm DESC`).all(domainId) as DkimKeyRow[];
}

/** Keys in `state` across all domains (the daily job). */
export function keysInState(db: DB, state: DkimKeyState): DkimKeyRow[] {
  return stmt(db, `SELECT ${COLS} FROM dkim_keys WHERE state = ? ORDER BY domain_id, created_at`).all(state) as DkimKeyRow[];
}

export function selectorTaken(db: DB, domainId: string, selector: string): boolean {
  return stmt(db, 'SELECT 1 FROM dkim_keys WHERE domain_id = ? AND selector = ?', { pluck: true }).get(domainId, selector) !== undefined;
}

export function insertPendingKey(db: DB, k: { domainId: string; selector: string; algorithm: DkimAlgorithm; privateKeyPath: string; publicKey: string; createdAt: string }): void {
  stmt(db, "INSERT INTO dkim_keys (id, domain_id, selector, algorithm, private_key_path, public_key, active, state, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, 'pending', ?)")
    .run(newId('dk'), k.domainId, k.selector, k.algorithm, k.privateKeyPath, k.publicKey, k.createdAt);
}

/** The switch: the domain's active keys start retiring and its pending keys sign from now on. */
export function activatePending(db: DB, domainId: string, now: string): void {
  stmt(db, "UPDATE dkim_keys SET state = 'retiring', active = 0, retired_at = ? WHERE domain_id = ? AND state = 'active'").run(now, domainId);
  stmt(db, "UPDATE dkim_keys SET state = 'active', active = 1, activated_at = ? WHERE domain_id = ? AND state = 'pending'").run(now, domainId);
}

export function markRemoved(db: DB, id: string, now: string): void {
  stmt(db, "UPDATE dkim_keys SET state = 'removed', active = 0, removed_at = ? WHERE id = ?").run(now, id);
}
