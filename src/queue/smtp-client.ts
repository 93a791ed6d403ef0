// Delivery of one message to the recipients of one destination domain over SMTP: MX routing,
// MTA-STS, source address and EHLO name per sending domain, opportunistic STARTTLS, per-recipient
// results, and the facts of the attempt (MX, addresses, TLS, transcript without secrets).
// Connections are kept for a few seconds after a transaction and reused for the same MX address.
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Resolver } from '../dns/resolver.ts';
import type { Logger } from '../log.ts';
import { resolveRoute, resolveHost } from './mx.ts';
import { MtaSts, type StsPolicy } from './mta-sts.ts';
import { NO_DANE, peerChain, tlsaText, verifyPeer, type Dane, type DaneHost } from './dane.ts';
import { outcomeOf, type Outcome } from './classify.ts';
import { reply, type SmtpReply } from '../mail/reply.ts';
import { isTlsError, sessionOutcome, tlsFailureOf, type TlsFailureType, type TlsOutcome, type TlsPolicyType } from './tls-outcome.ts';

export interface RcptResult {
  recipient: string;
  code: number;
  reply: string;
  outcome: Outcome;
}

export interface AttemptInfo {
  mx: string | null;
  ip: string | null;
  sourceIp: string | null;
  tlsVersion: string | null;
  tlsCipher: string | null;
  transcript: string;
  /** The TLS outcome for TLS reporting (RFC 8460); absent/null when no session got that far or via a smarthost. */
  tls?: TlsOutcome | null;
}

export interface RemoteJob {
  domain: string;
  from: string;
  recipients: string[];
  size: number;
  body: () => Readable | Buffer;
  sendingDomain: string | null;
}

export interface ClientOptions {
  resolver: Resolver;
  log: Logger;
  hostname: string;
  port: number;
  ipv4Only: boolean;
  ipv4OnlyDomains: string[];
  sourceIps: Record<string, string>; // ip → EHLO name
  domainIps: Record<string, string>; // sending domain → ip
  /** The main IP (first of `ips` that is assigned to this host), used when a domain has none. */
  defaultIp: string | null;
  mtaSts: MtaSts | null;
  /** DANE (RFC 7672) lookups; null when [outbound] dane is off (or a smarthost relays everything). */
  dane?: Dane | null;
  ca?: string;
  connectTimeoutMs: number;
  socketTimeoutMs: number;
  smarthost?: { host: string; port: number; tls: 'starttls' | 'tls' | 'none'; user: string; pass: string } | null;
}

/** The TLS policy of a delivery for TLS reporting: its type and, for MTA-STS, why a published policy could not be used. */
type TlsPolicyInfo = { type: TlsPolicyType; failure: TlsFailureType | null };

type HostResult = { kind: 'done'; results: RcptResult[]; attempt: AttemptInfo } | { kind: 'next'; code: number; reply: string; tls?: TlsOutcome | null };

/** Where one connection goes: the MX (name and address), port, our EHLO name and source address, and whether TLS is enforced (MTA-STS). */
export interface ConnectTarget {
  mx: string;
  ip: string;
  port: number;
  ehlo: string;
  localAddress: string | null;
  enforce: boolean;
  /** DANE applies (TLSA records validated): STARTTLS required; the certificate is checked against them, not the Web PKI. */
  dane?: Extract<DaneHost, { mode: 'dane' }> | null;
  /** The recipient domain (a DANE-TA certificate may name it instead of the MX host). */
  domain?: string;
}

/**
 * Decide: nodemailer's connection options for a target. MX delivery: opportunistic STARTTLS
 * without certificate checks, unless MTA-STS enforces (then STARTTLS required and verified). A
 * smarthost: its own TLS mode (implicit, STARTTLS required, or none), always verified. Pure.
 */
