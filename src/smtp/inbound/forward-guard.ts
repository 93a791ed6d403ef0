// The guards of a mailbox's own forwarding (issue #17 item 3) on the MX path. Aliases have none of
// this: their forwards are not a mailbox's sending and have no mailbox to fall back to.
import type { LocalTarget, ForwardTarget } from './deliver.ts';

/** A mailbox forward not made, and why; the message is stored in that mailbox instead. */
export interface KeptForward {
  mailbox: string;
  targets: string[];
  reason: 'loop' | 'caps';
}

/** The header a mailbox's forwarded copy carries (Postfix's convention), naming the mailbox. */
export function deliveredToHeader(mailbox: string): string {
  return `Delivered-To: ${mailbox}\r\n`;
}

/**
 * Pure. A message already forwarded by us for a mailbox (it carries our `Delivered-To: <mailbox>`
 * and came back, e.g. the remote target forwards to us again) is not forwarded again; nor is one
 * the mailbox's sending caps do not allow (`allow(mailboxId, recipients)`; called once per mailbox).
 * Either way nothing is lost: the message is stored in the mailbox (INBOX), as if it kept a copy.
 */
export function guardForwards(
  plan: { locals: LocalTarget[]; forwards: ForwardTarget[] },
  deliveredTo: string[],
  allow: (mailbox: NonNullable<ForwardTarget['target']['mailbox']>, recipients: number) => boolean,
): { locals: LocalTarget[]; forwards: ForwardTarget[]; kept: KeptForward[] } {
  const seen = new Set(deliveredTo.map((a) => a.toLowerCase()));
  const byMailbox = new Map<string, ForwardTarget[]>();
  const forwards: ForwardTarget[] = [];
  for (const f of plan.forwards) {
    const m = f.target.mailbox;
    if (!m) forwards.push(f);
    else byMailbox.set(m.id, [...(byMailbox.get(m.id) ?? []), f]);
  }
  const locals = [...plan.locals];
  const kept: KeptForward[] = [];
  for (const group of byMailbox.values()) {
    const m = group[0].target.mailbox!;
    const reason = seen.has(m.address) ? 'loop' : !allow(m, group.length) ? 'caps' : null;
    if (!reason) {
      forwards.push(...group);
      continue;
    }
    kept.push({ mailbox: m.address, targets: group.map((f) => f.target.address), reason });
    if (!locals.some((l) => l.target.mailboxId === m.id)) {
      locals.push({
        lmtpRcpt: m.address,
        target: { kind: 'local', mailboxId: m.id, address: m.address, local: m.local, domain: m.domain, detail: null, quotaBytes: m.quotaBytes },
        originals: [...new Set(group.flatMap((f) => f.originals))],
      });
    }
  }
  return { locals, forwards, kept };
}
