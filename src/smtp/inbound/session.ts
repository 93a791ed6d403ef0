// The MX listener's per-command decisions, pure (no socket, no database): createMxListener
// (server.ts) gathers what a command needs (the connection slot, the recipient's resolution, the
// session), asks these functions what to do, and acts (answers, probes, receives). Unit-tested in
// test/inbound-unit.test.ts.
import type { SMTPServerSession } from 'smtp-server';
import { SmtpReply, reply } from '../../mail/reply.ts';
import type { Target } from '../../routing/resolve.ts';
import { nonAsciiWithoutSmtpUtf8 } from '../mail-from.ts';
import type { SessionInfo, Transaction } from './deliver.ts';

/** Connect: the answer when a connection cap refused the slot (ClientSlots.take), or null to go on. */
export function connectRefusal(refused: null | 'total' | 'client', hostname: string): SmtpReply | null {
  if (refused === 'total') return reply(421, '4.7.0', `${hostname} Too many connections, try again later`);
  if (refused === 'client') return reply(421, '4.7.0', `${hostname} Too many connections from your address, try again later`);
  return null;
}

/** MAIL FROM: RFC 6531, a non-ASCII address needs the SMTPUTF8 parameter (Postfix: 553 5.6.7). */
export function mailFromRefusal(address: string | false | undefined, envelope: { smtpUtf8?: boolean } | undefined): SmtpReply | null {
  if (nonAsciiWithoutSmtpUtf8(address, envelope)) return reply(553, '5.6.7', 'non-ASCII address requires the SMTPUTF8 parameter');
  return null;
}

/** RCPT TO without a transaction. */
export function rcptRefusal(tx: Transaction | undefined): SmtpReply | null {
  return tx ? null : reply(503, '5.5.1', 'Error: need MAIL command');
}

/**
 * RCPT TO, after resolution: the mailbox whose quota must be probed before accepting (one local
 * target with a quota), or null to accept the recipient as resolved. Unlimited mailboxes are never full.
 */
export function quotaProbeTarget(targets: Target[]): (Target & { kind: 'local' }) | null {
  const only = targets.length === 1 ? targets[0] : null;
  if (!only || only.kind !== 'local' || only.quotaBytes <= 0) return null;
  return only;
}

/** DATA: refused when there is no transaction or no accepted recipient. */
export function dataRefusal(tx: Transaction | undefined): SmtpReply | null {
  return !tx || tx.rcpts.length === 0 ? reply(503, '5.5.1', 'Error: no valid recipients') : null;
}

/** What the Received header and the policy checks need from smtp-server's session. */
export function sessionInfo(session: Pick<SMTPServerSession, 'id' | 'remoteAddress' | 'hostNameAppearsAs' | 'clientHostname' | 'transmissionType' | 'secure' | 'tlsOptions'>): SessionInfo {
  const t = session.tlsOptions as { version?: unknown; name?: unknown } | false | undefined;
  const tls = session.secure && t ? { protocol: String(t.version ?? ''), cipher: String(t.name ?? '') } : null;
  return {
    id: session.id,
    remoteAddress: session.remoteAddress,
    helo: session.hostNameAppearsAs || session.remoteAddress,
    clientHostname: session.clientHostname && session.clientHostname !== `[${session.remoteAddress}]` ? session.clientHostname : null,
    transmissionType: session.transmissionType || 'ESMTP',
    tls,
  };
}

/** How often the stress-mode sweep runs: a few times per stress_idle_timeout_ms, between 250 ms and 1 s. */
export function sweepEveryMs(stressIdleTimeoutMs: number): number {
  return Math.max(250, Math.min(1000, Math.floor(stressIdleTimeoutMs / 4)));
}
