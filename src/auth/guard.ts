// The login guard: one brute-force policy for every protocol that checks a mailbox password
// (submission AUTH here, IMAP through Dovecot's auth policy requests: src/auth/dovecot-policy.ts).
//
// Rule (README "Login protection"):
//  - Every attempt is counted per client network (IPv4 address / IPv6 /64) and per account name as
//    typed (known or not: the answer is the same). An attempt is RESERVED before the password is
//    checked and SETTLED after it, so N parallel attempts are N counted attempts, not N free checks:
//    a key with failures + attempts in flight >= maxFailures refuses further attempts at once.
//  - maxFailures failures within `window` lock the key for `lockout`.
//  - A locked ACCOUNT still accepts attempts from a client network that has logged in successfully
//    to that account within knownNetworkTtl (the owner's devices at home or work), so a stranger
//    cannot lock the owner out of every device. Such a network is still limited by its own counter.
//  - A success never clears counters (an attacker could otherwise ride on the owner's logins);
//    failures simply age out of the window.
// In memory: a restart clears counters, lockouts and known networks (documented).
import { clientNetwork } from './client-network.ts';

export interface GuardPolicy {
  maxFailures: number;
  window: number; // ms
  lockout: number; // ms
  delayMs: number; // delay before answering a failure, doubling per recent failure
  delayMaxMs: number;
  knownNetworkTtl: number; // ms
  /** An attempt never settled (a lost report) counts as a failure after this long. */
  reservationTtl: number; // ms
}

export type GuardScope = 'account' | 'network';

export interface GuardEvent {
  type: 'lockout';
  scope: GuardScope;
  key: string;
  failures: number;
  until: number;
  protocol: string;
}

interface Counter {
  failures: number[]; // times, oldest first (at most maxFailures kept)
  pending: number;
  lockedUntil: number;
}

export interface Ticket {
  readonly account: string;
  readonly network: string;
  readonly protocol: string;
  readonly at: number;
  settled: boolean;
}

export type Reservation = { ok: true; ticket: Ticket; knownNetwork: boolean } | { ok: false; scope: GuardScope; retryAfterMs: number };

/** Pure: failures still inside the window. */
export function recentFailures(c: { failures: number[] } | undefined, now: number, window: number): number {
  return c ? c.failures.filter((t) => t > now - window).length : 0;
}

/** Pure: does this counter refuse a new attempt now (locked, or full with attempts in flight)? */
export function refuses(c: Counter | undefined, now: number, p: GuardPolicy): boolean {
  if (!c) return false;
  return c.lockedUntil > now || recentFailures(c, now, p.window) + c.pending >= p.maxFailures;
}

/** Pure: the delay before answering a failure, given the recent failures on the worse key. */
export function failureDelay(failures: number, p: GuardPolicy): number {
  return failures <= 0 ? 0 : Math.min(p.delayMaxMs, p.delayMs * 2 ** (failures - 1));
}

export function accountKey(name: string): string {
  return name.trim().toLowerCase();
}

export class LoginGuard {
  private readonly networks = new Map<string, Counter>();
  private readonly accounts = new Map<string, Counter>();
  private readonly known = new Map<string, number>(); // account \n network → last success
  private readonly open = new Set<Ticket>(); // in reservation order (= time order)
  private lastSweep = 0;
  private readonly p: GuardPolicy;
  private readonly now: () => number;
  private readonly onEvent: (e: GuardEvent) => void;

  constructor(p: GuardPolicy, now: () => number, onEvent: (e: GuardEvent) => void = () => {}) {
    this.p = p;
    this.now = now;
    this.onEvent = onEvent;
  }

