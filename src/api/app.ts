import Koa from 'koa';
import Router from '@koa/router';
import { z } from 'zod';
import { LetterboxError } from '../errors.ts';
import { KeyVerifier } from '../auth/apikeys.ts';
import { createResolver } from '../dns/resolver.ts';
import { doveadmBinary } from '../services/quota.ts';
import type { AppContext, ThreadContext } from '../context.ts';
import { requestId } from './middleware/request-id.ts';
import { errorHandler } from './middleware/errors.ts';
import { authenticate, requireScope } from './middleware/auth.ts';
import { TokenBuckets, applyRateLimit } from './middleware/rate-limit.ts';
import { readJsonBody } from './middleware/body.ts';
import { fullPath, validate, type RouteSpec } from './route.ts';
import { buildOpenApi, type OpenApiDoc } from './openapi.ts';
import { healthChecker } from './health.ts';
import { forwardConsole } from './console-hook.ts';
import { apiMetricsMiddleware, type ApiMetrics } from '../metrics/index.ts';
import type { ApiContext, ApiRuntime, ApiState } from './types.ts';

/**
 * Where this thread serves the API: the main thread has the whole AppContext and answers every
 * route; an API worker thread (src/api/threads.ts) has its own ThreadContext, answers the routes
 * marked `anyThread` and hands the others to the main thread.
 */
export type ApiHost =
  | { thread: 'main'; app: AppContext }
  | {
      thread: 'worker';
      app: ThreadContext;
      /** The token buckets' shared memory, the same in every API thread. */
      buckets: SharedBuckets;
      /** Answers a request for a route not marked `anyThread` by handing it to the main thread, which owns the services such a route needs. */
      forward: (ctx: ApiContext) => Promise<void>;
      /** The API metrics this thread counts into (a worker's own registry). */
      metrics: ApiMetrics;
    };

export interface SharedBuckets {
  default: SharedArrayBuffer;
  send: SharedArrayBuffer;
  ip: SharedArrayBuffer;
}

const EMPTY = z.strictObject({});

/** Decide: whether a route without a body schema may be sent `raw` (nothing, or an empty JSON object). Pure. */
export function bodylessAccepts(raw: unknown): boolean {
  return raw === undefined || (!!raw && typeof raw === 'object' && !Array.isArray(raw) && Object.keys(raw).length === 0);
}

/** Decide: the JSON body of a success — { data }, plus nextCursor for lists and "sandbox": true for test keys. Pure. */
export function envelope(spec: Pick<RouteSpec, 'list'>, reply: { data?: unknown; nextCursor?: string | null }, sandbox: boolean): Record<string, unknown> {
  return { data: reply.data, ...(spec.list ? { nextCursor: reply.nextCursor ?? null } : {}), ...(sandbox ? { sandbox: true } : {}) };
}

type Buckets = { default: TokenBuckets; send: TokenBuckets; ip: TokenBuckets };

/** The rate-limit buckets (in a worker: over the shared memory every API thread counts in). */
function rateBuckets(app: ThreadContext, shared: SharedBuckets | undefined): Buckets {
  const { api } = app.config;
  return {
    default: new TokenBuckets(api.rate_per_minute, api.rate_burst, app.clock, shared?.default),
    send: new TokenBuckets(api.send_rate_per_minute, api.send_rate_burst, app.clock, shared?.send),
    // Requests without a valid key, per client IP: key guessing is rate limited too.
    ip: new TokenBuckets(api.rate_per_minute, api.rate_burst, app.clock, shared?.ip),
  };
}

/** What every route handler of one thread shares. */
interface HandlerDeps {
  app: ThreadContext;
  main: AppContext | null;
  verifier: KeyVerifier;
  buckets: Buckets;
  runtime: ApiRuntime;
  log: ThreadContext['log'];
}

/**
 * One route's handler: authentication (key routes), its rate-limit bucket, its scope, path/query/body
 * validation, then the route's own handler, whose reply is written as the response.
 */
