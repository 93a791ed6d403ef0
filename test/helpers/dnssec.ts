// A DNSSEC-signed test zone for DANE tests, on real Debian daemons: the zone is signed with
// ldns-signzone (ldnsutils, key from ldns-keygen), served by an authoritative `nsd`, and resolved by a
// validating `unbound` that trusts the zone's key (trust-anchor) and reaches nsd through a stub zone.
// Both run unprivileged-style (no chroot, no user switch) on loopback ports of their own.
// `bogus` owner names get their RRSIGs corrupted after signing, so unbound answers SERVFAIL for them.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './appliance.ts';
import { createSecureResolver } from '../../src/dns/dnssec.ts';

export class SignedZone {
  readonly zone: string;
  private lines: string[];
  private bogus: string[];
  dir = '';
  nsdPort = 0;
  port = 0; // unbound's
  private procs: ChildProcess[] = [];
  private logs: string[] = [];

  /** `lines`: zone-file records, names absolute ("mx.dane.test.") or relative to the zone. */
  constructor(zone: string, lines: string[], opts: { bogus?: string[] } = {}) {
    this.zone = zone.replace(/\.$/, '');
    this.lines = lines;
    this.bogus = (opts.bogus ?? []).map((n) => n.toLowerCase().replace(/\.$/, '') + '.');
  }

  /** The value for config `dns.servers`: the validating resolver. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.dir = mkdtempSync(join(tmpdir(), 'lbt-dnssec-'));
    chmodSync(this.dir, 0o755);
    const z = this.zone;
    const file = join(this.dir, `${z}.zone`);
    writeFileSync(file, [`$ORIGIN ${z}.`, '$TTL 300', `@ IN SOA ns.${z}. hostmaster.${z}. 1 3600 600 86400 300`, `@ IN NS ns.${z}.`, `ns IN A 127.0.0.1`, ...this.lines, ''].join('\n'));
    const base = execFileSync('ldns-keygen', ['-a', 'ECDSAP256SHA256', '-k', z], { cwd: this.dir }).toString().trim();
    execFileSync('ldns-signzone', ['-f', `${file}.signed`, file, base], { cwd: this.dir });
    if (this.bogus.length) {
      // Flip one character of each RRSIG's signature at the bogus names: the signature no longer verifies.
      const signed = readFileSync(`${file}.signed`, 'utf8').split('\n').map((l) => {
        const f = l.split(/\s+/);
        if (f[3] === 'RRSIG' && f[4] !== 'NSEC' && this.bogus.includes(f[0].toLowerCase())) {
          const sig = f[f.length - 1];
          const i = Math.floor(sig.length / 2);
          f[f.length - 1] = sig.slice(0, i) + (sig[i] === 'A' ? 'B' : 'A') + sig.slice(i + 1);
          return f.join('\t');
        }
        return l;
      });
      writeFileSync(`${file}.signed`, signed.join('\n'));
    }
    const dnskey = readFileSync(join(this.dir, `${base}.key`), 'utf8').split('\n').find((l) => /DNSKEY/.test(l) && !l.startsWith(';'))!.replace(/\s*;.*$/, '').replace(/\s+/g, ' ').trim();

    this.nsdPort = await freePort();
    writeFileSync(
      join(this.dir, 'nsd.conf'),
      `server:
  ip-address: 127.0.0.1@${this.nsdPort}
  port: ${this.nsdPort}
  username: ""
  chroot: ""
  zonesdir: "${this.dir}"
  database: ""
  zonelistfile: "${this.dir}/zone.list"
  pidfile: "${this.dir}/nsd.pid"
  xfrdfile: "${this.dir}/xfrd.state"
  xfrdir: "${this.dir}"
  logfile: "${this.dir}/nsd.log"
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: ${z}
  zonefile: ${z}.zone.signed
`,
    );
    this.port = await freePort();
    writeFileSync(
      join(this.dir, 'unbound.conf'),
      `server:
  interface: 127.0.0.1@${this.port}
  port: ${this.port}
  username: ""
  chroot: ""
  directory: "${this.dir}"
  pidfile: "${this.dir}/unbound.pid"
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  do-ip6: no
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor: "${dnskey}"
  qname-minimisation: no
  so-reuseport: no
  outgoing-range: 64
  val-log-level: 2
  # unbound answers the special-use name "test." itself by default; let the stub zone answer.
  local-zone: "test." nodefault
  cache-max-ttl: 5
  cache-max-negative-ttl: 5
remote-control:
  control-enable: no
stub-zone:
  name: "${z}"
  stub-addr: 127.0.0.1@${this.nsdPort}
`,
    );
    this.spawn('nsd', ['-d', '-c', join(this.dir, 'nsd.conf')]);
    this.spawn('unbound', ['-d', '-c', join(this.dir, 'unbound.conf')]);
    // Ready when unbound answers the zone's SOA validated (AD).
    const r = createSecureResolver({ servers: [this.server], timeoutMs: 500, clock: { now: () => Date.now() }, cacheMs: 0 });
    const until = Date.now() + 20000;
    for (;;) {
      const v = await r.lookup(z, 'SOA');
      if (v.status === 'ok' && v.secure) break;
      if (Date.now() > until) throw new Error(`signed zone ${z} not served validated: ${JSON.stringify(v)}\n${this.logs.join('')}\n${this.nsdLog()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    return this;
  }

  private spawn(cmd: string, args: string[]) {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout!.on('data', (d) => this.logs.push(`${cmd}: ${d}`));
    p.stderr!.on('data', (d) => this.logs.push(`${cmd}: ${d}`));
    p.on('error', (e) => this.logs.push(`${cmd}: ${e.message}\n`));
    this.procs.push(p);
  }

  private nsdLog(): string {
    try {
      return readFileSync(join(this.dir, 'nsd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map(
        (p) =>
          new Promise<void>((res) => {
            if (p.exitCode !== null || p.signalCode !== null) return res();
            p.once('exit', () => res());
            p.kill('SIGTERM');
          }),
      ),
    );
    if (this.dir && readdirSync(this.dir).length >= 0) rmSync(this.dir, { recursive: true, force: true });
  }
}
