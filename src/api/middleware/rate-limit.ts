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
 */
export class TokenBuckets {
  readonly perMinute: number;
  readonly burst: number;
  private readonly clock: Clock;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(perMinute: number, burst: number, clock: Clock) {
    this.perMinute = perMinute;
    this.burst = burst;
    this.clock = clock;
  }

  take(id: string): Take {
    const now = this.clock.now();
    const perMs = this.perMinute / 60_000;
    const b = this.buckets.get(id) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * perMs);
    b.at = now;
    const allowed = b.tokens >= 1;
    if (allowed) b.tokens -= 1;
    if (!this.buckets.has(id)) {
      if (this.buckets.size >= 50_000) this.prune(now, perMs);
      this.buckets.set(id, b);
    }
    return {
      allowed,
      limit: this.burst,
      remaining: Math.floor(b.tokens),
      resetSeconds: Math.ceil((this.burst - b.tokens) / perMs / 1000),
      retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)),
    };
  }

  /** Forgets buckets that have refilled completely (they would start full anyway). */
  private prune(now: number, perMs: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + (now - b.at) * perMs >= this.burst) this.buckets.delete(k);
  }
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
