import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { parseHostPort } from '../config/schema.ts';
import { LetterboxError } from '../errors.ts';
import type { AppContext, Component } from '../server.ts';
import { buildApi } from './app.ts';
import { allRoutes } from './routes/index.ts';

/** The management API component: Koa on listen.api (127.0.0.1 by default). */
export function apiComponent(app: AppContext): Component {
  const { koa } = buildApi(app, allRoutes);
  const { host, port } = parseHostPort(app.config.listen.api)!;
  let server: Server | null = null;
  const sockets = new Set<Socket>();
  return {
    name: 'api',
    async start() {
      server = createServer(koa.callback());
      server.requestTimeout = 120_000;
      server.on('connection', (s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      await new Promise<void>((resolve, reject) => {
        server!.once('error', (err: any) =>
          reject(new LetterboxError('unavailable', `cannot listen on ${app.config.listen.api} for the API (listen.api): ${err.code === 'EADDRINUSE' ? 'address in use' : err.message}`)),
        );
        server!.listen(port, host, () => resolve());
      });
      app.log.info({ component: 'api', listen: app.config.listen.api }, 'API listening');
    },
    async stop() {
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
    },
  };
}
