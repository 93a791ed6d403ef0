import { defineRoute, type RouteSpec } from '../route.ts';
import { metricsFor } from '../../metrics/index.ts';

export const metricsRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/metrics', prefix: '', operationId: 'metrics', tag: 'Metrics', scope: 'metrics:read', produces: 'text/plain; version=0.0.4',
    summary: 'Prometheus metrics (text exposition format)',
    description: 'Scrape with a key that has the scope metrics:read (Prometheus: `authorization: { credentials: lb_live_… }`). Served on the API listener, which is local by default.',
    handler: async (req) => {
      const registry = metricsFor(req.app).registry;
      return { raw: await registry.metrics(), contentType: registry.contentType };
    },
  }),
];