export function connectionOptions(
  t: ConnectTarget,
  sh: { tls: 'starttls' | 'tls' | 'none' } | null,
  o: { ca: string[] | undefined; connectTimeoutMs: number; socketTimeoutMs: number },
): Record<string, unknown> {
  // SNI: the MX host name; under DANE, the TLSA base domain (the CNAME-expanded name when the records are there; RFC 7672 §8.1).
  const servername = isIP(t.mx) ? undefined : t.dane ? t.dane.names[0] : t.mx;
  return {
    host: t.ip,
    port: t.port,
    servername,
    name: t.ehlo,
    localAddress: t.localAddress ?? undefined,
    secure: !!sh && sh.tls === 'tls',
    requireTLS: t.enforce || !!t.dane || (!!sh && sh.tls === 'starttls'),
    opportunisticTLS: !t.enforce && !t.dane && !sh,
    ignoreTLS: !!sh && sh.tls === 'none',
    // Under DANE the TLSA records, not the Web PKI, decide (checked after the handshake: verifyPeer).
    tls: { rejectUnauthorized: (t.enforce && !t.dane) || !!sh, servername, ca: o.ca, minVersion: 'TLSv1.2' },
    connectionTimeout: o.connectTimeoutMs,
    greetingTimeout: o.connectTimeoutMs,
    socketTimeout: o.socketTimeoutMs,
    allowInternalNetworkInterfaces: true,
  };
}

/** Decide: the reply when connecting (greeting, EHLO, TLS, login) failed. A 5xx from one MX is that host's problem: other MX hosts may accept (451). Pure. */
export function connectFailure(err: any, mx: string, ip: string): { code: number; reply: string } {
  const code = err.responseCode && err.responseCode >= 400 ? err.responseCode : 451;
  const line = err.response ? String(err.response) : reply(451, '4.4.1', `connection to ${mx} [${ip}] failed: ${err.code ?? ''} ${err.message}`.trim()).line;
  return { code: code >= 500 ? 451 : code, reply: line };
}

/**
 * Decide: what a failed transaction means per recipient. Refused recipients (or the envelope):
 * each its own reply, else the transaction's; a reply to the whole transaction: every recipient
 * gets it; the connection broke mid-transaction: nothing is known to be delivered (next host). Pure.
 */
export function sendFailure(err: any, recipients: readonly string[], mx: string, ip: string): { kind: 'done'; results: RcptResult[] } | { kind: 'next'; code: number; reply: string } {
  if (err.rejectedErrors?.length || err.code === 'EENVELOPE') {
    const byRcpt = new Map<string, any>();
    for (const e of err.rejectedErrors ?? []) if (e.recipient) byRcpt.set(e.recipient, e);
    const fallback = err.response ? String(err.response) : reply(451, '4.3.0', err.message).line;
    const fallbackCode = Number(err.responseCode) || 451;
    return {
      kind: 'done',
      results: recipients.map((recipient) => {
        const e = byRcpt.get(recipient);
        const code = Number(e?.responseCode) || fallbackCode;
        return { recipient, code, reply: e?.response ? String(e.response) : fallback, outcome: outcomeOf(code) };
      }),
    };
  }
  if (err.responseCode) {
    const line = String(err.response ?? err.message);
    return { kind: 'done', results: recipients.map((recipient) => ({ recipient, code: err.responseCode, reply: line, outcome: outcomeOf(err.responseCode) })) };
  }
  return { kind: 'next', code: 451, reply: reply(451, '4.4.2', `connection to ${mx} [${ip}] lost: ${err.message}`).line };
}

/** Decide: each recipient's result of an accepted transaction (the ones refused at RCPT keep their reply). Pure. */
export function sentResults(sent: { response?: string; rejectedErrors?: any[] }, recipients: readonly string[]): RcptResult[] {
  const rejected = new Map<string, any>();
  for (const e of sent.rejectedErrors ?? []) if (e.recipient) rejected.set(e.recipient, e);
  const okReply = String(sent.response ?? '250 OK');
  return recipients.map((recipient) => {
    const e = rejected.get(recipient);
    if (!e) return { recipient, code: 250, reply: okReply, outcome: 'delivered' as const };
    const code = Number(e.responseCode) || 451;
    return { recipient, code, reply: String(e.response ?? e.message), outcome: outcomeOf(code) };
  });
}

