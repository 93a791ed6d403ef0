/**
 * The inbound policy: a pure function of the authentication evidence and the [smtp] settings.
 * No I/O, no clock: tested without sockets (test/inbound-unit.test.ts).
 */
import { applySpam, type SpamEvidence } from '../../spam/policy.ts';

export type AuthResult = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror' | 'policy';

export interface Evidence {
  spf: AuthResult;
  /** null when DMARC could not be evaluated at all (no single From domain). */
  dmarc: null | {
    result: AuthResult;
    /** The policy that applies to this message after sp/np/t (none, quarantine, reject), when a record exists. */
    policy: 'none' | 'quarantine' | 'reject' | null;
    domain: string;
  };
  /** 'pass' when any DKIM signature verified, else the first signature's result, else 'none'. */
  dkim: AuthResult;
  /** The spam scan's message-level verdict (issue #14), when the message was scanned. */
  spam?: SpamEvidence;
}

export interface PolicySettings {
  /** What to do when DMARC fails under p=reject. */
  dmarcReject: 'reject' | 'quarantine';
  /** What to do when SPF fails (hard fail, -all). */
  spfFail: 'accept' | 'reject';
}

export type Decision =
  | { action: 'accept'; reason: string }
  | { action: 'quarantine'; reason: string }
  | { action: 'reject'; code: number; enhanced: string; text: string; reason: string }
  | { action: 'tempfail'; reason: string };

export function decide(e: Evidence, s: PolicySettings): Decision {
  // Spam (issue #14): rspamd's verdict on top of the authentication decision (src/spam/policy.ts).
  return applySpam(decideAuth(e, s), e.spam);
}

function decideAuth(e: Evidence, s: PolicySettings): Decision {
  const d = e.dmarc;
  // A DMARC verdict we could not reach (DNS failure) might have been a reject: ask to retry.
  if (d && d.result === 'temperror') return { action: 'tempfail', reason: `DMARC lookup for ${d.domain} failed temporarily` };
  // SPF temperror matters only where the verdict could hinge on it: DMARC failing under an enforcing
  // policy (SPF might have aligned), or SPF failures configured to reject.
  if (e.spf === 'temperror' && ((d && d.result === 'fail' && (d.policy === 'reject' || d.policy === 'quarantine')) || s.spfFail === 'reject')) {
    return { action: 'tempfail', reason: 'SPF lookup failed temporarily' };
  }
  if (d && d.result === 'fail') {
    if (d.policy === 'reject') {
      if (s.dmarcReject === 'reject') {
        return { action: 'reject', code: 550, enhanced: '5.7.1', text: `Message rejected: DMARC policy of ${d.domain} says reject and the message failed DMARC`, reason: `dmarc=fail (p=reject) for ${d.domain}` };
      }
      return { action: 'quarantine', reason: `dmarc=fail (p=reject, quarantined by configuration) for ${d.domain}` };
    }
    if (d.policy === 'quarantine') return { action: 'quarantine', reason: `dmarc=fail (p=quarantine) for ${d.domain}` };
  }
  if (e.spf === 'fail' && s.spfFail === 'reject' && !(d && d.result === 'pass')) {
    return { action: 'reject', code: 550, enhanced: '5.7.23', text: 'Message rejected: SPF validation failed', reason: 'spf=fail' };
  }
  return { action: 'accept', reason: d ? `dmarc=${d.result}` : 'no dmarc' };
}
