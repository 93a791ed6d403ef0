// `letterbox doctor`: checks an installation from the outside in — listeners, TLS, DNS of every
// domain through the configured resolver, reverse DNS of every IP, Dovecot, disk, the database and
// the queue — and says, for each problem, how to fix it.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { tags } from '../services/verify.ts';
import { existsSync, readFileSync, statfsSync, accessSync, constants as fsc } from 'node:fs';
import { connect as tcpConnect, createServer, isIP, isIPv6 } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createSocket } from 'node:dgram';
import { execFile } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mtaStsPolicy, mtaStsRecordId } from '../mtasts/index.ts';
import { promisify } from 'node:util';
import type { Config } from '../config/schema.ts';
import { parseHostPort } from '../config/schema.ts';
import { hasTable, type DB } from '../db/index.ts';
import { queueBacklog } from '../queue/reports.ts';
import type { Resolver } from '../dns/resolver.ts';
import { isNoData } from '../dns/resolver.ts';
import { spfUnauthorised } from '../mail/spf.ts';
import { heloSpfRecords, type DnsRecord } from '../dns/records.ts';
import { checkSpam } from '../spam/doctor.ts';
import { dovecotPaths, dovecotSeries } from '../dovecot/config.ts';
import { createSecureResolver } from '../dns/dnssec.ts';
import { daneResolverVerdict } from '../queue/dane.ts';

const run = promisify(execFile);

export type Status = 'ok' | 'warn' | 'fail' | 'skip';
export type Area = 'ports' | 'mta-sts' | 'clock' | 'outbound' | 'tls' | 'dns' | 'rdns' | 'dnsbl' | 'dovecot' | 'disk' | 'database' | 'queue' | 'spam';

export interface Check {
  area: Area;
  /** What was checked, e.g. "mx 0.0.0.0:25" or "example.com MX". */
  name: string;
  status: Status;
  message: string;
  /** How to fix it (for warn and fail). */
  fix?: string;
}

export interface DoctorDomain {
  name: string;
  records: DnsRecord[];
  /** DKIM key rotation: selectors that are not signing (pending, retiring) are warnings, not failures. */
  dkimStates?: Record<string, string>;
}

export interface DoctorInput {
  config: Config;
  db: DB | null;
  resolver: Resolver;
  domains: DoctorDomain[];
  now?: () => number;
  /** Per-probe timeout for listeners. */
  timeoutMs?: number;
  /** DNS blocklists to look the IPs up in (default DEFAULT_DNSBLS; [] skips the check). */
  dnsbls?: string[];
  /**
   * "host:port" to open an SMTP connection to, proving outbound port 25 works (default: the
   * smarthost when one is configured, else DEFAULT_OUTBOUND_PROBE); '' skips the check.
   */
  outboundProbe?: string;
  /** SNTP server "host:port" to measure clock skew against (default DEFAULT_NTP; '' skips). */
  ntp?: string;
  /** A DNSSEC-signed name whose DNSKEY the resolver must validate for DANE (default DEFAULT_DANE_PROBE, the root; '' skips). */
  daneProbe?: string;
}

export const DEFAULT_OUTBOUND_PROBE = 'gmail-smtp-in.l.google.com:25';
export const DEFAULT_NTP = 'pool.ntp.org:123';
export const DEFAULT_DANE_PROBE = '.';

/** Widely used IP blocklists. Some refuse queries that come through large public resolvers. */
export const DEFAULT_DNSBLS = ['zen.spamhaus.org', 'bl.spamcop.net', 'b.barracudacentral.org', 'psbl.surriel.com'];

export interface DoctorReport {
  ok: boolean;
  failures: number;
  warnings: number;
  checks: Check[];
}

export async function runDoctor(i: DoctorInput): Promise<DoctorReport> {
  const now = i.now ?? Date.now;
  const checks: Check[] = [];
  const groups = await Promise.all([
    checkListeners(i.config, i.timeoutMs ?? 3000),
    checkTls(i.config, now()),
    checkDomains(i.config, i.resolver, i.domains),
    checkMtaSts(i.config, i.resolver, i.domains, i.timeoutMs ?? 3000),
    checkReverseDns(i.config, i.resolver),
    checkBlocklists(i.config, i.resolver, i.dnsbls ?? DEFAULT_DNSBLS),
    checkDovecot(i.config),
    checkSpam(i.config, i.resolver, { dnsbl: (i.dnsbls ?? DEFAULT_DNSBLS).length > 0 }), // rspamd, Redis, blocklist resolver (issue #14)
    checkOutbound(i.config, i.outboundProbe, i.timeoutMs ?? 3000),
    checkClock(i.ntp ?? DEFAULT_NTP, now, i.timeoutMs ?? 3000),
    checkDane(i.config, i.daneProbe ?? DEFAULT_DANE_PROBE),
  ]);
  for (const g of groups) checks.push(...g);
  checks.push(...checkDisk(i.config));
  if (i.db) checks.push(...checkDatabase(i.db, now()));
  const failures = checks.filter((c) => c.status === 'fail').length;
  const warnings = checks.filter((c) => c.status === 'warn').length;
  return { ok: failures === 0, failures, warnings, checks };
}

// ---- listeners ----------------------------------------------------------------------------------

type Proto = 'smtp' | 'smtp-tls' | 'imap-tls' | 'http';

function probeHost(host: string): string {
  return host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
}

