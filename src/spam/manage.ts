// Spam settings and learning for the CLI and the API (one service layer for both).
import type { ServiceContext } from '../services/context.ts';
import { getMailbox } from '../services/mailboxes.ts';
import { getDomain } from '../services/domains.ts';
import { LetterboxError } from '../errors.ts';
import { getOverride, setOverride, overridesFor, type SpamScope } from './store.ts';
import { effectiveSettings, type EffectiveSpamSettings, type GlobalSpamSettings, type SpamOverride } from './policy.ts';
import { RspamdClient, redisCommand } from './client.ts';
import { spamPaths } from './config.ts';

export interface SpamSettingsView {
  scope: SpamScope;
  id: string;
  name: string;
  /** What is stored for this domain or mailbox (null = inherited). */
  override: SpamOverride;
  /** What applies (mailbox → domain → config). For a domain: domain → config. */
  effective: EffectiveSpamSettings;
}

export interface SpamPatch {
  mode?: 'on' | 'off' | null;
  reject?: number | null;
  junk?: number | null;
  greylist?: number | null;
  greylisting?: 'on' | 'off' | null;
}

function target(ctx: ServiceContext, ref: string): { scope: SpamScope; id: string; name: string } {
  if (ref.includes('@')) {
    const m = getMailbox(ctx, ref);
    return { scope: 'mailbox', id: m.id, name: m.address };
  }
  // An id of either kind, or a domain name.
  try {
    const m = getMailbox(ctx, ref);
    return { scope: 'mailbox', id: m.id, name: m.address };
  } catch {
    const d = getDomain(ctx, ref);
    return { scope: 'domain', id: d.id, name: d.name };
  }
}

export function getSpamSettings(ctx: ServiceContext, ref: string, scope?: SpamScope): SpamSettingsView {
  const t = scope === 'mailbox' ? mailboxTarget(ctx, ref) : scope === 'domain' ? domainTarget(ctx, ref) : target(ctx, ref);
  const global = globalSpamSettings(ctx.config.spam);
  const override = getOverride(ctx.db, t.scope, t.id) ?? EMPTY;
  const effective = t.scope === 'mailbox' ? (() => { const o = overridesFor(ctx.db, t.id); return effectiveSettings(global, o.domain, o.mailbox); })() : effectiveSettings(global, override, null);
  return { ...t, override, effective };
}

export function setSpamSettings(ctx: ServiceContext, ref: string, patch: SpamPatch, scope?: SpamScope): SpamSettingsView {
  const t = scope === 'mailbox' ? mailboxTarget(ctx, ref) : scope === 'domain' ? domainTarget(ctx, ref) : target(ctx, ref);
  for (const k of ['reject', 'junk', 'greylist'] as const) {
    const v = patch[k];
    if (v !== undefined && v !== null && !Number.isFinite(v)) throw new LetterboxError('validation_error', `${k}: expected a number (a spam score) or null`);
  }
  for (const k of ['mode', 'greylisting'] as const) {
    const v = patch[k];
    if (v !== undefined && v !== null && v !== 'on' && v !== 'off') throw new LetterboxError('validation_error', `${k}: expected "on", "off" or null`);
  }
  const cur = getOverride(ctx.db, t.scope, t.id) ?? EMPTY;
  const next: SpamOverride = {
    mode: patch.mode === undefined ? cur.mode : patch.mode,
    reject: patch.reject === undefined ? cur.reject : patch.reject,
    junk: patch.junk === undefined ? cur.junk : patch.junk,
    greylist: patch.greylist === undefined ? cur.greylist : patch.greylist,
    greylisting: patch.greylisting === undefined ? cur.greylisting : patch.greylisting,
  };
  setOverride(ctx.db, t.scope, t.id, next, new Date(ctx.clock.now()).toISOString());
  return getSpamSettings(ctx, t.id, t.scope);
}

