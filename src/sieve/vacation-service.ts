// Setting, reading and removing a mailbox's vacation reply: the settings in the database
// (vacation-store), the generated script under the mailbox's home. Shared by the API and the CLI.
import { LetterboxError } from '../errors.ts';
import type { ServiceContext } from '../services/context.ts';
import { listMailboxes, type Mailbox } from '../services/mailboxes.ts';
import { dovecotPaths } from '../dovecot/config.ts';
import { isAuthorizedSender, ownedAddresses } from '../submit/authorize.ts';
import { deleteVacation, getVacation, listVacations, saveVacation } from '../services/vacation-store.ts';
import { existsSync } from 'node:fs';
import { checkVacation, vacationActive, vacationPath, vacationScript, writeVacationScript, type VacationInput, type VacationSettings } from './vacation.ts';

export interface VacationView extends VacationSettings {
  /** Replies are being sent now (enabled, inside start/end). */
  active: boolean;
  updatedAt: string;
}

function ownList(ctx: ServiceContext, m: Mailbox): string[] {
  const o = ownedAddresses(ctx.db, m.address);
  return [o.mailbox, ...o.aliases];
}

function view(ctx: ServiceContext, v: { settings: VacationSettings; updatedAt: string }): VacationView {
  return { ...v.settings, active: vacationActive(v.settings, ctx.clock.now()), updatedAt: v.updatedAt };
}

function scriptFor(ctx: ServiceContext, m: Mailbox, s: VacationSettings): string | null {
  return s.enabled ? vacationScript(s, ownList(ctx, m)) : null;
}

export function setVacation(ctx: ServiceContext, m: Mailbox, input: VacationInput): VacationView {
  if (!ctx.config.listen.inject) {
    throw new LetterboxError('validation_error', 'vacation replies need the local injection listener: set listen.inject (e.g. "127.0.0.1:10026") and restart');
  }
  const sc = ctx.config.sieve;
  const owned = ownedAddresses(ctx.db, m.address);
  const settings = checkVacation(input, { mailbox: m.address, owned: (a) => isAuthorizedSender(a, owned), maxText: sc.vacation_max_text, minDays: sc.vacation_min_days, defaultDays: sc.vacation_default_days });
  // The file first: if it cannot be written, nothing is recorded.
  writeVacationScript(dovecotPaths(ctx.config.data_dir).mailRoot, m.address, scriptFor(ctx, m, settings));
  const saved = saveVacation(ctx, m.id, settings);
  ctx.log.info({ mailbox: m.address, enabled: settings.enabled, start: settings.start, end: settings.end }, 'vacation reply set');
  return view(ctx, saved);
}

export function readVacation(ctx: ServiceContext, m: Mailbox): VacationView {
  const v = getVacation<VacationSettings>(ctx, m.id);
  if (!v) throw new LetterboxError('not_found', `${m.address} has no vacation reply`);
  return view(ctx, v);
}

export function removeVacation(ctx: ServiceContext, m: Mailbox): VacationView {
  const v = readVacation(ctx, m);
  writeVacationScript(dovecotPaths(ctx.config.data_dir).mailRoot, m.address, null);
  deleteVacation(ctx, m.id);
  ctx.log.info({ mailbox: m.address }, 'vacation reply removed');
  return v;
}

/**
 * Rewrites every mailbox's script from the database (at start: after a restore or an upgrade), and
 * removes scripts no row backs (a mailbox removed and created again starts without one).
 */
export function syncVacationScripts(ctx: ServiceContext): number {
  const mailRoot = dovecotPaths(ctx.config.data_dir).mailRoot;
  let n = 0;
  const stored = listVacations<VacationSettings>(ctx);
  const withRow = new Set(stored.map((v) => v.mailboxId));
  for (const m of listMailboxes(ctx)) {
    if (!withRow.has(m.id) && existsSync(vacationPath(mailRoot, m.address))) writeVacationScript(mailRoot, m.address, null);
  }
  for (const v of stored) {
    const own = [v.address, ...ownedAddresses(ctx.db, v.address).aliases];
    try {
      writeVacationScript(mailRoot, v.address, v.settings.enabled && ctx.config.listen.inject ? vacationScript(v.settings, own) : null);
      n++;
    } catch (err: any) {
      ctx.log.error({ mailbox: v.address, err: err.message }, 'could not write the vacation script');
    }
  }
  return n;
}