/** Reads the first line the server sends (after a TLS handshake for implicit-TLS services). */
function greeting(host: string, port: number, tls: boolean, timeoutMs: number): Promise<{ connected: boolean; line?: string; tlsError?: string; error?: string }> {
  return new Promise((resolve) => {
    let connected = false;
    let buf = '';
    const sock = tls ? tlsConnect({ host, port, rejectUnauthorized: false, servername: isIP(host) ? undefined : host }) : tcpConnect({ host, port });
    const done = (r: { connected: boolean; line?: string; tlsError?: string; error?: string }) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ connected, error: 'no greeting within the timeout' }), timeoutMs);
    sock.once(tls ? 'secureConnect' : 'connect', () => {
      connected = true;
    });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const n = buf.indexOf('\n');
      if (n >= 0) {
        if (!tls || connected) sock.write(buf.startsWith('*') ? 'a LOGOUT\r\n' : 'QUIT\r\n');
        done({ connected: true, line: buf.slice(0, n).trim() });
      }
    });
    sock.once('error', (err: any) => {
      if (tls && (err.code === 'ECONNRESET' || /SSL|TLS|handshake|wrong version/i.test(err.message)) && err.code !== 'ECONNREFUSED') {
        done({ connected: true, tlsError: err.message });
      } else done({ connected: false, error: err.code ?? err.message });
    });
  });
}

function httpGet(host: string, port: number, path: string, timeoutMs: number): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const req = httpRequest({ host, port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: any) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

function unixConnects(path: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ path });
    const t = setTimeout(() => done(false), timeoutMs);
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Whether nothing holds host:port: we could bind it ourselves (null: cannot tell, e.g. no privilege). */
function portFree(host: string, port: number): Promise<boolean | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (err: any) => resolve(err.code === 'EADDRINUSE' ? false : null));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** EHLO, then STARTTLS and a TLS handshake on a plain SMTP port. */
function smtpStarttls(host: string, port: number, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host, port });
    let buf = '';
    let stage: 'greeting' | 'ehlo' | 'starttls' | 'tls' = 'greeting';
    const done = (ok: boolean, detail: string) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ok, detail });
    };
    const timer = setTimeout(() => done(false, `no answer during ${stage}`), timeoutMs);
    sock.on('error', (err: any) => done(false, err.code ?? err.message));
    sock.on('data', (d) => {
      if (stage === 'tls') return;
      buf += d.toString('latin1');
      // A complete reply ends with a line "NNN text" (no dash after the code).
      const lines = buf.split('\r\n');
      const last = lines.findIndex((l) => /^\d{3} /.test(l) || /^\d{3}$/.test(l));
      if (last < 0) return;
      const reply = lines.slice(0, last + 1);
      buf = lines.slice(last + 1).join('\r\n');
      const code = reply[last].slice(0, 3);
      if (stage === 'greeting') {
        if (code !== '220') return done(false, `greeting ${reply[last]}`);
        stage = 'ehlo';
        sock.write('EHLO doctor.letterbox.invalid\r\n');
      } else if (stage === 'ehlo') {
        if (code !== '250') return done(false, `EHLO refused: ${reply[last]}`);
        if (!reply.some((l) => /^250[ -]STARTTLS\b/i.test(l))) return done(false, 'STARTTLS is not offered');
        stage = 'starttls';
        sock.write('STARTTLS\r\n');
      } else if (stage === 'starttls') {
        if (code !== '220') return done(false, `STARTTLS refused: ${reply[last]}`);
        stage = 'tls';
        sock.removeAllListeners('data');
        const t = tlsConnect({ socket: sock, rejectUnauthorized: false, servername: isIP(host) ? undefined : host });
        t.once('secureConnect', () => {
          const proto = t.getProtocol();
          t.end('QUIT\r\n');
          done(true, `STARTTLS ${proto ?? ''}`.trim());
        });
        t.once('error', (err) => done(false, `TLS handshake after STARTTLS failed: ${err.message}`));
      }
    });
  });
}

async function checkListener(kind: string, addr: string, proto: Proto, timeoutMs: number): Promise<Check> {
  const hp = parseHostPort(addr)!;
  const host = probeHost(hp.host);
  const name = `${kind} ${addr}`;
  const start = 'start Letterbox (systemctl start letterbox; journalctl -u letterbox shows why it stopped)';
  if (proto === 'http') {
    const r = await httpGet(host, hp.port, '/healthz', timeoutMs);
    if (r.status === 200) return { area: 'ports', name, status: 'ok', message: 'listening; /healthz answers 200' };
    if (r.status !== undefined) return { area: 'ports', name, status: 'warn', message: `listening, but /healthz answered ${r.status}`, fix: 'check the log: journalctl -u letterbox' };
    const free = await portFree(hp.host, hp.port);
    return { area: 'ports', name, status: 'fail', message: `nothing answers (${r.error})${free === true ? '; the port is free' : ''}`, fix: start };
  }
  const r = await greeting(host, hp.port, proto !== 'smtp', timeoutMs);
  if (r.line !== undefined) {
    const want = proto === 'imap-tls' ? /^\* OK/ : /^220[ -]/;
    if (want.test(r.line) && proto === 'smtp') {
      const st = await smtpStarttls(host, hp.port, timeoutMs);
      if (st.ok) return { area: 'ports', name, status: 'ok', message: `listening, ${st.detail}: ${r.line.slice(0, 70)}` };
      return { area: 'ports', name, status: kind === 'submission' ? 'fail' : 'warn', message: `listening, but ${st.detail}`, fix: 'check tls.cert and tls.key (see the TLS checks) and the log: clients need STARTTLS before AUTH, and senders prefer it' };
    }
    if (want.test(r.line)) return { area: 'ports', name, status: 'ok', message: `listening (TLS): ${r.line.slice(0, 80)}` };
    return { area: 'ports', name, status: 'fail', message: `something else answers: ${r.line.slice(0, 80)}`, fix: `another program holds port ${hp.port}: find it with 'ss -ltnp sport = :${hp.port}', stop it, restart Letterbox` };
  }
  if (r.tlsError) return { area: 'ports', name, status: 'fail', message: `TLS handshake failed: ${r.tlsError}`, fix: 'check tls.cert and tls.key (see the TLS checks) and the log' };
  if (r.connected) return { area: 'ports', name, status: 'fail', message: `connected, but ${r.error}`, fix: 'the service is stuck or overloaded: check the log (journalctl -u letterbox)' };
  const free = await portFree(hp.host, hp.port);
  if (free === false) return { area: 'ports', name, status: 'fail', message: `port in use but not answering (${r.error})`, fix: `find the holder with 'ss -ltnp sport = :${hp.port}'` };
  return { area: 'ports', name, status: 'fail', message: `not listening (${r.error})${free === true ? '; the port is free' : ''}`, fix: start };
}

