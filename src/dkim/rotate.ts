// DKIM key rotation (issue #18). A rotation creates the next RSA-2048 and Ed25519 keys under new
// selectors ('pending': printed and published, not signing). Signing moves to them only once
// `domain verify` (on demand, or the daily DNS job) finds both published with the right keys: until
// then mail keeps its old, published signatures, so a rotation can never make mail unverifiable.
// The replaced keys stay published for dkim.rotation_grace ('retiring': mail signed just before the
// switch may be verified days later); after that their private keys are deleted ('removed') and the
// CLI says their records can go. Each step records an event (webhooks: dkim.rotation_started,
// dkim.rotated, dkim.retired). Optional automatic rotation every dkim.rotate_every_months.
import { existsSync, rmSync } from 'node:fs';
import { isoNow } from '../clock.ts';
import { LetterboxError } from '../errors.ts';
import { recordEvent } from '../events/record.ts';
import type { DnsRecord } from '../dns/records.ts';
import type { ServiceContext } from '../services/context.ts';
import { getDomain, listDomains } from '../services/domains.ts';
import { dkimKeyPath, dkimTxt, generateDkimKey, writeDkimKey, type DkimAlgorithm } from './keys.ts';
import { activatePending, insertPendingKey, keysInState, keysOf, markRemoved, selectorTaken, type DkimKeyRow } from './store.ts';

export interface RotationStarted {
  domain: string;
  /** The new selectors, not signing until published. */
  pending: { selector: string; algorithm: DkimAlgorithm }[];
  /** The records to publish now (the new selectors' TXT records). */
  records: DnsRecord[];
}

/**
 * Starts a rotation: the next key pair under new selectors, in state 'pending'. Refused (conflict)
 * while an earlier rotation still waits for its records.
 */
export async function rotateDkim(ctx: ServiceContext, idOrName: string): Promise<RotationStarted> {
  const d = getDomain(ctx, idOrName);
  const waiting = keysOf(ctx.db, d.id).filter((k) => k.state === 'pending');
  if (waiting.length) {
    throw new LetterboxError('conflict', `a rotation of ${d.name} is waiting for its records (${waiting.map((k) => k.selector).join(', ')}): publish them and run 'letterbox domain verify ${d.name}'`);
  }
  const now = new Date(ctx.clock.now());
  const created = isoNow(ctx.clock);
  const generated = await Promise.all((['rsa', 'ed25519'] as const).map((a) => generateDkimKey(a, now)));
  const made: { selector: string; algorithm: DkimAlgorithm; path: string; publicKey: string }[] = [];
  for (const k of generated) {
    // Dated selectors (lb202612r); a second rotation in one month gets lb202612r2, lb202612r3...
    let selector = k.selector;
    for (let n = 2; selectorTaken(ctx.db, d.id, selector) || existsSync(dkimKeyPath(ctx.config.data_dir, d.name, selector)) || made.some((m) => m.selector === selector); n++) selector = `${k.selector}${n}`;
    const path = dkimKeyPath(ctx.config.data_dir, d.name, selector);
    writeDkimKey(path, k.privateKeyPem);
    made.push({ selector, algorithm: k.algorithm, path, publicKey: k.publicKey });
  }
  const records = made.map((m): DnsRecord => ({ purpose: 'dkim', type: 'TXT', name: `${m.selector}._domainkey.${d.name}`, value: dkimTxt(m.algorithm, m.publicKey), ttl: 3600 }));
  ctx.db
    .transaction(() => {
      if (keysOf(ctx.db, d.id).some((k) => k.state === 'pending')) throw new LetterboxError('conflict', `a rotation of ${d.name} was started meanwhile`);
      for (const m of made) insertPendingKey(ctx.db, { domainId: d.id, selector: m.selector, algorithm: m.algorithm, privateKeyPath: m.path, publicKey: m.publicKey, createdAt: created });
      recordEvent(ctx.db, ctx.clock, { type: 'dkim.rotation_started', domain: d.name, data: { domainId: d.id, selectors: made.map((m) => m.selector), records } });
    })
    .immediate();
  ctx.log.info({ domain: d.name, selectors: made.map((m) => m.selector) }, 'DKIM rotation started: new keys waiting to be published');
  return { domain: d.name, pending: made.map((m) => ({ selector: m.selector, algorithm: m.algorithm })), records };
}

/**
 * After a DNS verification: when every pending key of the domain was found published with its key
 * (`published`: the selectors verify saw correct), signing switches to them and the active keys
 * start retiring. Returns the selectors activated, or null when nothing changed.
 */
export function advanceRotation(ctx: ServiceContext, domainId: string, published: Set<string>): { activated: string[]; retiring: string[]; graceUntil: string } | null {
  const keys = keysOf(ctx.db, domainId);
  const pending = keys.filter((k) => k.state === 'pending');
  if (pending.length === 0 || !pending.every((k) => published.has(k.selector))) return null;
  const d = getDomain(ctx, domainId);
  const now = isoNow(ctx.clock);
  const graceUntil = new Date(ctx.clock.now() + ctx.config.dkim.rotation_grace).toISOString();
  const retiring = keys.filter((k) => k.state === 'active').map((k) => k.selector);
  const activated = pending.map((k) => k.selector);
  ctx.db
    .transaction(() => {
      activatePending(ctx.db, domainId, now);
      recordEvent(ctx.db, ctx.clock, { type: 'dkim.rotated', domain: d.name, data: { domainId, activated, retiring, graceUntil } });
    })
    .immediate();
  ctx.log.info({ domain: d.name, activated, retiring, graceUntil }, 'DKIM rotation: the new keys are published; signing switched to them');
  return { activated, retiring, graceUntil };
}

