import type Koa from 'koa';
import type { ApiKey } from '../auth/apikeys.ts';
import type { AppContext, ThreadContext } from '../context.ts';
import type { Logger } from '../log.ts';
import type { ResolveFn } from '../dns/resolver.ts';

/** Per-process helpers of the API, built once at start. */
export interface ApiRuntime {
  /** The configured resolvers without a cache: verification must see a DNS fix at once. */
  liveResolve: ResolveFn;
  /** Path of doveadm (quota status). */
  doveadm: string;
  /** The OpenAPI document (built once). */
  document(): Record<string, any>;
  /** /healthz results (cached for 2 s). */
  health(): Promise<import('./health.ts').Health>;
  /** In the main thread with API worker threads: their API metrics (prom-client JSON), one per worker. */
  workerMetrics?: () => Promise<unknown[]>;
}

/** Per-request state, set by the middlewares in order: request id, then (on key routes) the key. */
export interface ApiState {
  requestId: string;
  started: number;
  key: ApiKey | null;
  /** Set in an API worker thread when the main thread answers the request (src/api/forward.ts). */
  forwarded?: boolean;
}

export type ApiContext = Koa.ParameterizedContext<ApiState>;

/** What every route handler receives: validated input, the caller's key, and the application (all of it in the main thread; a ThreadContext for `anyThread` routes). */
export interface ApiRequest<P = unknown, Q = unknown, B = unknown, A extends ThreadContext = AppContext> {
  app: A;
  runtime: ApiRuntime;
  /** The authenticated key (null only on public routes). */
  key: ApiKey | null;
  /** True for test keys: nothing is ever delivered; responses carry "sandbox": true. */
  sandbox: boolean;
  params: P;
  query: Q;
  body: B;
  requestId: string;
  log: Logger;
  ctx: ApiContext;
}

/** A JSON reply in the standard envelope: { data, nextCursor? } (plus "sandbox" for test keys). */
export interface JsonReply {
  status?: number;
  data: unknown;
  /** Lists only: the cursor for the next page, null on the last page. */
  nextCursor?: string | null;
  headers?: Record<string, string>;
}

/** A reply outside the envelope (the OpenAPI document, the docs page, /healthz). */
export interface RawReply {
  status?: number;
  raw: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

export type Reply = JsonReply | RawReply;
