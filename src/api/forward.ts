import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { LetterboxError } from '../errors.ts';
import type { ApiContext } from './types.ts';

/**
 * An API worker thread hands the requests it cannot answer itself (routes not marked `anyThread`)
 * to the main thread over a private Unix socket (mode 0600, in the data directory), as plain HTTP,
 * and relays the answer as it comes. The main thread authenticates, rate limits, logs and counts
 * such a request exactly as if it had arrived directly; the client's address travels in a header
 * that the main thread believes only on that socket.
 */
const CLIENT_IP = 'x-letterbox-client-ip';
// Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are not relayed.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
/** Where the main thread's request handler finds the client address of a relayed request. */
export const RELAYED_IP = Symbol('letterbox.relayedIp');

export function forwarder(socketPath: string): { forward: (ctx: ApiContext) => Promise<void>; close: () => void } {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const forward = (ctx: ApiContext) =>
    new Promise<void>((resolve, reject) => {
      ctx.state.forwarded = true;
      const headers: Record<string, string | string[]> = {};
      for (const [h, v] of Object.entries(ctx.req.headers)) if (v !== undefined && !HOP.has(h)) headers[h] = v;
      if (ctx.req.headers['transfer-encoding']) headers['transfer-encoding'] = 'chunked';
      headers[CLIENT_IP] = ctx.request.ip;
      const up = request({ socketPath, agent, method: ctx.method, path: ctx.url, headers }, (res: IncomingMessage) => {
        ctx.status = res.statusCode ?? 502;
        for (const [h, v] of Object.entries(res.headers)) if (v !== undefined && !HOP.has(h)) ctx.set(h, v as string | string[]);
        // The main thread closes when it will not read the rest of a body (413): so must we.
        if (res.headers.connection === 'close') ctx.set('Connection', 'close');
        if (ctx.method === 'HEAD' || ctx.status === 204 || ctx.status === 304) res.resume();
        else ctx.body = res;
        resolve();
      });
      up.on('error', (err) => {
        ctx.state.forwarded = false; // answered here: count and log it here
        reject(new LetterboxError('unavailable', `the API's main thread did not answer (${err.message}); retry shortly`));
      });
      ctx.req.pipe(up);
    });
  return { forward, close: () => agent.destroy() };
}

/** The main thread's handler for the private socket: the relayed client address, then the API. */
export function relayedHandler(callback: (req: IncomingMessage, res: ServerResponse) => void) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const ip = req.headers[CLIENT_IP];
    delete req.headers[CLIENT_IP];
    (req as any)[RELAYED_IP] = typeof ip === 'string' ? ip : '';
    callback(req, res);
  };
}
