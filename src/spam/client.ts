import { request, Agent } from 'node:http';
import { connect } from 'node:net';
import { LetterboxError } from '../errors.ts';

/** The part of rspamd's /checkv2 answer Letterbox reads. */
export interface RspamdResult {
  score: number;
  required_score?: number;
  action: string;
  is_skipped?: boolean;
  symbols?: Record<string, { name: string; score: number; options?: string[] }>;
  messages?: { smtp_message?: string };
}

/** Request headers of rspamd's HTTP protocol (https://rspamd.com/doc/architecture/protocol.html). */
export interface ScanHeaders {
  ip?: string;
  helo?: string;
  hostname?: string;
  from?: string;
  rcpt?: string[];
  /** Authenticated user (submission / API): rspamd then skips checks meant for strangers. */
  user?: string;
  /** The mailbox whose Bayes statistics apply (per-user classifier). */
  deliverTo?: string;
  queueId?: string;
  tls?: { cipher: string; protocol: string } | null;
  mta?: string;
  /** JSON of per-scan settings (symbols with our verdicts, actions, disabled modules). */
  settings?: unknown;
}

/**
 * rspamd over HTTP on its Unix sockets (normal worker for scans, controller for learning and
 * stats). Written on node:http rather than a library: three POST/GET calls. Scans reuse connections
 * (a keep-alive agent); the controller gets one connection per call: rspamd 3.4's controller closes
 * a kept-alive connection after some requests, and the next learn on it failed with
 * HPE_CLOSED_CONNECTION (seen after 20 learns in a row).
 */
