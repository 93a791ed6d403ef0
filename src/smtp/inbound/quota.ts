import { SmtpReply, reply } from '../../mail/reply.ts';
import type { ProbeAnswer } from '../../delivery/lmtp.ts';

export { probeRecipient, type ProbeAnswer } from '../../delivery/lmtp.ts';

/**
 * What the RCPT reply is for Dovecot's probe answer: null = accept, an SmtpReply for a full
 * mailbox (smtp.quota_full_reply decides temporary or permanent), or an Error for anything else
 * (Dovecot not knowing the user yet, an internal error): the caller answers 451.
 */
export function quotaVerdict(a: ProbeAnswer, quotaFullReply: '452' | '552'): null | SmtpReply | Error {
  if (a.code >= 200 && a.code < 300) return null;
  if (a.enhanced === '4.2.2' || a.enhanced === '5.2.2') {
    return quotaFullReply === '552' ? reply(552, '5.2.2', 'Mailbox full') : reply(452, '4.2.2', 'Mailbox full, try again later');
  }
  return new Error(`Dovecot refused RCPT: ${a.code} ${a.enhanced ?? ''} ${a.text}`);
}
