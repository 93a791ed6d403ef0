import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log.ts';
import { RELAYED_IP } from '../forward.ts';
import type { ApiContext, ApiState } from '../types.ts';

// Random bytes drawn 3 KB at a time: one getrandom call per 256 requests instead of one each.
let pool = Buffer.alloc(0);
let at = 0;
function requestIdString(): string {
  if (at + 12 > pool.length) {
    pool = randomBytes(12 * 256);
    at = 0;
  }
  at += 12;
  return 'req_' + pool.toString('base64url', at - 12, at);
}

/**
 * First middleware: gives every request an id (X-Request-Id on every response, `requestId` in
 * error bodies) and writes one log line per request carrying it, with status, time and key id.
 */
export function requestId(log: Logger) {
  // The access line's fields are fixed and hold no secret (id, method, path without the query,
  // status, time, key id), so it skips the logger's redaction pass: ~8 µs of every request.
  const access = log.child({}, { redact: { paths: [] } });
  return async (ctx: ApiContext, next: () => Promise<unknown>) => {
    const id = requestIdString();
    ctx.state.requestId = id;
    ctx.state.started = performance.now();
    ctx.state.key = null;
    const relayed = (ctx.req as any)[RELAYED_IP];
    if (relayed !== undefined) ctx.request.ip = relayed; // handed over by an API worker thread
    ctx.set('X-Request-Id', id);
    try {
      await next();
    } finally {
      // A request handed to the main thread is logged there, under the main thread's request id.
      if (!ctx.state.forwarded) {
        const ms = Math.round((performance.now() - ctx.state.started) * 10) / 10;
        access.info({ requestId: id, method: ctx.method, path: ctx.path, status: ctx.status, ms, keyId: (ctx.state as ApiState).key?.id }, 'api request');
      }
    }
  };
}
