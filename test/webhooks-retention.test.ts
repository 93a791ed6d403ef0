// Webhook housekeeping with a moved clock: the delivery log is kept webhooks.retention (7 days by
// default) and no longer; deliveries still pending are kept whatever their age. And the default
// retry schedule backs off over more than 24 hours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.ts';
import { dbPath, openDatabase } from '../src/db/index.ts';
import { silentLogger } from '../src/log.ts';
import { WebhookDispatcher } from '../src/webhooks/dispatcher.ts';
import { createWebhook, insertDelivery } from '../src/webhooks/store.ts';
import type { AppContext } from '../src/server.ts';
import { applianceToml } from './helpers/appliance.ts';

const DAY = 86_400_000;

/** The default configuration (nothing listens: the ports are never opened). */
function defaults(dir: string) {
  const file = join(dir, 'letterbox.toml');
  writeFileSync(file, applianceToml(dir, { mx: 2525, submission: 2587, submissions: 2465, imap: 2993, api: 2080 }));
  return loadConfig({ path: file, env: {} });
}

test('the delivery log is kept webhooks.retention (7 days): older finished deliveries go, pending ones stay', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lbwh-'));
  try {
    const config = defaults(dir);
    assert.equal(config.webhooks.retention, 7 * 24 * 3600_000);
    let now = Date.parse('2026-11-23T12:00:00Z');
    const clock = { now: () => now };
    const db = openDatabase(dbPath(config.data_dir), { log: silentLogger(), clock });
    const { row } = createWebhook(db, clock, { url: 'https://hooks.example.com/x', events: ['*'], domains: null, createdBy: null });
    const delivery = (status: string, ageDays: number, nextAttemptAt = now + DAY) => {
      const id = insertDelivery(db, now - ageDays * DAY, { webhookId: row.id, eventId: `evt_${ageDays}_${status}`, eventType: 'message.queued', payload: '{}' });
      db.prepare('UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?').run(status, nextAttemptAt, now - ageDays * DAY, id);
      return id;
    };
    const oldOk = delivery('succeeded', 8);
    const oldFailed = delivery('failed', 7.5);
    const recentOk = delivery('succeeded', 6.9);
    const oldPending = delivery('pending', 8); // due tomorrow: not attempted by this tick
    const app = { db, config, log: silentLogger(), clock } as unknown as AppContext;
    await new WebhookDispatcher(app).tick();
    const left = (db.prepare('SELECT id FROM webhook_deliveries ORDER BY id').pluck().all() as string[]).sort();
    assert.deepEqual(left, [recentOk, oldPending].sort());
    assert.ok(!left.includes(oldOk) && !left.includes(oldFailed));
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the default retry schedule backs off (never shorter than the step before) over more than 24 hours', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lbwh-'));
  try {
    const steps = defaults(dir).webhooks.retry_schedule;
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i] >= steps[i - 1], `step ${i} is not shorter than step ${i - 1}`);
    assert.ok(steps.at(-1)! >= 100 * steps[0], 'the last wait is far longer than the first');
    const total = steps.reduce((a, b) => a + b, 0);
    assert.ok(total >= DAY, `retries span ${total / 3_600_000} h`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
