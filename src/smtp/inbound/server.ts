import { readFileSync, promises as fsp } from 'node:fs';
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { AppContext } from '../../server.ts';
import { SmtpReply, internalFailure, newRef } from '../../mail/reply.ts';
import { resolveRecipient, type Target } from '../../routing/resolve.ts';
import { probeRecipient, quotaVerdict } from './quota.ts';
import { receiveMessage, type InboundDeps, type Transaction } from './deliver.ts';
import { connectRefusal, dataRefusal, mailFromRefusal, quotaProbeTarget, rcptRefusal, sessionInfo, sweepEveryMs } from './session.ts';
import { smtpMetrics } from '../../metrics/index.ts';
import { clientNetwork } from '../../auth/client-network.ts';
import { ClientSlots, sweepIdle, trackProgress } from '../stress.ts';
import { matchReportAddress, receiveReports, reportMixRefusal, type ReportTarget } from '../../reports/receive.ts';

export { closeIdleUnderStress, underStress, type IdleState } from '../stress.ts';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * smtp-server with per-connection additions it has no option for:
 *  - replies whose text starts with an enhanced status code (our SmtpReply) are sent with that code
 *    instead of smtp-server's fixed default for the numeric code (550 → 5.1.1 otherwise);
 *  - every 4xx/5xx reply counts as an error; at smtp.max_errors the session gets 421 and is closed;
 *  - command and data deadlines (below);
 *  - lastProgressAt (src/smtp/stress.ts), read by the stress-mode sweep.
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
    // When the client last made progress (the stress-mode idle sweep reads it; NOOP is no progress).
    trackProgress(connection);
    const onCommand = connection._onCommand;
    connection._onCommand = function (command: Buffer, callback: unknown) {
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

/** What the per-address connection cap counts: an IPv4 address or an IPv6 /64 (src/auth/client-network.ts). */
export const clientKey = clientNetwork;

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
  const slots = new ClientSlots(cfg.max_connections, cfg.max_connections_per_ip);
  const log = app.log.child({ component: 'mx' });
  const options: SMTPServerOptions = { ...mxServerOptions(app), ...mxHandlers(deps, slots, log) };
  const servers = addresses.map(() => {
    const s = new MxSmtpServer(options);
    s.maxErrors = cfg.max_errors;
    s.commandTimeoutMs = cfg.command_timeout_ms;
    s.dataTimeoutMs = cfg.data_timeout_ms;
    s.on('error', (err) => log.warn({ err: err.message }, 'SMTP connection error'));
    return s;
  });

  // Stress mode: while more than stress_threshold × max_connections sessions are open, every session
  // that has made no progress for stress_idle_timeout_ms gets 421 4.4.2 and is closed, whether or not
  // it has started a transaction; one sending its message or waiting for our reply is kept
  // (src/smtp/stress.ts). A sweep runs a few times per stress_idle_timeout_ms.
  let sweeper: NodeJS.Timeout | null = null;
  const sweep = () => {
    const open = slots.size;
    const closed = sweepIdle({ servers, slots, maxConnections: cfg.max_connections, stressThreshold: cfg.stress_threshold, stressIdleMs: cfg.stress_idle_timeout_ms, hostname: app.config.hostname, now: Date.now() });
    if (closed) log.warn({ open, closed, limit: cfg.max_connections }, 'under load: closed idle sessions');
  };

  return {
    servers,
    async listen() {
      await listenAll(servers, addresses);
      sweeper = setInterval(sweep, sweepEveryMs(cfg.stress_idle_timeout_ms));
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

/** smtp-server's options for the MX (everything but the handlers), from the configuration. */
function mxServerOptions(app: AppContext): SMTPServerOptions {
  const cfg = app.config.smtp;
  return {
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
  };
}

/**
 * The MX's command handlers, one shape each: gather (slot, resolution, quota probe), decide (the
 * pure functions of ./session.ts), act (answer, remember the transaction, receive the message).
 */
function mxHandlers(deps: InboundDeps, slots: ClientSlots, log: AppContext['log']): Pick<SMTPServerOptions, 'onConnect' | 'onClose' | 'onMailFrom' | 'onRcptTo' | 'onData'> {
  const { app } = deps;
  const cfg = app.config.smtp;
  // `reports`: recipients that are report addresses (src/reports/), received on a path of their own.
  const txs = new Map<string, Transaction & { reports?: ReportTarget[] }>();
  const metrics = smtpMetrics(app, 'mx');

  const fail = (err: unknown, what: string, session: SMTPServerSession): SmtpReply => failureReply(log, err, what, session.id);

  return {
    onConnect(session, cb) {
      // smtp-server's maxClients counts per listener; this cap is over all of them.
      const refused = slots.take(session.id, session.remoteAddress);
      const refusal = connectRefusal(refused, app.config.hostname);
      if (refusal) {
        if (refused === 'total') log.warn({ limit: cfg.max_connections }, 'too many connections; refused');
        else log.warn({ ip: clientKey(session.remoteAddress), limit: cfg.max_connections_per_ip }, 'too many connections from one address; refused');
        metrics.session(session, 'refused');
        return cb(refusal);
      }
      metrics.session(session, 'accepted');
      cb();
    },

    onClose(session) {
      txs.delete(session.id);
      slots.release(session.id);
    },

    onMailFrom(address, session, cb) {
      const refusal = mailFromRefusal(address.address, session.envelope);
      if (refusal) return cb(refusal);
      txs.set(session.id, { mailFrom: address.address ?? '', rcpts: [] });
      cb();
    },

    onRcptTo(address, session, cb) {
      const tx = txs.get(session.id);
      const refusal = rcptRefusal(tx);
      if (refusal || !tx) return cb(refusal ?? undefined);
      const report = matchReportAddress(app, address.address);
      const mix = reportMixRefusal({ mailRecipients: tx.rcpts.length, reportRecipients: tx.reports?.length ?? 0, isReport: !!report });
      if (mix) return cb(mix);
      if (report) {
        (tx.reports ??= []).push(report);
        return cb();
      }
      admitRecipient(deps, address.address).then(
        (res) => {
          if (!res.ok) return cb(res.reply);
          tx.rcpts.push({ address: address.address, targets: res.targets });
          cb();
        },
        (err) => cb(fail(err, 'RCPT', session)),
      );
    },

    onData: dataHandler(deps, txs, metrics, fail),
  };
}

/** DATA: a report-only transaction goes to src/reports/; any other is received (receiveMessage) and counted. */
function dataHandler(
  deps: InboundDeps,
  txs: Map<string, Transaction & { reports?: ReportTarget[] }>,
  metrics: ReturnType<typeof smtpMetrics>,
  fail: (err: unknown, what: string, session: SMTPServerSession) => SmtpReply,
): NonNullable<SMTPServerOptions['onData']> {
  const { app } = deps;
  return (stream, session, cb) => {
    const tx = txs.get(session.id);
    txs.delete(session.id);
    if (tx?.reports?.length) {
      return receiveReports(app, stream, sessionInfo(session), tx.mailFrom, tx.reports).then(
        (text) => cb(null, text),
        (err) => {
          stream.resume();
          cb(fail(err, 'DATA', session));
        },
      );
    }
    const refusal = dataRefusal(tx);
    if (refusal || !tx) {
      stream.resume();
      return cb(refusal ?? undefined);
    }
    receiveMessage(deps, stream, sessionInfo(session), tx).then(
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
  };
}

/** An unexpected error as the reply: an SmtpReply as is, anything else 451 with a reference that is in the log. */
function failureReply(log: AppContext['log'], err: unknown, what: string, sessionId: string): SmtpReply {
  if (err instanceof SmtpReply) return err;
  const ref = newRef();
  log.error({ ref, session: sessionId, err: (err as any)?.message ?? String(err) }, `internal error during ${what}; answered 451`);
  return internalFailure(ref);
}

/**
 * RCPT TO: resolve the recipient (gather), and when it is one mailbox with a quota (decide:
 * quotaProbeTarget) ask Dovecot whether it is already full (act: an LMTP RCPT probe). Resolves to
 * the targets, or to the refusal; rejects on an internal failure (answered 451 by the caller).
 */
async function admitRecipient(deps: InboundDeps, address: string): Promise<{ ok: true; targets: Target[] } | { ok: false; reply: SmtpReply }> {
  const { app } = deps;
  // A bare `postmaster` (RFC 5321 4.5.1) reaches here as is: smtp-server 3.21.6 exempts it from
  // its address syntax check, and resolveRecipient maps it to our host's domain (tested).
  const res = resolveRecipient(app.db, address, { srsSecret: deps.srsSecret, now: app.clock.now(), hostname: app.config.hostname });
  if (!res.ok) return res;
  const probe = quotaProbeTarget(res.targets);
  if (!probe) return res;
  const answer = await probeRecipient(app.dovecot.paths.lmtpSocket, probe.address, { lhlo: app.config.hostname });
  const v = quotaVerdict(answer, app.config.smtp.quota_full_reply);
  if (v === null) return res;
  if (v instanceof SmtpReply) return { ok: false, reply: v };
  throw v;
}

/** Starts every listener; rejects when one cannot bind. */
function listenAll(servers: SMTPServer[], addresses: { host: string; port: number }[]): Promise<void> {
  return Promise.all(
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
  ).then(() => undefined);
}
