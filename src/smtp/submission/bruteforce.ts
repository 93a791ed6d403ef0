// Failure counting for AUTH (pure state machine, kept in memory by the listener).
// Keys are the client IP and the account name as typed (known or not: the same answer either way).

export interface BruteForcePolicy {
  maxFailures: number; // failures within `window` that lock the key
  window: number; // ms
  lockout: number; // ms
  delayMs: number; // delay after the first failure, doubling per failure
  delayMaxMs: number;
}

export interface FailureState {
  failures: number[]; // times of recent failures (ms), oldest first
  lockedUntil: number;
}

export function emptyState(): FailureState {
  return { failures: [], lockedUntil: 0 };
}

export function isLocked(s: FailureState | undefined, now: number): boolean {
  return !!s && s.lockedUntil > now;
}

/** Records a failure; returns the new state and how long to wait before answering. */
export function recordFailure(s: FailureState | undefined, now: number, p: BruteForcePolicy): { state: FailureState; delayMs: number } {
  const failures = [...(s?.failures ?? []).filter((t) => t > now - p.window), now].slice(-p.maxFailures);
  const lockedUntil = failures.length >= p.maxFailures ? now + p.lockout : (s?.lockedUntil ?? 0);
  const delayMs = Math.min(p.delayMaxMs, p.delayMs * 2 ** (failures.length - 1));
  return { state: { failures, lockedUntil }, delayMs };
}

/** A success clears the account's counter, not the IP's (a botnet guessing many accounts from one IP). */
export function shouldForget(s: FailureState | undefined, now: number, p: BruteForcePolicy): boolean {
  return !s || (s.lockedUntil <= now && s.failures.every((t) => t <= now - p.window));
}

/** In-memory limiter over both keys; expired entries are dropped as they are met. */
export class BruteForceGuard {
  private byIp = new Map<string, FailureState>();
  private byAccount = new Map<string, FailureState>();
  private p: BruteForcePolicy;
  constructor(p: BruteForcePolicy) {
    this.p = p;
  }

  locked(ip: string, account: string, now: number): boolean {
    return isLocked(this.byIp.get(ip), now) || isLocked(this.byAccount.get(account.toLowerCase()), now);
  }

  /** Returns the delay to apply before answering. */
  fail(ip: string, account: string, now: number): number {
    const a = recordFailure(this.byIp.get(ip), now, this.p);
    const b = recordFailure(this.byAccount.get(account.toLowerCase()), now, this.p);
    this.byIp.set(ip, a.state);
    this.byAccount.set(account.toLowerCase(), b.state);
    if (this.byIp.size + this.byAccount.size > 100_000) this.sweep(now);
    return Math.max(a.delayMs, b.delayMs);
  }

  succeed(account: string): void {
    this.byAccount.delete(account.toLowerCase());
  }

  private sweep(now: number): void {
    for (const m of [this.byIp, this.byAccount]) for (const [k, s] of m) if (shouldForget(s, now, this.p)) m.delete(k);
  }
}
