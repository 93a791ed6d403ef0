import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Sender Rewriting Scheme (SRS0), so a forwarded message's envelope sender is in our domain (SPF
 * passes at the receiver) and bounces come back to us and on to the original sender.
 *
 *   SRS0=HHHH=TT=orig-domain=orig-local@forwarding-domain
 *
 * HHHH: first 4 base64url chars of HMAC-SHA1(secret, TT + orig-domain + orig-local), lower-cased
 * input (base64url, not base64: '+' would clash with plus addressing); TT: days since the epoch mod 1024 in 2 base32 chars. Written here (about 40 lines) rather
 * than taken from npm: the packages there (srs.js 0.1.0, sender-rewriting-scheme 1.0.0) are
 * unmaintained single-author releases.
 */
const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
const MAX_AGE_DAYS = 21;

function day(now: number): number {
  return Math.floor(now / 86_400_000) % 1024;
}

function stamp(d: number): string {
  return B32[(d >> 5) & 31] + B32[d & 31];
}

function hash(secret: string, ts: string, domain: string, local: string): string {
  return createHmac('sha1', secret).update(`${ts}${domain}${local}`.toLowerCase()).digest('base64url').slice(0, 4);
}

/** Rewrites `local@domain` into an SRS0 address at `forwardingDomain`. '' (null sender) stays ''. */
export function srsForward(sender: string, forwardingDomain: string, secret: string, now: number): string {
  if (!sender) return '';
  const at = sender.lastIndexOf('@');
  if (at <= 0) return sender;
  const local = sender.slice(0, at);
  const domain = sender.slice(at + 1);
  const ts = stamp(day(now));
  return `SRS0=${hash(secret, ts, domain, local)}=${ts}=${domain}=${local}@${forwardingDomain}`;
}

/** The original sender of an SRS0 address, or null when it is not ours, forged or expired. */
export function srsReverse(address: string, secret: string, now: number): string | null {
  const m = /^srs0=([^=]{4})=([a-z2-7]{2})=([^=]+)=(.+)@[^@]+$/i.exec(address);
  if (!m) return null;
  const [, h, ts, domain, local] = m;
  const expected = hash(secret, ts.toLowerCase(), domain, local);
  // The hash is compared case-insensitively: some MTAs lower-case local parts.
  if (!timingSafeEqual(Buffer.from(expected.toLowerCase()), Buffer.from(h.toLowerCase().padEnd(4).slice(0, 4)))) return null;
  const t = (B32.indexOf(ts[0].toLowerCase()) << 5) | B32.indexOf(ts[1].toLowerCase());
  const age = (day(now) - t + 1024) % 1024;
  if (age > MAX_AGE_DAYS) return null;
  return `${local}@${domain}`;
}
