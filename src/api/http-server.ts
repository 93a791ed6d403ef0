import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ListenOptions, Server as NetServer, Socket } from 'node:net';
import { LetterboxError } from '../errors.ts';
import { parseHostPort, type Config } from '../config/schema.ts';

/** listen.api as host and port, and as named in a "cannot listen" error (every API thread listens there). */
export function apiListenAddress(config: Config): { host: string; port: number; where: string } {
  const { host, port } = parseHostPort(config.listen.api)!;
  return { host, port, where: `${config.listen.api} for the API (listen.api)` };
}

/** Listens, or fails with an error that names the address and what is wrong ("address in use"). */
export function listen(server: NetServer, where: string, options: ListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (err: any) => reject(new LetterboxError('unavailable', `cannot listen on ${where}: ${err.code === 'EADDRINUSE' ? 'address in use' : err.message}`)));
    server.listen(options, () => resolve());
  });
}

/**
 * An HTTP server for the API (in the main thread or a worker) that can be closed gracefully: stop
 * accepting, let requests in flight finish (bounded by `graceMs`), then drop what is left.
 */
export function apiHttpServer(handler: (req: IncomingMessage, res: ServerResponse) => void): { server: Server; close(graceMs?: number): Promise<void> } {
  const server = createServer(handler);
  server.requestTimeout = 120_000;
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return {
    server,
    async close(graceMs = 5000) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
