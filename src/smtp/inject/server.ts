// The local injection listener (listen.inject, loopback only): where Dovecot's Sieve hands the mail
// it sends itself — vacation replies and redirects — via `submission_host`. Dovecot 2.3 cannot
// authenticate there, so the listener is unauthenticated and bound to loopback only (the same
// trust Postfix gives local submission); each message is attributed to the mailbox it is sent for
// (the envelope sender for a redirect, the From address for a null-sender vacation reply) and then
// takes the one outbound path of submission (acceptOutbound: caps, DKIM signing, the queue).
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import type { AppContext, Component } from '../../server.ts';
import { parseHostPort } from '../../config/schema.ts';
import { resolveRecipient } from '../../routing/resolve.ts';
import { acceptOutbound, type Sender } from '../../submit/accept.ts';
import { fromAddresses, parseHeader, splitMessage } from '../../submit/fixups.ts';
import { syncVacationScripts } from '../../sieve/vacation-service.ts';
import { readAll } from '../session-io.ts';
import { reply, replyForError, replyOf } from '../../mail/reply.ts';


/** The one mailbox `address` belongs to (itself, a plus-address, or an alias with that single mailbox as target). */
export function senderMailbox(app: AppContext, address: string): Sender | null {
  const r = resolveRecipient(app.db, address, { srsSecret: app.srsSecret, now: app.clock.now(), hostname: app.config.hostname });
  if (!r.ok) return null;
  const locals = [...new Map(r.targets.filter((t) => t.kind === 'local').map((t) => [t.mailboxId, t])).values()];
  if (locals.length !== 1 || r.targets.some((t) => t.kind === 'forward')) return null;
  const t = locals[0] as Extract<(typeof locals)[number], { kind: 'local' }>;
  return { id: t.mailboxId, address: t.address, domain: t.domain };
}


export class InjectListener implements Component {
  name = 'inject';
  private server: SMTPServer | null = null;
  private app: AppContext;
  constructor(app: AppContext) {
    this.app = app;
  }

  private handle(session: SMTPServerSession, message: Buffer): Promise<string> {
    const mf = session.envelope.mailFrom;
    const from = mf ? (mf as SMTPServerAddress).address : "";
    const to = session.envelope.rcptTo.map((r) => r.address);
    let owner: string | undefined = from;
    if (!from) owner = fromAddresses(parseHeader(splitMessage(message).header))[0];
    const mailbox = owner ? senderMailbox(this.app, owner) : null;
    if (!mailbox) throw reply(550, '5.7.1', `<${owner ?? ''}> is not a mailbox here: only mail Sieve sends for a local mailbox is taken`);
    return acceptOutbound(this.app, { mailbox, message, envelope: { from, to }, origin: 'sieve', client: { ip: session.remoteAddress, helo: session.hostNameAppearsAs, protocol: 'ESMTP' } }).then((r) => {
      this.app.log.info({ mailbox: mailbox.address, kind: from ? 'redirect' : 'vacation', messageId: r.messageId, accepted: r.accepted.length, rejected: r.rejected.length, component: 'inject' }, 'Sieve mail accepted');
      if (r.accepted.length === 0) {
        const first = r.rejected[0];
        throw first ? replyOf(first.code, first.reason) : reply(554, '5.5.1', 'no valid recipients');
      }
      return `2.0.0 accepted ${r.messageId}`;
    });
  }

  async start(): Promise<void> {
    const { config, log } = this.app;
    // The vacation scripts follow the database (after a restore, an upgrade, or listen.inject changing).
    syncVacationScripts(this.app);
    if (!config.listen.inject) return;
    const max = config.submission.max_message_size;
    const server = new SMTPServer({
      name: config.hostname,
      banner: 'Letterbox local injection (Sieve)',
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      size: max,
      disableReverseLookup: true,
      logger: false,
      maxClients: 50,
      closeTimeout: 4000,
      onConnect: (session, cb) => {
        // Loopback only, whatever the bind address.
        const ip = session.remoteAddress.replace(/^::ffff:/, '');
        cb(ip.startsWith('127.') || ip === '::1' ? undefined : reply(554, '5.7.1', 'local connections only'));
      },
      onData: (stream, session, cb) => {
        readAll(stream as any, max)
          .then(async (message) => {
            if (!message) throw reply(552, '5.3.4', `message exceeds the size limit of ${max} bytes`);
            cb(null, await this.handle(session, message));
          })
          .catch((err) => {
            if ((err as any).responseCode) return cb(err);
            const known = replyForError(err);
            if (known) return cb(known);
            log.error({ err: err.message, component: 'inject' }, 'Sieve mail failed');
            cb(reply(451, '4.3.0', 'temporary failure, try again later'));
          });
      },
    });
    server.on('error', (err) => log.warn({ err: err.message, component: 'inject' }, 'inject connection error'));
    const hp = parseHostPort(config.listen.inject)!;
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(hp.port, hp.host, () => {
        server.removeListener('error', rej);
        res();
      });
    });
    this.server = server;
    log.info({ inject: config.listen.inject }, 'local injection listener (Sieve vacation replies and redirects) listening');
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

export function createInjectComponent(app: AppContext): Component {
  return new InjectListener(app);
}