export async function checkListeners(config: Config, timeoutMs: number): Promise<Check[]> {
  const jobs: Promise<Check>[] = [];
  for (const a of config.listen.mx) jobs.push(checkListener('mx', a, 'smtp', timeoutMs));
  for (const a of config.listen.submission) jobs.push(checkListener('submission', a, 'smtp', timeoutMs));
  for (const a of config.listen.submissions) jobs.push(checkListener('submissions', a, 'smtp-tls', timeoutMs));
  if (config.dovecot.managed) for (const a of config.listen.imap) jobs.push(checkListener('imap', a, 'imap-tls', timeoutMs));
  jobs.push(checkListener('api', config.listen.api, 'http', timeoutMs));
  return Promise.all(jobs);
}

// ---- clock --------------------------------------------------------------------------------------

const NTP_EPOCH_OFFSET = 2208988800; // seconds from 1900-01-01 to 1970-01-01

/** One SNTP (RFC 4330) query: the server's clock minus ours, in ms (half the round trip corrected). */
export function sntpOffset(host: string, port: number, now: () => number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    const req = Buffer.alloc(48);
    req[0] = 0x23; // LI 0, version 4, mode 3 (client)
    const t0 = now();
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('no answer'));
    }, timeoutMs);
    sock.once('error', (err) => {
      clearTimeout(timer);
      sock.close();
      reject(err);
    });
    sock.once('message', (msg) => {
      clearTimeout(timer);
      const t3 = now();
      sock.close();
      if (msg.length < 48 || (msg[0] & 0x07) !== 4) return reject(new Error('not an SNTP server reply'));
      const ts = (o: number) => (msg.readUInt32BE(o) - NTP_EPOCH_OFFSET) * 1000 + (msg.readUInt32BE(o + 4) / 2 ** 32) * 1000;
      const t1 = ts(32); // receive
      const t2 = ts(40); // transmit
      resolve(((t1 - t0) + (t2 - t3)) / 2);
    });
    sock.send(req, port, host);
  });
}

export async function checkClock(ntp: string, now: () => number, timeoutMs: number): Promise<Check[]> {
  if (!ntp) return [];
  const m = /^(.+?)(?::(\d+))?$/.exec(ntp.replace(/^\[(.*)\](:\d+)?$/, '$1$2'))!;
  const host = m[1];
  const port = m[2] ? Number(m[2]) : 123;
  const name = `skew vs ${host}`;
  let offset: number;
  try {
    offset = await sntpOffset(host, port, now, timeoutMs);
  } catch (err: any) {
    return [{ area: 'clock', name, status: 'skip', message: `could not ask ${ntp} (${err.code ?? err.message})` }];
  }
  const s = Math.abs(offset) / 1000;
  const fix = 'enable time synchronisation: timedatectl set-ntp true (systemd-timesyncd) or apt-get install chrony';
  if (s > 30) return [{ area: 'clock', name, status: 'fail', message: `this clock is ${s.toFixed(1)} s ${offset > 0 ? 'behind' : 'ahead'}: TLS, DKIM signatures and tokens go wrong`, fix }];
  if (s > 2) return [{ area: 'clock', name, status: 'warn', message: `this clock is ${s.toFixed(1)} s ${offset > 0 ? 'behind' : 'ahead'}`, fix }];
  return [{ area: 'clock', name, status: 'ok', message: `within ${s < 0.001 ? '1 ms' : `${(s * 1000).toFixed(0)} ms`}` }];
}

// ---- outbound port 25 ---------------------------------------------------------------------------

/** DANE (issue #18): the resolver (dns.servers) must validate DNSSEC, or TLSA records are never trusted. */
export async function checkDane(config: Config, probe: string): Promise<Check[]> {
  if (!config.outbound.dane || config.outbound.smarthost || !probe) return [];
  const r = createSecureResolver({ servers: config.dns.servers, timeoutMs: config.dns.timeout_ms, clock: { now: () => Date.now() }, cacheMs: 0 });
  const v = daneResolverVerdict(await r.lookup(probe, 'DNSKEY'), probe, `${r.server.host}:${r.server.port}`);
  return [{ area: 'outbound', name: 'DANE resolver', ...v }];
}

