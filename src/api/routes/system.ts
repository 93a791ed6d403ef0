import { z } from 'zod';
import { defineRoute, type RouteSpec } from '../route.ts';
import { HealthSchema } from '../schemas/meta.ts';
import { renderDocs } from '../docs.ts';

/** Public routes: health, the OpenAPI document and its human-readable page. */
export const systemRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/healthz', prefix: '', operationId: 'health', tag: 'System', auth: 'public', altStatus: [503],
    summary: 'Health of the appliance (no authentication)',
    description: 'Database, Dovecot (running and accepting IMAP connections) and every configured listener. 200 when all is well, else 503; `problems` says what is wrong.',
    response: HealthSchema,
    handler: async (req) => {
      const h = await req.runtime.health();
      return { status: h.status === 'ok' ? 200 : 503, raw: h, headers: { 'Cache-Control': 'no-store' } };
    },
  }),
  defineRoute({
    method: 'get', path: '/openapi.json', operationId: 'openapi', anyThread: true, tag: 'System', auth: 'public',
    summary: 'This OpenAPI 3.1 document (no authentication)',
    description: 'Generated from the schemas that validate the requests.',
    response: z.object({ openapi: z.string() }).loose(),
    handler: (req) => ({ raw: req.runtime.document() }),
  }),
  defineRoute({
    method: 'get', path: '/api/docs', prefix: '', operationId: 'docs', anyThread: true, tag: 'System', auth: 'public', produces: 'text/html',
    summary: 'Human-readable API documentation (HTML, no authentication)',
    handler: (req) => ({ raw: renderDocs(req.runtime.document()), contentType: 'text/html; charset=utf-8' }),
  }),
];
