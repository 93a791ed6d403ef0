// The one builder of the Received: trace field (RFC 5321 section 4.4) Letterbox prepends: at the MX
// (SMTP from a remote MTA) and at submission (SMTP AUTH or the API).
import { rfc5322Date } from './date.ts';

export interface ReceivedInfo {
  /** HELO/EHLO name the client gave ('api' for the HTTP API). */
  helo: string;
  /** Reverse DNS name, when there is one (only shown with `ip`). */
  clientHostname?: string | null;
  /** The client's IP address; null when there is none to name (API without one). */
  ip: string | null;
  hostname: string; // ours
  /** ESMTP, ESMTPS, ESMTPSA, UTF8SMTPS, HTTP... (RFC 3848). */
  transmissionType: string;
  /** TLS details: protocol and cipher, or a preformatted string such as "TLSv1.3". */
  tls: { protocol: string; cipher: string } | string | null;
  id: string;
  /** Named only for a single recipient (naming several would disclose Bcc recipients to each other). */
  recipient?: string | null;
  date: Date;
}

// A value that came from the client: keep it to printable ASCII without header-breaking characters.
function clean(s: string, max = 255): string {
  return s.replace(/[^\x21-\x7e]/g, '?').replace(/[()]/g, '?').slice(0, max);
}

/** The field's value (after "Received: "), folded, without the final CRLF. */
export function receivedValue(r: ReceivedInfo): string {
  const rdns = r.clientHostname && r.clientHostname !== `[${r.ip}]` ? clean(r.clientHostname) : 'unknown';
  const client = r.ip ? ` (${rdns} [${r.ip}])` : '';
  const tls = !r.tls ? '' : typeof r.tls === 'string' ? ` (${clean(r.tls, 120)})` : ` (${clean(r.tls.protocol, 40)} ${clean(r.tls.cipher, 80)})`;
  const rcpt = r.recipient ? `\r\n\tfor <${clean(r.recipient)}>` : '';
  return `from ${clean(r.helo) || 'unknown'}${client}\r\n\tby ${r.hostname} (Letterbox) with ${clean(r.transmissionType, 20)}${tls}\r\n\tid ${r.id}${rcpt};\r\n\t${rfc5322Date(r.date)}`;
}

/** The complete header line(s), CRLF-terminated. */
export function receivedHeader(r: ReceivedInfo): string {
  return `Received: ${receivedValue(r)}\r\n`;
}
