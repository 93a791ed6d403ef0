// DANE for outbound SMTP (RFC 7672): per MX host, whether TLSA records apply (the MX RRset, the
// host's addresses and the TLSA RRset all DNSSEC-validated by the resolver), and whether the
// certificate the host presents matches one of them. Decisions are pure functions; `Dane` does the
// lookups through the DNSSEC-aware resolver (src/dns/dnssec.ts).
//
// Certificate matching is written here: Node's TLS has no DANE support, and the rules are small
// (RFC 7671 §5, RFC 7672 §3.1): DANE-EE(3) compares the leaf certificate or its public key (full or
// SHA-256/512), ignoring names and dates; DANE-TA(2) finds the trust anchor in the chain the server
// sent (or takes it whole from the record), checks signatures and dates from the leaf up to it, and
// the leaf's name against the MX host name (or the recipient domain). PKIX-TA(0) and PKIX-EE(1) are
// unusable for SMTP (RFC 7672 §3.1.3).
import { X509Certificate, createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type { SecureLookup, SecureResolver, TlsaRecord } from '../dns/dnssec.ts';

/** RFC 8460 vocabulary (the same strings as src/queue/tls-outcome.ts): the policy and result of a session. */
export interface DaneOutcome {
  policy: 'tlsa' | 'no-policy-found';
  result: 'success' | 'tlsa-invalid' | 'dnssec-invalid' | 'starttls-not-supported' | 'validation-failure';
}

/** What DANE says about one MX host before connecting. */
export type DaneHost =
  /** DANE does not apply: MTA-STS (if any) or opportunistic TLS, as without DANE. */
  | { mode: 'none'; reason: string }
  /** STARTTLS required and the certificate must match one of `records` (usable ones only). */
  /** `names`: the reference identifiers for DANE-TA (RFC 7672 §3.2.2): the CNAME-expanded host name when it has the TLSA records, the MX host name. */
  | { mode: 'dane'; records: TlsaRecord[]; tlsaName: string; names: string[] }
  /** Do not deliver to this host now (a temporary failure): the TLSA lookup was bogus or failed. */
  | { mode: 'defer'; reason: string; outcome: DaneOutcome };

export const NO_DANE: DaneHost = { mode: 'none', reason: 'DANE is off' };

/** "3 1 1 abcd…" (data shortened) for transcripts. Pure. */
export function tlsaText(r: TlsaRecord): string {
  const hex = r.data.toString('hex');
  return `${r.usage} ${r.selector} ${r.matchingType} ${hex.length > 16 ? hex.slice(0, 16) + '…' : hex}`;
}

/** Decide: the records usable for SMTP: DANE-TA(2)/DANE-EE(3), selector 0/1, matching 0/1/2 with the right digest length. Pure. */
export function usableTlsa(records: readonly TlsaRecord[]): TlsaRecord[] {
  return records.filter(
    (r) =>
      (r.usage === 2 || r.usage === 3) &&
      (r.selector === 0 || r.selector === 1) &&
      ((r.matchingType === 0 && r.data.length > 0) || (r.matchingType === 1 && r.data.length === 32) || (r.matchingType === 2 && r.data.length === 64)),
  );
}

/** The TLSA owner name of an SMTP server (RFC 7672 §2.2.3). Pure. */
export function tlsaName(host: string, port: number): string {
  return `_${port}._tcp.${host.toLowerCase().replace(/\.$/, '')}`;
}

/**
 * Decide: what DANE means for one MX host from the security of its MX RRset, its address lookup,
 * and its TLSA lookup (RFC 7672 §2.1–2.2). `tlsa` is null when it was not looked up (no need). Pure.
 */
export function decideHost(i: { host: string; name: string; mxSecure: boolean; addr: SecureLookup | null; tlsa: SecureLookup<TlsaRecord> | null; names?: string[] }): DaneHost {
  if (!i.mxSecure) return { mode: 'none', reason: `the MX records are not DNSSEC-validated` };
  if (!i.addr) return { mode: 'none', reason: `the address of ${i.host} was not looked up` };
  if (i.addr.status === 'servfail') return { mode: 'defer', reason: `DANE: the address lookup of ${i.host} failed DNSSEC validation (SERVFAIL from the validating resolver); will retry`, outcome: { policy: 'tlsa', result: 'dnssec-invalid' } };
  if (i.addr.status === 'error' || !i.addr.secure) return { mode: 'none', reason: `the address records of ${i.host} are not DNSSEC-validated` };
  const t = i.tlsa;
  if (!t) return { mode: 'none', reason: `no TLSA lookup for ${i.name}` };
  if (t.status === 'servfail') return { mode: 'defer', reason: `DANE: the TLSA lookup of ${i.name} failed DNSSEC validation (bogus: SERVFAIL from the validating resolver); will retry`, outcome: { policy: 'tlsa', result: 'dnssec-invalid' } };
  if (t.status === 'error') return { mode: 'defer', reason: `DANE: the TLSA lookup of ${i.name} failed (${t.message}); will retry`, outcome: { policy: 'tlsa', result: 'dnssec-invalid' } };
  if (t.status !== 'ok') return { mode: 'none', reason: `no TLSA records at ${i.name}${t.secure ? ' (authenticated denial)' : ''}` };
  if (!t.secure) return { mode: 'none', reason: `the TLSA records at ${i.name} are not DNSSEC-validated (ignored)` };
  const usable = usableTlsa(t.records);
  if (usable.length === 0) return { mode: 'none', reason: `the TLSA records at ${i.name} are all unusable for SMTP (PKIX usages or unknown parameters): opportunistic TLS` };
  return { mode: 'dane', records: usable, tlsaName: i.name, names: i.names ?? [i.host] };
}

function selected(cert: X509Certificate, selector: number): Buffer {
  return selector === 0 ? cert.raw : (cert.publicKey.export({ type: 'spki', format: 'der' }) as Buffer);
}

function digest(data: Buffer, matchingType: number): Buffer {
  return matchingType === 0 ? data : createHash(matchingType === 1 ? 'sha256' : 'sha512').update(data).digest();
}

/** Does `rec` (its selector and matching type) designate `cert`? Pure. */
export function certMatches(rec: TlsaRecord, cert: X509Certificate): boolean {
  return digest(selected(cert, rec.selector), rec.matchingType).equals(rec.data);
}

function validAt(c: X509Certificate, now: Date): boolean {
  return new Date(c.validFrom) <= now && now <= new Date(c.validTo);
}

/** chain[0] … chain[top-1] each issued and signed by the next, all within their validity. */
function chainUpTo(chain: readonly X509Certificate[], top: number, now: Date): boolean {
  for (let j = 0; j < top; j++) {
    if (!validAt(chain[j], now) || !chain[j].checkIssued(chain[j + 1]) || !chain[j].verify(chain[j + 1].publicKey)) return false;
  }
  return true;
}

export type PeerVerdict = { ok: true; matched: TlsaRecord; outcome: DaneOutcome } | { ok: false; reason: string; outcome: DaneOutcome };

/**
 * Decide: does the certificate chain a server presented (leaf first) match one of the usable TLSA
 * records? `names`: the reference identifiers for DANE-TA (the MX host name, then the recipient
 * domain; RFC 7672 §3.2.2). Pure.
 */
export function verifyPeer(records: readonly TlsaRecord[], chain: readonly X509Certificate[], names: readonly string[], now: Date): PeerVerdict {
  const fail = (reason: string): PeerVerdict => ({ ok: false, reason, outcome: { policy: 'tlsa', result: 'tlsa-invalid' } });
  if (chain.length === 0) return fail('the server presented no certificate');
  const leaf = chain[0];
  const nameOk = names.some((n) => leaf.checkHost(n) !== undefined);
  let taNote = '';
  for (const r of usableTlsa(records)) {
    if (r.usage === 3) {
      // DANE-EE: the leaf itself; names and dates do not matter (RFC 7672 §3.1.1).
      if (certMatches(r, leaf)) return { ok: true, matched: r, outcome: { policy: 'tlsa', result: 'success' } };
      continue;
    }
    // DANE-TA: a trust anchor the chain leads to, and the leaf's name (RFC 7672 §3.1.2, §3.2).
    let anchored = false;
    for (let i = 1; i < chain.length && !anchored; i++) if (certMatches(r, chain[i]) && chainUpTo(chain, i, now)) anchored = true;
    if (!anchored && r.matchingType === 0) {
      // The anchor given whole in the record (2 0 0 / 2 1 0), not sent by the server.
      let key: KeyObject | null = null;
      let ta: X509Certificate | null = null;
      try {
        if (r.selector === 0) (ta = new X509Certificate(r.data)), (key = ta.publicKey);
        else key = createPublicKey({ key: r.data, format: 'der', type: 'spki' });
      } catch {
        key = null;
      }
      for (let i = 0; key && i < chain.length && !anchored; i++) {
        if ((!ta || chain[i].checkIssued(ta)) && chain[i].verify(key) && validAt(chain[i], now) && chainUpTo(chain, i, now)) anchored = true;
      }
    }
    if (!anchored) continue;
    if (nameOk) return { ok: true, matched: r, outcome: { policy: 'tlsa', result: 'success' } };
    taNote = ` (the chain leads to the trust anchor of TLSA ${tlsaText(r)}, but the certificate is not for ${names.join(' or ')})`;
  }
  const spki = createHash('sha256').update(selected(leaf, 1)).digest('hex');
  return fail(`no TLSA record matched the certificate${taNote}; its SHA-256 of the public key (3 1 1) is ${spki}`);
}

/** The certificate chain of a TLS socket, leaf first (as the server sent it, linked by Node). */
export function peerChain(sock: { getPeerCertificate(detailed: true): any } | null | undefined): X509Certificate[] {
  const out: X509Certificate[] = [];
  let c = sock?.getPeerCertificate?.(true);
  const seen = new Set<any>();
  while (c && c.raw && !seen.has(c)) {
    seen.add(c);
    try {
      out.push(new X509Certificate(c.raw));
    } catch {
      break;
    }
    if (!c.issuerCertificate || c.issuerCertificate === c) break;
    c = c.issuerCertificate;
  }
  return out;
}

/**
 * Decide: the doctor's verdict on the resolver from its answer for a DNSSEC-signed name's DNSKEY:
 * DANE needs AD (a validating resolver), else TLSA records are never used. Pure.
 */
export function daneResolverVerdict(v: SecureLookup, probe: string, server: string): { status: 'ok' | 'warn'; message: string; fix?: string } {
  const fix = `use a validating resolver for [dns] servers: the local unbound (install.sh installs it on 127.0.0.1; set servers = ["127.0.0.1"]), or set [outbound] dane = false`;
  if (v.status === 'ok' && v.secure) return { status: 'ok', message: `${server} validates DNSSEC (AD set for ${probe} DNSKEY): DANE applies where TLSA records are published` };
  const what = v.status === 'servfail' ? `answered SERVFAIL for ${probe} DNSKEY` : v.status === 'error' ? `did not answer (${v.message})` : `answered ${probe} DNSKEY without the AD bit`;
  return { status: 'warn', message: `${server} ${what}: it does not validate DNSSEC, so DANE (TLSA records) is never applied to outbound mail`, fix };
}

/** The DANE lookups of the queue: the MX RRset's security, then each host's addresses and TLSA records. */
export class Dane {
  private r: SecureResolver;
  private port: number;
  constructor(o: { resolver: SecureResolver; port: number }) {
    this.r = o.resolver;
    this.port = o.port;
  }

  /** Is the MX RRset of `domain` (or its authenticated absence, for an implicit MX) DNSSEC-validated? */
  async mxSecure(domain: string): Promise<boolean> {
    const v = await this.r.lookup(domain, 'MX');
    return (v.status === 'ok' || v.status === 'nodata') && v.secure;
  }

  /** What DANE means for `host`, an MX host of a domain whose MX RRset is (`mxSecure`) validated. */
  async forHost(host: string, mxSecure: boolean): Promise<DaneHost> {
    const name = tlsaName(host, this.port);
    if (!mxSecure) return decideHost({ host, name, mxSecure, addr: null, tlsa: null });
    let addr = await this.r.lookup(host, 'A');
    if (addr.status === 'nodata' || addr.status === 'nxdomain') addr = await this.r.lookup(host, 'AAAA');
    if (addr.status !== 'ok' || !addr.secure) return decideHost({ host, name, mxSecure, addr, tlsa: null });
    // An alias (validated CNAME): TLSA records at the expanded name first, then at the MX host name (RFC 7672 §2.2.2).
    if (addr.cname && addr.cname !== host.toLowerCase().replace(/\.$/, '')) {
      const expanded = tlsaName(addr.cname, this.port);
      const t = await this.r.tlsa(expanded);
      if (t.status !== 'nodata' && t.status !== 'nxdomain') return decideHost({ host, name: expanded, mxSecure, addr, tlsa: t, names: [addr.cname, host] });
    }
    return decideHost({ host, name, mxSecure, addr, tlsa: await this.r.tlsa(name) });
  }
}
