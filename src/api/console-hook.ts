// Where the web console (src/console/) meets the management API: it is mounted on the API's Koa
// app (main thread; API worker threads hand /console requests to the main thread), and its
// actions call the API's own route handlers through `routeInvoker` — validated with the route's
// schemas, as an administrator without restrictions (no key: every scope, every domain).
import type Koa from 'koa';
import { z } from 'zod';
import { LetterboxError } from '../errors.ts';
import type { AppContext } from '../context.ts';
import type { Invoke } from '../console/app.ts';
import { validate, type RouteSpec } from './route.ts';
import type { ApiContext, ApiRuntime } from './types.ts';

export const CONSOLE_PREFIX = '/console';
const EMPTY = z.strictObject({});

/** Decide: is this path the console's (so an API worker thread hands it to the main thread)? Pure. */
export function isConsolePath(path: string): boolean {
  return path === CONSOLE_PREFIX || path.startsWith(`${CONSOLE_PREFIX}/`);
}

export function routeInvoker(routes: RouteSpec[], app: AppContext, runtime: ApiRuntime): Invoke {
  const byId = new Map(routes.map((r) => [r.operationId, r]));
  const log = app.log.child({ component: 'console' });
  return async (operationId, input, ctx) => {
    const spec = byId.get(operationId);
    if (!spec) throw new LetterboxError('internal_error', `the console called an unknown API operation ${operationId}`);
    const params = validate('path', spec.params ?? EMPTY, input.params ?? {});
    const query = validate('query', spec.query ?? EMPTY, input.query ?? {});
    const body = spec.body ? validate('body', spec.body, input.body) : undefined;
    const req = { app, runtime, key: null, sandbox: false, params, query, body, requestId: (ctx.state as any).requestId ?? '', log, ctx: ctx as unknown as ApiContext };
    const reply = await spec.handler(req as any);
    if ('raw' in reply) throw new LetterboxError('internal_error', `the console called ${operationId}, which does not answer JSON`);
    return reply;
  };
}

/** For an API worker thread: hands console requests to the main thread. */
export function forwardConsole(forward: (ctx: ApiContext) => Promise<void>): Koa.Middleware {
  return (ctx, next) => (isConsolePath(ctx.path) ? forward(ctx as unknown as ApiContext) : next());
}
