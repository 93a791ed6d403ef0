// Where webhooks may be sent: http(s) URLs only, no credentials in the URL, and target addresses
// checked at delivery time (after DNS resolution, and the connection pinned to the checked address,
// so a name cannot be re-pointed between the check and the connection).
//  - An IPv6 address that embeds an IPv4 address (IPv4-compatible ::a.b.c.d, IPv4-mapped
//    ::ffff:a.b.c.d, SIIT ::ffff:0:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by that
//    IPv4 address: the embedding is only a way of writing it.
//  - Always refused: link-local, multicast, unspecified, documentation and reserved ranges,
//    deprecated site-local fec0::/10, local-use NAT64 64:ff9b:1::/48 (where the IPv4 part sits
//    depends on the operator's prefix length, so it cannot be decoded reliably), and the cloud
//    metadata endpoints (AWS, GCP, Azure, Alibaba, Oracle) even when private targets are allowed.
//  - Loopback and private ranges only when configured.
import { BlockList, isIP } from 'node:net';
import { LetterboxError } from '../errors.ts';

const always = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['169.254.0.0', 16], ['224.0.0.0', 4], ['240.0.0.0', 4], ['192.0.0.0', 24], ['192.0.2.0', 24], ['198.51.100.0', 24], ['203.0.113.0', 24]] as const) {
  always.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['::', 128], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8], ['2001:db8::', 32], ['100::', 64], ['64:ff9b:1::', 48]] as const) always.addSubnet(net, bits, 'ipv6');

// Cloud metadata services: refused whatever webhooks.allow_private / allow_loopback say.
const metadata = new BlockList();
for (const a of ['169.254.169.254', '169.254.170.2', '169.254.169.253', '100.100.100.200', '192.0.0.192']) metadata.addAddress(a, 'ipv4');
for (const a of ['fd00:ec2::254', 'fd00:ec2::23', 'fd00:ec2::253', 'fd20:ce::254']) metadata.addAddress(a, 'ipv6');

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

const privateNets = new BlockList();
for (const [net, bits] of [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['100.64.0.0', 10], ['198.18.0.0', 15]] as const) privateNets.addSubnet(net, bits, 'ipv4');
privateNets.addSubnet('fc00::', 7, 'ipv6');

export interface TargetPolicy {
  allow_loopback: boolean;
  allow_private: boolean;
}

/** The 8 16-bit groups of an IPv6 address (any valid spelling, including a dotted IPv4 tail), or null. */
function ipv6Groups(ip: string): number[] | null {
  let s = ip.toLowerCase().split('%')[0];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const b = v4.slice(1).map(Number);
    if (b.some((x) => x > 255)) return null;
    s = s.slice(0, v4.index) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const part = (h: string) => (h ? h.split(':').map((g) => parseInt(g, 16)) : []);
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 0) return null;
  const groups = [...head, ...new Array(halves.length === 2 ? fill : 0).fill(0), ...tail];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

/** The IPv4 address an IPv6 address embeds (compatible, mapped, SIIT, NAT64 well-known prefix, 6to4), or null. */
export function embeddedV4(ip: string): string | null {
  const g = ipv6Groups(ip);
  if (!g) return null;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zero(0, 6) && (g[6] !== 0 || g[7] > 1)) return v4(g[6], g[7]); // ::a.b.c.d (not :: or ::1)
  if (zero(0, 5) && g[5] === 0xffff) return v4(g[6], g[7]); // ::ffff:a.b.c.d
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return v4(g[6], g[7]); // ::ffff:0:a.b.c.d
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return v4(g[6], g[7]); // 64:ff9b::a.b.c.d
  if (g[0] === 0x2002) return v4(g[1], g[2]); // 6to4
  return null;
}

/** null when the address may be used, else why not. */
export function addressProblem(ip: string, p: TargetPolicy): string | null {
  const fam = isIP(ip);
  if (!fam) return `"${ip}" is not an IP address`;
  if (fam === 6) {
    const v4 = embeddedV4(ip);
    if (v4) {
      const why = addressProblem(v4, p);
      return why ? `${ip} embeds ${v4}: ${why}` : null;
    }
  }
  const type = fam === 4 ? 'ipv4' : 'ipv6';
  if (metadata.check(ip, type)) return `${ip} is a cloud metadata address (always refused)`;
  if (always.check(ip, type)) return `${ip} is a link-local, metadata, multicast, deprecated or reserved address`;
  if (loopback.check(ip, type) && !p.allow_loopback) return `${ip} is a loopback address (allowed only with webhooks.allow_loopback = true)`;
  if (privateNets.check(ip, type) && !p.allow_private) return `${ip} is a private address (allowed only with webhooks.allow_private = true)`;
  return null;
}

/** Checks a target URL's shape (and a literal IP host); throws validation_error. */
export function checkWebhookUrl(raw: string, p: TargetPolicy): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new LetterboxError('validation_error', `body.url: "${raw}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new LetterboxError('validation_error', `body.url: only http and https URLs are allowed (got ${u.protocol})`);
  if (u.username || u.password) throw new LetterboxError('validation_error', 'body.url: credentials in the URL are not allowed; verify the Letterbox-Signature header instead');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) {
    const why = addressProblem(host, p);
    if (why) throw new LetterboxError('validation_error', `body.url: ${why}`);
  } else if (host === 'localhost' || host.endsWith('.localhost')) {
    if (!p.allow_loopback) throw new LetterboxError('validation_error', 'body.url: localhost is a loopback address (allowed only with webhooks.allow_loopback = true)');
  } else if (!/^[a-z0-9.-]+$/i.test(host) || !host.includes('.')) {
    throw new LetterboxError('validation_error', `body.url: "${host}" is not a fully qualified host name`);
  }
  return u;
}
