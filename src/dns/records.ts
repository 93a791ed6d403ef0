import { isIPv4, isIPv6 } from 'node:net';
import { dkimTxt, type DkimAlgorithm } from '../dkim/keys.ts';

export interface DnsRecord {
  purpose: 'mx' | 'spf' | 'helo-spf' | 'dkim' | 'dmarc' | 'host' | 'tlsrpt' | 'mta-sts' | 'ptr' | 'autoconfig' | 'srv';
  type: 'MX' | 'TXT' | 'A' | 'AAAA' | 'CNAME' | 'PTR' | 'SRV';
  name: string; // fully qualified, no trailing dot
  /** The target host for MX, CNAME, PTR and SRV ("." for an SRV service that is not offered). */
  value: string;
  /** MX preference; SRV priority. */
  priority?: number;
  /** SRV only. */
  weight?: number;
  port?: number;
  ttl: number;
}

/** Ports mail clients use (null: that listener is not configured). */
export interface ClientPorts {
  imaps: number | null;
  submissions: number | null;
  submission: number | null;
}

export interface RecordInput {
  domain: string; // A-label
  hostname: string; // the server's name (MX target, EHLO)
  ips: string[];
  dkim: { selector: string; algorithm: DkimAlgorithm; publicKey: string }[];
  /** When Letterbox hosts the domain's MTA-STS policy ([acme] enabled): the policy's id. */
  mtaStsId?: string | null;
  /** The client ports for the RFC 6186/8314 SRV records (left out when not given). */
  clientPorts?: ClientPorts | null;
  /** When Letterbox serves mail-client autoconfiguration on its public HTTPS listener ([acme] enabled). */
  autoconfig?: boolean;
  /**
   * Local parts of the domain's report addresses (config reports.*): DMARC aggregate reports
   * (rua=) and TLS reports go there and are read by Letterbox; "" or absent = postmaster.
   */
  reportAddresses?: { dmarc: string; tls: string };
  /** Dedicated source addresses and their EHLO names (config outbound.source_ips). */
  sourceIps?: Record<string, string>;
}

const spfTerm = (ip: string) => (isIPv6(ip) ? `ip6:${ip}` : `ip4:${ip}`);

/**
 * SPF records for the names we greet with (EHLO). Bounces and DSNs leave with an empty envelope
 * sender, so receivers evaluate SPF against the HELO name (RFC 7208 §2.3): the host name authorises
 * the configured addresses (or its own A/AAAA when none are configured), each other EHLO name of a
 * dedicated source address authorises that address. A name equal to `domain` is left out: the
 * domain's own SPF record is the one at that name.
 */
export function heloSpfRecords(i: Pick<RecordInput, 'domain' | 'hostname' | 'ips' | 'sourceIps'>, ttl = 3600): DnsRecord[] {
  const byName = new Map<string, string[]>();
  const add = (name: string, ip: string | null) => {
    const n = name.toLowerCase().replace(/\.$/, '');
    const list = byName.get(n) ?? [];
    if (ip && !list.includes(ip)) list.push(ip);
    byName.set(n, list);
  };
  add(i.hostname, null);
  for (const ip of i.ips) add(i.hostname, ip);
  for (const [ip, name] of Object.entries(i.sourceIps ?? {})) add(name, ip);
  return [...byName]
    .filter(([name]) => name !== i.domain.toLowerCase())
    .map(([name, ips]): DnsRecord => ({ purpose: 'helo-spf', type: 'TXT', name, value: `v=spf1 ${ips.length ? ips.map(spfTerm).join(' ') : 'a'} -all`, ttl }));
}

