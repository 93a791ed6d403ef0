import { LetterboxError } from '../errors.ts';

/**
 * A counting semaphore with first-come-first-served waiters and a wait timeout: at most `max`
 * holders at once. Used to bound Letterbox's LMTP sessions to Dovecot (each one is a Dovecot lmtp
 * process). Written here because the well-kept limiters (p-limit, p-queue) wrap a function call and
 * cannot give up waiting after a timeout, which a delivery needs in order to answer 451 in time.
 */
export class Slots {
  readonly max: number;
  private used = 0;
  private readonly waiters: { grant: () => void; timer: NodeJS.Timeout | null }[] = [];
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new LetterboxError('validation_error', `slots: max must be a positive integer, got ${max}`);
    this.max = max;
  }

  get inUse(): number {
    return this.used;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Resolves with a release function once a slot is free; rejects with `unavailable` when none
   * became free within `timeoutMs`. Calling the release function more than once has no effect.
   */
  acquire(timeoutMs: number, what = 'slot'): Promise<() => void> {
    if (this.used < this.max) {
      this.used++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const w = {
        grant: () => resolve(this.releaser()),
        timer: null as NodeJS.Timeout | null,
      };
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new LetterboxError('unavailable', `all ${this.max} ${what}s stayed busy for ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) {
        // The slot passes straight to the next waiter: `used` stays the same.
        if (next.timer) clearTimeout(next.timer);
        next.grant();
      } else this.used--;
    };
  }
}
