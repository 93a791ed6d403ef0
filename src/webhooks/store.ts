// Webhook subscriptions and their delivery log (tables from migration 0400).
import type { DB } from '../db/index.ts';
import type { Clock } from '../clock.ts';
import { LetterboxError } from '../errors.ts';
import { newId } from '../util/ids.ts';
import { newWebhookSecret } from './sign.ts';

/** Event types a webhook can subscribe to ('*' = all). */
export const WEBHOOK_EVENT_TYPES = [
  'message.received',
  'message.queued',
  'message.delivered',
  'message.deferred',
  'message.bounced',
  'message.suppressed',
  'message.blocked_outbound',
  'domain.verified',
  'domain.verification_failed',
  'dkim.rotation_started',
  'dkim.rotated',
  'dkim.retired',
  'report.sent',
] as const;

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  description: string;
  enabled: boolean;
  disabledReason: string | null;
  failingSince: string | null;
  domains: string[] | null;
  secretRotatedGraceUntil: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface WebhookRow {
  id: string;
  url: string;
  events: string;
  description: string;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: number | null;
  enabled: number;
  disabled_reason: string | null;
  failing_since: number | null;
  domains: string | null;
  from_event_id: number;
  created_at: number;
  updated_at: number;
}

const iso = (n: number | null | undefined) => (n === null || n === undefined ? null : new Date(n).toISOString());

export function webhookOut(r: WebhookRow, now: number): Webhook {
  return {
    id: r.id,
    url: r.url,
    events: JSON.parse(r.events),
    description: r.description,
    enabled: r.enabled === 1,
    disabledReason: r.disabled_reason,
    failingSince: iso(r.failing_since),
    domains: r.domains ? JSON.parse(r.domains) : null,
    secretRotatedGraceUntil: r.previous_secret_expires_at && r.previous_secret_expires_at > now ? iso(r.previous_secret_expires_at) : null,
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
  };
}

/** The secrets deliveries are signed with now: the current one, plus the previous during its grace period. */
export function activeSecrets(r: WebhookRow, now: number): string[] {
  return r.previous_secret && r.previous_secret_expires_at && r.previous_secret_expires_at > now ? [r.secret, r.previous_secret] : [r.secret];
}

export function getWebhookRow(db: DB, id: string, domains: string[] | null): WebhookRow {
  const r = db.prepare('SELECT * FROM webhooks WHERE id = ?').get(id) as WebhookRow | undefined;
  if (!r || !visibleTo(r, domains)) throw new LetterboxError('not_found', `no webhook "${id}"; see GET /api/v1/webhooks`);
  return r;
}

/** A domain-restricted key sees only webhooks restricted to a subset of its domains. */
function visibleTo(r: WebhookRow, domains: string[] | null): boolean {
  if (!domains) return true;
  if (!r.domains) return false;
  return (JSON.parse(r.domains) as string[]).every((d) => domains.includes(d));
}

export function listWebhookRows(db: DB, domains: string[] | null, after: string | undefined, limit: number): WebhookRow[] {
  const rows = db.prepare('SELECT * FROM webhooks WHERE (? IS NULL OR id > ?) ORDER BY id LIMIT ?').all(after ?? null, after ?? null, limit * 4 + 1) as WebhookRow[];
  return rows.filter((r) => visibleTo(r, domains)).slice(0, limit + 1);
}

export function createWebhook(db: DB, clock: Clock, w: { url: string; events: string[]; description?: string; domains: string[] | null; createdBy: string | null }): { row: WebhookRow; secret: string } {
  const now = clock.now();
  const id = newId('wh');
  const secret = newWebhookSecret();
  db.transaction(() => {
    const last = db.prepare('SELECT coalesce(max(id), 0) FROM events').pluck().get() as number;
    db.prepare(
      'INSERT INTO webhooks (id, url, events, description, secret, enabled, domains, from_event_id, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)',
    ).run(id, w.url, JSON.stringify([...new Set(w.events)]), w.description ?? '', secret, w.domains ? JSON.stringify(w.domains) : null, last, w.createdBy, now, now);
  }).immediate();
  return { row: db.prepare('SELECT * FROM webhooks WHERE id = ?').get(id) as WebhookRow, secret };
}

