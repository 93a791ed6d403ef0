import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { defineRoute, type RouteSpec } from '../route.ts';

export const metricsRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/metrics', prefix: '', operationId: 'metrics', tag: 'Metrics', scope: 'metrics:read', produces: 'text/plain; version=0.0.4',
    summary: 'Prometheus metrics (text exposition format)',
    description: 'Scrape with a key that has the scope metrics:read (Prometheus: `authorization: { credentials: lb_live_… }`). Served on the API listener, which is local by default.',
    handler: async (req) => {
      const registry = req.app.metrics.registry;
      const workers = (await req.runtime.workerMetrics?.()) ?? [];
      if (!workers.length) return { raw: await registry.metrics(), contentType: registry.contentType };
      // API worker threads count the requests they answer: added to this thread's counts.
      const all = [await registry.getMetricsAsJSON(), ...workers] as MetricObjectWithValues<MetricValue<string>>[][];
      return { raw: await AggregatorRegistry.aggregate(all).metrics(), contentType: registry.contentType };
    },
  }),
];
