/**
 * What per-client limits count: an IPv4 address, or an IPv6 /64 (one host usually has a whole /64,
 * so counting single IPv6 addresses would not limit it at all). IPv4-mapped IPv6 addresses
 * (::ffff:192.0.2.7) count as their IPv4 address. Used by the MX and submission connection caps and
 * the login guard.
 */
export function clientNetwork(address: string): string {
  const a = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '').replace(/%.*$/, '');
  if (!a.includes(':')) return a;
  const [head, tail = ''] = a.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const full = a.includes('::') ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
  return full.slice(0, 4).map((x) => x.replace(/^0+(?=.)/, '')).join(':') + '::/64';
}
