import { readFileSync, promises as fsp } from 'node:fs';
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { AppContext } from '../../server.ts';
import { SmtpReply, internalFailure, newRef, reply } from './replies.ts';
import { resolveRecipient } from '../../routing/resolve.ts';
import { probeRecipient, quotaVerdict } from './quota.ts';
import { receiveMessage, type InboundDeps, type SessionInfo, type Transaction } from './deliver.ts';
import { smtpMetrics } from '../../metrics/index.ts';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * smtp-server with per-connection additions it has no option for:
 *  - replies whose text starts with an enhanced status code (our SmtpReply) are sent with that code
 *    instead of smtp-server's fixed default for the numeric code (550 → 5.1.1 otherwise);
 *  - every 4xx/5xx reply counts as an error; at smtp.max_errors the session gets 421 and is closed;
 *  - command and data deadlines (below);
 *  - lastCommandAt, read by the stress-mode sweep in createMxListener (which also reads
 *    SMTPServer.connections and SMTPConnection's _upgrading, _closing, session.envelope).
 * This wraps a few of SMTPConnection's internal members (_onCommand, _onClose, _handlerPending,
 * _parser._dataMode) and re-implements SMTPServer.connect (4 lines): smtp-server is pinned to an
 * exact version in package.json; test/inbound.test.ts exercises every one of these paths.
 */
class MxSmtpServer extends SMTPServer {
  maxErrors = 10;
  commandTimeoutMs = 300_000;
  dataTimeoutMs = 600_000;
  override connect(socket: Socket, socketOptions?: any): void {
    const self = this as any;
    const connection: any = new (SMTPConnection as any)(this, socket, socketOptions);
    const send = connection.send;
    let errors = 0;
    const maxErrors = this.maxErrors;
    // Deadlines that trickling bytes cannot extend (the idle timeout can be): each command line must
    // be complete within commandTimeoutMs of the previous one, a message within dataTimeoutMs of
    // DATA. They do not run while we owe the client a reply.
    let deadline: NodeJS.Timeout | null = null;
    const arm = (ms: number, what: string) => {
      if (deadline) clearTimeout(deadline);
      deadline = setTimeout(() => {
        deadline = null;
        if (connection._closing || connection._closed) return;
        if (connection._handlerPending || (connection._dataStream && connection._parser && !connection._parser._dataMode)) return arm(this.commandTimeoutMs, 'command');
        send.call(connection, 421, `${connection.name} ${what} timeout, closing connection`);
        connection.close();
      }, ms);
      deadline.unref();
    };
    arm(this.commandTimeoutMs, 'command');
    // When the client last completed a command (the stress-mode idle sweep reads it).
    connection.lastCommandAt = Date.now();
    const onCommand = connection._onCommand;
    connection._onCommand = function (command: Buffer, callback: unknown) {
      connection.lastCommandAt = Date.now();
      const isData = /^data\s*$/i.test(command.toString('latin1', 0, 6).trim());
      arm(isData ? self.dataTimeoutMs : self.commandTimeoutMs, isData ? 'data' : 'command');
      return onCommand.call(this, command, callback);
    };
    const onClose = connection._onClose;
    connection._onClose = function (...args: unknown[]) {
      if (deadline) clearTimeout(deadline);
      deadline = null;
      return onClose.apply(this, args);
    };
    connection.send = function (code: number, data: unknown, context?: unknown) {
      if (typeof data === 'string' && ENHANCED.test(data)) context = false;
      const r = send.call(this, code, data, context);
      if (code >= 400 && code !== 421 && ++errors >= maxErrors && !this._closing) {
        send.call(this, 421, `${this.name} Too many errors, closing connection`);
        this.close();
      }
      return r;
    };
    self.connections.add(connection);
    connection.on('error', (err: Error) => self._onError(err));
    connection.on('connect', (data: unknown) => self._onClientConnect(data));
    connection.init();
  }
}

/**
 * What the per-address connection cap counts: an IPv4 address, or an IPv6 /64 (one host usually
 * has a whole /64, so counting single IPv6 addresses would not limit it at all).
 */
export function clientKey(address: string): string {
  const a = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (!a.includes(':')) return a;
  const [head, tail = ''] = a.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const full = a.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return full.slice(0, 4).map((x) => x.replace(/^0+(?=.)/, '')).join(':') + '::/64';
}

export interface IdleState {
  /** Open (accepted) MX sessions over all listeners. */
  open: number;
  maxConnections: number;
  /** smtp.stress_threshold: a fraction of maxConnections. */
  stressThreshold: number;
  /** The session has a transaction (MAIL FROM given) — never cut short. */
  inTransaction: boolean;
  /** We owe the client a reply (a handler is running, or the message is being decided). */
  waitingForUs: boolean;
  /** Milliseconds since the client last completed a command. */
  idleMs: number;
  /** smtp.stress_idle_timeout_ms */
  stressIdleMs: number;
}

