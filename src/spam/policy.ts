/**
 * Spam decisions as pure functions (no I/O, no clock): per-recipient settings → effective
 * thresholds; rspamd's answer + settings → per-recipient folder and message-level verdict; that
 * verdict combined with the authentication decision (src/smtp/inbound/policy.ts `decide`).
 * Tested without sockets in test/spam-unit.test.ts.
 */
import type { RspamdResult } from './client.ts';

export interface Thresholds {
  reject: number;
  junk: number;
}

/** The [spam] config's values the per-recipient settings fall back to. */
export interface GlobalSpamSettings extends Thresholds {
  greylist: number;
  /** false: rspamd's greylist module is off; no domain or mailbox can turn it on. */
  greylisting: boolean;
}

/** A stored override: mode and thresholds; null = inherit. */
export interface SpamOverride {
  mode: 'on' | 'off' | null;
  reject: number | null;
  junk: number | null;
  greylist: number | null;
  greylisting: 'on' | 'off' | null;
}

export interface EffectiveSpamSettings extends Thresholds {
  mode: 'on' | 'off';
  /** Greylist new senders at or above this score (when greylisting is on). */
  greylist: number;
  greylisting: 'on' | 'off';
}

/** mailbox override → domain override → global config. */
export function effectiveSettings(global: GlobalSpamSettings, domain: SpamOverride | null, mailbox: SpamOverride | null): EffectiveSpamSettings {
  const pick = <K extends keyof SpamOverride>(k: K): SpamOverride[K] | null => mailbox?.[k] ?? domain?.[k] ?? null;
  return {
    mode: pick('mode') ?? 'on',
    reject: pick('reject') ?? global.reject,
    junk: pick('junk') ?? global.junk,
    greylist: pick('greylist') ?? global.greylist,
    greylisting: global.greylisting ? (pick('greylisting') ?? 'on') : 'off',
  };
}

/**
 * The greylist threshold for one message (one scan, one SMTP reply for all recipients): greylisted
 * only when every recipient would greylist it, so the highest threshold; null (never greylisted)
 * when any recipient has greylisting or filtering off.
 */
export function messageGreylist(settings: EffectiveSpamSettings[]): number | null {
  if (settings.length === 0 || settings.some((s) => s.mode === 'off' || s.greylisting === 'off')) return null;
  return Math.max(...settings.map((s) => s.greylist));
}

/** The greylist module's callbacks (rspamd 3.4 plugins/greylist.lua): disabled per scan, no record is written. */
export const GREYLIST_MODULE_SYMBOLS = ['GREYLIST_CHECK', 'GREYLIST_SAVE'] as const;

/**
 * The greylisting part of a scan's Settings: rspamd greylists a message whose action is at least
 * "greylist", and also one at "add header" (its junk score, `globalJunk`). So: no greylisting → the
 * module's callbacks disabled for the scan; a threshold at or above the junk score → the
 * add-header action is dropped for the scan (Letterbox chooses the folder from the score itself),
 * so nothing below the threshold is greylisted.
 */
export function greylistScanSettings(settings: EffectiveSpamSettings[], globalJunk: number): { actions?: Record<string, number | null>; symbols_disabled?: string[] } {
  const t = messageGreylist(settings);
  if (t === null) return { symbols_disabled: [...GREYLIST_MODULE_SYMBOLS] };
  return { actions: t >= globalJunk ? { greylist: t, 'add header': null } : { greylist: t } };
}

/** What happened to the scan of one message. */
export type ScanOutcome =
  | { kind: 'scanned'; result: RspamdResult; ms: number }
  | { kind: 'off' } // every recipient has spam filtering off: not scanned
  | { kind: 'too_big'; size: number; max: number }
  | { kind: 'failed'; error: string };

export type RecipientVerdict = 'reject' | 'junk' | 'ham' | 'off' | 'unscanned';

/** The message-level spam evidence `decide` reads. */
export interface SpamEvidence {
  /** reject: every scanned recipient refuses it; greylist: rspamd asked to retry later; tempfail: scanner unavailable. */
  action: 'reject' | 'greylist' | 'tempfail' | 'accept';
  reason: string;
  /** For events and metrics: reject | greylist | junk | ham | off | unscanned | failed. */
  verdict: string;
  score: number | null;
}

export interface SpamAssessment {
  evidence: SpamEvidence;
  /** One per recipient, in the order given. */
  recipients: RecipientVerdict[];
  /** Header fields (name, value) prepended to the stored copy. */
  headers: [string, string][];
}

export function recipientVerdict(score: number, s: EffectiveSpamSettings): RecipientVerdict {
  if (s.mode === 'off') return 'off';
  if (score >= s.reject) return 'reject';
  if (score >= s.junk) return 'junk';
  return 'ham';
}

/**
 * rspamd's answer and each recipient's settings → what to do. A reject for only some recipients
 * cannot be answered at end of DATA (one reply for all), so those recipients get it in Junk.
 */
