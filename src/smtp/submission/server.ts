// Submission listeners: 587 (STARTTLS required before AUTH) and 465 (implicit TLS). AUTH PLAIN and
// LOGIN against mailbox passwords, brute-force guard, sender authorization at MAIL FROM, caps and
// suppressions at RCPT TO, then acceptOutbound at the end of DATA.
import { readFileSync } from 'node:fs';
import { SMTPServer, type SMTPServerSession, type SMTPServerAuthentication, type SMTPServerAddress } from 'smtp-server';
import type { Readable } from 'node:stream';
import type { AppContext, Component } from '../../server.ts';
import { parseHostPort } from '../../config/schema.ts';
import { randomBytes } from 'node:crypto';
import { hashPassword, verifyPassword } from '../../auth/passwords.ts';
import { findMailbox } from '../../services/mailboxes.ts';
import { passwordHashOf } from '../../services/mailbox-queries.ts';
import { checkAppPasswordLogin } from '../../services/app-passwords.ts';
import { acceptOutbound, checkRecipient, checkSender, type Sender } from '../../submit/accept.ts';
import { smtpMetrics } from '../../metrics/index.ts';
import { watchCertificate } from '../../tls/watch.ts';
import { ClientSlots, sweepIdle, trackProgress } from '../stress.ts';
import { clientNetwork } from '../../auth/client-network.ts';
import { nonAsciiWithoutSmtpUtf8 } from '../mail-from.ts';
import { readAll } from '../session-io.ts';
import { reply, replyForError, replyOf, type SmtpReply } from '../../mail/reply.ts';



/** Maps an error from the accept path to an SMTP reply (anything unexpected: a temporary failure). */
function toSmtp(err: unknown): SmtpReply {
  return replyForError(err) ?? reply(451, '4.3.0', 'temporary failure, try again later');
}


export class SubmissionListeners implements Component {
  name = 'submission';
  private servers: SMTPServer[] = [];
  private unwatchTls: (() => void) | null = null;
  // A real hash of a random password: unknown users cost the same time as wrong passwords.
  private dummyHash: Promise<string> = hashPassword(randomBytes(18).toString('base64'));

  private app: AppContext;
  // Per-client (IPv4 address / IPv6 /64) and total session caps over 587 and 465 together.
  private slots: ClientSlots;
  private sweeper: NodeJS.Timeout | null = null;
  constructor(app: AppContext) {
    this.app = app;
    this.slots = new ClientSlots(app.config.submission.max_connections, app.config.submission.max_connections_per_ip);
  }

  private create(secure: boolean): SMTPServer {
    const { config, log } = this.app;
    const max = config.submission.max_message_size;
    const metrics = smtpMetrics(this.app, 'submission');
    const server = new SMTPServer({
      secure,
      name: config.hostname,
      banner: 'Letterbox submission',
      key: readFileSync(config.tls.key),
      cert: readFileSync(config.tls.cert),
      authMethods: ['PLAIN', 'LOGIN'],
      authRequiredMessage: '5.7.0 Authentication required',
      size: max,
      disableReverseLookup: true,
      logger: false,
      maxClients: config.submission.max_connections,
      socketTimeout: 300_000,
      closeTimeout: 4000, // graceful stop: sessions get 4 s to finish (the whole stop must fit in 10 s)
      onAuth: (auth, session, cb) =>
        this.onAuth(auth, session).then(
          (u) => (metrics.auth('success'), cb(null, u)),
          (e) => (metrics.auth('failure'), cb(e)),
        ),
      onConnect: (session, cb) => {
        const refused = this.slots.take(session.id, session.remoteAddress);
        if (refused) {
          const s = config.submission;
          log.warn({ ip: clientNetwork(session.remoteAddress), limit: refused === 'total' ? s.max_connections : s.max_connections_per_ip, component: 'submission' }, `too many connections${refused === 'client' ? ' from one address' : ''}; refused`);
          metrics.session(session, 'refused');
          return cb(reply(421, '4.7.0', `${config.hostname} Too many connections${refused === 'client' ? ' from your address' : ''}, try again later`));
        }
        metrics.session(session, 'accepted');
        cb();
      },
      onClose: (session) => this.slots.release(session.id),
      onMailFrom: (address, session, cb) => {
        // RFC 6531: a non-ASCII address needs the SMTPUTF8 parameter (Postfix: 553 5.6.7).
        if (nonAsciiWithoutSmtpUtf8(address.address, session.envelope)) return cb(reply(553, '5.6.7', 'non-ASCII address requires the SMTPUTF8 parameter'));
        try {
          (session as any).caps = checkSender(this.app, this.sender(session), address.address);
          cb();
        } catch (err) {
          cb(toSmtp(err));
        }
      },
      onRcptTo: (address: SMTPServerAddress, session, cb) => {
        try {
          const bad = checkRecipient(this.app, this.sender(session), address.address, session.envelope.rcptTo.length + 1, (session as any).caps);
          cb(bad ? replyOf(bad.code, bad.reason) : undefined);
        } catch (err) {
          cb(toSmtp(err));
        }
      },
      onData: (stream, session, cb) => this.onData(stream as any, session, max, metrics, cb),
    });
    authOnlyAfterStartTls(server);
    server.on('error', (err) => log.warn({ err: err.message, component: 'submission' }, 'submission connection error'));
    return server;
  }