export function updateWebhook(db: DB, clock: Clock, id: string, domains: string[] | null, p: { url?: string; events?: string[]; description?: string; enabled?: boolean }): WebhookRow {
  const r = getWebhookRow(db, id, domains);
  const now = clock.now();
  const enabled = p.enabled ?? r.enabled === 1;
  db.prepare(
    'UPDATE webhooks SET url = ?, events = ?, description = ?, enabled = ?, disabled_reason = ?, failing_since = ?, updated_at = ? WHERE id = ?',
  ).run(
    p.url ?? r.url,
    p.events ? JSON.stringify([...new Set(p.events)]) : r.events,
    p.description ?? r.description,
    enabled ? 1 : 0,
    enabled ? null : p.enabled === false ? 'disabled through the API' : r.disabled_reason,
    // Re-enabling starts the failure clock afresh.
    p.enabled === true ? null : r.failing_since,
    now,
    id,
  );
  return getWebhookRow(db, id, domains);
}

export function deleteWebhook(db: DB, id: string, domains: string[] | null): WebhookRow {
  const r = getWebhookRow(db, id, domains);
  db.prepare('DELETE FROM webhooks WHERE id = ?').run(id);
  return r;
}

/** New secret now; the old one keeps signing (as a second v1) until now + graceMs. */
export function rotateSecret(db: DB, clock: Clock, id: string, domains: string[] | null, graceMs: number): { row: WebhookRow; secret: string } {
  const r = getWebhookRow(db, id, domains);
  const now = clock.now();
  const secret = newWebhookSecret();
  db.prepare('UPDATE webhooks SET secret = ?, previous_secret = ?, previous_secret_expires_at = ?, updated_at = ? WHERE id = ?').run(secret, r.secret, graceMs > 0 ? now + graceMs : null, now, id);
  return { row: getWebhookRow(db, id, domains), secret };
}

// --- deliveries -------------------------------------------------------------------------------

export interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  payload: string;
  status: 'pending' | 'succeeded' | 'failed';
  attempts: number;
  next_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  replay_of: string | null;
  created_at: number;
  updated_at: number;
}

export function deliveryOut(db: DB, r: DeliveryRow, withAttempts = true) {
  const attempts = withAttempts
    ? (db.prepare('SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY id').all(r.id) as any[]).map((a) => ({
        at: iso(a.at)!,
        statusCode: a.status_code as number | null,
        error: a.error as string | null,
        durationMs: a.duration_ms as number,
        response: a.response as string | null,
      }))
    : undefined;
  return {
    id: r.id,
    webhookId: r.webhook_id,
    eventId: r.event_id,
    eventType: r.event_type,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: iso(r.next_attempt_at),
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    lastDurationMs: r.last_duration_ms,
    replayOf: r.replay_of,
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
    ...(attempts ? { attemptLog: attempts } : {}),
  };
}

export function getDelivery(db: DB, webhookId: string, id: string): DeliveryRow {
  const r = db.prepare('SELECT * FROM webhook_deliveries WHERE id = ? AND webhook_id = ?').get(id, webhookId) as DeliveryRow | undefined;
  if (!r) throw new LetterboxError('not_found', `no delivery "${id}" for webhook ${webhookId}; see GET /api/v1/webhooks/${webhookId}/deliveries`);
  return r;
}

export function listDeliveries(db: DB, webhookId: string, f: { status?: string; before?: string; limit: number }): DeliveryRow[] {
  const where = ['webhook_id = ?'];
  const args: unknown[] = [webhookId];
  if (f.status) (where.push('status = ?'), args.push(f.status));
  if (f.before) {
    const c = db.prepare('SELECT created_at FROM webhook_deliveries WHERE id = ?').pluck().get(f.before) as number | undefined;
    if (c !== undefined) (where.push('(created_at < ? OR (created_at = ? AND id < ?))'), args.push(c, c, f.before));
  }
  return db.prepare(`SELECT * FROM webhook_deliveries WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`).all(...args, f.limit + 1) as DeliveryRow[];
}

