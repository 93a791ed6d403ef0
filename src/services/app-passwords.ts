// Device (app) passwords of a mailbox (issue #17 item 4): create (the password is returned once),
// list, revoke (ends the mailbox's open IMAP/ManageSieve sessions), require them instead of the main
// password, and the check SMTP submission uses. Shared by the API and the CLI. Dovecot checks them
// itself from the file syncUsersFile writes (src/dovecot/app-passwords.ts).
import { isoNow } from '../clock.ts';
import { LetterboxError } from '../errors.ts';
import { newId } from '../util/ids.ts';
import type { DB } from '../db/index.ts';
import type { ServiceContext } from './context.ts';
import type { Mailbox } from './mailboxes.ts';
import { syncUsersFile } from '../dovecot/sync.ts';
import { endSessions } from './sessions.ts';
import { checkAppPasswordName, generateAppPassword, hashAppPassword, lastUsedDue, looksLikeAppPassword } from '../auth/app-passwords.ts';
import {
  appPasswordByHash,
  appPasswordsRequired,
  countAppPasswords,
  deleteAppPassword,
  findAppPassword,
  insertAppPassword,
  listAppPasswords,
  setAppPasswordsRequired,
  touchAppPassword,
  type AppPasswordRow,
} from './app-passwords-store.ts';

/** At most this many app passwords per mailbox. */
export const MAX_APP_PASSWORDS = 50;

export interface AppPasswordView {
  id: string;
  name: string;
  createdAt: string;
  lastUsed: { at: string; ip: string | null; protocol: string | null } | null;
}

const view = (r: AppPasswordRow): AppPasswordView => ({
  id: r.id,
  name: r.name,
  createdAt: r.createdAt,
  lastUsed: r.lastUsedAt ? { at: r.lastUsedAt, ip: r.lastUsedIp, protocol: r.lastUsedProtocol } : null,
});

/** Creates one; the password is in the answer and nowhere else (only its SHA-256 is stored). */
export function createAppPassword(ctx: ServiceContext, m: Mailbox, name: unknown): AppPasswordView & { password: string } {
  const n = checkAppPasswordName(name);
  const password = generateAppPassword();
  const id = newId('app');
  ctx.db
    .transaction(() => {
      if (countAppPasswords(ctx.db, m.id) >= MAX_APP_PASSWORDS) throw new LetterboxError('conflict', `${m.address} has ${MAX_APP_PASSWORDS} app passwords already; revoke one first`);
      insertAppPassword(ctx.db, { id, mailboxId: m.id, name: n, hash: hashAppPassword(password), createdAt: isoNow(ctx.clock) });
      syncUsersFile(ctx.db, ctx.config.data_dir);
    })
    .immediate();
  ctx.log.info({ mailbox: m.address, appPassword: id, name: n }, 'app password created');
  return { ...view(findAppPassword(ctx.db, m.id, id)!), password };
}

export function listMailboxAppPasswords(ctx: ServiceContext, m: Mailbox): { requireAppPasswords: boolean; appPasswords: AppPasswordView[] } {
  return { requireAppPasswords: appPasswordsRequired(ctx.db, m.id), appPasswords: listAppPasswords(ctx.db, m.id).map(view) };
}

/**
 * Revokes one (by id or name). Dovecot 2.3 can end sessions only per user (and client address),
 * not per password, so every open IMAP/ManageSieve session of the mailbox is ended; the mail
 * clients of its other devices log in again by themselves, the revoked device cannot.
 */
export function revokeAppPassword(ctx: ServiceContext, m: Mailbox, idOrName: string): AppPasswordView {
  const found = ctx.db
    .transaction(() => {
      const r = findAppPassword(ctx.db, m.id, idOrName);
      if (!r) return null;
      deleteAppPassword(ctx.db, r.id);
      syncUsersFile(ctx.db, ctx.config.data_dir);
      return r;
    })
    .immediate();
  if (!found) throw new LetterboxError('not_found', `${m.address} has no app password "${idOrName}"`);
  ctx.log.info({ mailbox: m.address, appPassword: found.id }, 'app password revoked');
  endSessions(ctx, m.address);
  return view(found);
}

/** Turns require_app_passwords on (the main password is then refused on IMAP, ManageSieve and SMTP) or off. */
export function setRequireAppPasswords(ctx: ServiceContext, m: Mailbox, required: boolean): { requireAppPasswords: boolean } {
  const changed = ctx.db
    .transaction(() => {
      const was = appPasswordsRequired(ctx.db, m.id);
      setAppPasswordsRequired(ctx.db, m.id, required);
      syncUsersFile(ctx.db, ctx.config.data_dir);
      return was !== required;
    })
    .immediate();
  ctx.log.info({ mailbox: m.address, requireAppPasswords: required }, 'app password requirement set');
  // Sessions opened with the main password end now (their clients cannot log in again with it).
  if (changed && required) endSessions(ctx, m.address);
  return { requireAppPasswords: required };
}

/**
 * The SMTP AUTH check for one mailbox: 'app' (an app password; its use recorded at most once a
 * minute), 'main' (the main password may be tried: not required off), or 'refused'.
 */
export function checkAppPasswordLogin(db: DB, mailboxId: string, password: string, use: { now: number; ip: string; protocol: string }): { result: 'app'; id: string } | { result: 'main' | 'refused' } {
  if (looksLikeAppPassword(password)) {
    const r = appPasswordByHash(db, mailboxId, hashAppPassword(password));
    if (r) {
      recordUse(db, r.id, r.lastUsedAt, use);
      return { result: 'app', id: r.id };
    }
  }
  return { result: appPasswordsRequired(db, mailboxId) ? 'refused' : 'main' };
}

/** A use seen by Dovecot's auth policy report (by id): recorded at most once a minute. */
export function recordAppPasswordUse(db: DB, id: string, use: { now: number; ip: string; protocol: string }): void {
  recordUse(db, id, undefined, use);
}

function recordUse(db: DB, id: string, lastUsedAt: string | null | undefined, use: { now: number; ip: string; protocol: string }): void {
  if (lastUsedAt !== undefined && !lastUsedDue(lastUsedAt, use.now)) return;
  touchAppPassword(db, id, new Date(use.now).toISOString(), new Date(use.now - 60_000).toISOString(), use.ip, use.protocol);
}
