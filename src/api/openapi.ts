import { z } from 'zod';
import { ErrorSchema } from './schemas/common.ts';
import { fullPath, type RouteSpec } from './route.ts';

/**
 * The OpenAPI 3.1 document, generated from the RouteSpecs: the same zod schemas that validate
 * requests describe them here (JSON Schema 2020-12, which OpenAPI 3.1 uses as is), so the document
 * cannot drift from what the server accepts. Schemas with a `.meta({ id })` become named components.
 */
export type OpenApiDoc = Record<string, any>;

const ERROR_TEXT: Record<number, string> = {
  400: 'Invalid input (validation_error): the message names the field path',
  401: 'Missing, malformed, unknown, revoked or expired API key (unauthorized)',
  403: 'The key lacks the scope (forbidden)',
  404: 'No such resource, or not visible to this key (not_found)',
  409: 'Conflict with the current state (conflict)',
  413: 'Request body over api.max_body_size (payload_too_large)',
  415: 'The body is not sent as Content-Type: application/json (unsupported_media_type)',
  429: 'Rate limit exceeded (rate_limited); see Retry-After',
  500: 'Internal error (internal_error)',
  502: 'An upstream server failed: IMAP (imap_error) or SMTP (smtp_error)',
  503: 'A dependency is unavailable (unavailable)',
};

const RATE_HEADERS = {
  'X-RateLimit-Limit': { description: 'Bucket size (burst).', schema: { type: 'integer' } },
  'X-RateLimit-Remaining': { description: 'Requests left in the bucket.', schema: { type: 'integer' } },
  'X-RateLimit-Reset': { description: 'Seconds until the bucket is full again.', schema: { type: 'integer' } },
};
const REQUEST_ID_HEADER = { 'X-Request-Id': { description: 'Unique id of this request (also in error bodies and the server log).', schema: { type: 'string' } } };

type ToSchema = (schema: z.ZodType, io: 'input' | 'output') => any;

/** JSON Schema of a zod schema, named sub-schemas hoisted into `components` (which it fills). */
function schemaConverter(components: Record<string, unknown>): ToSchema {
  return (schema, io) => {
    const js = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as any;
    const text = JSON.stringify(js).replaceAll('"#/$defs/', '"#/components/schemas/');
    const out = JSON.parse(text);
    for (const [id, def] of Object.entries<any>(out.$defs ?? {})) {
      delete def.$id;
      components[id] = def;
    }
    delete out.$defs;
    delete out.$schema;
    // A schema that is itself named becomes a reference too.
    const id = (z.globalRegistry.get(schema) as any)?.id;
    if (id && !out.$ref) {
      delete out.id;
      components[id] = out;
      return { $ref: `#/components/schemas/${id}` };
    }
    return out;
  };
}

/**
 * The error responses a route documents, sorted: 400/401/429 for keyed routes, 403 with a scope,
 * 404 with path parameters, 400/413/415 with a body, 400 with a query, its own `errors`, always
 * 500; less any code it answers as an alternative success (`altStatus`). Pure.
 */
export function errorCodes(r: Pick<RouteSpec, 'auth' | 'scope' | 'params' | 'body' | 'query' | 'errors' | 'altStatus'>): number[] {
  const isKey = r.auth !== 'public';
  const codes = new Set<number>([...(isKey ? [400, 401, 429] : []), ...(isKey && r.scope ? [403] : []), ...(r.params ? [404] : []), ...(r.body ? [400, 413, 415] : []), ...(r.query ? [400] : []), ...(r.errors ?? []), 500]);
  for (const c of r.altStatus ?? []) codes.delete(c);
  return [...codes].sort();
}