interface Pooled {
  conn: any;
  key: string;
  timer: NodeJS.Timeout;
  info: { tlsVersion: string | null; tlsCipher: string | null; sourceIp: string | null };
}

const MAX_TRANSCRIPT = 8192;

/** A transcript sink for smtp-connection's debug logger that drops AUTH exchanges. */
class Transcript {
  lines: string[] = [];
  private size = 0;
  private inAuth = false;
  logger = {
    level: () => {},
    trace: () => {},
    info: () => {},
    warn: () => {},
    fatal: () => {},
    error: () => {},
    debug: (meta: any, ...args: any[]) => {
      if (!meta || (meta.tnx !== 'client' && meta.tnx !== 'server')) return;
      let line = String(args[0] ?? '');
      if (meta.tnx === 'client') {
        if (/^AUTH\b/i.test(line)) (line = 'AUTH [redacted]'), (this.inAuth = true);
        else if (this.inAuth) line = '[redacted]';
      } else if (this.inAuth && !/^334/.test(line)) this.inAuth = false;
      this.push(`${meta.tnx === 'client' ? 'C' : 'S'}: ${line}`);
    },
  };
  push(line: string) {
    if (this.size > MAX_TRANSCRIPT) return;
    this.size += line.length + 1;
    this.lines.push(this.size > MAX_TRANSCRIPT ? '[transcript truncated]' : line);
  }
  text() {
    return this.lines.join('\n');
  }
}

export class SmtpClient {
  private idle = new Map<string, Pooled[]>();
  private o: ClientOptions;
  /** Trust store for verified TLS: the system's roots plus tls_ca_file (built once). */
  private ca: string[] | undefined;
  constructor(o: ClientOptions) {
    this.o = o;
    this.ca = o.ca ? [...rootCertificates, o.ca] : undefined;
  }

  /** The source address and EHLO name for a sending domain. */
  source(sendingDomain: string | null): { localAddress: string | null; ehlo: string } {
    const ip = (sendingDomain ? this.o.domainIps[sendingDomain] : undefined) ?? this.o.defaultIp;
    if (ip) return { localAddress: ip, ehlo: this.o.sourceIps[ip] ?? this.o.hostname };
    return { localAddress: null, ehlo: this.o.hostname };
  }

