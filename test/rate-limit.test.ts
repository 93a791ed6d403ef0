// The API's token buckets (src/api/middleware/rate-limit.ts) as pure logic with a moved clock, shared
// with a real worker thread through their SharedArrayBuffer, and the table's pruning when it fills.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { APP_DIR } from './helpers/appliance.ts';
import { TokenBuckets } from '../src/api/middleware/rate-limit.ts';

function fakeClock(start = 1_700_000_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test('a bucket: burst at once, then perMinute a minute; remaining, reset and Retry-After', () => {
  const clock = fakeClock();
  const b = new TokenBuckets(60, 3, clock, undefined, 16); // one token a second
  assert.deepEqual([1, 2, 3].map(() => b.take('k').remaining), [2, 1, 0]);
  const refused = b.take('k');
  assert.equal(refused.allowed, false);
  assert.equal(refused.retryAfterSeconds, 1);
  assert.equal(refused.resetSeconds, 3);
  assert.equal(b.take('other').remaining, 2, 'each id has its own bucket');
  clock.advance(1000);
  const again = b.take('k');
  assert.equal(again.allowed, true);
  assert.equal(again.remaining, 0);
  clock.advance(60_000);
  assert.equal(b.take('k').remaining, 2, 'never more than the burst');
  clock.advance(-30_000);
  assert.equal(b.take('k').allowed, true, 'a clock stepping back adds no tokens and breaks nothing');
});

test('two threads draw from the same buckets through the shared memory', async () => {
  const clock = fakeClock(Date.now());
  const b = new TokenBuckets(1, 100, clock);
  const url = pathToFileURL(join(APP_DIR, 'src/api/middleware/rate-limit.ts')).href;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(${JSON.stringify(url)}).then(({ TokenBuckets }) => {
      const b = new TokenBuckets(1, 100, { now: () => Date.now() }, workerData);
      let allowed = 0;
      for (let i = 0; i < 70; i++) if (b.take('shared').allowed) allowed++;
      parentPort.postMessage(allowed);
    });`;
  const worker = new Worker(code, { eval: true, workerData: b.shared });
  let mine = 0;
  for (let i = 0; i < 70; i++) if (b.take('shared').allowed) mine++;
  const theirs = await new Promise<number>((resolve, reject) => worker.once('message', resolve).once('error', reject));
  await worker.terminate();
  assert.equal(mine + theirs, 100, `140 takes from one bucket of 100: exactly 100 allowed (here ${mine}, there ${theirs})`);
});

test('a full table forgets buckets that have refilled, and never fills up', () => {
  const clock = fakeClock();
  const b = new TokenBuckets(60, 2, clock, undefined, 8); // room for 6 before pruning
  for (let i = 0; i < 5; i++) b.take(`old${i}`);
  b.take('busy');
  b.take('busy');
  clock.advance(1500); // the old ones (one token taken) have refilled; busy (two taken) has not
  for (let i = 0; i < 4; i++) assert.equal(b.take(`new${i}`).allowed, true);
  assert.equal(b.take('busy').remaining, 0, 'a bucket still refilling is kept through the pruning');
  // More distinct callers than the table holds: it prunes or starts over, but every take answers.
  for (let i = 0; i < 100; i++) assert.equal(b.take(`flood${i}`).limit, 2);
});