/** The path and query parameters of a route, from its zod schemas. */
function parametersOf(r: RouteSpec, toSchema: ToSchema): unknown[] {
  const parameters: unknown[] = [];
  for (const [where, schema] of [['path', r.params], ['query', r.query]] as const) {
    if (!schema) continue;
    const js = toSchema(schema, 'input');
    for (const [name, prop] of Object.entries<any>(js.properties ?? {})) {
      const { description, ...rest } = prop;
      parameters.push({ name, in: where, required: where === 'path' || (js.required ?? []).includes(name), ...(description ? { description } : {}), schema: rest });
    }
  }
  return parameters;
}

/** The success response: a raw body (`produces`), or JSON in the { data, nextCursor?, sandbox? } envelope (public routes: the bare response). */
function successOf(r: RouteSpec, toSchema: ToSchema): unknown {
  if (r.produces) return { description: 'OK', headers: REQUEST_ID_HEADER, content: { [r.produces]: { schema: { type: 'string' } } } };
  const isKey = r.auth !== 'public';
  const data = r.response ? (r.list ? z.array(r.response) : r.response) : z.unknown();
  const envelope = r.auth === 'public' ? (r.response ?? z.unknown()) : z.object({
    data,
    ...(r.list ? { nextCursor: z.string().nullable().describe('Pass as ?cursor= for the next page; null on the last page.') } : {}),
    sandbox: z.literal(true).optional().describe('Present (true) when the request was made with a test key.'),
  });
  return {
    description: 'OK',
    headers: { ...REQUEST_ID_HEADER, ...(isKey ? RATE_HEADERS : {}) },
    content: { 'application/json': { schema: toSchema(envelope, 'output') } },
  };
}

/** One route's operation object. */
function operationOf(r: RouteSpec, toSchema: ToSchema): Record<string, unknown> {
  const isKey = r.auth !== 'public';
  const parameters = parametersOf(r, toSchema);
  const success = successOf(r, toSchema);
  const responses: Record<string, unknown> = { [String(r.status ?? 200)]: success };
  for (const c of errorCodes(r)) responses[String(c)] = { $ref: `#/components/responses/E${c}` };
  for (const c of r.altStatus ?? []) responses[String(c)] = { ...(success as object), description: c === 201 ? 'Created' : c >= 500 ? 'Unavailable (see the body)' : 'OK' };
  const scopeText = isKey ? (r.scope ? `Scope: \`${r.scope}\`.` : 'Any valid API key.') : 'No authentication.';
  return {
    operationId: r.operationId,
    summary: r.summary,
    description: [r.description, scopeText].filter(Boolean).join('\n\n'),
    tags: [r.tag],
    ...(isKey ? { 'x-scope': r.scope ?? null } : { security: [] }),
    ...(parameters.length ? { parameters } : {}),
    ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(r.body, 'input') } } } } : {}),
    responses,
  };
}

/** The shared error responses E400…E503, each with the error body schema. */
function errorResponses(errorRef: unknown): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  for (const [c, text] of Object.entries(ERROR_TEXT)) {
    responses[`E${c}`] = {
      description: text,
      headers: {
        ...REQUEST_ID_HEADER,
        ...(c === '401' ? { 'WWW-Authenticate': { schema: { type: 'string', const: 'Bearer realm="letterbox"' } } } : {}),
        ...(c === '429' ? { 'Retry-After': { description: 'Seconds to wait.', schema: { type: 'integer' } } } : {}),
      },
      content: { 'application/json': { schema: errorRef } },
    };
  }
  return responses;
}

export function buildOpenApi(routes: RouteSpec[], info: { title: string; version: string; description: string }): OpenApiDoc {
  const components: Record<string, unknown> = {};
  const toSchema = schemaConverter(components);
  const errorRef = toSchema(ErrorSchema, 'output');
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = fullPath(r).replace(/:(\w+)/g, '{$1}');
    paths[path] ??= {};
    paths[path][r.method] = operationOf(r, toSchema);
  }
  return {
    openapi: '3.1.0',
    info,
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: [...new Set(routes.map((r) => r.tag))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API key: lb_live_… or lb_test_… (created with `letterbox key create`).' } },
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => a.localeCompare(b))),
      responses: errorResponses(errorRef),
    },
  };
}