  async deliver(job: RemoteJob): Promise<{ results: RcptResult[]; attempt: AttemptInfo }> {
    // Every recipient gets the same answer: a remote reply line as received, or one we chose (an SmtpReply).
    const all = (code: number, line: string, attempt: Partial<AttemptInfo> = {}) => ({
      results: job.recipients.map((recipient) => ({ recipient, code, reply: line, outcome: outcomeOf(code) })),
      attempt: { mx: null, ip: null, sourceIp: null, tlsVersion: null, tlsCipher: null, transcript: '', ...attempt },
    });
    const allReply = (r: SmtpReply, attempt: Partial<AttemptInfo> = {}) => all(r.responseCode, r.line, attempt);
    const transcript = new Transcript();
    let hosts: { name: string; ips: string[] | null }[];
    let policy: StsPolicy | null = null;
    let stsFailure: TlsFailureType | null = null;
    const sh = this.o.smarthost;
    const port = sh ? sh.port : this.o.port;
    const ipv4Only = this.o.ipv4Only || this.o.ipv4OnlyDomains.includes(job.domain);
    if (sh) {
      hosts = [{ name: sh.host, ips: null }];
    } else {
      let route;
      try {
        route = await resolveRoute(this.o.resolver, job.domain);
      } catch (err: any) {
        return allReply(reply(451, '4.4.3', err.message));
      }
      if (route.kind === 'nullmx') return allReply(reply(556, '5.1.10', `${job.domain} does not accept mail (null MX, RFC 7505)`));
      if (route.kind === 'nxdomain') return allReply(reply(550, '5.1.2', `domain ${job.domain} does not exist`));
      if (this.o.mtaSts) ({ policy, failure: stsFailure } = await this.o.mtaSts.lookup(job.domain));
      const allowed = route.hosts.filter((h) => MtaSts.allows(policy, h));
      if (allowed.length === 0) {
        return allReply(reply(451, '4.7.5', `MTA-STS policy of ${job.domain} (enforce) allows none of its MX hosts (${route.hosts.join(', ')}); will retry`), { mx: route.hosts.join(','), transcript: `MTA-STS policy ${policy?.id}: mx ${policy?.mx.join(', ')}` });
      }
      hosts = allowed.map((name) => ({ name, ips: null }));
    }
    const enforce = !!policy && policy.mode === 'enforce';
    // TLS reporting counts sessions to the recipient domain's MX hosts only (not a smarthost's).
    const tlsPolicy: TlsPolicyInfo | null = sh ? null : { type: (policy && policy.mode !== 'none') || stsFailure ? 'sts' : 'no-policy-found', failure: stsFailure };
    // DANE (RFC 7672): only where the MX RRset itself is DNSSEC-validated; it takes precedence over MTA-STS per host.
    const dane = !sh && this.o.dane ? this.o.dane : null;
    const mxSecure = dane ? await dane.mxSecure(job.domain) : false;
    let last: { code: number; reply: string; mx: string | null; ip: string | null; tls?: TlsOutcome | null } = { code: 451, reply: reply(451, '4.4.1', 'no MX host could be reached').line, mx: null, ip: null };
    for (const h of hosts) {
      let ips: string[];
      try {
        ips = await resolveHost(this.o.resolver, h.name, ipv4Only);
      } catch (err: any) {
        last = { code: 451, reply: reply(451, '4.4.3', err.message).line, mx: h.name, ip: null };
        transcript.push(`* ${err.message}`);
        continue;
      }
      if (ips.length === 0) {
        transcript.push(`* ${h.name} has no ${ipv4Only ? 'IPv4 ' : ''}address`);
        last = { code: 451, reply: reply(451, '4.4.4', `MX host ${h.name} has no address`).line, mx: h.name, ip: null };
        continue;
      }
      const d = dane ? await dane.forHost(h.name, mxSecure) : NO_DANE;
      if (d.mode === 'defer') {
        transcript.push(`* ${d.reason}`);
        // A bogus TLSA answer: reported as DANE's dnssec-invalid (RFC 8460 §4.3.2).
        last = { code: 451, reply: reply(451, '4.7.5', d.reason).line, mx: h.name, ip: null, tls: tlsPolicy ? { policy: 'tlsa', result: 'dnssec-invalid' } : null };
        continue;
      }
      if (d.mode === 'dane') transcript.push(`* DANE: ${d.tlsaName} has ${d.records.length} usable TLSA record(s) (${d.records.map(tlsaText).join(', ')}): STARTTLS and a matching certificate required`);
      else if (dane && mxSecure) transcript.push(`* DANE does not apply to ${h.name}: ${d.reason}`);
      for (const ip of ips) {
        const hostPolicy: TlsPolicyInfo | null = tlsPolicy && d.mode === 'dane' ? { type: 'tlsa', failure: null } : tlsPolicy;
        const r = await this.tryHost(job, h.name, ip, port, enforce, transcript, hostPolicy, d.mode === 'dane' ? d : null);
        if (r.kind === 'done') return { results: r.results, attempt: { ...r.attempt, transcript: r.results.every((x) => x.outcome === 'delivered') ? '' : transcript.text() } };
        last = { code: r.code, reply: r.reply, mx: h.name, ip, tls: r.tls ?? null };
      }
    }
    return all(last.code, last.reply, { mx: last.mx, ip: last.ip, transcript: transcript.text(), tls: last.tls ?? null });
  }