  /** DATA: read the message (size-capped), hand it to acceptOutbound (src/submit/accept.ts), answer. */
  private onData(stream: Readable, session: SMTPServerSession, max: number, metrics: ReturnType<typeof smtpMetrics>, cb: (err?: Error | null, message?: string) => void): void {
    const { log } = this.app;
    readAll(stream as any, max)
      .then(async (message) => {
        if (!message) throw reply(552, '5.3.4', `message exceeds the size limit of ${max} bytes`);
        const sock = (session as any).tlsOptions ?? null;
        const r = await acceptOutbound(this.app, {
          mailbox: this.sender(session),
          message,
          envelope: { from: (session.envelope.mailFrom as SMTPServerAddress).address, to: session.envelope.rcptTo.map((r) => r.address) },
          origin: 'submission',
          client: { ip: session.remoteAddress, helo: session.hostNameAppearsAs, tls: sock ? `${sock.version ?? ''} ${sock.name ?? ''}`.trim() : null, protocol: 'ESMTPSA' },
        });
        if (r.accepted.length === 0) {
          const first = r.rejected[0];
          throw first ? replyOf(first.code, first.reason) : reply(554, '5.5.1', 'no valid recipients');
        }
        metrics.message(session, 'accepted');
        cb(null, `2.0.0 accepted ${r.messageId}`);
      })
      .catch((err) => {
        metrics.message(session, 'rejected');
        if ((err as any).responseCode) return cb(err);
        log.error({ err: err.message, stack: err.stack }, 'submission failed');
        cb(toSmtp(err));
      });
  }

  private sender(session: SMTPServerSession): Sender {
    return session.user as unknown as Sender;
  }

  private async onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<{ user: any }> {
    const ip = session.remoteAddress;
    const name = String(auth.username ?? '').trim();
    // RFC 4616: an authorization identity (authzid) asks to act as someone else. We have no
    // proxy authorization, so one that differs from the login name is refused, never ignored.
    const authzid = String((auth as { authzid?: string }).authzid ?? '').trim();
    const authcid = String((auth as { authcid?: string }).authcid ?? '').trim();
    if (authzid && authcid && authzid.toLowerCase() !== authcid.toLowerCase()) {
      this.app.log.warn({ ip, user: name, component: 'submission' }, 'authentication refused: authorization identity differs from the login name');
      throw reply(535, '5.7.8', 'authorization identity (authzid) differs from the login name; log in as yourself without an authzid');
    }
    // Reserve the attempt BEFORE the password check (src/auth/guard.ts): parallel attempts count.
    const r = this.app.loginGuard.reserve(name, ip, 'submission');
    if (!r.ok) {
      this.app.log.warn({ ip, user: name, component: 'submission', scope: r.scope }, 'authentication refused: too many failures (locked out)');
      throw reply(454, '4.7.0', 'too many failed authentication attempts; try again later');
    }
    let ok = false;
    let mb: ReturnType<typeof findMailbox> = null;
    try {
      mb = name.includes('@') ? findMailbox(this.app, name) : null;
      const password = String(auth.password ?? '');
      // Device (app) passwords first (one SHA-256 lookup); the main password unless the mailbox
      // requires app passwords (then it is refused after the same Argon2 work, so timing tells nothing).
      const app = mb && !mb.disabled ? checkAppPasswordLogin(this.app.db, mb.id, password, { now: this.app.clock.now(), ip, protocol: 'submission' }) : { result: 'main' as const };
      if (app.result === 'app') ok = true;
      else {
        const hash = mb && app.result === 'main' ? passwordHashOf(this.app.db, mb.id) : undefined;
        ok = (await verifyPassword(hash ?? (await this.dummyHash), password)) && !!mb && hash !== undefined && !mb.disabled;
      }
    } catch (err) {
      this.app.loginGuard.settle(r.ticket, false);
      throw err;
    }
    const delay = this.app.loginGuard.settle(r.ticket, ok);
    if (ok && mb) {
      this.app.log.info({ ip, user: mb.address, component: 'submission' }, 'authenticated');
      return { user: { id: mb.id, address: mb.address, domain: mb.domain } satisfies Sender };
    }
    this.app.log.warn({ ip, user: name, component: 'submission' }, 'authentication failed');
    if (delay > 0) await new Promise((res) => setTimeout(res, delay));
    throw reply(535, '5.7.8', 'authentication credentials invalid');
  }

