// Forwarding per mailbox (issue #17 item 3): setting, reading and removing it. The settings live in
// mailbox_forwarding (src/services/forwarding-store.ts); routing (src/routing/resolve.ts) reads
// them, so the MX forwards through the same SRS + ARC path alias forwards use. Shared by the API
// and the CLI.
import { z } from 'zod';
import { LetterboxError } from '../errors.ts';
import type { ServiceContext } from '../services/context.ts';
import type { Mailbox } from '../services/mailboxes.ts';
import { parseAddress } from '../mail/address.ts';
import { isLocalDomain, resolveRecipient } from '../routing/resolve.ts';
import { deleteForwarding, getForwarding, saveForwarding, type StoredForwarding } from '../services/forwarding-store.ts';

export const ForwardingBody = z
  .strictObject({
    targets: z.array(z.string().min(3).max(320)).min(1).describe('Addresses the mail is forwarded to (external ones through SRS and ARC; ours are delivered locally).'),
    keepCopy: z.boolean().default(true).describe('Also keep a copy in the mailbox (default true).'),
  })
  .meta({ id: 'ForwardingInput' });
export type ForwardingInput = z.input<typeof ForwardingBody>;

export interface ForwardingView {
  targets: string[];
  keepCopy: boolean;
  updatedAt: string;
}

const view = (f: StoredForwarding): ForwardingView => ({ targets: f.targets, keepCopy: f.keepCopy, updatedAt: f.updatedAt });

/**
 * The targets as stored: each a valid address (domain normalized, local part lower-cased), without
 * duplicates, at most `max`, and never the mailbox itself (that is what keepCopy is for). Pure.
 */
export function checkTargets(mailbox: string, targets: string[], max: number): string[] {
  if (targets.length === 0) throw new LetterboxError('validation_error', 'forwarding needs at least one target address', { issues: [{ path: 'targets', message: 'at least one' }] });
  const out: string[] = [];
  targets.forEach((t, i) => {
    let a;
    try {
      a = parseAddress(t);
    } catch (err: any) {
      throw new LetterboxError('validation_error', `targets[${i}]: ${err.message}`, { issues: [{ path: `targets.${i}`, message: err.message }] });
    }
    if (a.address === mailbox) throw new LetterboxError('validation_error', `targets[${i}]: ${a.address} is the mailbox itself; use keepCopy to keep a copy`, { issues: [{ path: `targets.${i}`, message: 'the mailbox itself' }] });
    if (!out.includes(a.address)) out.push(a.address);
  });
  if (out.length > max) throw new LetterboxError('validation_error', `at most ${max} forwarding targets (sieve.max_forward_targets)`, { issues: [{ path: 'targets', message: `at most ${max}` }] });
  return out;
}

/**
 * Sets (creates or replaces) a mailbox's forwarding. Targets in our domains must exist and must not
 * lead back to this mailbox (a local loop): checked by the routing code itself on the new settings,
 * inside a transaction that is rolled back when the check fails.
 */
export function setForwarding(ctx: ServiceContext, m: Mailbox, input: ForwardingInput): ForwardingView {
  const parsed = { targets: input.targets, keepCopy: input.keepCopy ?? true };
  const targets = checkTargets(m.address, parsed.targets, ctx.config.sieve.max_forward_targets);
  const saved = ctx.db.transaction(() => {
    const s = saveForwarding(ctx, m.id, targets, parsed.keepCopy);
    const now = ctx.clock.now();
    for (const t of targets) {
      if (!isLocalDomain(ctx.db, parseAddress(t).domain)) continue;
      const r = resolveRecipient(ctx.db, t, { srsSecret: '', now });
      if (!r.ok) throw new LetterboxError('validation_error', `${t}: ${r.reply.text}`, { issues: [{ path: 'targets', message: r.reply.text }] });
      if (r.targets.some((x) => (x.kind === 'local' && x.mailboxId === m.id) || (x.kind === 'forward' && x.mailbox?.id === m.id))) {
        throw new LetterboxError('validation_error', `forwarding loop: ${t} leads back to ${m.address}`, { issues: [{ path: 'targets', message: 'loop' }] });
      }
    }
    // The mailbox's own address must still deliver somewhere (a loop through aliases shows here).
    const self = resolveRecipient(ctx.db, m.address, { srsSecret: '', now });
    if (!self.ok) throw new LetterboxError('validation_error', `forwarding of ${m.address}: ${self.reply.text}`, { issues: [{ path: 'targets', message: self.reply.text }] });
    return s;
  })();
  ctx.log.info({ mailbox: m.address, targets: targets.length, keepCopy: parsed.keepCopy }, 'forwarding set');
  return view(saved);
}

export function readForwarding(ctx: ServiceContext, m: Mailbox): ForwardingView {
  const f = getForwarding(ctx, m.id);
  if (!f) throw new LetterboxError('not_found', `${m.address} has no forwarding`);
  return view(f);
}

export function removeForwarding(ctx: ServiceContext, m: Mailbox): ForwardingView {
  const f = readForwarding(ctx, m);
  deleteForwarding(ctx, m.id);
  ctx.log.info({ mailbox: m.address }, 'forwarding removed');
  return f;
}