export async function checkOutbound(config: Config, probe: string | undefined, timeoutMs: number): Promise<Check[]> {
  const smarthost = config.outbound.smarthost;
  const target = probe ?? (smarthost || DEFAULT_OUTBOUND_PROBE);
  if (!target) return [];
  const hp = parseHostPort(target);
  if (!hp) return [{ area: 'outbound', name: target, status: 'fail', message: 'not a host:port', fix: 'pass --outbound-probe host:port' }];
  const viaRelay = !!smarthost && target === smarthost;
  const name = viaRelay ? `smarthost ${target}` : `port ${hp.port} to ${hp.host}`;
  const r = await greeting(hp.host, hp.port, viaRelay && config.outbound.smarthost_tls === 'tls', Math.max(timeoutMs, 5000));
  if (r.line && /^220[ -]/.test(r.line)) return [{ area: 'outbound', name, status: 'ok', message: `reachable: ${r.line.slice(0, 80)}` }];
  const fix = viaRelay
    ? `check outbound.smarthost (${smarthost}), the relay's firewall and credentials`
    : 'many VPS providers block outbound port 25: ask yours to lift the block, or relay through a smarthost (set [outbound] smarthost = "relay.example.net:587", smarthost_user and smarthost_password_file)';
  return [{ area: 'outbound', name, status: 'fail', message: r.line ? `unexpected greeting: ${r.line.slice(0, 80)}` : `no SMTP greeting (${r.tlsError ?? r.error})`, fix }];
}

// ---- TLS ----------------------------------------------------------------------------------------

export function checkTls(config: Config, now: number): Check[] {
  const out: Check[] = [];
  const { cert: certPath, key: keyPath } = config.tls;
  let cert: X509Certificate;
  let keyPem: string;
  try {
    cert = new X509Certificate(readFileSync(certPath));
  } catch (err: any) {
    return [{ area: 'tls', name: 'certificate', status: 'fail', message: `cannot read ${certPath}: ${err.code ?? err.message}`, fix: `run 'letterbox init' to create a self-signed certificate, or point tls.cert at your certificate (readable by the letterbox user)` }];
  }
  try {
    keyPem = readFileSync(keyPath, 'utf8');
  } catch (err: any) {
    return [{ area: 'tls', name: 'private key', status: 'fail', message: `cannot read ${keyPath}: ${err.code ?? err.message}`, fix: `make tls.key readable by the user Letterbox runs as (chown letterbox ${keyPath}; chmod 600 ${keyPath})` }];
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
      out.push({ area: 'tls', name: 'key pair', status: 'fail', message: `${keyPath} is not the key of ${certPath}`, fix: 'install the certificate together with its own private key' });
    } else out.push({ area: 'tls', name: 'key pair', status: 'ok', message: 'certificate and private key match' });
  } catch (err: any) {
    out.push({ area: 'tls', name: 'key pair', status: 'fail', message: `unreadable private key: ${err.message}`, fix: `replace ${keyPath} with a PEM private key` });
  }
  const expires = Date.parse(cert.validTo);
  const days = Math.floor((expires - now) / 86400000);
  if (expires <= now) out.push({ area: 'tls', name: 'expiry', status: 'fail', message: `expired on ${new Date(expires).toISOString()}`, fix: 'renew it (enable [acme], or install a new certificate and restart Letterbox)' });
  else if (Date.parse(cert.validFrom) > now) out.push({ area: 'tls', name: 'expiry', status: 'fail', message: `not valid before ${cert.validFrom}`, fix: "check this machine's clock (timedatectl)" });
  else if (days < 14) out.push({ area: 'tls', name: 'expiry', status: 'warn', message: `expires in ${days} days (${new Date(expires).toISOString()})`, fix: 'renew it soon (enable [acme] for automatic renewal)' });
  else out.push({ area: 'tls', name: 'expiry', status: 'ok', message: `valid for ${days} more days` });
  if (cert.checkHost(config.hostname)) out.push({ area: 'tls', name: 'name', status: 'ok', message: `covers ${config.hostname}` });
  else out.push({ area: 'tls', name: 'name', status: 'fail', message: `does not cover ${config.hostname} (it names ${cert.subjectAltName ?? cert.subject})`, fix: `get a certificate for ${config.hostname} (enable [acme], or delete ${certPath} and ${keyPath} and run 'letterbox init' for a self-signed one)` });
  if (cert.issuer === cert.subject && cert.verify(cert.publicKey)) {
    out.push({ area: 'tls', name: 'issuer', status: 'warn', message: 'self-signed: mail clients warn, and senders enforcing MTA-STS or DANE will not deliver', fix: 'enable ACME: set [acme] enabled = true and email = "you@example.com", open port 80, restart' });
  } else out.push({ area: 'tls', name: 'issuer', status: 'ok', message: `issued by ${cert.issuer.split('\n').find((l) => l.startsWith('CN=')) ?? cert.issuer.split('\n')[0]}` });
  return out;
}

// ---- DNS of each domain -------------------------------------------------------------------------

const dot = (s: string) => s.toLowerCase().replace(/\.$/, '');

async function lookup(r: Resolver, name: string, type: string): Promise<{ values: any[]; error?: string }> {
  try {
    return { values: (await r.resolve(name, type)) ?? [] };
  } catch (err: any) {
    if (isNoData(err)) return { values: [] };
    return { values: [], error: `${type} lookup of ${name} failed (${err?.code ?? err?.message})` };
  }
}

const txtOf = (values: any[]): string[] => values.map((v) => (Array.isArray(v) ? v.join('') : String(v)));

async function addressesOf(r: Resolver, name: string): Promise<string[]> {
  const [a, aaaa] = await Promise.all([lookup(r, name, 'A'), lookup(r, name, 'AAAA')]);
  return [...a.values, ...aaaa.values].map(String);
}