  async start(): Promise<void> {
    const { config } = this.app;
    const listen = async (addr: string, secure: boolean) => {
      const hp = parseHostPort(addr)!;
      const server = this.create(secure);
      await new Promise<void>((res, rej) => {
        server.once('error', rej);
        server.listen(hp.port, hp.host, () => {
          server.removeListener('error', rej);
          res();
        });
      });
      this.servers.push(server);
    };
    for (const a of config.listen.submission) await listen(a, false);
    for (const a of config.listen.submissions) await listen(a, true);
    // A renewed certificate applies to new connections without a restart.
    this.unwatchTls = watchCertificate(this.app, 'submission', (m) => {
      for (const s of this.servers) (s as any).updateSecureContext(m);
    });
    // Stress mode, as on the MX: above stress_threshold × max_connections open sessions, every session
    // without progress for stress_idle_timeout_ms gets 421 4.4.2 (src/smtp/stress.ts).
    const s = config.submission;
    this.sweeper = setInterval(() => {
      const open = this.slots.size;
      const closed = sweepIdle({ servers: this.servers, slots: this.slots, maxConnections: s.max_connections, stressThreshold: s.stress_threshold, stressIdleMs: s.stress_idle_timeout_ms, hostname: config.hostname, now: Date.now() });
      if (closed) this.app.log.warn({ open, closed, limit: s.max_connections, component: 'submission' }, 'under load: closed idle sessions');
    }, Math.max(250, Math.min(1000, Math.floor(s.stress_idle_timeout_ms / 4))));
    this.sweeper.unref();
    this.app.log.info({ submission: config.listen.submission, submissions: config.listen.submissions }, 'submission listening');
  }

  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    this.unwatchTls?.();
    this.unwatchTls = null;
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers = [];
  }
}

export function createSubmissionComponent(app: AppContext): Component {
  return new SubmissionListeners(app);
}

/**
 * RFC 3207/4954: AUTH before STARTTLS is refused with 530 5.7.0 (smtp-server says 538) and not
 * advertised; each new connection is also tracked for the stress-mode sweep. Wraps smtp-server's
 * per-connection handlers (pinned version; test/submission.test.ts covers both).
 */
function authOnlyAfterStartTls(server: SMTPServer): void {
  const conns = server.connections as Set<any>;
  const add = conns.add.bind(conns);
  conns.add = (conn: any) => {
    trackProgress(conn); // for the stress-mode sweep (src/smtp/stress.ts)
    const orig = conn.handler_AUTH;
    conn.handler_AUTH = function (this: any, command: Buffer, callback: () => void) {
      if (!this.secure) {
        this.send(530, '5.7.0 Must issue a STARTTLS command first');
        return callback();
      }
      return orig.call(this, command, callback);
    };
    // Nor is AUTH advertised before STARTTLS (RFC 4954 section 4: no AUTH over a channel that would
    // expose the password); smtp-server lists it whenever the command exists, so the plaintext
    // EHLO reply is filtered here. After STARTTLS (this.secure) the reply is left as it is.
    const ehlo = conn.handler_EHLO;
    conn.handler_EHLO = function (this: any, command: Buffer, callback: () => void) {
      if (this.secure) return ehlo.call(this, command, callback);
      const send = this.send;
      this.send = function (this: any, code: number, data: unknown, ...rest: unknown[]) {
        if (code === 250 && Array.isArray(data)) data = data.filter((l) => !/^AUTH\b/i.test(String(l)));
        return send.call(this, code, data, ...rest);
      };
      try {
        return ehlo.call(this, command, callback);
      } finally {
        delete this.send; // back to the prototype's send
      }
    };
    return add(conn);
  };
}
