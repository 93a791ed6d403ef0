// Retry scheduling decisions (pure: no clock, no randomness of their own).

export interface RetryPolicy {
  /** Delays in ms after the 1st, 2nd... failed attempt; the last one repeats. */
  schedule: number[];
  /** ± fraction of jitter (0.1 = ±10%). */
  jitter: number;
  /** Give up (bounce) when a message is older than this (ms). */
  maxAge: number;
  /** Send the sender a delay notice once a message is older than this (ms). */
  delayNoticeAfter: number;
}

/** The delay before the next attempt after `attempts` failed ones (≥1). `rand` in [0,1). */
export function retryDelay(attempts: number, p: Pick<RetryPolicy, 'schedule' | 'jitter'>, rand: number): number {
  const base = p.schedule[Math.min(Math.max(attempts, 1), p.schedule.length) - 1] ?? 300_000;
  const j = base * p.jitter * (rand * 2 - 1);
  return Math.max(0, Math.round(base + j));
}

export type TempFailDecision =
  | { action: 'retry'; nextAttemptAt: number; delayNotice: boolean }
  | { action: 'expire' };

/**
 * What to do with a recipient after a temporary failure: retry later (maybe with a delay notice to
 * the sender, once) or give up because the next attempt would be past the maximum age.
 */
export function onTempFail(o: { now: number; createdAt: number; attempts: number; delayNotified: boolean; policy: RetryPolicy; rand: number }): TempFailDecision {
  const age = o.now - o.createdAt;
  if (age >= o.policy.maxAge) return { action: 'expire' };
  const next = o.now + retryDelay(o.attempts, o.policy, o.rand);
  // The last attempt is at max age: never schedule past it, but do try once more there.
  const nextAttemptAt = Math.min(next, o.createdAt + o.policy.maxAge);
  return { action: 'retry', nextAttemptAt, delayNotice: !o.delayNotified && age >= o.policy.delayNoticeAfter };
}
