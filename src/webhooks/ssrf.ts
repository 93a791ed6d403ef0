// Where webhooks may be sent: http(s) URLs only, no credentials in the URL, and target addresses
// checked at delivery time (after DNS resolution, and the connection pinned to the checked address,
// so a name cannot be re-pointed between the check and the connection). Link-local (cloud metadata
// at 169.254.169.254 and fd00:ec2::254 is covered by link-local/ULA), multicast, unspecified and
// reserved addresses are always refused; loopback and private ranges only when configured.
import { BlockList, isIP } from 'node:net';
import { LetterboxError } from '../errors.ts';

const always = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['169.254.0.0', 16], ['224.0.0.0', 4], ['240.0.0.0', 4], ['192.0.0.0', 24], ['192.0.2.0', 24], ['198.51.100.0', 24], ['203.0.113.0', 24]] as const) {
  always.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['::', 128], ['fe80::', 10], ['ff00::', 8], ['2001:db8::', 32], ['100::', 64]] as const) always.addSubnet(net, bits, 'ipv6');

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

/** The IPv4 address embedded in an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) IPv6 address. */
function embeddedV4(ip: string): string | null {
  const m = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (m) return m[1];
  const h = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (h) {
    const a = parseInt(h[1], 16);
    const b = parseInt(h[2], 16);
    return `${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
  }
  return null;
}

/** null when the address may be used, else why not. */
export function addressProblem(ip: string, p: TargetPolicy): string | null {
  const fam = isIP(ip);
  if (!fam) return `"${ip}" is not an IP address`;
  if (fam === 6) {
    const v4 = embeddedV4(ip);
    if (v4) return addressProblem(v4, p);
  }
  const type = fam === 4 ? 'ipv4' : 'ipv6';
  if (always.check(ip, type)) return `${ip} is a link-local, metadata, multicast or reserved address`;
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
