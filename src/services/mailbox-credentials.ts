// The mailbox's stored password hash, read for checks outside a login (e.g. before embedding a
// password in a configuration profile). The only SQL of the self-service features' password check.
import { verifyPassword } from '../auth/passwords.ts';
import type { ServiceContext } from './context.ts';

/** True when `password` is the mailbox's current password. */
export async function mailboxPasswordMatches(ctx: ServiceContext, mailboxId: string, password: string): Promise<boolean> {
  const stored = ctx.db.prepare('SELECT password_hash FROM mailboxes WHERE id = ?').pluck().get(mailboxId) as string | undefined;
  return !!stored && (await verifyPassword(stored, password));
}
