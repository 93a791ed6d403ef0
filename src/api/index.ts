import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseHostPort } from '../config/schema.ts';
import { LetterboxError } from '../errors.ts';
import type { AppContext, Component } from '../server.ts';
import { buildApi } from './app.ts';
import { relayedHandler } from './forward.ts';
import { allRoutes } from './routes/index.ts';
import { ApiThreads } from './threads.ts';

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
  const { koa, runtime, buckets } = buildApi(app, allRoutes);
  const { config } = app;
  let server: Server | null = null;
  let threads: ApiThreads | null = null;
  const sockets = new Set<Socket>();
  const listen = (s: Server, where: string, options: { port?: number; host?: string; path?: string }) =>
    new Promise<void>((resolve, reject) => {
      s.once('error', (err: any) => reject(new LetterboxError('unavailable', `cannot listen on ${where}: ${err.code === 'EADDRINUSE' ? 'address in use' : err.message}`)));
      s.listen(options, () => resolve());
    });
  return {
    name: 'api',
    async start() {
      const threaded = config.api.threads > 0;
      server = createServer(threaded ? relayedHandler(koa.callback()) : koa.callback());
      server.requestTimeout = 120_000;
      server.on('connection', (s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      const { host, port } = parseHostPort(config.listen.api)!;
      const where = `${config.listen.api} for the API (listen.api)`;
      if (!threaded) await listen(server, where, { port, host });
      else {
        const socketPath = apiSocketPath(config.data_dir);
        if (Buffer.byteLength(socketPath) > 100) throw new LetterboxError('config_error', `data_dir is too long for the API's Unix socket ${socketPath} (at most 100 bytes); use a shorter data_dir or api.threads = 0`);
        // SO_REUSEPORT would let the workers share the port with anything already listening there
        // as the same user (a second Letterbox given the same listen.api): a plain bind first, so
        // that is refused as "address in use", as without threads.
        const probe = createServer();
        await listen(probe, where, { port, host });
        await new Promise<void>((r) => probe.close(() => r()));
        rmSync(socketPath, { force: true }); // left by a process that was killed
        await listen(server, socketPath, { path: socketPath });
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
      const s = server;
      if (!s) return;
      server = null;
      // Stop accepting, let requests in flight finish (bounded), then drop what is left.
      const closed = new Promise<void>((r) => s.close(() => r()));
      s.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const sock of sockets) sock.destroy();
      }, 5000);
      await closed;
      clearTimeout(timer);
      if (config.api.threads > 0) rmSync(apiSocketPath(config.data_dir), { force: true });
    },
  };
}
