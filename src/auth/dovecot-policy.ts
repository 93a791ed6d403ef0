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

/**
 * Decide: what one request does with the guard. Not a network client (no remote address) → pass;
 * allow → reserve an attempt, unless the session already holds an unsettled one (the check after
 * the password: already counted); report → settle the session's attempt, if it holds one. Pure.
 */
export type PolicyAction = { kind: 'pass' } | { kind: 'reserve' } | { kind: 'settle'; ticket: Ticket; success: boolean };

export function policyAction(r: PolicyRequest, held: Ticket | undefined): PolicyAction {
  if (!r.remote) return { kind: 'pass' }; // local socket: not a network client
  if (r.command === 'allow') return held && !held.settled ? { kind: 'pass' } : { kind: 'reserve' };
  if (r.command === 'report' && held) return { kind: 'settle', ticket: held, success: r.success === true };
  return { kind: 'pass' };
}

/** The request body as JSON; null when too large or not JSON. */
function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Dovecot session id → the attempt reserved for it (one attempt at a time per session); acts on the guard. */
class PolicySessions {
  private readonly tickets = new Map<string, Ticket>();
  private readonly guard: LoginGuard;
  private readonly log: Logger;
  /** Told of each successful login with a device (app) password, for its "last used". */
  appPasswordUsed: ((use: { id: string; login: string; remote: string; protocol: string }) => void) | null = null;
  constructor(guard: LoginGuard, log: Logger) {
    this.guard = guard;
    this.log = log;
  }

  handle(r: PolicyRequest): { status: number; msg?: string } {
    this.log.debug({ command: r.command, user: r.login, ip: r.remote, protocol: r.protocol, session: r.session, success: r.success }, 'auth policy request');
    if (r.command === 'report' && r.success === true && r.app && this.appPasswordUsed) {
      try {
        this.appPasswordUsed({ id: r.app, login: r.login, remote: r.remote, protocol: r.protocol });
      } catch (err: any) {
        this.log.warn({ err: err.message }, 'could not record an app password use');
      }
    }
    // Tickets of sessions whose report never came are settled by the guard's own expiry; drop
    // our references to them so this map stays small.
    if (this.tickets.size > 10_000) for (const [k, t] of this.tickets) if (t.settled) this.tickets.delete(k);
    const action = policyAction(r, r.session ? this.tickets.get(r.session) : undefined);
    if (action.kind === 'reserve') {
      const res = this.guard.reserve(r.login, r.remote, r.protocol);
      if (!res.ok) {
        this.log.warn({ ip: r.remote, user: r.login, protocol: r.protocol, scope: res.scope }, 'authentication refused: too many failures (locked out)');
        return { status: -1, msg: 'too many failed authentication attempts; try again later' };
      }
      if (r.session) this.tickets.set(r.session, res.ticket);
      else this.guard.settle(res.ticket, true); // uncorrelatable: do not hold a slot forever
    } else if (action.kind === 'settle') {
      this.tickets.delete(r.session);
      this.guard.settle(action.ticket, action.success);
      if (!action.success) this.log.warn({ ip: r.remote, user: r.login, protocol: r.protocol }, 'authentication failed');
    }
    return { status: 0 };
  }
}

export async function startPolicyEndpoint(o: { guard: LoginGuard; log: Logger; host: string; port: number }): Promise<PolicyEndpoint> {
  const secret = randomBytes(24).toString('hex');
  const secretBuf = Buffer.from(secret);
  const sessions = new PolicySessions(o.guard, o.log.child({ component: 'login-guard' }));
  const server: Server = createServer((req, res) => {
    const given = Buffer.from(String(req.headers[HEADER] ?? ''));
    if (req.method !== 'POST' || given.length !== secretBuf.length || !timingSafeEqual(given, secretBuf)) {
      res.writeHead(403).end();
      return;
    }
    const command = new URL(req.url ?? '/', 'http://policy').searchParams.get('command') ?? '';
    readBody(req).then(
      (text) => {
        const r = parsePolicyRequest(command, parseJson(text));
        if (!r) return void res.writeHead(400).end();
        const out = sessions.handle(r);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: out.status, msg: out.msg ?? '' }));
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
      sessions.appPasswordUsed = fn;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
