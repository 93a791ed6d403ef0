// Ending a mailbox's open IMAP sessions after a login change (password, disable, removal).
import { kickUser } from '../dovecot/sync.ts';
import { dovecotPaths } from '../dovecot/config.ts';
import { doveadmBinary } from './quota.ts';
import type { ServiceContext } from './context.ts';

/** How long after a login change its sessions are ended a second time (see endSessions). */
export const SECOND_KICK_MS = 1500;

/**
 * Ends the open IMAP sessions of a mailbox whose password changed, or that was disabled or removed
 * (doveadm kick). Dovecot re-reads the users file within about a second of the change (NOTES:
 * whole-second mtime, checked at most once a second), so a client that logged in again with the
 * old password in that window is ended by a second kick SECOND_KICK_MS later; from then on the old
 * password fails. Fire-and-forget: the change itself is already committed.
 */
export function endSessions(ctx: ServiceContext, address: string): void {
  const opts = { doveadm: doveadmBinary(ctx.config.dovecot.binary), config: dovecotPaths(ctx.config.data_dir).config, user: address };
  const kick = async (round: number) => {
    const r = await kickUser(opts);
    ctx.log.info({ mailbox: address, round, ok: r.ok, doveadm: r.output || undefined }, 'IMAP sessions ended');
  };
  void kick(1);
  setTimeout(() => void kick(2), SECOND_KICK_MS);
}
