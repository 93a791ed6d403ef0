import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log.ts';
import type { ApiContext, ApiState } from '../types.ts';

/**
 * First middleware: gives every request an id (X-Request-Id on every response, `requestId` in
 * error bodies) and writes one log line per request carrying it, with status, time and key id.
 */
export function requestId(log: Logger) {
  return async (ctx: ApiContext, next: () => Promise<unknown>) => {
    const id = 'req_' + randomBytes(12).toString('base64url');
    ctx.state.requestId = id;
    ctx.state.started = performance.now();
    ctx.state.key = null;
    ctx.set('X-Request-Id', id);
    try {
      await next();
    } finally {
      const ms = Math.round((performance.now() - ctx.state.started) * 10) / 10;
      log.info({ requestId: id, method: ctx.method, path: ctx.path, status: ctx.status, ms, keyId: (ctx.state as ApiState).key?.id }, 'api request');
    }
  };
}