/**
 * Keys that have been retiring for longer than the grace period: their private keys are deleted
 * and they are marked removed (their DNS records may now go). For one domain, or all.
 */
export function retireExpired(ctx: ServiceContext, domainId?: string): { domain: string; selectors: string[] }[] {
  const grace = ctx.config.dkim.rotation_grace;
  const now = ctx.clock.now();
  const due = (domainId ? keysOf(ctx.db, domainId).filter((k) => k.state === 'retiring') : keysInState(ctx.db, 'retiring')).filter(
    (k) => Date.parse(k.retiredAt ?? k.createdAt) + grace <= now,
  );
  const byDomain = new Map<string, DkimKeyRow[]>();
  for (const k of due) byDomain.set(k.domainId, [...(byDomain.get(k.domainId) ?? []), k]);
  const out: { domain: string; selectors: string[] }[] = [];
  for (const [id, keys] of byDomain) {
    const d = getDomain(ctx, id);
    const at = isoNow(ctx.clock);
    ctx.db
      .transaction(() => {
        for (const k of keys) markRemoved(ctx.db, k.id, at);
        recordEvent(ctx.db, ctx.clock, {
          type: 'dkim.retired',
          domain: d.name,
          data: { domainId: id, selectors: keys.map((k) => k.selector), removeFromDns: keys.map((k) => `${k.selector}._domainkey.${d.name}`) },
        });
      })
      .immediate();
    // After the commit: a crash in between leaves a key file without a signing row, never the reverse.
    for (const k of keys) rmSync(k.privateKeyPath, { force: true });
    ctx.log.info({ domain: d.name, selectors: keys.map((k) => k.selector) }, 'DKIM rotation: grace period over; old private keys deleted, their DNS records may be removed');
    out.push({ domain: d.name, selectors: keys.map((k) => k.selector) });
  }
  return out;
}

/** Domains whose active keys are older than dkim.rotate_every_months get a rotation started (0 = never). */
export async function autoRotate(ctx: ServiceContext): Promise<string[]> {
  const months = ctx.config.dkim.rotate_every_months;
  if (!months) return [];
  const started: string[] = [];
  const now = new Date(ctx.clock.now());
  const cutoff = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - months, now.getUTCDate(), now.getUTCHours(), now.getUTCMinutes());
  for (const d of listDomains(ctx)) {
    const keys = keysOf(ctx.db, d.id);
    if (keys.some((k) => k.state === 'pending')) continue;
    const active = keys.filter((k) => k.state === 'active');
    if (active.length === 0 || !active.every((k) => Date.parse(k.activatedAt ?? k.createdAt) <= cutoff)) continue;
    try {
      await rotateDkim(ctx, d.id);
      started.push(d.name);
    } catch (err: any) {
      ctx.log.error({ domain: d.name, err: err?.message ?? String(err) }, 'automatic DKIM rotation failed');
    }
  }
  return started;
}

export interface RotationStatus {
  domain: string;
  graceMs: number;
  keys: (Pick<DkimKeyRow, 'selector' | 'algorithm' | 'state' | 'createdAt' | 'activatedAt' | 'retiredAt' | 'removedAt'> & {
    record: DnsRecord;
    /** For retiring keys: when their grace period ends. */
    graceUntil: string | null;
  })[];
  /** What to do next, for people. */
  advice: string[];
}

export function rotationStatus(ctx: ServiceContext, idOrName: string): RotationStatus {
  const d = getDomain(ctx, idOrName);
  const grace = ctx.config.dkim.rotation_grace;
  const keys = keysOf(ctx.db, d.id).map((k) => ({
    selector: k.selector,
    algorithm: k.algorithm,
    state: k.state,
    createdAt: k.createdAt,
    activatedAt: k.activatedAt,
    retiredAt: k.retiredAt,
    removedAt: k.removedAt,
    record: { purpose: 'dkim', type: 'TXT', name: `${k.selector}._domainkey.${d.name}`, value: dkimTxt(k.algorithm, k.publicKey), ttl: 3600 } as DnsRecord,
    graceUntil: k.state === 'retiring' ? new Date(Date.parse(k.retiredAt ?? k.createdAt) + grace).toISOString() : null,
  }));
  const names = (state: string) => keys.filter((k) => k.state === state).map((k) => k.record.name);
  const advice: string[] = [];
  if (names('pending').length) advice.push(`publish ${names('pending').join(' and ')} (letterbox dns ${d.name}), then run 'letterbox domain verify ${d.name}': signing switches to the new keys once they are found`);
  const retiring = keys.filter((k) => k.state === 'retiring');
  if (retiring.length) advice.push(`keep ${retiring.map((k) => k.record.name).join(' and ')} published until ${retiring.map((k) => k.graceUntil).sort().at(-1)}`);
  if (names('removed').length) advice.push(`the records ${names('removed').join(' and ')} are no longer used: you can remove them from DNS`);
  if (advice.length === 0) advice.push(`no rotation in progress; 'letterbox dkim rotate ${d.name}' starts one`);
  return { domain: d.name, graceMs: grace, keys, advice };
}
