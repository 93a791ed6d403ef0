import { z } from 'zod';
import { LetterboxError } from '../errors.ts';
import type { Scope } from '../auth/scopes.ts';
import type { ApiRequest, Reply } from './types.ts';
import type { AppContext, ThreadContext } from '../context.ts';

/**
 * One route of the API, declared once: the router is built from it (auth, scope, rate limit,
 * validation, handler) and so is the OpenAPI document, from the same zod schemas. Adding a route
 * means adding a RouteSpec to a resource file under src/api/routes/ and listing that file in
 * src/api/routes/index.ts; nothing else.
 */
interface RouteBase<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Koa-router style (`/domains/:id`), relative to `prefix`. */
  path: string;
  /** Defaults to /api/v1. */
  prefix?: string;
  operationId: string;
  summary: string;
  description?: string;
  /** OpenAPI tag (the resource). */
  tag: string;
  /** 'key' (default): a valid API key is required; 'public': no authentication, no rate limit. */
  auth?: 'key' | 'public';
  /** The scope the key needs; undefined on key routes = any valid key (e.g. GET /me). */
  scope?: Scope;
  /** Which token bucket the request draws from: the general one or the (smaller) send bucket. */
  bucket?: 'default' | 'send';
  /** Validates path parameters (a strict object of strings). */
  params?: P;
  /** Validates the query string (a strict object; repeated keys arrive as arrays). */
  query?: Q;
  /** Validates the JSON body; without it the body must be empty (or {}). */
  body?: B;
  /** Schema of `data` in the success reply (documentation, and checked by the tests). */
  response?: z.ZodType;
  /** The success reply is a page: { data: [...], nextCursor }. */
  list?: boolean;
  /** Success status (200 unless given). */
  status?: number;
  /** Other statuses answered with the success schema (e.g. 201 from ensure, 503 from /healthz). */
  altStatus?: number[];
  /** Error codes this route may answer besides the common ones, for the document. */
  errors?: number[];
  /** Non-JSON success reply (the docs page). */
  produces?: string;
}

/**
 * `anyThread: true`: the handler only reads the database, config, clock and log (a ThreadContext),
 * so any API thread may answer it (src/api/threads.ts); its `req.app` has nothing else, checked by
 * the compiler. Routes without it are answered by the main thread, with the whole AppContext.
 */
export type RouteSpec<P extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> = RouteBase<P, Q, B> &
  (
    | { anyThread: true; handler(req: ApiRequest<z.output<P>, z.output<Q>, z.output<B>, ThreadContext>): Promise<Reply> | Reply }
    | { anyThread?: false; handler(req: ApiRequest<z.output<P>, z.output<Q>, z.output<B>, AppContext>): Promise<Reply> | Reply }
  );

/** Identity helper that keeps the handler's input types inferred from the schemas. */
export function defineRoute<P extends z.ZodType = z.ZodObject<{}>, Q extends z.ZodType = z.ZodObject<{}>, B extends z.ZodType = z.ZodUndefined>(
  spec: RouteSpec<P, Q, B>,
): RouteSpec {
  return spec as unknown as RouteSpec;
}

export function fullPath(r: RouteSpec): string {
  return (r.prefix ?? '/api/v1') + r.path;
}

// ---- validation

interface FlatIssue {
  path: string;
  message: string;
}

/** Flattens zod issues to "where.field: message"; unknown keys are reported one per field. */
function flatten(where: string, issues: readonly z.core.$ZodIssue[], base: PropertyKey[] = []): FlatIssue[] {
  const out: FlatIssue[] = [];
  for (const i of issues) {
    const path = [...base, ...i.path];
    if (i.code === 'unrecognized_keys') {
      for (const k of i.keys) out.push({ path: fmtPath(where, [...path, k]), message: 'unknown field' });
    } else if (i.code === 'invalid_union' && i.errors.length) {
      // Report the branch that got furthest (fewest issues at the root), e.g. object vs array bodies.
      const best = [...i.errors].sort((a, b) => rootTypeErrors(a) - rootTypeErrors(b) || a.length - b.length)[0];
      out.push(...flatten(where, best, path));
    } else {
      out.push({ path: fmtPath(where, path), message: i.message });
    }
  }
  return out;
}

function rootTypeErrors(issues: readonly z.core.$ZodIssue[]): number {
  return issues.filter((i) => i.path.length === 0 && i.code === 'invalid_type').length;
}

function fmtPath(where: string, path: PropertyKey[]): string {
  let s = where;
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return s;
}

/** Parses `input` with `schema` or throws a validation_error naming the field path. */
export function validate<T extends z.ZodType>(where: 'path' | 'query' | 'body', schema: T, input: unknown): z.output<T> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues = flatten(where, r.error.issues);
  const first = issues[0] ?? { path: where, message: 'invalid' };
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  throw new LetterboxError('validation_error', `${first.path}: ${first.message}${more}`, { issues });
}