function routeHandler(spec: RouteSpec, d: HandlerDeps): (ctx: ApiContext) => Promise<void> {
  const { app, main, verifier, buckets, runtime, log } = d;
  return async (ctx: ApiContext) => {
    let key = null;
    if (spec.auth !== 'public') {
      key = authenticate(ctx, verifier, buckets.ip);
      applyRateLimit(ctx, spec.bucket === 'send' ? buckets.send : buckets.default, key.id);
      if (spec.scope) requireScope(key, spec.scope);
    }
    const params = validate('path', spec.params ?? EMPTY, (ctx as any).params ?? {});
    const query = validate('query', spec.query ?? EMPTY, { ...ctx.query });
    let body: unknown = undefined;
    const raw = await readJsonBody(ctx, app.config.api.max_body_size, { takesBody: !!spec.body });
    if (spec.body) body = validate('body', spec.body, raw);
    else if (!bodylessAccepts(raw)) {
      throw new LetterboxError('validation_error', `body: ${ctx.method} ${spec.path} takes no body`, { issues: [{ path: 'body', message: 'no body expected' }] });
    }
    const sandbox = key?.mode === 'test';
    const common = { runtime, key, sandbox, params, query, body, requestId: ctx.state.requestId, log, ctx };
    // A worker hands main-thread routes on, so `main` is set whenever such a handler runs.
    const reply = await (spec.anyThread ? spec.handler({ ...common, app }) : spec.handler({ ...common, app: main! }));
    ctx.status = reply.status ?? spec.status ?? 200;
    for (const [h, v] of Object.entries(reply.headers ?? {})) ctx.set(h, v);
    if ('raw' in reply) {
      if (reply.contentType) ctx.type = reply.contentType;
      ctx.body = reply.raw;
    } else {
      ctx.body = envelope(spec, reply, sandbox);
    }
  };
}

/**
 * Builds the Koa application from the route list. Each route runs, in order: authentication (key
 * routes), its rate-limit bucket, its scope, path/query/body validation, then the handler, whose
 * reply is wrapped in { data } (plus nextCursor for lists, "sandbox": true for test keys).
 */
export function buildApi(host: ApiHost, routes: RouteSpec[], opts: { console?: (runtime: ApiRuntime) => Koa.Middleware } = {}): { koa: Koa<ApiState>; runtime: ApiRuntime; buckets: SharedBuckets } {
  const { app } = host;
  const main = host.thread === 'main' ? host.app : null;
  const threading = host.thread === 'worker' ? host : null;
  const log = app.log.child({ component: 'api' });
  const verifier = new KeyVerifier(app);
  const buckets = rateBuckets(app, threading?.buckets);
  const forward = threading?.forward;
  const noHealth = () => Promise.reject(new Error('/healthz is answered by the main thread'));
  let doc: OpenApiDoc | null = null;
  const runtime: ApiRuntime = {
    // Verification must see DNS as it is now (a fix must show at once): same servers, no cache.
    liveResolve: createResolver({ servers: app.config.dns.servers, timeoutMs: app.config.dns.timeout_ms, clock: app.clock, cacheMs: 0, negativeCacheMs: 0 }).resolve,
    doveadm: doveadmBinary(app.config.dovecot.binary),
    document: () =>
      (doc ??= buildOpenApi(routes, {
        title: 'Letterbox Management API',
        version: '1',
        description:
          'JSON over HTTP. Authenticate with `Authorization: Bearer lb_live_…` (or `lb_test_…` for sandbox keys). Success: `{ "data": … }`; errors: `{ "error": { "code", "message", "requestId" } }`. Lists take `limit` and `cursor` and return `nextCursor`. Every response carries `X-Request-Id`; authenticated ones `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.',
      })),
    health: main ? healthChecker(main) : noHealth,
  };

  const deps: HandlerDeps = { app, main, verifier, buckets, runtime, log };
  const router = new Router<ApiState>();
  for (const spec of routes) {
    if (forward && !spec.anyThread) {
      router[spec.method](fullPath(spec), forward as any);
      continue;
    }
    const handler = routeHandler(spec, deps);
    router[spec.method](fullPath(spec), handler as any);
  }

  const koa = new Koa<ApiState>({ proxy: false });
  koa.silent = true;
  koa.use(requestId(log));
  koa.use(apiMetricsMiddleware(threading ? threading.metrics : main!.metrics)); // before the error handler: counts final statuses
  koa.use(errorHandler(log));
  // The web console (src/console/): answered by the main thread, which the workers hand it to.
  if (forward) koa.use(forwardConsole(forward) as any);
  else if (opts.console) koa.use(opts.console(runtime) as any);
  koa.use(router.routes() as any);
  koa.use(router.allowedMethods() as any);
  // Reached only when no route matched (the 404/405/501 answers are set on the way back): a request
  // that carries a key is still authenticated and counted, so it gets X-RateLimit-* like any other
  // authenticated response (and an invalid key is a 401, as everywhere).
  koa.use(async (ctx: ApiContext) => {
    if (!ctx.get('Authorization')) return;
    const key = authenticate(ctx, verifier, buckets.ip);
    applyRateLimit(ctx, buckets.default, key.id);
  });
  return { koa, runtime, buckets: { default: buckets.default.shared, send: buckets.send.shared, ip: buckets.ip.shared } };
}
