import { isIP, isIPv6 } from 'node:net';

/**
 * The canonical text of an IP address (RFC 5952 for IPv6: lower case, zeros compressed), so that
 * reporters writing 2001:db8:0:0::1 and 2001:db8::1 count as one source; an IPv4-mapped IPv6
 * address (::ffff:192.0.2.7, how some receivers log IPv4 clients) is that IPv4 address, so it counts
 * with the same source and its PTR is looked up for IPv4. null when not an address. WHATWG URL
 * parsing does the IPv6 canonicalisation (no hand-written compression rules).
 */
export function canonicalIp(s: string): string | null {
  const ip = s.trim();
  if (isIP(ip) === 0) return null;
  if (!isIPv6(ip)) return ip;
  const v6 = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (!mapped) return v6;
  const [hi, lo] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}
