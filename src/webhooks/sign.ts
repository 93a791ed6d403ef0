// Webhook signatures (Stripe/Svix style): Letterbox-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]
// where each v1 is HMAC-SHA256(secret, "<t>.<raw body>"). During a secret rotation's grace period
// two v1 values are sent: the new secret's first, then the old one's.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export function newWebhookSecret(): string {
  return 'whsec_' + randomBytes(32).toString('base64url');
}

export function signature(secret: string, t: number, body: string): string {
  return createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}

export function signatureHeader(secrets: string[], t: number, body: string): string {
  return [`t=${t}`, ...secrets.map((s) => `v1=${signature(s, t, body)}`)].join(',');
}

/** The receiver's check (also what the README shows): any v1 matches and t is recent. */
export function verifySignature(header: string, body: string, secret: string, nowSeconds: number, toleranceSeconds = 300): boolean {
  const parts = header.split(',').map((p) => p.trim().split('='));
  const t = Number(parts.find(([k]) => k === 't')?.[1]);
  if (!Number.isFinite(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = Buffer.from(signature(secret, t, body), 'hex');
  return parts.some(([k, v]) => k === 'v1' && v && v.length === expected.length * 2 && timingSafeEqual(Buffer.from(v, 'hex'), expected));
}
