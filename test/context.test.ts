// The composition root (src/context.ts): a context built with overrides, no server and no
// listeners; the services it holds behave as the components expect. Plus the webhook dispatcher's
// next-state decision, a pure function.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, developmentDefaults } from '../src/config/load.ts';
import { createAppContext } from '../src/context.ts';
import { runningQueue } from '../src/queue/handoff.ts';
import { secretPath } from '../src/secrets.ts';
import { nextDeliveryState } from '../src/webhooks/dispatcher.ts';
import { silentLogger } from '../src/log.ts';

test('createAppContext: one of each service, built once; nothing listens; the queue is handed messages only while started', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lb-ctx-'));
  try {
    const defaults = developmentDefaults(dir) as any;
    const config = parseConfig({ ...defaults, data_dir: join(dir, 'data'), listen: { ...defaults.listen, imap: [] }, dovecot: { managed: false } }, 'test', dir);
    const app = await createAppContext(config, { log: silentLogger(), clock: { now: () => Date.now() } });
    try {
      assert.equal(app.supervisor, null);
      assert.match(await app.metrics.registry.metrics(), /letterbox_queue_entries\{state="queued"\} 0/);
      // Without listen.imap the API's IMAP services answer 503 unavailable when reached for.
      assert.throws(() => app.imapPool, { code: 'unavailable' });
      assert.throws(() => app.imapAppender, { code: 'unavailable' });
      // The SRS secret is created when first needed, then the same.
      assert.equal(existsSync(secretPath(config.data_dir, 'srs')), false);
      const srs = app.srsSecret;
      assert.equal(app.srsSecret, srs);
      assert.equal(existsSync(secretPath(config.data_dir, 'srs')), true);
      // The queue exists from the start but takes messages only while its component runs it.
      assert.equal(runningQueue(app), null);
      await app.queue.start();
      assert.equal(runningQueue(app), app.queue);
      await app.queue.stop();
      assert.equal(runningQueue(app), null);
      // Cap reservations are per context.
      const release = app.sendReservations.reserve('mb1', 2);
      assert.deepEqual(app.sendReservations.of('mb1'), { messages: 1, recipients: 2 });
      release();
      assert.equal(app.sendReservations.of('mb1'), undefined);
      // TLS reload hooks run in turn; a failing one does not stop the others.
      const ran: string[] = [];
      const off = app.tlsReload.add(() => void ran.push('a'));
      app.tlsReload.add(() => {
        throw new Error('boom');
      });
      app.tlsReload.add(() => void ran.push('c'));
      await app.tlsReload.run(app.log);
      off();
      await app.tlsReload.run(app.log);
      assert.deepEqual(ran, ['a', 'c', 'c']);
    } finally {
      app.db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('webhook delivery state after an attempt: succeeded, failed (test event, blocked, schedule exhausted) or pending at the next slot ±10 %', () => {
  const base = { ok: false, blocked: false, isTest: false, schedule: [60_000, 600_000], now: 1_000_000, random: 0.5 };
  assert.deepEqual(nextDeliveryState({ ...base, ok: true, attempts: 1 }), { status: 'succeeded', attempts: 1, nextAttemptAt: null, isTest: false });
  assert.equal(nextDeliveryState({ ...base, isTest: true, attempts: 1 }).status, 'failed');
  assert.equal(nextDeliveryState({ ...base, blocked: true, attempts: 1 }).status, 'failed');
  assert.equal(nextDeliveryState({ ...base, attempts: 3 }).status, 'failed');
  assert.deepEqual(nextDeliveryState({ ...base, attempts: 2 }), { status: 'pending', attempts: 2, nextAttemptAt: 1_600_000, isTest: false });
  assert.equal(nextDeliveryState({ ...base, attempts: 1, random: 0 }).nextAttemptAt, 1_000_000 + 54_000);
  assert.equal(nextDeliveryState({ ...base, attempts: 1, random: 1 }).nextAttemptAt, 1_000_000 + 66_000);
});