async function checkDomain(config: Config, r: Resolver, d: DoctorDomain): Promise<Check[]> {
  const out: Check[] = [];
  const c = (name: string, status: Status, message: string, fix?: string) => out.push({ area: 'dns', name: `${d.name} ${name}`, status, message, ...(fix ? { fix } : {}) });
  const want = (purpose: string) => d.records.filter((x) => x.purpose === purpose);
  const show = (x: DnsRecord) => `${x.name}. ${x.type} ${x.priority !== undefined ? x.priority + ' ' : ''}${x.type === 'TXT' ? `"${x.value}"` : x.value}`;

  // MX
  const mx = await lookup(r, d.name, 'MX');
  const exch = mx.values.map((x: any) => dot(x.exchange));
  if (mx.error) c('MX', 'fail', mx.error, 'check dns.servers and the network; run doctor again');
  else if (exch.includes(dot(config.hostname))) c('MX', 'ok', `points to ${config.hostname}`);
  else c('MX', 'fail', exch.length ? `points to ${exch.join(', ')}, not ${config.hostname}` : 'no MX record', `publish: ${want('mx').map(show).join('; ')}`);

  // SPF
  const spfLookup = await lookup(r, d.name, 'TXT');
  const spf = txtOf(spfLookup.values).filter((t) => /^v=spf1(\s|$)/i.test(t));
  const spfWant = want('spf').map(show).join('; ');
  if (spfLookup.error) c('SPF', 'fail', spfLookup.error, 'check dns.servers and the network');
  else if (spf.length === 0) c('SPF', 'fail', 'no SPF record (receivers will treat our mail as unauthenticated)', `publish: ${spfWant}`);
  else if (spf.length > 1) c('SPF', 'fail', `${spf.length} SPF records (a permanent error for receivers)`, `keep exactly one: ${spfWant}`);
  else {
    const missing = (await spfUnauthorised(r.resolve, d.name, config.ips, dot(config.hostname))).map((m) => m.ip);
    if (missing.length) c('SPF', 'fail', `"${spf[0]}" does not authorise ${missing.join(', ')}`, `publish: ${spfWant}`);
    else if (/[+?]all\b/i.test(spf[0]) || !/\sall\b|[-~]all\b/i.test(spf[0])) c('SPF', 'warn', `"${spf[0]}" does not end in -all or ~all: anyone may send as ${d.name}`, `publish: ${spfWant}`);
    else c('SPF', 'ok', `authorises ${config.ips.join(', ') || '(no ips configured)'}`);
  }

  // DKIM, one per active selector
  for (const k of want('dkim')) {
    const sel = k.name.split('._domainkey.')[0];
    const l = await lookup(r, k.name, 'TXT');
    const found = txtOf(l.values);
    const wantP = tags(k.value).get('p');
    const state = d.dkimStates?.[sel] ?? 'active';
    const bad: Status = state === 'active' ? 'fail' : 'warn';
    const note = state === 'pending' ? ' (a new key of a rotation: signing switches to it once published and verified)' : state === 'retiring' ? ' (a replaced key, kept published for the grace period)' : '';
    if (l.error) c(`DKIM ${sel}`, 'fail', l.error, 'check dns.servers and the network');
    else if (found.length === 0) c(`DKIM ${sel}`, bad, `no TXT record at ${k.name}${note}`, `publish: ${show(k)}`);
    else if (!found.some((f) => tags(f).get('p') === wantP)) c(`DKIM ${sel}`, bad, `${k.name} holds a different key${note}`, `replace it with: ${show(k)}`);
    else c(`DKIM ${sel}`, 'ok', 'published key matches');
  }

  // TLS-RPT (RFC 8460; with [acme] enabled it is checked with the MTA-STS records)
  const rpt = want('tlsrpt')[0];
  if (rpt && !(config.acme.enabled && config.acme.mta_sts_mode !== 'none')) {
    const found = txtOf((await lookup(r, rpt.name, 'TXT')).values).filter((t) => /^v=TLSRPTv1/i.test(t));
    if (found.length === 1) c('TLS-RPT', 'ok', found[0]);
    else c('TLS-RPT', 'warn', found.length ? `${found.length} TLS-RPT records` : 'no TLS-RPT record: senders do not report failed TLS deliveries to us', `publish: ${show(rpt)}`);
  }

  // DMARC
  const dm = want('dmarc')[0];
  if (dm) {
    const l = await lookup(r, dm.name, 'TXT');
    const found = txtOf(l.values).filter((t) => /^v=DMARC1/i.test(t));
    if (l.error) c('DMARC', 'fail', l.error, 'check dns.servers and the network');
    else if (found.length === 0) c('DMARC', 'fail', `no DMARC record at ${dm.name}`, `publish: ${show(dm)}`);
    else if (found.length > 1) c('DMARC', 'fail', `${found.length} DMARC records (receivers ignore them all)`, `keep exactly one: ${show(dm)}`);
    else if ((tags(found[0]).get('p') ?? 'none').toLowerCase() === 'none') c('DMARC', 'warn', `policy p=none: spoofed mail from ${d.name} is not rejected`, `once reports look clean, publish: ${show(dm)}`);
    else c('DMARC', 'ok', found[0]);
  }
  return out;
}

/**
 * SPF for the names we greet with: bounces and DSNs leave with an empty envelope sender, so
 * receivers check SPF against the EHLO name. A name that is also one of our domains is covered by
 * that domain's own SPF check.
 */
