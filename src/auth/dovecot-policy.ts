// Dovecot's authentication policy protocol (Dovecot 2.3 and 2.4, `auth_policy_server_url`), served
// locally so that IMAP logins go through the same LoginGuard as submission AUTH:
//   POST <url>?command=allow   before the password check (and once more after it): we RESERVE an
//                              attempt; {"status":-1} refuses the login, {"status":0} lets it go on.
//   POST <url>?command=report  after the check, with "success": we SETTLE the reservation.
// Requests carry a per-start random secret header (only Dovecot, which reads its 0640 config, has
// it) and are correlated by Dovecot's session id. Attempts without a client address (a local unix
// socket) are not counted. Written here rather than taken from a library: the protocol is three JSON
// fields, and no maintained npm package implements it.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../log.ts';
import type { LoginGuard, Ticket } from './guard.ts';

export interface PolicyEndpoint {
  /** What Dovecot's config needs (rendered by src/dovecot/config.ts). */
  dovecot: { url: string; apiHeader: string; nonce: string };
  /** Called for each successful login with a device (app) password (its id, from the passdb). */
  onAppPassword(fn: (use: { id: string; login: string; remote: string; protocol: string }) => void): void;
  close(): Promise<void>;
}

const HEADER = 'x-letterbox-policy';
const MAX_BODY = 16 * 1024;

/** Pure: what to do with one policy request. */
export type PolicyRequest = { command: string; login: string; remote: string; protocol: string; session: string; success: boolean | null; app?: string };

export function parsePolicyRequest(command: string, body: unknown): PolicyRequest | null {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return null;
  const b = body as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  return {
    command,
    login: str(b.login),
    remote: str(b.remote),
    protocol: str(b.protocol) || 'imap',
    session: str(b.session_id),
    success: typeof b.success === 'boolean' ? b.success : null,
    // The device (app) password that logged in (passdb field lb_app), when there was one.
    ...(str(b.app) ? { app: str(b.app) } : {}),
  };
}

async function readBody(req: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) return null;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startPolicyEndpoint(o: { guard: LoginGuard; log: Logger; host: string; port: number }): Promise<PolicyEndpoint> {
  const secret = randomBytes(24).toString('hex');
  const secretBuf = Buffer.from(secret);
  const log = o.log.child({ component: 'login-guard' });
  // Dovecot session id → the attempt reserved for it (one attempt at a time per session).
  const tickets = new Map<string, Ticket>();
  let appPasswordUsed: ((use: { id: string; login: string; remote: string; protocol: string }) => void) | null = null;
  const answer = (res: any, status: number, msg = '') => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status, msg }));
  };
  const handle = (r: PolicyRequest): { status: number; msg?: string } => {
    log.debug({ command: r.command, user: r.login, ip: r.remote, protocol: r.protocol, session: r.session, success: r.success }, 'auth policy request');
    if (r.command === 'report' && r.success === true && r.app && appPasswordUsed) {
      try {
        appPasswordUsed({ id: r.app, login: r.login, remote: r.remote, protocol: r.protocol });
      } catch (err: any) {
        log.warn({ err: err.message }, 'could not record an app password use');
      }
    }
    if (!r.remote) return { status: 0 }; // local socket: not a network client
    if (r.command === 'allow') {
      const held = r.session ? tickets.get(r.session) : undefined;
      if (held && !held.settled) return { status: 0 }; // the check after the password: already counted
      const res = o.guard.reserve(r.login, r.remote, r.protocol);
      if (!res.ok) {
        log.warn({ ip: r.remote, user: r.login, protocol: r.protocol, scope: res.scope }, 'authentication refused: too many failures (locked out)');
        return { status: -1, msg: 'too many failed authentication attempts; try again later' };
      }
      if (r.session) tickets.set(r.session, res.ticket);
      else o.guard.settle(res.ticket, true); // uncorrelatable: do not hold a slot forever
      return { status: 0 };
    }
    if (r.command === 'report') {
      const t = r.session ? tickets.get(r.session) : undefined;
      if (t) {
        tickets.delete(r.session);
        o.guard.settle(t, r.success === true);
        if (r.success !== true) log.warn({ ip: r.remote, user: r.login, protocol: r.protocol }, 'authentication failed');
      }
      return { status: 0 };
    }
    return { status: 0 };
  };
  const server: Server = createServer((req, res) => {
    const given = Buffer.from(String(req.headers[HEADER] ?? ''));
    if (req.method !== 'POST' || given.length !== secretBuf.length || !timingSafeEqual(given, secretBuf)) {
      res.writeHead(403).end();
      return;
    }
    const command = new URL(req.url ?? '/', 'http://policy').searchParams.get('command') ?? '';
    readBody(req).then(
      (text) => {
        let body: unknown = null;
        try {
          body = text === null ? null : JSON.parse(text);
        } catch {
          body = null;
        }
        const r = parsePolicyRequest(command, body);
        if (!r) return void res.writeHead(400).end();
        // Tickets of sessions whose report never came are settled by the guard's own expiry; drop
        // our references to them so this map stays small.
        if (tickets.size > 10_000) for (const [k, t] of tickets) if (t.settled) tickets.delete(k);
        const out = handle(r);
        answer(res, out.status, out.msg);
      },
      () => res.writeHead(400).end(),
    );
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const addr = server.address() as { address: string; port: number };
  const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  return {
    dovecot: { url: `http://${host}:${addr.port}/`, apiHeader: `X-Letterbox-Policy: ${secret}`, nonce: randomBytes(16).toString('hex') },
    onAppPassword: (fn) => {
      appPasswordUsed = fn;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