/** The records a domain needs published. One function for the CLI, the API and install.sh. */
export function recordsForDomain(i: RecordInput): DnsRecord[] {
  const ttl = 3600;
  const spfIps = i.ips.map(spfTerm).join(' ');
  const dmarcRua = `${i.reportAddresses?.dmarc || 'postmaster'}@${i.domain}`;
  const tlsRua = `${i.reportAddresses?.tls || 'postmaster'}@${i.domain}`;
  const out: DnsRecord[] = [
    { purpose: 'mx', type: 'MX', name: i.domain, value: i.hostname, priority: 10, ttl },
    { purpose: 'spf', type: 'TXT', name: i.domain, value: `v=spf1 mx${spfIps ? ' ' + spfIps : ''} -all`, ttl },
    ...i.dkim.map((k): DnsRecord => ({ purpose: 'dkim', type: 'TXT', name: `${k.selector}._domainkey.${i.domain}`, value: dkimTxt(k.algorithm, k.publicKey), ttl })),
    { purpose: 'dmarc', type: 'TXT', name: `_dmarc.${i.domain}`, value: `v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:${dmarcRua}`, ttl },
  ];
  if (i.mtaStsId) {
    // RFC 8461: the policy host must reach this server (its certificate then covers the name), the
    // TXT id announces the policy; RFC 8460: where TLS failure reports go.
    out.push(
      { purpose: 'mta-sts', type: 'CNAME', name: `mta-sts.${i.domain}`, value: i.hostname, ttl },
      { purpose: 'mta-sts', type: 'TXT', name: `_mta-sts.${i.domain}`, value: `v=STSv1; id=${i.mtaStsId}`, ttl },
    );
  }
  // RFC 8460: where senders report TLS failures delivering to us. Always when Letterbox reads the
  // reports itself (reports.tls_address); otherwise with the MTA-STS policy, to postmaster.
  if (i.reportAddresses?.tls || i.mtaStsId) out.push({ purpose: 'tlsrpt', type: 'TXT', name: `_smtp._tls.${i.domain}`, value: `v=TLSRPTv1; rua=mailto:${tlsRua}`, ttl });
  if (i.autoconfig) {
    // Thunderbird's autoconfig.<domain> and Outlook's autodiscover.<domain> reach this server's
    // public HTTPS listener (which then adds them to its certificate).
    out.push(
      { purpose: 'autoconfig', type: 'CNAME', name: `autoconfig.${i.domain}`, value: i.hostname, ttl },
      { purpose: 'autoconfig', type: 'CNAME', name: `autodiscover.${i.domain}`, value: i.hostname, ttl },
    );
  }
  if (i.clientPorts) {
    // RFC 6186 with RFC 8314's preference for implicit TLS: submissions first (priority 0), then
    // submission with STARTTLS; IMAP over TLS; plain IMAP (143) is not offered: target "." says so.
    const srv = (service: string, port: number | null, priority: number): DnsRecord =>
      port
        ? { purpose: 'srv', type: 'SRV', name: `_${service}._tcp.${i.domain}`, value: i.hostname, priority, weight: 1, port, ttl }
        : { purpose: 'srv', type: 'SRV', name: `_${service}._tcp.${i.domain}`, value: '.', priority: 0, weight: 0, port: 0, ttl };
    out.push(
      srv('submissions', i.clientPorts.submissions, 0),
      srv('submission', i.clientPorts.submission, 10),
      srv('imaps', i.clientPorts.imaps, 0),
      srv('imap', null, 0),
    );
  }
  out.push(...heloSpfRecords(i, ttl));
  // The host's own address records, when the domain is the one the server is named under.
  if (i.hostname === i.domain || i.hostname.endsWith('.' + i.domain)) {
    for (const ip of i.ips) {
      if (isIPv4(ip) && !ip.startsWith('127.')) out.push({ purpose: 'host', type: 'A', name: i.hostname, value: ip, ttl });
      if (isIPv6(ip) && ip !== '::1') out.push({ purpose: 'host', type: 'AAAA', name: i.hostname, value: ip, ttl });
    }
  }
  // The reverse record each public IP needs (set at the IP's provider, not in the domain's zone).
  for (const ip of i.ips) {
    if (ip.startsWith('127.') || ip === '::1') continue;
    out.push({ purpose: 'ptr', type: 'PTR', name: reverseName(ip), value: i.hostname, ttl });
  }
  return out;
}

/** 203.0.113.10 → 10.113.0.203.in-addr.arpa; IPv6 → nibbles under ip6.arpa. */
export function reverseName(ip: string): string {
  if (isIPv4(ip)) return ip.split('.').reverse().join('.') + '.in-addr.arpa';
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => g.padStart(4, '0'));
  return groups.join('').split('').reverse().join('.') + '.ip6.arpa';
}

/** TXT strings longer than 255 octets are split into several quoted strings (RFC 1035). */
function quoteTxt(value: string): string {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(`"${value.slice(i, i + 255)}"`);
  return parts.length > 1 ? `( ${parts.join(' ')} )` : parts[0];
}

/** A BIND zone-file snippet of the records. */
export function toZone(records: DnsRecord[]): string {
  return records
    .map((r) => {
      const name = r.name + '.';
      if (r.type === 'MX') return `${name}\t${r.ttl}\tIN\tMX\t${r.priority ?? 10} ${r.value}.`;
      if (r.type === 'TXT') return `${name}\t${r.ttl}\tIN\tTXT\t${quoteTxt(r.value)}`;
      if (r.type === 'SRV') return `${name}\t${r.ttl}\tIN\tSRV\t${r.priority ?? 0} ${r.weight ?? 0} ${r.port ?? 0} ${r.value === '.' ? '.' : r.value + '.'}`;
      if (r.type === 'CNAME' || r.type === 'PTR') return `${name}\t${r.ttl}\tIN\t${r.type}\t${r.value}.`;
      return `${name}\t${r.ttl}\tIN\t${r.type}\t${r.value}`;
    })
    .join('\n') + '\n';
}