  private async tryHost(
    job: RemoteJob,
    mx: string,
    ip: string,
    port: number,
    enforce: boolean,
    transcript: Transcript,
    tlsPolicy: TlsPolicyInfo | null = null,
    dane: ConnectTarget['dane'] = null,
  ): Promise<HostResult> {
    const src = this.source(job.sendingDomain);
    const localAddress = src.localAddress && isIP(src.localAddress) === isIP(ip) ? src.localAddress : null;
    // A DANE connection is pooled apart (it was checked against the TLSA records when opened).
    const key = `${ip}|${port}|${localAddress ?? ''}|${src.ehlo}|${enforce ? 'e' : 'o'}${dane ? 'd' : ''}|${mx}`;
    const open = (await this.reuse(key, mx, ip, transcript)) ?? (await this.connect({ mx, ip, port, ehlo: src.ehlo, localAddress, enforce, dane, domain: job.domain }, transcript));
    if ('kind' in open) {
      const failed = open.tlsFailure ?? (open.tlsError ? tlsPolicy?.failure ?? tlsFailureOf(open.tlsError) : null);
      return { ...open, tls: tlsPolicy && failed ? { policy: tlsPolicy.type, result: failed } : null };
    }
    const { conn, info } = open;
    // A published MTA-STS policy that could not be fetched makes the session a failure of that kind.
    const tls = tlsPolicy ? (tlsPolicy.failure ? { policy: tlsPolicy.type, result: tlsPolicy.failure } : sessionOutcome(tlsPolicy.type, info.tlsVersion !== null)) : null;
    const attempt: AttemptInfo = { mx, ip, sourceIp: info.sourceIp, tlsVersion: info.tlsVersion, tlsCipher: info.tlsCipher, transcript: '', tls };
    let sent: any;
    try {
      sent = await new Promise((res, rej) => {
        const body = job.body();
        conn.send({ from: job.from, to: job.recipients, size: job.size }, body, (err: any, info: any) => (err ? rej(err) : res(info)));
      });
    } catch (err: any) {
      const reusable = err.code === 'EENVELOPE' && !!err.responseCode;
      if (reusable) this.put(key, conn, info);
      else conn.close();
      const r = sendFailure(err, job.recipients, mx, ip);
      if (r.kind === 'next') transcript.push(`* ${err.code ?? 'error'}: ${err.message}`);
      return r.kind === 'done' ? { kind: 'done', attempt, results: r.results } : { ...r, tls };
    }
    this.put(key, conn, info);
    return { kind: 'done', attempt, results: sentResults(sent, job.recipients) };
  }

  /** A pooled connection for `key`, reset for a new transaction; null when there is none (or the reset failed). */
  private async reuse(key: string, mx: string, ip: string, transcript: Transcript): Promise<{ conn: any; info: Pooled['info'] } | null> {
    const pooled = this.take(key);
    if (!pooled) return null;
    const conn = pooled.conn;
    conn.logger = transcript.logger;
    transcript.push(`* reusing connection to ${mx} [${ip}]`);
    try {
      await new Promise<void>((res, rej) => conn.reset((e: any) => (e ? rej(e) : res())));
      return { conn, info: pooled.info };
    } catch {
      conn.close();
      return null;
    }
  }