  /** Synchronous, so two attempts can never both take the last free slot. */
  reserve(account: string, ip: string, protocol: string): Reservation {
    const now = this.now();
    this.expire(now);
    const acct = accountKey(account);
    const net = clientNetwork(ip);
    const n = this.counter(this.networks, net);
    const a = this.counter(this.accounts, acct);
    if (refuses(n, now, this.p)) return { ok: false, scope: 'network', retryAfterMs: this.retryAfter(n, now) };
    const knownNetwork = this.isKnown(acct, net, now);
    if (!knownNetwork && refuses(a, now, this.p)) return { ok: false, scope: 'account', retryAfterMs: this.retryAfter(a, now) };
    n.pending++;
    a.pending++;
    const ticket: Ticket = { account: acct, network: net, protocol, at: now, settled: false };
    this.open.add(ticket);
    return { ok: true, ticket, knownNetwork };
  }

  /** Settles a reservation; returns how long to wait before answering (0 on success). */
  settle(ticket: Ticket, success: boolean): number {
    if (ticket.settled) return 0;
    return this.close(ticket, success, this.now());
  }

  /** For status and tests: is the account refused for a client at `ip` right now? */
  refusesNow(account: string, ip: string): GuardScope | null {
    const now = this.now();
    const acct = accountKey(account);
    const net = clientNetwork(ip);
    if (refuses(this.networks.get(net), now, this.p)) return 'network';
    if (!this.isKnown(acct, net, now) && refuses(this.accounts.get(acct), now, this.p)) return 'account';
    return null;
  }

  private close(t: Ticket, success: boolean, now: number): number {
    t.settled = true;
    this.open.delete(t);
    const n = this.counter(this.networks, t.network);
    const a = this.counter(this.accounts, t.account);
    n.pending = Math.max(0, n.pending - 1);
    a.pending = Math.max(0, a.pending - 1);
    if (success) {
      const k = `${t.account}\n${t.network}`;
      this.known.delete(k); // re-insert: the Map stays ordered by last success
      this.known.set(k, now);
      return 0;
    }
    const nf = this.fail(n, 'network', t.network, t.protocol, now);
    const af = this.fail(a, 'account', t.account, t.protocol, now);
    // Expired entries are dropped in a sweep, at most once a minute: under an attack from many
    // networks every entry may still be live, and sweeping on every failure would cost O(n) each.
    if (this.networks.size + this.accounts.size + this.known.size > 100_000 && now - this.lastSweep >= 60_000) {
      this.lastSweep = now;
      this.sweep(now);
    }
    return failureDelay(Math.max(nf, af), this.p);
  }

  private fail(c: Counter, scope: GuardScope, key: string, protocol: string, now: number): number {
    c.failures = [...c.failures.filter((x) => x > now - this.p.window), now].slice(-this.p.maxFailures);
    if (c.failures.length >= this.p.maxFailures && c.lockedUntil <= now) {
      c.lockedUntil = now + this.p.lockout;
      this.onEvent({ type: 'lockout', scope, key, failures: c.failures.length, until: c.lockedUntil, protocol });
    }
    return c.failures.length;
  }

  private retryAfter(c: Counter, now: number): number {
    if (c.lockedUntil > now) return c.lockedUntil - now;
    const oldest = c.failures.find((x) => x > now - this.p.window);
    return oldest === undefined ? this.p.reservationTtl : oldest + this.p.window - now;
  }

  private isKnown(account: string, network: string, now: number): boolean {
    const t = this.known.get(`${account}\n${network}`);
    return t !== undefined && t > now - this.p.knownNetworkTtl;
  }

  private counter(m: Map<string, Counter>, key: string): Counter {
    let c = m.get(key);
    if (!c) m.set(key, (c = { failures: [], pending: 0, lockedUntil: 0 }));
    return c;
  }

  /** Attempts never settled (their report was lost) count as failures after reservationTtl. */
  private expire(now: number): void {
    for (const t of this.open) {
      if (t.at > now - this.p.reservationTtl) break;
      this.close(t, false, now);
    }
  }

  private sweep(now: number): void {
    for (const m of [this.networks, this.accounts]) {
      for (const [k, c] of m) if (c.pending === 0 && c.lockedUntil <= now && recentFailures(c, now, this.p.window) === 0) m.delete(k);
    }
    for (const [k, t] of this.known) {
      if (t > now - this.p.knownNetworkTtl) break;
      this.known.delete(k);
    }
  }
}