async function checkHeloSpf(config: Config, r: Resolver, domains: DoctorDomain[]): Promise<Check[]> {
  const out: Check[] = [];
  const ours = new Set(domains.map((d) => dot(d.name)));
  for (const want of heloSpfRecords({ domain: '', hostname: config.hostname, ips: config.ips, sourceIps: config.outbound.source_ips }).filter((x) => !ours.has(x.name))) {
    const c = (status: Status, message: string, fix?: string) => out.push({ area: 'dns', name: `host SPF ${want.name}`, status, message, ...(fix ? { fix } : {}) });
    const publish = `publish: ${want.name}. TXT "${want.value}"`;
    const l = await lookup(r, want.name, 'TXT');
    const spf = txtOf(l.values).filter((t) => /^v=spf1(\s|$)/i.test(t));
    if (l.error) c('fail', l.error, 'check dns.servers and the network');
    else if (spf.length === 0) c('warn', `no SPF record for the host name: bounces and DSNs (empty envelope sender) get SPF "none" and may be refused`, publish);
    else if (spf.length > 1) c('warn', `${spf.length} SPF records at the host name (a permanent error for receivers)`, `keep exactly one: ${publish.slice(9)}`);
    else {
      const ips = dot(want.name) === dot(config.hostname) ? config.ips : Object.entries(config.outbound.source_ips).filter(([, n]) => dot(n) === want.name).map(([ip]) => ip);
      const missing = (await spfUnauthorised(r.resolve, want.name, ips, want.name)).map((m) => m.ip);
      if (missing.length) c('warn', `"${spf[0]}" does not authorise ${missing.join(', ')}`, publish);
      else c('ok', spf[0]);
    }
  }
  return out;
}

export async function checkDomains(config: Config, r: Resolver, domains: DoctorDomain[]): Promise<Check[]> {
  if (domains.length === 0) return [{ area: 'dns', name: 'domains', status: 'skip', message: 'no domains yet', fix: "add one: letterbox domain add example.com" }, ...(await checkHeloSpf(config, r, domains))];
  return [...(await Promise.all(domains.map((d) => checkDomain(config, r, d)))).flat(), ...(await checkHeloSpf(config, r, domains))];
}

// ---- MTA-STS and TLS-RPT (when Letterbox hosts the policies: [acme] enabled) ------------------------

