import { randomBytes } from 'node:crypto';
import { rfc5322Date } from './headers.ts';

export interface FailedRecipient {
  /** The address as the sender gave it (RCPT TO). */
  original: string;
  /** The final recipient that failed (a mailbox address, or the RCPT address itself). */
  final: string;
  /** Enhanced status code, e.g. 5.2.2. Always reported as failed (Action: failed). */
  status: string;
  /** The remote (Dovecot) reply line. */
  diagnostic: string;
}

/**
 * A delivery status notification (RFC 3464 multipart/report) for the recipients of an accepted
 * message that could not be delivered, sent from MAILER-DAEMON with the null envelope sender.
 */
export function buildDsn(o: {
  hostname: string;
  to: string;
  failed: FailedRecipient[];
  arrival: Date;
  /** The original header section, returned as text/rfc822-headers. */
  originalHeaders: string;
  now: Date;
}): Buffer {
  const boundary = `lb-dsn-${randomBytes(8).toString('hex')}`;
  const list = o.failed.map((f) => `  <${f.final}>: ${f.diagnostic.replace(/[\r\n]+/g, ' ')}`).join('\r\n');
  const perRcpt = o.failed
    .map((f) => [`Original-Recipient: rfc822;${f.original}`, `Final-Recipient: rfc822;${f.final}`, 'Action: failed', `Status: ${f.status}`, `Diagnostic-Code: smtp; ${f.diagnostic.replace(/[\r\n]+/g, ' ')}`].join('\r\n'))
    .join('\r\n\r\n');
  const text = [
    `From: Mail Delivery System <MAILER-DAEMON@${o.hostname}>`,
    `To: <${o.to}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${rfc5322Date(o.now)}`,
    `Message-ID: <${randomBytes(12).toString('hex')}@${o.hostname}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    `This is the mail system at ${o.hostname}.`,
    '',
    'Your message was accepted, but it could not be delivered to the following recipient(s):',
    '',
    list,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${o.hostname}`,
    `Arrival-Date: ${rfc5322Date(o.arrival)}`,
    '',
    perRcpt,
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    o.originalHeaders.replace(/\r?\n$/, ''),
    '',
    `--${boundary}--`,
    '',
  ].join('\r\n');
  return Buffer.from(text, 'utf8');
}
