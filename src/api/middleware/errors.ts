import { HTTP_STATUS, isLetterboxError, type ErrorCode } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { ApiContext } from '../types.ts';

export const WWW_AUTHENTICATE = 'Bearer realm="letterbox"';

export function errorBody(ctx: ApiContext, code: ErrorCode, message: string, details?: Record<string, unknown>) {
  return { error: { code, message, requestId: ctx.state.requestId, ...(details ? { details } : {}) } };
}

/**
 * Turns every failure into `{ error: { code, message, requestId } }` with the status of its code.
 * LetterboxErrors keep their code and message (they are written for users); anything else is an
 * internal error: logged in full with the request id, answered without internals. Unmatched paths
 * answer 404 and known paths with the wrong method 405 (with Allow), in the same shape.
 */
export function errorHandler(log: Logger) {
  return async (ctx: ApiContext, next: () => Promise<unknown>) => {
    try {
      await next();
      if (ctx.body === undefined || ctx.body === null) {
        const unrouted: Partial<Record<number, [ErrorCode, string]>> = {
          404: ['not_found', `no route ${ctx.method} ${ctx.path}; see /api/v1/openapi.json`],
          405: ['method_not_allowed', `${ctx.method} is not allowed on ${ctx.path}; allowed: ${ctx.response.get('Allow') || 'none'}`],
          501: ['not_implemented', `method ${ctx.method} is not implemented`],
        };
        const u = unrouted[ctx.status];
        if (u) {
          ctx.status = HTTP_STATUS[u[0]];
          ctx.body = errorBody(ctx, u[0], u[1]);
        }
      }
    } catch (err: any) {
      if (isLetterboxError(err)) {
        ctx.status = err.status;
        if (err.code === 'unauthorized') ctx.set('WWW-Authenticate', WWW_AUTHENTICATE);
        const details = err.code === 'validation_error' && err.details ? err.details : undefined;
        ctx.body = errorBody(ctx, err.code, err.message, details);
        if (err.status >= 500) log.error({ requestId: ctx.state.requestId, code: err.code, err: err.message }, 'api request failed');
        return;
      }
      log.error({ requestId: ctx.state.requestId, method: ctx.method, path: ctx.path, err: err?.message, stack: err?.stack }, 'internal error in API request');
      ctx.status = 500;
      ctx.body = errorBody(ctx, 'internal_error', `internal error; the server log has the details under request id ${ctx.state.requestId}`);
    }
  };
}