function fetchPolicy(host: string, port: number, servername: string, timeoutMs: number): Promise<{ status?: number; body?: string; covers?: boolean; error?: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest({ host, port, path: '/.well-known/mta-sts.txt', servername, headers: { host: servername }, rejectUnauthorized: false, timeout: timeoutMs }, (res) => {
      let body = '';
      const cert = (res.socket as any)?.getPeerX509Certificate?.() as X509Certificate | undefined;
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        resolve({ status: res.statusCode, body, covers: cert ? !!cert.checkHost(servername) : undefined });
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: any) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

export async function checkMtaSts(config: Config, r: Resolver, domains: DoctorDomain[], timeoutMs: number): Promise<Check[]> {
  if (!config.acme.enabled || config.acme.mta_sts_mode === 'none' || domains.length === 0) return [];
  const policy = mtaStsPolicy({ mode: config.acme.mta_sts_mode, mx: [config.hostname], maxAge: config.acme.mta_sts_max_age });
  const listen = parseHostPort(config.acme.https_listen[0] ?? '');
  const ours = new Set([...config.ips, ...(await addressesOf(r, config.hostname))]);
  const out: Check[] = [];
  for (const d of domains) {
    const c = (name: string, status: Status, message: string, fix?: string) => out.push({ area: 'mta-sts', name: `${d.name} ${name}`, status, message, ...(fix ? { fix } : {}) });
    const host = `mta-sts.${d.name}`;
    const addrs = await addressesOf(r, host);
    if (addrs.some((a) => ours.has(a))) c('host', 'ok', `${host} points here`);
    else c('host', 'warn', addrs.length ? `${host} points to ${addrs.join(', ')}, not here` : `${host} does not resolve`, `publish: ${host}. CNAME ${config.hostname}. (then the ACME certificate gains the name)`);
    const txt = txtOf((await lookup(r, `_mta-sts.${d.name}`, 'TXT')).values).filter((t) => /^v=STSv1/i.test(t));
    const wantTxt = `_mta-sts.${d.name}. TXT "v=STSv1; id=${mtaStsRecordId(policy)}"`;
    if (txt.length === 1) c('TXT', 'ok', txt[0]);
    else c('TXT', 'warn', txt.length ? `${txt.length} MTA-STS records` : 'no _mta-sts TXT record: senders do not look for the policy', `publish: ${wantTxt}`);
    const rpt = txtOf((await lookup(r, `_smtp._tls.${d.name}`, 'TXT')).values).filter((t) => /^v=TLSRPTv1/i.test(t));
    if (rpt.length === 1) c('TLS-RPT', 'ok', rpt[0]);
    else c('TLS-RPT', 'warn', 'no TLS-RPT record: no reports about failed TLS deliveries to us', `publish: _smtp._tls.${d.name}. TXT "v=TLSRPTv1; rua=mailto:${config.reports.tls_address || 'postmaster'}@${d.name}"`);
    if (listen) {
      const got = await fetchPolicy(probeHost(listen.host), listen.port, host, timeoutMs);
      if (got.status === 200 && got.body === policy && got.covers) c('policy', 'ok', `served on ${config.acme.https_listen[0]} (mode ${config.acme.mta_sts_mode})`);
      else if (got.status === 200 && got.body === policy) c('policy', 'warn', `served, but the certificate does not cover ${host}: senders will ignore the policy`, `make ${host} point here; ACME then adds it to the certificate`);
      else c('policy', 'fail', got.error ? `not served (${got.error})` : `answered ${got.status}`, `start Letterbox with [acme] enabled; it serves https://${host}/.well-known/mta-sts.txt on acme.https_listen`);
    }
  }
  return out;
}

// ---- reverse DNS --------------------------------------------------------------------------------

export async function checkReverseDns(config: Config, r: Resolver): Promise<Check[]> {
  const ips = config.ips.filter((ip) => !ip.startsWith('127.') && ip !== '::1');
  if (ips.length === 0) return [{ area: 'rdns', name: 'ips', status: 'skip', message: 'no public ips configured', fix: 'list this server\'s public addresses in "ips" in the config' }];
  return Promise.all(
    ips.map(async (ip): Promise<Check> => {
      const name = `PTR ${ip}`;
      const fix = `ask your hosting provider to set the reverse DNS (PTR) of ${ip} to ${config.hostname}, and publish ${config.hostname} ${isIPv6(ip) ? 'AAAA' : 'A'} ${ip}`;
      let ptrs: string[];
      try {
        ptrs = (await r.reverse(ip)).map(dot);
      } catch (err: any) {
        if (isNoData(err)) return { area: 'rdns', name, status: 'fail', message: 'no PTR record: many receivers reject mail from addresses without reverse DNS', fix };
        return { area: 'rdns', name, status: 'fail', message: `reverse lookup failed (${err?.code ?? err?.message})`, fix: 'check dns.servers and the network; run doctor again' };
      }
      if (ptrs.length === 0) return { area: 'rdns', name, status: 'fail', message: 'no PTR record', fix };
      const confirmed: string[] = [];
      for (const p of ptrs) if ((await addressesOf(r, p)).includes(ip)) confirmed.push(p);
      if (confirmed.length === 0) return { area: 'rdns', name, status: 'fail', message: `PTR ${ptrs.join(', ')} does not resolve back to ${ip} (not forward-confirmed)`, fix };
      if (!confirmed.includes(dot(config.hostname))) return { area: 'rdns', name, status: 'warn', message: `forward-confirmed as ${confirmed.join(', ')}, but the EHLO name is ${config.hostname}`, fix };
      return { area: 'rdns', name, status: 'ok', message: `${config.hostname}, forward-confirmed` };
    }),
  );
}

// ---- DNS blocklists ------------------------------------------------------------------------------

function reverseName(ip: string): string | null {
  if (!isIPv6(ip)) return ip.split('.').reverse().join('.');
  const [head, tail] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  if (h.some((g) => g.includes('.')) || t.some((g) => g.includes('.'))) return null;
  const groups = [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t].map((g) => g.padStart(4, '0'));
  return groups.join('').split('').reverse().join('.');
}

export async function checkBlocklists(config: Config, r: Resolver, lists: string[]): Promise<Check[]> {
  if (lists.length === 0) return [];
  const ips = config.ips.filter((ip) => !ip.startsWith('127.') && ip !== '::1');
  if (ips.length === 0) return [{ area: 'dnsbl', name: 'ips', status: 'skip', message: 'no public ips configured' }];
  const jobs: Promise<Check>[] = [];
  for (const ip of ips) {
    const rev = reverseName(ip);
    if (!rev) continue;
    for (const list of lists) {
      jobs.push(
        (async (): Promise<Check> => {
          const name = `${ip} on ${list}`;
          let answers: string[];
          try {
            answers = ((await r.resolve(`${rev}.${list}`, 'A')) ?? []).map(String);
          } catch (err: any) {
            if (isNoData(err)) return { area: 'dnsbl', name, status: 'ok', message: 'not listed' };
            return { area: 'dnsbl', name, status: 'skip', message: `lookup failed (${err?.code ?? err?.message})` };
          }
          // 127.255.255.x (Spamhaus) and similar answers mean "query refused", typically because it came
          // through a large public resolver: not a listing.
          if (answers.length === 0) return { area: 'dnsbl', name, status: 'ok', message: 'not listed' };
          if (answers.every((a) => a.startsWith('127.255.255.') || !a.startsWith('127.'))) {
            return { area: 'dnsbl', name, status: 'warn', message: `the list refused the query (answer ${answers.join(', ')}); public resolvers are refused by some lists`, fix: 'set dns.servers to a local or non-public resolver (e.g. a local unbound) to query blocklists' };
          }
          return { area: 'dnsbl', name, status: 'fail', message: `listed (${answers.join(', ')}): many receivers will refuse mail from ${ip}`, fix: `find why on ${list}'s lookup page, fix the cause (open relay, compromised account, missing rDNS), then request delisting` };
        })(),
      );
    }
  }
  return Promise.all(jobs);
}

// ---- Dovecot ------------------------------------------------------------------------------------

export async function checkDovecot(config: Config): Promise<Check[]> {
  if (!config.dovecot.managed) return [{ area: 'dovecot', name: 'dovecot', status: 'skip', message: 'dovecot.managed = false: Dovecot is run by another unit' }];
  const out: Check[] = [];
  const bin = config.dovecot.binary;
  const install = 'apt-get install dovecot-imapd dovecot-lmtpd dovecot-sieve (or run install.sh)';
  try {
    accessSync(bin, fsc.X_OK);
  } catch {
    return [{ area: 'dovecot', name: 'binary', status: 'fail', message: `${bin} is missing or not executable`, fix: install }];
  }
  try {
    const { stdout } = await run(bin, ['--version'], { timeout: 5000 });
    const v = stdout.trim();
    const series = dovecotSeries(v);
    if (series) out.push({ area: 'dovecot', name: 'version', status: 'ok', message: `${v} (configuration written in Dovecot ${series} syntax)` });
    else out.push({ area: 'dovecot', name: 'version', status: 'fail', message: `Dovecot ${v}: Letterbox generates Dovecot 2.3 and 2.4 configuration only`, fix: "use the distribution's Dovecot on Debian 12/13 or Ubuntu 24.04/26.04" });
  } catch (err: any) {
    out.push({ area: 'dovecot', name: 'version', status: 'fail', message: `${bin} --version failed: ${err.message}`, fix: install });
  }
  const p = dovecotPaths(config.data_dir);
  if (existsSync(p.config)) out.push({ area: 'dovecot', name: 'config', status: 'ok', message: p.config });
  else out.push({ area: 'dovecot', name: 'config', status: 'fail', message: `${p.config} is missing`, fix: "run 'letterbox init' (or start Letterbox: it writes the file)" });
  if (await unixConnects(p.lmtpSocket)) out.push({ area: 'dovecot', name: 'lmtp', status: 'ok', message: `LMTP socket ${p.lmtpSocket} accepts connections` });
  else out.push({ area: 'dovecot', name: 'lmtp', status: 'fail', message: `no LMTP socket at ${p.lmtpSocket}: Dovecot is not running, so local delivery fails`, fix: 'start Letterbox (it starts Dovecot); its log shows lines with "component":"dovecot"' });
  return out;
}

// ---- disk ---------------------------------------------------------------------------------------

export function checkDisk(config: Config, thresholds = { failBytes: 512 * 1024 ** 2, warnBytes: 2 * 1024 ** 3, failPct: 2, warnPct: 10 }): Check[] {
  let s: ReturnType<typeof statfsSync>;
  try {
    s = statfsSync(config.data_dir);
  } catch (err: any) {
    return [{ area: 'disk', name: config.data_dir, status: 'fail', message: `cannot stat ${config.data_dir}: ${err.code ?? err.message}`, fix: "run 'letterbox init'" }];
  }
  const free = s.bavail * s.bsize;
  const pct = s.blocks ? (s.bavail / s.blocks) * 100 : 100;
  const gb = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GB`;
  const out: Check[] = [];
  const fix = `free space on the file system of ${config.data_dir} (old backups, logs: journalctl --vacuum-size=200M) or grow the disk`;
  if (free < thresholds.failBytes || pct < thresholds.failPct) out.push({ area: 'disk', name: 'space', status: 'fail', message: `only ${gb(free)} (${pct.toFixed(1)}%) free for ${config.data_dir}: mail will be refused soon`, fix });
  else if (free < thresholds.warnBytes || pct < thresholds.warnPct) out.push({ area: 'disk', name: 'space', status: 'warn', message: `${gb(free)} (${pct.toFixed(1)}%) free for ${config.data_dir}`, fix });
  else out.push({ area: 'disk', name: 'space', status: 'ok', message: `${gb(free)} (${pct.toFixed(0)}%) free` });
  if (s.files > 0) {
    const ipct = (s.ffree / s.files) * 100;
    if (ipct < thresholds.failPct) out.push({ area: 'disk', name: 'inodes', status: 'fail', message: `only ${ipct.toFixed(1)}% inodes free (each message is a file)`, fix });
    else if (ipct < thresholds.warnPct) out.push({ area: 'disk', name: 'inodes', status: 'warn', message: `${ipct.toFixed(1)}% inodes free`, fix });
    else out.push({ area: 'disk', name: 'inodes', status: 'ok', message: `${ipct.toFixed(0)}% inodes free` });
  }
  return out;
}

// ---- database and queue -------------------------------------------------------------------------

export function checkDatabase(db: DB, now: number): Check[] {
  const out: Check[] = [];
  try {
    const rows = db.pragma('quick_check') as { quick_check: string }[];
    const res = rows.map((r) => r.quick_check);
    if (res.length === 1 && res[0] === 'ok') out.push({ area: 'database', name: 'quick_check', status: 'ok', message: 'ok' });
    else out.push({ area: 'database', name: 'quick_check', status: 'fail', message: res.slice(0, 3).join('; '), fix: "stop Letterbox and restore the latest backup ('letterbox restore FILE'); keep a copy of the damaged database" });
  } catch (err: any) {
    out.push({ area: 'database', name: 'quick_check', status: 'fail', message: err.message, fix: 'check the database file and its permissions' });
  }
  if (hasTable(db, 'outbound_queue')) {
    const q = queueBacklog(db);
    const ageH = q.oldest ? (now - q.oldest) / 3600000 : 0;
    const msg = `${q.n} waiting (${q.deferred ?? 0} deferred)${q.oldest ? `, oldest ${ageH.toFixed(1)} h` : ''}`;
    if (ageH > 24) out.push({ area: 'queue', name: 'outbound', status: 'warn', message: msg, fix: "see why with 'letterbox queue list'; outbound port 25 may be blocked (set [outbound] smarthost)" });
    else out.push({ area: 'queue', name: 'outbound', status: 'ok', message: msg });
  }
  return out;
}

// ---- output -------------------------------------------------------------------------------------

const MARK: Record<Status, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: '--  ' };

export function formatReport(r: DoctorReport): string {
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${MARK[c.status]}  ${c.area.padEnd(8)} ${c.name}: ${c.message}`);
    if (c.fix && (c.status === 'fail' || c.status === 'warn')) lines.push(`            fix: ${c.fix}`);
  }
  lines.push('');
  lines.push(r.ok ? (r.warnings ? `no failures, ${r.warnings} warning(s)` : 'everything looks right') : `${r.failures} failure(s), ${r.warnings} warning(s)`);
  return lines.join('\n') + '\n';
}