  /** A new connection (TLS as connectionOptions decides, smarthost login); on failure the reply that sends us to the next host. */
  private async connect(t: ConnectTarget, transcript: Transcript): Promise<{ conn: any; info: Pooled['info'] } | { kind: 'next'; code: number; reply: string; tlsError?: any; tlsFailure?: TlsFailureType }> {
    const sh = this.o.smarthost;
    transcript.push(`* connecting to ${t.mx} [${t.ip}]:${t.port}${t.localAddress ? ` from ${t.localAddress}` : ''}`);
    const conn = new (SMTPConnection as any)({
      ...connectionOptions(t, sh ?? null, { ca: this.ca, connectTimeoutMs: this.o.connectTimeoutMs, socketTimeoutMs: this.o.socketTimeoutMs }),
      logger: transcript.logger,
      debug: true,
    });
    conn.on('error', () => {});
    try {
      await new Promise<void>((res, rej) => {
        conn.once('error', rej);
        conn.connect(() => {
          conn.removeListener('error', rej);
          res();
        });
      });
      if (sh && sh.user) await new Promise<void>((res, rej) => conn.login({ user: sh.user, pass: sh.pass }, (e: any) => (e ? rej(e) : res())));
    } catch (err: any) {
      conn.close();
      transcript.push(`* ${err.code ?? 'error'}: ${err.message}`);
      if (t.dane) {
        // TLSA records require TLS: no STARTTLS (or a failed handshake) is a temporary failure at this host (RFC 7672 §2.2).
        const why = `DANE: TLSA records of ${t.mx} require STARTTLS, but the TLS session with ${t.mx} [${t.ip}] failed (${err.message}); will retry`;
        transcript.push(`* ${why}`);
        return { kind: 'next', code: 451, reply: reply(451, '4.7.5', why).line, tlsError: err };
      }
      return { kind: 'next', ...connectFailure(err, t.mx, t.ip), ...(isTlsError(err) ? { tlsError: err } : {}) };
    }
    const sock = conn._socket;
    if (t.dane) {
      const v = verifyPeer(t.dane.records, conn.secure ? peerChain(sock) : [], [...t.dane.names, ...(t.domain ? [t.domain] : [])], new Date());
      if (!v.ok) {
        conn.close();
        const why = `DANE: ${v.reason.replace(/^no TLSA record matched the certificate/, `no TLSA record of ${t.dane.tlsaName} matched the certificate of ${t.mx} [${t.ip}]`)}; will retry`;
        transcript.push(`* ${why}`);
        return { kind: 'next', code: 451, reply: reply(451, '4.7.5', why).line, tlsFailure: 'tlsa-invalid' };
      }
      transcript.push(`* DANE: the certificate of ${t.mx} [${t.ip}] matches TLSA ${tlsaText(v.matched)}`);
    }
    const info = {
      tlsVersion: conn.secure && sock?.getProtocol ? sock.getProtocol() : null,
      tlsCipher: conn.secure && sock?.getCipher ? sock.getCipher()?.name ?? null : null,
      sourceIp: sock?.localAddress ?? t.localAddress,
    };
    return { conn, info };
  }

  private take(key: string): Pooled | null {
    const list = this.idle.get(key);
    while (list && list.length) {
      const p = list.pop()!;
      clearTimeout(p.timer);
      if (!p.conn._destroyed && p.conn._socket && !p.conn._socket.destroyed) return p;
      p.conn.close();
    }
    return null;
  }

  private put(key: string, conn: any, info: Pooled['info']): void {
    const list = this.idle.get(key) ?? [];
    if (list.length >= 4) {
      conn.quit();
      return;
    }
    const p: Pooled = {
      conn,
      key,
      info,
      timer: setTimeout(() => {
        const l = this.idle.get(key);
        if (l) {
          const i = l.indexOf(p);
          if (i >= 0) l.splice(i, 1);
          if (l.length === 0) this.idle.delete(key);
        }
        conn.quit();
      }, 5000),
    };
    p.timer.unref();
    list.push(p);
    this.idle.set(key, list);
  }

  close(): void {
    for (const list of this.idle.values()) for (const p of list) (clearTimeout(p.timer), p.conn.quit());
    this.idle.clear();
  }
}
