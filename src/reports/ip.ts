import { isIP, isIPv6 } from 'node:net';

/**
 * The canonical text of an IP address (RFC 5952 for IPv6: lower case, zeros compressed), so that
 * reporters writing 2001:db8:0:0::1 and 2001:db8::1 count as one source. null when not an address.
 * WHATWG URL parsing does the IPv6 canonicalisation (no hand-written compression rules).
 */
export function canonicalIp(s: string): string | null {
  const ip = s.trim();
  if (isIP(ip) === 0) return null;
  if (!isIPv6(ip)) return ip;
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}