export function assess(outcome: ScanOutcome, settings: EffectiveSpamSettings[], onFailure: 'tempfail' | 'accept'): SpamAssessment {
  if (outcome.kind === 'off') {
    return { evidence: { action: 'accept', reason: 'spam filtering off for the recipients', verdict: 'off', score: null }, recipients: settings.map(() => 'off'), headers: [] };
  }
  if (outcome.kind === 'too_big') {
    return {
      evidence: { action: 'accept', reason: `not scanned: ${outcome.size} bytes is over max_scan_size`, verdict: 'unscanned', score: null },
      recipients: settings.map((s) => (s.mode === 'off' ? 'off' : 'unscanned')),
      headers: [['X-Spam-Status', `Unknown, not scanned (message larger than ${outcome.max} bytes)`]],
    };
  }
  if (outcome.kind === 'failed') {
    if (onFailure === 'tempfail') {
      return { evidence: { action: 'tempfail', reason: `spam scanner unavailable: ${outcome.error}`, verdict: 'failed', score: null }, recipients: settings.map(() => 'unscanned'), headers: [] };
    }
    return {
      evidence: { action: 'accept', reason: `not scanned (scanner unavailable, on_failure = accept): ${outcome.error}`, verdict: 'unscanned', score: null },
      recipients: settings.map((s) => (s.mode === 'off' ? 'off' : 'unscanned')),
      headers: [['X-Spam-Status', 'Unknown, not scanned (spam filter unavailable)']],
    };
  }
  const r = outcome.result;
  const score = Math.round(r.score * 100) / 100;
  const recipients = settings.map((s) => recipientVerdict(score, s));
  const scanned = recipients.filter((v) => v !== 'off');
  const greylistAt = messageGreylist(settings);
  const junk = recipients.some((v) => v === 'junk' || v === 'reject');
  const headers: [string, string][] = [
    ['X-Spam-Score', score.toFixed(2)],
    ['X-Spam-Status', `${junk ? 'Yes' : 'No'}, score=${score.toFixed(2)} action=${r.action.replace(/[^a-z ]/gi, '')}`],
  ];
  let evidence: SpamEvidence;
  if (scanned.length > 0 && scanned.length === recipients.length && scanned.every((v) => v === 'reject')) {
    evidence = { action: 'reject', reason: `spam score ${score}`, verdict: 'reject', score };
  } else if (r.action === 'soft reject' && greylistAt !== null && !scanned.every((v) => v === 'reject')) {
    // rspamd's greylist module: retry later (at the threshold scanSettings gave it). Only when no
    // recipient opted out of filtering or greylisting. No score test here: a retry that comes too
    // early is answered by rspamd's prefilter, before most rules scored.
    evidence = { action: 'greylist', reason: `greylisted (score ${score})`, verdict: 'greylist', score };
  } else {
    evidence = { action: 'accept', reason: `spam score ${score}`, verdict: junk ? 'junk' : 'ham', score };
  }
  return { evidence, recipients, headers };
}

/** The authentication decision's shape (src/smtp/inbound/policy.ts), repeated to stay import-free. */
type Decision =
  | { action: 'accept'; reason: string }
  | { action: 'quarantine'; reason: string }
  | { action: 'reject'; code: number; enhanced: string; text: string; reason: string }
  | { action: 'tempfail'; reason: string };

/**
 * The spam evidence applied on top of the authentication decision: an authentication reject or
 * tempfail stands; otherwise a spam reject is 550 5.7.1 (a short reason, never rspamd's symbols),
 * a greylist 451 4.7.1, an unavailable scanner a tempfail (451 4.3.0).
 */
export function applySpam<D extends Decision>(auth: D, spam: SpamEvidence | undefined): D | Decision {
  if (!spam || auth.action === 'reject' || auth.action === 'tempfail') return auth;
  if (spam.action === 'reject') return { action: 'reject', code: 550, enhanced: '5.7.1', text: 'Message rejected as spam', reason: spam.reason };
  if (spam.action === 'greylist') return { action: 'reject', code: 451, enhanced: '4.7.1', text: 'Greylisted, please try again later', reason: spam.reason };
  if (spam.action === 'tempfail') return { action: 'tempfail', reason: spam.reason };
  return auth;
}

/** Our SPF/DKIM/DMARC/ARC verdicts as rspamd's stock symbols (its own modules are disabled). */
export function authSymbols(a: { spf: string; dkim: string; dmarc: { result: string; policy: string | null } | null; arc?: string }): Record<string, number> {
  const out: Record<string, number> = {};
  const spf: Record<string, string> = { pass: 'R_SPF_ALLOW', fail: 'R_SPF_FAIL', softfail: 'R_SPF_SOFTFAIL', neutral: 'R_SPF_NEUTRAL', none: 'R_SPF_NA', temperror: 'R_SPF_DNSFAIL', permerror: 'R_SPF_PERMFAIL' };
  const dkim: Record<string, string> = { pass: 'R_DKIM_ALLOW', fail: 'R_DKIM_REJECT', neutral: 'R_DKIM_PERMFAIL', none: 'R_DKIM_NA', temperror: 'R_DKIM_TEMPFAIL', permerror: 'R_DKIM_PERMFAIL', policy: 'R_DKIM_PERMFAIL' };
  if (spf[a.spf]) out[spf[a.spf]] = 1;
  if (dkim[a.dkim]) out[dkim[a.dkim]] = 1;
  const d = a.dmarc;
  if (!d || d.result === 'none') out['DMARC_NA'] = 1;
  else if (d.result === 'pass') out['DMARC_POLICY_ALLOW'] = 1;
  else if (d.result === 'fail') out[d.policy === 'reject' ? 'DMARC_POLICY_REJECT' : d.policy === 'quarantine' ? 'DMARC_POLICY_QUARANTINE' : 'DMARC_POLICY_SOFTFAIL'] = 1;
  else if (d.result === 'temperror') out['DMARC_DNSFAIL'] = 1;
  else if (d.result === 'permerror') out['DMARC_BAD_POLICY'] = 1;
  if (a.arc === 'pass') out['ARC_ALLOW'] = 1;
  else if (a.arc === 'fail') out['ARC_REJECT'] = 1;
  return out;
}

/** Header fields → text to prepend (values folded are short here: one line each). */
export function headerText(headers: [string, string][]): string {
  return headers.map(([n, v]) => `${n}: ${v.replace(/[\r\n]+/g, ' ')}\r\n`).join('');
}
