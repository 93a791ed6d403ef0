// Connection limits shared by the MX (25) and submission (587/465) listeners: a per-client cap
// (IPv4 address / IPv6 /64) over all listeners of one kind, and stress mode (Postfix's idea: above a
// share of the connection limit, every idle session gets a short idle timeout).
// The decisions are pure (tested in test/inbound-unit.test.ts); the sweep reads smtp-server's
// SMTPServer.connections and these SMTPConnection members: _closing, _closed, _upgrading,
// _handlerPending, _dataStream, _parser (._dataMode, .dataBytes), id (smtp-server is pinned).
import { clientNetwork } from '../auth/client-network.ts';

export function underStress(open: number, maxConnections: number, stressThreshold: number): boolean {
  return open > stressThreshold * maxConnections;
}

export interface IdleState {
  /** Open (accepted) sessions over all listeners of this kind. */
  open: number;
  maxConnections: number;
  /** A fraction of maxConnections. */
  stressThreshold: number;
  /** We owe the client a reply (a handler is running, or the message is being decided). */
  waitingForUs: boolean;
  /** Milliseconds since the client last made progress: a command other than NOOP/RSET/HELP/VRFY/EXPN, or message bytes during DATA. */
  idleMs: number;
  stressIdleMs: number;
}

/**
 * Under stress EVERY session idle for stressIdleMs is closed, whatever its state (a sender that gave
 * MAIL FROM and went quiet holds a slot like any other); a session actively sending its message
 * (bytes arrived within stressIdleMs) or waiting for our reply is kept.
 */
export function closeIdleUnderStress(s: IdleState): boolean {
  if (!underStress(s.open, s.maxConnections, s.stressThreshold)) return false;
  if (s.waitingForUs) return false;
  return s.idleMs >= s.stressIdleMs;
}

/** Commands that do not count as progress (they cannot keep a slot under stress). */
const NO_PROGRESS = /^(noop|rset|help|vrfy|expn)\b/i;

export function isProgress(command: Buffer | string): boolean {
  const s = typeof command === 'string' ? command : command.toString('latin1', 0, 8);
  return !NO_PROGRESS.test(s.trim());
}

/** Records the time of the client's last progress on an SMTPConnection (wraps its _onCommand). */
export function trackProgress(connection: any, now: () => number = Date.now): void {
  connection.lastProgressAt = now();
  const onCommand = connection._onCommand;
  connection._onCommand = function (command: Buffer, callback: unknown) {
    if (isProgress(command)) connection.lastProgressAt = now();
    return onCommand.call(this, command, callback);
  };
}

/** Per-client connection cap over several listeners; answers why a new session is refused. */
export class ClientSlots {
  private readonly perClient = new Map<string, number>();
  private readonly sessions = new Map<string, string>(); // session id → client network
  private readonly max: number;
  private readonly maxPerClient: number;
  constructor(max: number, maxPerClient: number) {
    this.max = max;
    this.maxPerClient = maxPerClient;
  }
  get size(): number {
    return this.sessions.size;
  }
  has(id: string): boolean {
    return this.sessions.has(id);
  }
  /** null when taken; otherwise which limit refused it (nothing is taken then). */
  take(id: string, address: string): null | 'total' | 'client' {
    if (this.sessions.size >= this.max) return 'total';
    const key = clientNetwork(address);
    const n = (this.perClient.get(key) ?? 0) + 1;
    if (n > this.maxPerClient) return 'client';
    this.perClient.set(key, n);
    this.sessions.set(id, key);
    return null;
  }
  release(id: string): void {
    const key = this.sessions.get(id);
    if (key === undefined) return;
    this.sessions.delete(id);
    const n = (this.perClient.get(key) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(key);
    else this.perClient.set(key, n);
  }
}

/**
 * One stress sweep over the given smtp-server instances: closes (421 4.4.2) the sessions
 * closeIdleUnderStress picks. Bytes received during DATA since the previous sweep count as progress.
 * Returns how many were closed.
 */
export function sweepIdle(o: { servers: Iterable<unknown>; slots: ClientSlots; maxConnections: number; stressThreshold: number; stressIdleMs: number; hostname: string; now: number }): number {
  const open = o.slots.size;
  if (!underStress(open, o.maxConnections, o.stressThreshold)) return 0;
  let closed = 0;
  for (const s of o.servers) {
    for (const c of (s as any).connections as Set<any>) {
      // Not yet accepted (or refused), closing, or inside a STARTTLS handshake (no reply possible).
      if (c._closing || c._closed || c._upgrading || !o.slots.has(c.id)) continue;
      const parser = c._parser;
      if (parser && parser._dataMode && parser.dataBytes !== c.sweepDataBytes) {
        c.sweepDataBytes = parser.dataBytes;
        c.lastProgressAt = o.now;
      }
      const close = closeIdleUnderStress({
        open,
        maxConnections: o.maxConnections,
        stressThreshold: o.stressThreshold,
        waitingForUs: Boolean(c._handlerPending || (c._dataStream && parser && !parser._dataMode)),
        idleMs: o.now - (c.lastProgressAt ?? o.now),
        stressIdleMs: o.stressIdleMs,
      });
      if (!close) continue;
      c.send(421, `4.4.2 ${o.hostname} idle timeout under load`);
      c.close();
      closed++;
    }
  }
  return closed;
}
