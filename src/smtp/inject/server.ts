// The local injection listener (listen.inject, loopback only): where Dovecot's Sieve hands the mail
// it sends itself — vacation replies and redirects — via `submission_host`. Dovecot 2.3 cannot
// authenticate there, so the listener is unauthenticated and bound to loopback only (the same
// trust Postfix gives local submission); each message is attributed to the mailbox it is sent for
// and then takes the one outbound path of submission (acceptOutbound: caps, DKIM signing, the queue).
// Attribution: a redirect by the X-Sieve-Redirected-From field Pigeonhole writes (why that cannot be
// forged: redirect.ts); it leaves with the original envelope sender rewritten with SRS in the
// mailbox's domain and ARC-sealed, like a forward. Other Sieve mail by its envelope sender (a
// mailbox's own address), or for a null-sender vacation reply by its From.
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import type { AppContext, Component } from '../../server.ts';
import { parseHostPort } from '../../config/schema.ts';
import { resolveRecipient } from '../../routing/resolve.ts';
import { acceptOutbound, type Sender } from '../../submit/accept.ts';
import { fromAddresses, parseHeader, splitMessage } from '../../submit/fixups.ts';
import { syncVacationScripts } from '../../sieve/vacation-service.ts';
import { readAll } from '../session-io.ts';
import { srsForward } from '../../mail/srs.ts';
import { redirectedFrom, redirectLoops, sealRedirect } from './redirect.ts';
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

  private async handle(session: SMTPServerSession, message: Buffer): Promise<string> {
    const app = this.app;
    const mf = session.envelope.mailFrom;
    const from = mf ? (mf as SMTPServerAddress).address : "";
    const to = session.envelope.rcptTo.map((r) => r.address);
    const fields = parseHeader(splitMessage(message).header);
    const redirector = redirectedFrom(fields);
    let owner: string | undefined = redirector ?? from;
    if (!owner) owner = fromAddresses(fields)[0];
    const mailbox = owner ? senderMailbox(app, owner) : null;
    if (!mailbox) throw reply(550, '5.7.1', `<${owner ?? ''}> is not a mailbox here: only mail Sieve sends for a local mailbox is taken`);
    const kind = redirector ? 'redirect' : from ? 'sieve' : 'vacation';
    let envelopeFrom = from;
    if (redirector) {
      // Permanent refusals below make Pigeonhole keep the message in the mailbox instead (its
      // implicit keep after a failed redirect): nothing is lost, as with a forward not made.
      if (redirectLoops(fields, mailbox.address)) {
        app.log.warn({ mailbox: mailbox.address, component: 'inject' }, 'redirect loop: the message already went through this mailbox; kept in the mailbox instead');
        throw reply(550, '5.4.6', `mail loop: the message was already delivered to <${mailbox.address}>; not redirected again`);
      }
      envelopeFrom = srsForward(from, mailbox.domain, app.srsSecret, app.clock.now());
    }
    let r;
    try {
      r = await acceptOutbound(app, {
        mailbox,
        message,
        envelope: { from: envelopeFrom, to },
        origin: 'sieve',
        ...(redirector ? { redirect: { seal: (signed: Buffer) => sealRedirect(app, { original: message, message: signed, mailbox }) } } : {}),
        client: { ip: session.remoteAddress, helo: session.hostNameAppearsAs, protocol: 'ESMTP' },
      });
    } catch (err: any) {
      // Over the mailbox's sending caps: a redirect is kept in the mailbox (550, Pigeonhole's
      // implicit keep), as a forward over the caps is; it is not deferred for the sender to retry.
      if (redirector && err?.code === 'rate_limited') throw reply(550, '5.7.1', `${String(err.message).replace(/;?\s*try again later\.?$/i, '')}; the message is kept in the mailbox instead of redirected`);
      throw err;
    }
    app.log.info({ mailbox: mailbox.address, kind, messageId: r.messageId, accepted: r.accepted.length, rejected: r.rejected.length, component: 'inject' }, 'Sieve mail accepted');
    if (r.accepted.length === 0) {
      const first = r.rejected[0];
      if (redirector && first && first.code === 451 && /^4\.7\.1/.test(first.reason)) throw reply(550, '5.7.1', `${first.reason.replace(/^4\.7\.1\s*/, '')}; the message is kept in the mailbox instead of redirected`);
      throw first ? replyOf(first.code, first.reason) : reply(554, '5.5.1', 'no valid recipients');
    }
    return `2.0.0 accepted ${r.messageId}`;
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
