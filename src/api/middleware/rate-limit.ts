import type { Clock } from '../../clock.ts';
import { LetterboxError } from '../../errors.ts';
import type { ApiContext } from '../types.ts';

export interface Take {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the bucket is full again. */
  resetSeconds: number;
  /** Seconds until one request is allowed again (when refused). */
  retryAfterSeconds: number;
}

/**
 * Token buckets, one per caller (API key id, or client IP for requests without a valid key): a
 * bucket holds up to `burst` tokens and refills at `perMinute` tokens a minute; each request takes
 * one. In memory: limits restart with the process, which is fine for a single appliance.
 *
 * The buckets live in a SharedArrayBuffer so that every API thread (src/api/threads.ts) draws from
 * the same ones: a client spread over connections served by different threads gets one limit, not
 * one per thread. Written by hand because no library keeps a hash table in shared memory: an
 * open-addressed table of (two 32-bit hashes of the id, tokens, time), guarded by one spin lock
 * held for a few hundred nanoseconds.
 */
export class TokenBuckets {
  readonly perMinute: number;
  readonly burst: number;
  /** Hand this to another thread's TokenBuckets to share the buckets. */
  readonly shared: SharedArrayBuffer;
  private readonly clock: Clock;
  private readonly lock: Int32Array;
  private readonly slots: Float64Array;
  private readonly capacity: number;

  constructor(perMinute: number, burst: number, clock: Clock, shared?: SharedArrayBuffer, capacity = 1 << 16) {
    this.perMinute = perMinute;
    this.burst = burst;
    this.clock = clock;
    this.shared = shared ?? new SharedArrayBuffer(8 + capacity * SLOT * 8);
    this.lock = new Int32Array(this.shared, 0, 2); // [lock, entries]
    this.slots = new Float64Array(this.shared, 8);
    this.capacity = this.slots.length / SLOT;
    if (!Number.isInteger(Math.log2(this.capacity))) throw new Error('TokenBuckets: the capacity must be a power of two');
  }

  take(id: string): Take {
    const now = this.clock.now();
    const perMs = this.perMinute / 60_000;
    const h1 = hash(id, 0x811c9dc5) | 1; // never 0: 0 marks an empty slot
    const h2 = hash(id, 0x01000193);
    let tokens: number;
    let allowed: boolean;
    acquire(this.lock);
    try {
      let i = this.find(h1, h2);
      if (this.slots[i] === 0) {
        if (this.lock[1] >= this.capacity * 0.75) {
          this.prune(now, perMs);
          i = this.find(h1, h2);
        }
        this.slots[i] = h1;
        this.slots[i + 1] = h2;
        this.slots[i + 2] = this.burst;
        this.slots[i + 3] = now;
        this.lock[1]++;
      }
      tokens = Math.min(this.burst, this.slots[i + 2] + Math.max(0, now - this.slots[i + 3]) * perMs);
      allowed = tokens >= 1;
      if (allowed) tokens -= 1;
      this.slots[i + 2] = tokens;
      this.slots[i + 3] = Math.max(now, this.slots[i + 3]);
    } finally {
      release(this.lock);
    }
    return {
      allowed,
      limit: this.burst,
      remaining: Math.floor(tokens),
      resetSeconds: Math.ceil((this.burst - tokens) / perMs / 1000),
      retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / perMs / 1000)),
    };
  }

  /** The slot (index into slots) holding (h1, h2), or the empty slot where it belongs (linear probing). */
  private find(h1: number, h2: number): number {
    const mask = this.capacity - 1;
    for (let n = h1 & mask; ; n = (n + 1) & mask) {
      const i = n * SLOT;
      if (this.slots[i] === 0 || (this.slots[i] === h1 && this.slots[i + 1] === h2)) return i;
    }
  }

  /**
   * Forgets buckets that have refilled completely (they would start full anyway) by rebuilding the
   * table. If it is still three quarters full, every caller starts again with a full bucket: the
   * table never fills up, at the price of a fresh burst for everyone in that rare case.
   */
  private prune(now: number, perMs: number): void {
    const live: number[][] = [];
    for (let i = 0; i < this.slots.length; i += SLOT) {
      if (this.slots[i] !== 0 && this.slots[i + 2] + (now - this.slots[i + 3]) * perMs < this.burst) live.push([this.slots[i], this.slots[i + 1], this.slots[i + 2], this.slots[i + 3]]);
    }
    this.slots.fill(0);
    this.lock[1] = 0;
    if (live.length >= this.capacity * 0.75) return;
    for (const e of live) {
      const i = this.find(e[0], e[1]);
      this.slots.set(e, i);
      this.lock[1]++;
    }
  }
}

const SLOT = 4; // h1, h2, tokens, at

/** 32-bit FNV-1a over the UTF-16 code units (ids are short: key ids and IP addresses). */
function hash(s: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function acquire(lock: Int32Array): void {
  while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) Atomics.wait(lock, 0, 1, 1);
}

function release(lock: Int32Array): void {
  Atomics.store(lock, 0, 0);
  Atomics.notify(lock, 0, 1);
}

/** Takes a token and sets X-RateLimit-*; over the limit throws rate_limited with Retry-After. */
export function applyRateLimit(ctx: ApiContext, buckets: TokenBuckets, id: string): void {
  const t = buckets.take(id);
  ctx.set('X-RateLimit-Limit', String(t.limit));
  ctx.set('X-RateLimit-Remaining', String(t.remaining));
  ctx.set('X-RateLimit-Reset', String(t.resetSeconds));
  if (!t.allowed) {
    ctx.set('Retry-After', String(t.retryAfterSeconds));
    throw new LetterboxError('rate_limited', `rate limit of ${buckets.perMinute} requests a minute (bursts of ${buckets.burst}) exceeded; retry in ${t.retryAfterSeconds} s`);
  }
}
