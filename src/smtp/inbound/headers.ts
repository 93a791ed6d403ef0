/** Trace headers Letterbox prepends to received mail. */
export interface ReceivedInfo {
  helo: string;
  clientHostname: string | null; // reverse DNS name, when there is one
  ip: string;
  hostname: string; // ours
  transmissionType: string; // ESMTP, ESMTPS, UTF8SMTPS... (RFC 3848)
  tls: { protocol: string; cipher: string } | null;
  id: string;
  /** Named only for a single recipient (naming several would disclose Bcc recipients to each other). */
  recipient: string | null;
  date: Date;
}

// A value that came from the client: keep it to printable ASCII without header-breaking characters.
function clean(s: string, max = 255): string {
  return s.replace(/[^\x21-\x7e]/g, '?').replace(/[()]/g, '?').slice(0, max);
}

/** RFC 5321 section 4.4 trace field, folded. */
export function receivedHeader(r: ReceivedInfo): string {
  const rdns = r.clientHostname && r.clientHostname !== `[${r.ip}]` ? clean(r.clientHostname) : 'unknown';
  const tls = r.tls ? ` (${clean(r.tls.protocol, 40)} ${clean(r.tls.cipher, 80)})` : '';
  const rcpt = r.recipient ? `\r\n\tfor <${clean(r.recipient)}>` : '';
  return `Received: from ${clean(r.helo) || 'unknown'} (${rdns} [${r.ip}])\r\n\tby ${r.hostname} (Letterbox) with ${clean(r.transmissionType, 20)}${tls}\r\n\tid ${r.id}${rcpt};\r\n\t${rfc5322Date(r.date)}\r\n`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
