import { LetterboxError } from '../../errors.ts';
import { hasScope, type Scope } from '../../auth/scopes.ts';
import type { ApiKey, KeyVerifier } from '../../auth/apikeys.ts';
import { applyRateLimit, type TokenBuckets } from './rate-limit.ts';
import type { ApiContext } from '../types.ts';

/**
 * Bearer authentication for key routes. A missing, malformed, unknown, revoked or expired key is a
 * 401 at once (WWW-Authenticate is added by the error handler); there is no other way in. Requests
 * that fail authentication draw from a per-IP bucket, so guessing keys is rate limited too (429).
 */
export function authenticate(ctx: ApiContext, verifier: KeyVerifier, ipBuckets: TokenBuckets): ApiKey {
  // Node keeps only the first of repeated Authorization headers; which one a proxy in front of us
  // would use is anyone's guess, so two are refused rather than one picked.
  let seen = 0;
  const raw = ctx.req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 13 && raw[i].toLowerCase() === 'authorization') seen++;
  if (seen > 1) throw new LetterboxError('validation_error', 'the request has more than one Authorization header; send exactly one');
  const header = ctx.get('Authorization');
  let reason: string;
  if (!header) reason = 'missing API key: send Authorization: Bearer lb_live_…';
  else {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) reason = 'malformed Authorization header: expected "Bearer <API key>"';
    else {
      const r = verifier.verify(m[1]);
      if (r.ok) {
        ctx.state.key = r.key;
        return r.key;
      }
      reason = r.reason;
    }
  }
  applyRateLimit(ctx, ipBuckets, `ip:${ctx.request.ip}`);
  throw new LetterboxError('unauthorized', reason);
}

/** 403 naming the scope needed when the key lacks it. */
export function requireScope(key: ApiKey, scope: Scope): void {
  if (!hasScope(key.scopes, scope)) {
    throw new LetterboxError('forbidden', `this API key lacks the scope "${scope}" (it has: ${key.scopes.length ? key.scopes.join(', ') : 'none'}); create a key with --scopes ${scope}`);
  }
}