export function insertDelivery(db: DB, now: number, d: { webhookId: string; eventId: string; eventType: string; payload: string; replayOf?: string | null }): string {
  const id = newId('whd');
  db.prepare(
    "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload, status, attempts, next_attempt_at, replay_of, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
  ).run(id, d.webhookId, d.eventId, d.eventType, d.payload, now, d.replayOf ?? null, now, now);
  return id;
}

// --- the dispatcher's statements ----------------------------------------------------------------

/** The last event already fanned out to the outbox. */
export function outboxCursor(db: DB): number {
  return db.prepare('SELECT last_event_id FROM webhook_outbox_state WHERE id = 1').pluck().get() as number;
}

export function setOutboxCursor(db: DB, lastEventId: number): void {
  db.prepare('UPDATE webhook_outbox_state SET last_event_id = ? WHERE id = 1').run(lastEventId);
}

export function enabledWebhookRows(db: DB): WebhookRow[] {
  return db.prepare('SELECT * FROM webhooks WHERE enabled = 1').all() as WebhookRow[];
}

/** Ids of pending deliveries of enabled endpoints that are due at `now`, soonest first. */
export function dueDeliveryIds(db: DB, now: number, limit: number): string[] {
  return db
    .prepare(
      `SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
       WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND w.enabled = 1 ORDER BY d.next_attempt_at LIMIT ?`,
    )
    .pluck()
    .all(now, limit) as string[];
}

/** Drops finished deliveries last changed before `cutoff` (their attempts go with them). */
export function pruneDeliveries(db: DB, cutoff: number): void {
  db.prepare("DELETE FROM webhook_deliveries WHERE status != 'pending' AND updated_at < ?").run(cutoff);
}

/** A delivery by id, of any endpoint (the dispatcher's view; the API's is getDelivery). */
export function deliveryRow(db: DB, id: string): DeliveryRow | undefined {
  return db.prepare('SELECT * FROM webhook_deliveries WHERE id = ?').get(id) as DeliveryRow | undefined;
}

/** An endpoint by id, of any domain (the dispatcher's view; the API's is getWebhookRow). */
export function webhookRow(db: DB, id: string): WebhookRow | undefined {
  return db.prepare('SELECT * FROM webhooks WHERE id = ?').get(id) as WebhookRow | undefined;
}

/** Records one attempt and the delivery's new state (call inside the attempt's transaction). */
export function recordDeliveryAttempt(
  db: DB,
  id: string,
  a: { at: number; statusCode: number | null; error: string | null; durationMs: number; response: string | null },
  next: { status: DeliveryRow['status']; attempts: number; nextAttemptAt: number | null; now: number },
): void {
  db.prepare('INSERT INTO webhook_attempts (delivery_id, at, status_code, error, duration_ms, response) VALUES (?, ?, ?, ?, ?, ?)').run(id, a.at, a.statusCode, a.error, a.durationMs, a.response);
  db.prepare('UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status_code = ?, last_error = ?, last_duration_ms = ?, updated_at = ? WHERE id = ?').run(
    next.status, next.attempts, next.nextAttemptAt, a.statusCode, a.error, a.durationMs, next.now, id,
  );
}

/** An endpoint that answered: no longer failing. */
export function markWebhookHealthy(db: DB, id: string): void {
  db.prepare('UPDATE webhooks SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL').run(id);
}

export function webhookFailingState(db: DB, id: string): { failing_since: number | null; enabled: number } | undefined {
  return db.prepare('SELECT failing_since, enabled FROM webhooks WHERE id = ?').get(id) as { failing_since: number | null; enabled: number } | undefined;
}

export function markWebhookFailing(db: DB, id: string, since: number): void {
  db.prepare('UPDATE webhooks SET failing_since = ? WHERE id = ?').run(since, id);
}

export function disableWebhook(db: DB, id: string, reason: string, now: number): void {
  db.prepare('UPDATE webhooks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?').run(reason, now, id);
}

/** Deliveries waiting for a (re)try (metrics). */
export function pendingDeliveryCount(db: DB): number {
  return db.prepare("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").pluck().get() as number;
}