export class RspamdClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 16 });
  private readonly normalSocket: string;
  private readonly controllerSocket: string;

  constructor(o: { normalSocket: string; controllerSocket: string }) {
    this.normalSocket = o.normalSocket;
    this.controllerSocket = o.controllerSocket;
  }

  async check(message: Buffer, h: ScanHeaders, timeoutMs: number): Promise<RspamdResult> {
    const headers: Record<string, string | string[]> = {};
    if (h.ip) headers['IP'] = h.ip;
    if (h.helo) headers['Helo'] = clean(h.helo);
    if (h.hostname) headers['Hostname'] = clean(h.hostname);
    if (h.from !== undefined) headers['From'] = h.from === '' ? '<>' : clean(h.from);
    if (h.rcpt?.length) headers['Rcpt'] = h.rcpt.map(clean);
    if (h.user) headers['User'] = clean(h.user);
    if (h.deliverTo) headers['Deliver-To'] = clean(h.deliverTo);
    if (h.queueId) headers['Queue-Id'] = clean(h.queueId);
    if (h.mta) headers['MTA-Name'] = clean(h.mta);
    if (h.tls) {
      headers['TLS-Cipher'] = clean(h.tls.cipher);
      headers['TLS-Version'] = clean(h.tls.protocol);
    }
    if (h.settings !== undefined) headers['Settings'] = JSON.stringify(h.settings);
    const body = await this.call(this.normalSocket, 'POST', '/checkv2', headers, message, timeoutMs);
    const parsed = JSON.parse(body) as RspamdResult;
    if (typeof parsed.score !== 'number' || typeof parsed.action !== 'string') throw new LetterboxError('unavailable', 'rspamd answered without a score');
    return parsed;
  }

  /** Trains Bayes for `user` (per-user statistics) with one message. */
  async learn(kind: 'spam' | 'ham', message: Buffer, user: string, timeoutMs = 30000): Promise<{ learned: boolean; error?: string }> {
    try {
      const body = await this.call(this.controllerSocket, 'POST', kind === 'spam' ? '/learnspam' : '/learnham', { 'Deliver-To': clean(user) }, message, timeoutMs);
      const r = JSON.parse(body);
      return { learned: r.success === true };
    } catch (err: any) {
      // "already learned" (208) and "too few tokens" (400) are answers, not failures of rspamd.
      if (err instanceof RspamdHttpError) return { learned: false, error: err.detail };
      throw err;
    }
  }

  /** The controller's /stat: learned counts per statfile. */
  async stat(timeoutMs = 5000): Promise<{ learned: number; statfiles: { symbol: string; learned: number; users: number }[]; scanned: number }> {
    const r = JSON.parse(await this.call(this.controllerSocket, 'GET', '/stat', {}, null, timeoutMs));
    const statfiles = (r.statfiles ?? []).map((s: any) => ({ symbol: String(s.symbol), learned: Number(s.revision ?? 0), users: Number(s.users ?? 0) }));
    return { learned: Number(r.learned ?? 0), statfiles, scanned: Number(r.scanned ?? 0) };
  }

  async ping(timeoutMs = 1000): Promise<boolean> {
    try {
      return (await this.call(this.normalSocket, 'GET', '/ping', {}, null, timeoutMs)).trim() === 'pong';
    } catch {
      return false;
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private call(socketPath: string, method: string, path: string, headers: Record<string, string | string[]>, body: Buffer | null, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (err: Error | null, value?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value!);
      };
      const keepAlive = socketPath === this.normalSocket;
      const req = request({ socketPath, method, path, agent: keepAlive ? this.agent : false, headers: { ...headers, ...(keepAlive ? {} : { Connection: 'close' }), ...(body ? { 'Content-Length': String(body.length) } : {}) } }, (res) => {
        // rspamd 3.4 answers "learning refused" (learn_condition: already in that class) with 204
        // and a body, which Node's HTTP parser rejects (HPE_CLOSED_CONNECTION): an answer, decided
        // on the status line.
        if (res.statusCode === 204) {
          req.destroy();
          return done(new RspamdHttpError(204, res.statusMessage || 'learning refused'));
        }
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', (e) => done(e));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) {
            let detail = text.slice(0, 300);
            try {
              detail = JSON.parse(text).error ?? detail;
            } catch {}
            return done(new RspamdHttpError(res.statusCode ?? 0, detail));
          }
          done(null, text);
        });
      });
      const timer = setTimeout(() => {
        req.destroy();
        done(new LetterboxError('unavailable', `rspamd did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      req.on('error', (e: any) => done(new LetterboxError('unavailable', `rspamd unreachable: ${e.code ?? e.message}`)));
      req.end(body ?? undefined);
    });
  }
}

export class RspamdHttpError extends Error {
  readonly status: number;
  readonly detail: string;
  constructor(status: number, detail: string) {
    super(`rspamd answered ${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

/** Header values come from the SMTP session: no CR/LF may reach the HTTP request. */
function clean(s: string): string {
  return s.replace(/[\r\n\u0000]/g, ' ').slice(0, 998);
}

/**
 * One Redis command over its Unix socket (RESP), for PING and for reading rspamd's per-user
 * Bayes counters. Hand-written (a dozen lines) rather than a Redis client library for two calls.
 */
export function redisCommand(socketPath: string, args: string[], timeoutMs = 2000): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let buf = '';
    const done = (err: Error | null, v?: string | null) => {
      s.destroy();
      if (err) reject(err);
      else resolve(v ?? null);
    };
    s.setTimeout(timeoutMs, () => done(new Error('redis did not answer in time')));
    s.once('connect', () => s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')));
    s.on('data', (d) => {
      buf += d.toString('utf8');
      const nl = buf.indexOf('\r\n');
      if (nl === -1) return;
      const head = buf.slice(0, nl);
      if (head[0] === '+' || head[0] === ':') return done(null, head.slice(1));
      if (head[0] === '-') return done(new Error(head.slice(1)));
      if (head === '$-1') return done(null, null);
      if (head[0] === '$') {
        const len = Number(head.slice(1));
        if (Buffer.byteLength(buf) >= nl + 2 + len + 2) return done(null, buf.slice(nl + 2, nl + 2 + len));
        return;
      }
      done(new Error(`unexpected redis reply ${head.slice(0, 20)}`));
    });
    s.once('error', (e) => done(e));
  });
}

/** Redis PING over its Unix socket (readiness and health). */
export function redisPing(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    let buf = '';
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    s.once('error', () => done(false));
  });
}
