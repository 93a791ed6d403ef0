import { createServer as createNetServer } from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { LetterboxError } from '../errors.ts';
import type { AppContext, Component } from '../server.ts';
import { buildApi } from './app.ts';
import { recoverClaims } from './idempotency.ts';
import { relayedHandler } from './forward.ts';
import { apiHttpServer, apiListenAddress, listen } from './http-server.ts';
import { allRoutes } from './routes/index.ts';
import { ApiThreads } from './threads.ts';
import { routeInvoker } from './console-hook.ts';
import { consoleMiddleware } from '../console/app.ts';

/** Where API worker threads hand requests to the main thread (mode 0600). */
export function apiSocketPath(dataDir: string): string {
  return join(dataDir, 'api.sock');
}

/**
 * The management API component: Koa on listen.api (127.0.0.1 by default). With api.threads = 0
 * the main thread listens itself; otherwise that many worker threads listen (src/api/threads.ts)
 * and the main thread answers what they hand it on a private Unix socket.
 */
export function apiComponent(app: AppContext): Component {
  const { koa, runtime, buckets } = buildApi({ thread: 'main', app }, allRoutes, {
    console: (rt) => consoleMiddleware({ app, invoke: routeInvoker(allRoutes, app, rt) }),
  });
  const { config } = app;
  const threaded = config.api.threads > 0;
  let http: ReturnType<typeof apiHttpServer> | null = null;
  let threads: ApiThreads | null = null;
  return {
    name: 'api',
    async start() {
      // Before any request: claims a killed process left "in progress" (src/api/idempotency.ts).
      const settled = recoverClaims(app.db);
      if (settled.resolved || settled.released) app.log.warn({ component: 'api', ...settled }, 'settled idempotency claims left in progress by the previous process');
      http = apiHttpServer(threaded ? relayedHandler(koa.callback()) : koa.callback());
      const { host, port, where } = apiListenAddress(config);
      if (!threaded) await listen(http.server, where, { port, host });
      else {
        const socketPath = apiSocketPath(config.data_dir);
        if (Buffer.byteLength(socketPath) > 100) throw new LetterboxError('config_error', `data_dir is too long for the API's Unix socket ${socketPath} (at most 100 bytes); use a shorter data_dir or api.threads = 0`);
        // SO_REUSEPORT would let the workers share the port with anything already listening there
        // as the same user (a second Letterbox given the same listen.api): a plain bind first, so
        // that is refused as "address in use", as without threads.
        const probe = createNetServer();
        await listen(probe, where, { port, host });
        await new Promise<void>((r) => probe.close(() => r()));
        rmSync(socketPath, { force: true }); // left by a process that was killed
        await listen(http.server, socketPath, { path: socketPath });
        chmodSync(socketPath, 0o600);
        // The workers' log lines are written by the main thread's own destination (never interleaved).
        const destination = (app.log as any)[pino.symbols.streamSym] as { write(s: string): void };
        threads = new ApiThreads({ count: config.api.threads, config, buckets, socketPath, log: app.log, write: (text) => destination.write(text) });
        runtime.workerMetrics = () => threads!.metrics();
        await threads.start();
      }
      app.log.info({ component: 'api', listen: config.listen.api, threads: config.api.threads }, 'API listening');
    },
    async stop() {
      // Workers first: requests they are relaying still need the main thread's socket.
      await threads?.stop();
      threads = null;
      const h = http;
      if (!h) return;
      http = null;
      await h.close();
      if (threaded) rmSync(apiSocketPath(config.data_dir), { force: true });
    },
  };
}
