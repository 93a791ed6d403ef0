// The one composer of delivery status notifications (RFC 3464 multipart/report; RFC 3461 field
// names), for the MX (recipients that failed after others accepted a message) and the queue
// (bounces, expiries, delay notices). Pure. The DSN is DKIM-signed like any other outgoing message
// by whoever sends it (see dsnSigningDomains).
import { rfc5322Date } from './date.ts';

export interface DsnRecipient {
  /** The final recipient (after alias expansion). */
  address: string;
  /** The recipient as the sender gave it (RCPT TO), when it differs or is known. */
  original?: string | null;
  action: 'failed' | 'delayed';
  status: string; // enhanced status code, e.g. 5.1.1 or 4.4.7
  remoteMta?: string | null;
  diagnostic?: string | null; // the remote reply, e.g. "550 5.1.1 no such user"
  lastAttemptAt?: Date | null;
  willRetryUntil?: Date | null;
}

export interface DsnInput {
  reportingMta: string; // our hostname
  to: string; // the original envelope sender (never '')
  originalMessageId: string | null;
  originalSubject: string | null;
  originalHeaders: string; // the original header block
  arrivalDate: Date;
  recipients: DsnRecipient[];
  now: Date;
  messageId: string; // <...> of the DSN itself
  boundary: string;
}

const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ').trim();

export function dsnStatusFor(code: number, reply: string, fallback: string): string {
  const m = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply);
  if (m && m[1][0] === String(code)[0]) return m[1];
  return code >= 500 ? '5.0.0' : code >= 400 ? '4.0.0' : fallback;
}

export function buildDsn(i: DsnInput): Buffer {
  const failed = i.recipients.some((r) => r.action === 'failed');
  const subject = failed ? 'Undelivered Mail Returned to Sender' : 'Delivery Status Notification (Delay)';
  const human = failed
    ? `This is the mail system at ${i.reportingMta}.\r\n\r\nYour message could not be delivered to one or more recipients. It has been given up on.\r\n`
    : `This is the mail system at ${i.reportingMta}.\r\n\r\nYour message has not been delivered yet to one or more recipients. Delivery is still being attempted; you do not need to resend it.\r\n`;
  const lines = i.recipients
    .map((r) => `\r\n<${r.address}>: ${r.action === 'failed' ? 'delivery failed' : 'delivery delayed'}${r.diagnostic ? `\r\n    ${oneLine(r.diagnostic)}` : ''}${r.remoteMta ? `\r\n    (remote host ${r.remoteMta})` : ''}`)
    .join('\r\n');
  const perMessage = [`Reporting-MTA: dns; ${i.reportingMta}`, `Arrival-Date: ${rfc5322Date(i.arrivalDate)}`].join('\r\n');
  const perRecipient = i.recipients
    .map((r) =>
      [
        r.original ? `Original-Recipient: rfc822; ${r.original}` : null,
        `Final-Recipient: rfc822; ${r.address}`,
        `Action: ${r.action}`,
        `Status: ${r.status}`,
        r.remoteMta ? `Remote-MTA: dns; ${r.remoteMta}` : null,
        r.diagnostic ? `Diagnostic-Code: smtp; ${oneLine(r.diagnostic)}` : null,
        r.lastAttemptAt ? `Last-Attempt-Date: ${rfc5322Date(r.lastAttemptAt)}` : null,
        r.willRetryUntil ? `Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}` : null,
      ]
        .filter(Boolean)
        .join('\r\n'),
    )
    .join('\r\n\r\n');
  const headers = i.originalHeaders.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '');
  const b = i.boundary;
  const text = [
    `From: Mail Delivery System <MAILER-DAEMON@${i.reportingMta}>`,
    `To: <${i.to}>`,
    `Subject: ${subject}${i.originalSubject ? `: ${oneLine(i.originalSubject).slice(0, 200)}` : ''}`,
    `Date: ${rfc5322Date(i.now)}`,
    `Message-ID: ${i.messageId}`,
    i.originalMessageId ? `In-Reply-To: ${i.originalMessageId}` : null,
    `Auto-Submitted: auto-replied`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${b}"`,
    ``,
    `This is a MIME-encapsulated message.`,
    ``,
    `--${b}`,
    `Content-Description: Notification`,
    `Content-Type: text/plain; charset=utf-8`,
    ``,
    human + lines,
    ``,
    `--${b}`,
    `Content-Description: Delivery report`,
    `Content-Type: message/delivery-status`,
    ``,
    perMessage,
    ``,
    perRecipient,
    ``,
    `--${b}`,
    `Content-Description: Undelivered Message Headers`,
    `Content-Type: text/rfc822-headers`,
    ``,
    headers,
    `--${b}--`,
    ``,
  ]
    .filter((l) => l !== null)
    .join('\r\n');
  return Buffer.from(text, 'utf8');
}

/**
 * Which of our domains signs a DSN (From: MAILER-DAEMON@hostname), in order of preference: the
 * hostname and each parent of it (a signature aligned with the From domain for DMARC), then the
 * domain the original message was sent or received for. The caller signs with the first of these
 * that has an active DKIM key.
 */
export function dsnSigningDomains(hostname: string, messageDomain: string | null): string[] {
  const out: string[] = [];
  const labels = hostname.toLowerCase().replace(/\.$/, '').split('.');
  for (let i = 0; i < labels.length - 1; i++) out.push(labels.slice(i).join('.'));
  if (messageDomain && !out.includes(messageDomain.toLowerCase())) out.push(messageDomain.toLowerCase());
  return out;
}