/**
 * Stress mode (Postfix's "stress" idea): while more than stressThreshold × maxConnections sessions
 * are open, a session that has not started a transaction and has been idle for stressIdleMs is
 * closed, so idle connections cannot hold every slot for the whole RFC 5321 timeout. Otherwise the
 * normal timeouts (socket_timeout_ms, command_timeout_ms, data_timeout_ms) apply.
 */
export function underStress(open: number, maxConnections: number, stressThreshold: number): boolean {
  return open > stressThreshold * maxConnections;
}

export function closeIdleUnderStress(s: IdleState): boolean {
  if (!underStress(s.open, s.maxConnections, s.stressThreshold)) return false;
  if (s.inTransaction || s.waitingForUs) return false;
  return s.idleMs >= s.stressIdleMs;
}

export interface MxListener {
  servers: SMTPServer[];
  listen(): Promise<void>;
  /** Re-reads the TLS key and certificate (after a renewal); new STARTTLS sessions use them. */
  updateTls(m: { key: Buffer; cert: Buffer }): void;
  close(): Promise<void>;
}

/** Builds the MX listeners (one per listen.mx address) sharing one set of handlers and limits. */
export function createMxListener(deps: InboundDeps, addresses: { host: string; port: number }[]): MxListener {
  const { app } = deps;
  const cfg = app.config.smtp;
  const perIp = new Map<string, number>();
  const counted = new Set<string>();
  const txs = new Map<string, Transaction>();
  const log = app.log.child({ component: 'mx' });
  const metrics = smtpMetrics(app, 'mx');

  const fail = (err: unknown, what: string, session: SMTPServerSession): SmtpReply => {
    if (err instanceof SmtpReply) return err;
    const ref = newRef();
    log.error({ ref, session: session.id, err: (err as any)?.message ?? String(err) }, `internal error during ${what}; answered 451`);
    return internalFailure(ref);
  };

  const options: SMTPServerOptions = {
    name: app.config.hostname,
    banner: 'Letterbox',
    key: readFileSync(app.config.tls.key),
    cert: readFileSync(app.config.tls.cert),
    size: cfg.max_message_size,
    authOptional: true,
    disabledCommands: ['AUTH'],
    hideSTARTTLS: false,
    hidePIPELINING: false,
    hide8BITMIME: false,
    hideSMTPUTF8: false,
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true,
    hideREQUIRETLS: true,
    maxClients: cfg.max_connections,
    maxRecipients: cfg.max_recipients,
    socketTimeout: cfg.socket_timeout_ms,
    closeTimeout: 5000,
    maxCommandLength: cfg.max_line_length,
    maxAllowedUnauthenticatedCommands: false,
    // Reverse lookups go through the one configured resolver (never the system's by surprise).
    resolver: { reverse: (ip, cb) => app.resolver.reverse(ip).then((names) => cb(null, names), (err) => cb(err)) },
    logger: false,

    onConnect(session, cb) {
      // smtp-server's maxClients counts per listener; this cap is over all of them.
      if (counted.size >= cfg.max_connections) {
        log.warn({ limit: cfg.max_connections }, 'too many connections; refused');
        metrics.session(session, 'refused');
        return cb(reply(421, '4.7.0', `${app.config.hostname} Too many connections, try again later`));
      }
      const ip = clientKey(session.remoteAddress);
      const n = (perIp.get(ip) ?? 0) + 1;
      if (n > cfg.max_connections_per_ip) {
        log.warn({ ip, limit: cfg.max_connections_per_ip }, 'too many connections from one address; refused');
        metrics.session(session, 'refused');
        return cb(reply(421, '4.7.0', `${app.config.hostname} Too many connections from your address, try again later`));
      }
      perIp.set(ip, n);
      counted.add(session.id);
      metrics.session(session, 'accepted');
      cb();
    },

    onClose(session) {
      txs.delete(session.id);
      if (!counted.delete(session.id)) return;
      const ip = clientKey(session.remoteAddress);
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(ip);
      else perIp.set(ip, n);
    },

    onMailFrom(address, session, cb) {
      txs.set(session.id, { mailFrom: address.address ?? '', rcpts: [] });
      cb();
    },

    onRcptTo(address, session, cb) {
      const tx = txs.get(session.id);
      if (!tx) return cb(reply(503, '5.5.1', 'Error: need MAIL command'));
      let res;
      try {
        // A bare `postmaster` (RFC 5321 4.5.1) reaches here as is: smtp-server 3.21.6 exempts it from
        // its address syntax check, and resolveRecipient maps it to our host's domain (tested).
        res = resolveRecipient(app.db, address.address, { srsSecret: deps.srsSecret, now: app.clock.now(), hostname: app.config.hostname });
      } catch (err) {
        return cb(fail(err, 'RCPT', session));
      }
      if (!res.ok) return cb(res.reply);
      const only = res.targets.length === 1 ? res.targets[0] : null;
      if (!only || only.kind !== 'local' || only.quotaBytes <= 0) {
        tx.rcpts.push({ address: address.address, targets: res.targets });
        return cb();
      }
      // A mailbox with a quota: is it already full? (Dovecot knows; unlimited ones are never full.)
      probeRecipient(app.dovecot.paths.lmtpSocket, only.address, { lhlo: app.config.hostname }).then(
        (a) => {
          const v = quotaVerdict(a, cfg.quota_full_reply);
          if (v === null) {
            tx.rcpts.push({ address: address.address, targets: res.targets });
            return cb();
          }
          cb(v instanceof SmtpReply ? v : fail(v, 'RCPT quota check', session));
        },
        (err) => cb(fail(err, 'RCPT quota check', session)),
      );
    },

    onData(stream, session, cb) {
      const tx = txs.get(session.id);
      txs.delete(session.id);
      if (!tx || tx.rcpts.length === 0) {
        stream.resume();
        return cb(reply(503, '5.5.1', 'Error: no valid recipients'));
      }
      const tls = session.secure && session.tlsOptions ? { protocol: String(session.tlsOptions.version ?? ''), cipher: String(session.tlsOptions.name ?? '') } : null;
      const info: SessionInfo = {
        id: session.id,
        remoteAddress: session.remoteAddress,
        helo: session.hostNameAppearsAs || session.remoteAddress,
        clientHostname: session.clientHostname && session.clientHostname !== `[${session.remoteAddress}]` ? session.clientHostname : null,
        transmissionType: session.transmissionType || 'ESMTP',
        tls,
      };
      receiveMessage(deps, stream, info, tx).then(
        (text) => {
          metrics.message(session, 'accepted');
          cb(null, text);
        },
        (err) => {
          stream.resume();
          metrics.message(session, 'rejected');
          cb(fail(err, 'DATA', session));
        },
      );
    },
  };

  const servers = addresses.map(() => {
    const s = new MxSmtpServer(options);
    s.maxErrors = cfg.max_errors;
    s.commandTimeoutMs = cfg.command_timeout_ms;
    s.dataTimeoutMs = cfg.data_timeout_ms;
    s.on('error', (err) => log.warn({ err: err.message }, 'SMTP connection error'));
    return s;
  });

  // Stress mode: while more than stress_threshold × max_connections sessions are open, every session
  // without a transaction that has not completed a command for stress_idle_timeout_ms gets 421 and
  // is closed (closeIdleUnderStress). A sweep runs a few times per stress_idle_timeout_ms.
  const sweepEveryMs = Math.max(250, Math.min(1000, Math.floor(cfg.stress_idle_timeout_ms / 4)));
  let sweeper: NodeJS.Timeout | null = null;
  const sweep = () => {
    const open = counted.size;
    if (!underStress(open, cfg.max_connections, cfg.stress_threshold)) return;
    const now = Date.now();
    let closed = 0;
    for (const s of servers) {
      for (const c of (s as any).connections as Set<any>) {
        // Not yet greeted/accepted (or refused), closing, or inside a STARTTLS handshake (no reply possible).
        if (c._closing || c._closed || c._upgrading || !counted.has(c.id)) continue;
        const close = closeIdleUnderStress({
          open,
          maxConnections: cfg.max_connections,
          stressThreshold: cfg.stress_threshold,
          inTransaction: Boolean(c.session?.envelope?.mailFrom),
          waitingForUs: Boolean(c._handlerPending || (c._dataStream && c._parser && !c._parser._dataMode)),
          idleMs: now - (c.lastCommandAt ?? now),
          stressIdleMs: cfg.stress_idle_timeout_ms,
        });
        if (!close) continue;
        c.send(421, `4.4.2 ${app.config.hostname} idle timeout under load`);
        c.close();
        closed++;
      }
    }
    if (closed) log.warn({ open, closed, limit: cfg.max_connections }, 'under load: closed idle sessions without a transaction');
  };

  return {
    servers,
    async listen() {
      await Promise.all(
        servers.map(
          (s, i) =>
            new Promise<void>((resolve, reject) => {
              const onErr = (err: Error) => reject(err);
              s.server.once('error', onErr);
              s.listen(addresses[i].port, addresses[i].host, () => {
                s.server.removeListener('error', onErr);
                resolve();
              });
            }),
        ),
      );
      sweeper = setInterval(sweep, sweepEveryMs);
      sweeper.unref();
    },
    updateTls(m) {
      for (const s of servers) (s as any).updateSecureContext(m);
    },
    async close() {
      if (sweeper) clearInterval(sweeper);
      sweeper = null;
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