const EMPTY: SpamOverride = { mode: null, reject: null, junk: null, greylist: null, greylisting: null };

/** The [spam] config values that domain and mailbox settings fall back to. */
export function globalSpamSettings(c: { reject: number; junk: number; greylist: number; greylisting: boolean }): GlobalSpamSettings {
  return { reject: c.reject, junk: c.junk, greylist: c.greylist, greylisting: c.greylisting };
}

function mailboxTarget(ctx: ServiceContext, ref: string) {
  const m = getMailbox(ctx, ref);
  return { scope: 'mailbox' as const, id: m.id, name: m.address };
}
function domainTarget(ctx: ServiceContext, ref: string) {
  const d = getDomain(ctx, ref);
  return { scope: 'domain' as const, id: d.id, name: d.name };
}

/** Trains the running rspamd (its controller socket under data_dir) for one mailbox. */
export async function learnMessage(ctx: ServiceContext, ref: string, kind: 'spam' | 'ham', message: Buffer): Promise<{ mailbox: string; kind: string; learned: boolean; detail: string | null }> {
  const m = getMailbox(ctx, ref);
  if (message.length === 0) throw new LetterboxError('validation_error', 'the message is empty');
  const p = spamPaths(ctx.config.data_dir);
  const client = new RspamdClient({ normalSocket: p.normalSocket, controllerSocket: p.controllerSocket });
  try {
    const r = await client.learn(kind, message, m.address);
    return { mailbox: m.address, kind, learned: r.learned, detail: r.error ?? null };
  } catch (err: any) {
    throw new LetterboxError('unavailable', `rspamd is not reachable (${err.message}): is Letterbox running with spam filtering on?`);
  } finally {
    client.close();
  }
}

export async function spamStat(ctx: ServiceContext) {
  const p = spamPaths(ctx.config.data_dir);
  const client = new RspamdClient({ normalSocket: p.normalSocket, controllerSocket: p.controllerSocket });
  try {
    return await client.stat();
  } catch (err: any) {
    throw new LetterboxError('unavailable', `rspamd is not reachable (${err.message}): is Letterbox running with spam filtering on?`);
  } finally {
    client.close();
  }
}

/**
 * Messages learned for one mailbox's Bayes statistics (rspamd 3.4's Redis hash RS<user>, fields
 * learns_spam and learns_ham), read from Redis directly: rspamd's /stat sums users only every few minutes.
 */
export async function learnedFor(ctx: ServiceContext, ref: string): Promise<{ mailbox: string; spam: number; ham: number }> {
  const m = getMailbox(ctx, ref);
  const sock = spamPaths(ctx.config.data_dir).redisSocket;
  try {
    const [spam, ham] = await Promise.all(['learns_spam', 'learns_ham'].map((field) => redisCommand(sock, ['HGET', `RS${m.address}`, field])));
    return { mailbox: m.address, spam: Number(spam ?? 0), ham: Number(ham ?? 0) };
  } catch (err: any) {
    throw new LetterboxError('unavailable', `Redis is not reachable (${err.message}): is Letterbox running with spam filtering on?`);
  }
}

/**
 * Before a backup: Redis writes its dataset (Bayes, greylisting) to data_dir/redis/dump.rdb, so
 * the archive holds what rspamd learned up to now. Best effort: no Redis running, nothing to do.
 */
export async function flushSpamState(dataDir: string): Promise<void> {
  const sock = spamPaths(dataDir).redisSocket;
  try {
    await redisCommand(sock, ['SAVE'], 30000);
  } catch {
    // not running (or spam filtering off): the last dump.rdb, if any, is archived as it is
  }
}

/** Spam-filter files under data_dir that a backup skips: runtime sockets and regenerable caches. */
export function spamBackupSkip(rel: string): boolean {
  return /^rspamd[\\/](run|db)([\\/]|$)/.test(rel) || /^redis[\\/]redis\.sock$/.test(rel);
}
