// DANE for outbound delivery (RFC 7672, issue #18 item 5). The pure decisions (TLSA usability,
// certificate matching for DANE-EE and DANE-TA, what a host's DNS answers mean) are tested without
// sockets; then the queue delivers through a real DNSSEC chain: a zone signed with ldns-signzone,
// served by nsd, validated by unbound (the appliance's dns.servers), to real smtp-server MX hosts on
// loopback addresses 127.0.0.2… with their own certificates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import dnsPacket from 'dns-packet';
import { createAppContext, type AppContext } from '../src/context.ts';
import { loadConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/log.ts';
import type { Queue } from '../src/queue/engine.ts';
import { certMatches, decideHost, tlsaName, usableTlsa, verifyPeer } from '../src/queue/dane.ts';
import { createSecureResolver, parseServer, verdictOf, type TlsaRecord } from '../src/dns/dnssec.ts';
import { connectionOptions } from '../src/queue/smtp-client.ts';
import { SignedZone } from './helpers/dnssec.ts';
import { TestDns } from './helpers/dns.ts';
import { checkDane } from '../src/doctor/index.ts';
import { testCert } from './helpers/sink.ts';
import { freePort } from './helpers/appliance.ts';

const certDir = mkdtempSync(join(tmpdir(), 'lbt-dane-certs-'));
const sha = (alg: string, b: Buffer) => createHash(alg).update(b).digest();
const spki = (pem: string) => new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
const der = (pem: string) => new X509Certificate(pem).raw;
const rec = (usage: number, selector: number, matchingType: number, data: Buffer): TlsaRecord => ({ usage, selector, matchingType, data });

/** A CA (CA:TRUE) and a leaf for `names` it issued. */
function caAndLeaf(names: string[], days = 2): { ca: string; leaf: string; key: string } {
  const d = mkdtempSync(join(certDir, 'ca-'));
  const o = { stdio: 'ignore' as const, cwd: d };
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '3', '-subj', '/CN=Test DANE CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', 'ca.key', '-out', 'ca.pem'], o);
  execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${names[0]}`, '-keyout', 'leaf.key', '-out', 'leaf.csr'], o);
  writeFileSync(join(d, 'ext.cnf'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nbasicConstraints=CA:FALSE\n`);
  execFileSync('openssl', ['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', String(days), '-extfile', 'ext.cnf', '-out', 'leaf.pem'], o);
  return { ca: readFileSync(join(d, 'ca.pem'), 'utf8'), leaf: readFileSync(join(d, 'leaf.pem'), 'utf8'), key: readFileSync(join(d, 'leaf.key'), 'utf8') };
}

// ---- pure decisions -----------------------------------------------------------------------------

const self = testCert(['mx.example.test']);
const other = testCert(['mx.example.test']);
const pki = caAndLeaf(['mx.example.test']);
const chainOf = (...pems: string[]) => pems.map((p) => new X509Certificate(p));
const now = new Date();

test('usableTlsa: only DANE-TA(2)/DANE-EE(3) with known selector, matching type and digest length (RFC 7672 §3.1.3)', () => {
  const h = sha('sha256', Buffer.from('x'));
  const all = [rec(0, 0, 1, h), rec(1, 1, 1, h), rec(2, 0, 1, h), rec(3, 1, 1, h), rec(3, 1, 2, sha('sha512', Buffer.from('x'))), rec(3, 2, 1, h), rec(3, 1, 3, h), rec(3, 1, 1, h.subarray(0, 20)), rec(3, 0, 0, Buffer.alloc(0))];
  assert.deepEqual(usableTlsa(all).map((r) => `${r.usage} ${r.selector} ${r.matchingType}`), ['2 0 1', '3 1 1', '3 1 2']);
  assert.equal(tlsaName('MX.Example.TEST.', 25), '_25._tcp.mx.example.test');
});

test('verifyPeer DANE-EE: SPKI or full certificate, SHA-256/SHA-512/exact; names are ignored; a mismatch says what the certificate hashes to', () => {
  const chain = chainOf(self.cert);
  for (const r of [rec(3, 1, 1, sha('sha256', spki(self.cert))), rec(3, 0, 1, sha('sha256', der(self.cert))), rec(3, 1, 2, sha('sha512', spki(self.cert))), rec(3, 0, 0, der(self.cert)), rec(3, 1, 0, spki(self.cert))]) {
    const v = verifyPeer([r], chain, ['some.other.name'], now);
    assert.ok(v.ok, `${r.usage} ${r.selector} ${r.matchingType} matches`);
    assert.deepEqual(v.outcome, { policy: 'tlsa', result: 'success' });
  }
  const v = verifyPeer([rec(3, 1, 1, sha('sha256', spki(other.cert)))], chain, ['mx.example.test'], now);
  assert.equal(v.ok, false);
  assert.deepEqual(v.outcome, { policy: 'tlsa', result: 'tlsa-invalid' });
  assert.match((v as any).reason, new RegExp(`no TLSA record matched the certificate.*${sha('sha256', spki(self.cert)).toString('hex')}`));
  // PKIX usages are not used for SMTP, even when they would match.
  assert.equal(verifyPeer([rec(1, 1, 1, sha('sha256', spki(self.cert)))], chain, ['mx.example.test'], now).ok, false);
  assert.equal(verifyPeer([rec(3, 1, 1, sha('sha256', spki(self.cert)))], [], ['mx.example.test'], now).ok, false, 'no certificate, no match');
});

test('verifyPeer DANE-TA: the chain must lead (signatures, dates) to the anchor, and the leaf must name the MX host or the domain', () => {
  const chain = chainOf(pki.leaf, pki.ca);
  const ta = rec(2, 0, 1, sha('sha256', der(pki.ca)));
  assert.ok(verifyPeer([ta], chain, ['mx.example.test'], now).ok, '2 0 1 on the CA in the chain');
  assert.ok(verifyPeer([rec(2, 1, 1, sha('sha256', spki(pki.ca)))], chain, ['mx.example.test'], now).ok, '2 1 1');
  assert.ok(verifyPeer([ta], chain, ['other.mx.test', 'mx.example.test'], now).ok, 'the second reference name (recipient domain) counts');
  // The anchor given whole in the record, the server sending only its leaf.
  assert.ok(verifyPeer([rec(2, 0, 0, der(pki.ca))], chainOf(pki.leaf), ['mx.example.test'], now).ok, '2 0 0 not in the chain');
  assert.ok(verifyPeer([rec(2, 1, 0, spki(pki.ca))], chainOf(pki.leaf), ['mx.example.test'], now).ok, '2 1 0 not in the chain');
  const wrongName = verifyPeer([ta], chain, ['mx.elsewhere.test'], now);
  assert.equal(wrongName.ok, false);
  assert.match((wrongName as any).reason, /leads to the trust anchor.*not for mx\.elsewhere\.test/);
  // The leaf must be issued by the anchor: a self-signed leaf next to the CA is not.
  assert.equal(verifyPeer([ta], chainOf(self.cert, pki.ca), ['mx.example.test'], now).ok, false);
  // Dates count for DANE-TA (not for DANE-EE).
  const later = new Date(Date.now() + 10 * 86400_000);
  assert.equal(verifyPeer([ta], chain, ['mx.example.test'], later).ok, false, 'expired leaf');
  assert.ok(verifyPeer([rec(3, 1, 1, sha('sha256', spki(pki.leaf)))], chain, ['x'], later).ok, 'DANE-EE ignores expiry');
  // A 2 x x record naming the leaf itself is not an anchor for it.
  assert.equal(verifyPeer([rec(2, 0, 1, sha('sha256', der(self.cert)))], chainOf(self.cert), ['mx.example.test'], now).ok, false);
  assert.ok(certMatches(ta, new X509Certificate(pki.ca)));
});

test('decideHost: DANE only on a validated MX RRset, validated addresses and validated TLSA; bogus defers; absent or unusable falls back', () => {
  const h = sha('sha256', spki(self.cert));
  const base = { host: 'mx.example.test', name: '_25._tcp.mx.example.test' };
  const okAddr = { status: 'ok' as const, secure: true, records: ['192.0.2.1'] };
  const tl = (records: TlsaRecord[], secure = true) => ({ status: 'ok' as const, secure, records });
  assert.equal(decideHost({ ...base, mxSecure: false, addr: okAddr, tlsa: tl([rec(3, 1, 1, h)]) }).mode, 'none', 'insecure MX: DANE does not apply');
  assert.equal(decideHost({ ...base, mxSecure: true, addr: { ...okAddr, secure: false }, tlsa: tl([rec(3, 1, 1, h)]) }).mode, 'none', 'insecure address');
  const d = decideHost({ ...base, mxSecure: true, addr: okAddr, tlsa: tl([rec(3, 1, 1, h), rec(1, 1, 1, h)]) });
  assert.equal(d.mode, 'dane');
  assert.equal((d as any).records.length, 1, 'only the usable record');
  assert.equal(decideHost({ ...base, mxSecure: true, addr: okAddr, tlsa: tl([rec(3, 1, 1, h)], false) }).mode, 'none', 'unvalidated TLSA is ignored');
  const unusable = decideHost({ ...base, mxSecure: true, addr: okAddr, tlsa: tl([rec(0, 0, 1, h), rec(1, 1, 1, h)]) });
  assert.equal(unusable.mode, 'none');
  assert.match((unusable as any).reason, /unusable.*opportunistic/);
  assert.equal(decideHost({ ...base, mxSecure: true, addr: okAddr, tlsa: { status: 'nodata', secure: true } }).mode, 'none', 'authenticated denial: no DANE');
  const bogus = decideHost({ ...base, mxSecure: true, addr: okAddr, tlsa: { status: 'servfail' } });
  assert.equal(bogus.mode, 'defer');
  assert.deepEqual((bogus as any).outcome, { policy: 'tlsa', result: 'dnssec-invalid' });
  assert.equal(decideHost({ ...base, mxSecure: true, addr: okAddr, tlsa: { status: 'error', message: 'timed out' } }).mode, 'defer', 'TLSA lookup failure: defer (RFC 7672 §2.1.1)');
  assert.equal(decideHost({ ...base, mxSecure: true, addr: { status: 'servfail' }, tlsa: null }).mode, 'defer', 'bogus address');
});

test('verdictOf reads the AD bit and the rcode; parseServer takes dns.servers forms', () => {
  const AD = dnsPacket.AUTHENTIC_DATA;
  assert.deepEqual(verdictOf({ rcode: 'NOERROR', flags: AD, answers: [{ type: 'MX', data: { exchange: 'a' } }, { type: 'RRSIG', data: {} }] }, 'MX'), { status: 'ok', secure: true, records: [{ exchange: 'a' }] });
  assert.deepEqual(verdictOf({ rcode: 'NOERROR', flags: 0, answers: [] }, 'TLSA'), { status: 'nodata', secure: false });
  assert.deepEqual(verdictOf({ rcode: 'NXDOMAIN', flags: AD }, 'TLSA'), { status: 'nxdomain', secure: true });
  assert.deepEqual(verdictOf({ rcode: 'SERVFAIL', flags: 0 }, 'TLSA'), { status: 'servfail' });
  assert.equal(verdictOf({ rcode: 'REFUSED' }, 'TLSA').status, 'error');
  const cn = verdictOf({ rcode: 'NOERROR', flags: AD, questions: [{ name: 'MX.a.test' }], answers: [{ type: 'CNAME', name: 'mx.a.test', data: 'b.a.test' }, { type: 'CNAME', name: 'b.a.test', data: 'c.a.test.' }, { type: 'A', name: 'c.a.test', data: '192.0.2.1' }] }, 'A');
  assert.deepEqual(cn, { status: 'ok', secure: true, records: ['192.0.2.1'], cname: 'c.a.test' }, 'the CNAME chain is followed to the expanded name');
  assert.deepEqual(parseServer('127.0.0.1:5353'), { host: '127.0.0.1', port: 5353 });
  assert.deepEqual(parseServer('10.0.0.1'), { host: '10.0.0.1', port: 53 });
  assert.deepEqual(parseServer('[::1]:54'), { host: '::1', port: 54 });
  assert.deepEqual(parseServer('2001:db8::1'), { host: '2001:db8::1', port: 53 });
});

test('connectionOptions under DANE: STARTTLS required, Web PKI not consulted (the TLSA records decide), SNI = MX host', () => {
  const t = { mx: 'mx.example.test', ip: '192.0.2.1', port: 25, ehlo: 'me', localAddress: null, enforce: true };
  const o = connectionOptions({ ...t, dane: { mode: 'dane', records: [], tlsaName: '_25._tcp.mx.example.test', names: ['mx.example.test'] } }, null, { ca: undefined, connectTimeoutMs: 1, socketTimeoutMs: 1 }) as any;
  assert.equal(o.requireTLS, true);
  assert.equal(o.opportunisticTLS, false);
  assert.equal(o.tls.rejectUnauthorized, false);
  assert.equal(o.tls.servername, 'mx.example.test');
  const plain = connectionOptions({ ...t, enforce: false }, null, { ca: undefined, connectTimeoutMs: 1, socketTimeoutMs: 1 }) as any;
  assert.equal(plain.requireTLS, false);
  assert.equal(plain.opportunisticTLS, true);
});

// ---- end to end: signed zone → unbound → queue → MX hosts ---------------------------------------

interface Mx {
  server: SMTPServer;
  received: { to: string[]; secure: boolean }[];
}

async function mxAt(host: string, port: number, tls: { key: string; cert: string } | null): Promise<Mx> {
  const m: Mx = { server: null as any, received: [] };
  m.server = new SMTPServer({
    ...(tls ? { key: tls.key, cert: tls.cert } : { disabledCommands: ['STARTTLS'], hideSTARTTLS: true }),
    authOptional: true,
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 500,
    onData(stream, session, cb) {
      stream.on('data', () => {});
      stream.on('end', () => {
        m.received.push({ to: session.envelope.rcptTo.map((r) => r.address), secure: session.secure });
        cb();
      });
    },
  });
  m.server.on('error', () => {});
  await new Promise<void>((res) => m.server.listen(port, host, () => res()));
  return m;
}

let zone: SignedZone;
let app: AppContext;
let queue: Queue;
let dir: string;
const mxs: Mx[] = [];
let port: number;
const hosts = { ok: '127.0.0.2', bad: '127.0.0.3', plain: '127.0.0.4', notls: '127.0.0.5', ta: '127.0.0.6', bogus: '127.0.0.7' };
const certs = {
  ok: testCert(['mx-ok.dane.test']),
  bad: testCert(['mx-bad.dane.test']),
  plain: testCert(['mx-plain.dane.test']),
  bogus: testCert(['mx-bogus.dane.test']),
};
const ta = caAndLeaf(['mx-ta.dane.test']);
const stsCert = testCert(['mta-sts.sts.dane.test']);
let sts: HttpsServer;
let stsPort: number;

before(async () => {
  port = await freePort();
  const h = (pem: string) => sha('sha256', spki(pem)).toString('hex');
  const lines: string[] = [];
  for (const [k, ip] of Object.entries(hosts)) lines.push(`${k} IN MX 10 mx-${k}.dane.test.`, `mx-${k} IN A ${ip}`);
  lines.push(`two IN MX 10 mx-bad.dane.test.`, `two IN MX 20 mx-ok.dane.test.`);
  // An MX host that is an alias: the TLSA records at the expanded name count first (the ones at the alias would not match).
  lines.push(`cn IN MX 10 mx-cn.dane.test.`, `mx-cn IN CNAME mx-ok.dane.test.`, `_${port}._tcp.mx-cn IN TLSA 3 1 1 ${h(certs.bad.cert)}`);
  // MTA-STS (enforce) and DANE on one domain: its MX presents a self-signed certificate that only DANE vouches for.
  lines.push(`sts IN MX 10 mx-ok.dane.test.`, `_mta-sts.sts IN TXT "v=STSv1; id=20261207"`, `mta-sts.sts IN A 127.0.0.1`);
  stsPort = await freePort();
  sts = createHttpsServer({ key: stsCert.key, cert: stsCert.cert }, (req, res) => {
    if (req.url === '/.well-known/mta-sts.txt') res.end('version: STSv1\nmode: enforce\nmx: mx-ok.dane.test\nmax_age: 86400\n');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => sts.listen(stsPort, '127.0.0.1', () => r()));
  lines.push(
    `_${port}._tcp.mx-ok IN TLSA 3 1 1 ${h(certs.ok.cert)}`,
    `_${port}._tcp.mx-bad IN TLSA 3 1 1 ${h(certs.ok.cert)}`, // not the certificate mx-bad presents
    `_${port}._tcp.mx-notls IN TLSA 3 1 1 ${h(certs.ok.cert)}`,
    `_${port}._tcp.mx-ta IN TLSA 2 0 1 ${sha('sha256', der(ta.ca)).toString('hex')}`,
    `_${port}._tcp.mx-bogus IN TLSA 3 1 1 ${h(certs.bogus.cert)}`,
  );
  zone = await new SignedZone('dane.test', lines, { bogus: [`_${port}._tcp.mx-bogus.dane.test`] }).start();
  mxs.push(
    await mxAt(hosts.ok, port, certs.ok),
    await mxAt(hosts.bad, port, certs.bad),
    await mxAt(hosts.plain, port, certs.plain),
    await mxAt(hosts.notls, port, null),
    await mxAt(hosts.ta, port, { key: ta.key, cert: ta.leaf + ta.ca }),
    await mxAt(hosts.bogus, port, certs.bogus),
  );
  dir = mkdtempSync(join(tmpdir(), 'lbt-dane-'));
  chmodSync(dir, 0o755);
  const p = async () => `127.0.0.1:${await freePort()}`;
  writeFileSync(
    join(dir, 'letterbox.toml'),
    `hostname = "mail.letterbox.test"
data_dir = "${join(dir, 'data')}"
[listen]
mx = ["${await p()}"]
submission = []
submissions = []
imap = ["${await p()}"]
api = "${await p()}"
[tls]
cert = "${join(dir, 'cert.pem')}"
key = "${join(dir, 'key.pem')}"
[dns]
servers = ["${zone.server}"]
timeout_ms = 3000
[dovecot]
managed = false
[outbound]
port = ${port}
retry_jitter = 0
mta_sts = true
mta_sts_port = ${stsPort}
tls_ca_file = "${join(stsCert.dir, 'cert.pem')}"
poll_interval_ms = 100
ipv4_only = true
`,
  );
  app = await createAppContext(loadConfig({ path: join(dir, 'letterbox.toml') }), { log: silentLogger(), clock: { now: () => Date.now() } });
  queue = app.queue as Queue;
  await queue.start();
});

after(async () => {
  await app?.queue.stop();
  app?.db.close();
  for (const m of mxs) await new Promise<void>((r) => m.server.close(() => r()));
  await new Promise<void>((r) => (sts ? sts.close(() => r()) : r()));
  await zone?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  rmSync(certDir, { recursive: true, force: true });
  for (const c of [self, other, stsCert, ...Object.values(certs)]) rmSync(c.dir, { recursive: true, force: true });
});

async function until<T>(f: () => T | undefined | null | false, what: string, ms = 30000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Enqueues one message to `rcpt` and waits for its first attempt; returns the queue row and that attempt. */
async function send(rcpt: string): Promise<{ row: any; attempt: any }> {
  const message = Buffer.from(`From: a@sender.test\r\nTo: ${rcpt}\r\nSubject: dane\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@sender.test>\r\n\r\nbody\r\n`);
  await queue.enqueue({ message, from: 'a@sender.test', recipients: [rcpt], mailboxId: null, sendingDomain: null, origin: 'forward' });
  const row = await until(() => {
    const r = app.db.prepare('SELECT * FROM outbound_queue WHERE recipient = ? ORDER BY created_at DESC').get(rcpt) as any;
    return r && r.attempts >= 1 && r.status !== 'inflight' ? r : null;
  }, `first attempt to ${rcpt}`);
  const attempt = app.db.prepare('SELECT * FROM outbound_attempts WHERE queue_id = ? ORDER BY id DESC').get(row.id) as any;
  return { row, attempt };
}

test('the signed zone validates through unbound: AD on MX and TLSA, SERVFAIL on the bogus TLSA', async () => {
  const r = createSecureResolver({ servers: [zone.server], timeoutMs: 3000, clock: { now: () => Date.now() }, cacheMs: 0 });
  const mx = await r.lookup('ok.dane.test', 'MX');
  assert.equal(mx.status, 'ok');
  assert.equal((mx as any).secure, true);
  const t = await r.tlsa(`_${port}._tcp.mx-ok.dane.test`);
  assert.equal(t.status, 'ok');
  assert.deepEqual((t as any).records.map((x: TlsaRecord) => [x.usage, x.selector, x.matchingType]), [[3, 1, 1]]);
  assert.deepEqual(await r.tlsa(`_${port}._tcp.mx-plain.dane.test`), { status: 'nxdomain', secure: true }, 'authenticated denial');
  assert.deepEqual(await r.tlsa(`_${port}._tcp.mx-bogus.dane.test`), { status: 'servfail' });
});

test('matching TLSA 3 1 1 → delivered over TLS (the self-signed certificate is accepted because DANE vouches for it)', async () => {
  const { row, attempt } = await send('u@ok.dane.test');
  assert.equal(row.status, 'delivered', row.last_reply);
  assert.ok(attempt.tls_version, 'TLS was used');
  const m = mxs[0].received.find((x) => x.to.includes('u@ok.dane.test'));
  assert.ok(m?.secure, 'received over TLS');
  assert.deepEqual([attempt.tls_policy, attempt.tls_result], ['tlsa', 'success'], 'TLS reporting: DANE policy, success');
});

test('mismatching TLSA → deferred (4.7.5) with a transcript naming the TLSA name, the MX and the certificate hash; the message stays queued and nothing was sent', async () => {
  const { row, attempt } = await send('u@bad.dane.test');
  assert.equal(row.status, 'queued');
  assert.equal(row.last_code, 451);
  assert.match(row.last_reply, /^451 4\.7\.5 DANE: no TLSA record of _\d+\._tcp\.mx-bad\.dane\.test matched the certificate of mx-bad\.dane\.test \[127\.0\.0\.3\]/);
  assert.equal(attempt.outcome, 'deferred');
  assert.match(attempt.transcript, /DANE: _\d+\._tcp\.mx-bad\.dane\.test has 1 usable TLSA record\(s\) \(3 1 1 /);
  assert.match(attempt.transcript, new RegExp(`its SHA-256 of the public key \\(3 1 1\\) is ${sha('sha256', spki(certs.bad.cert)).toString('hex')}`));
  assert.equal(mxs[1].received.length, 0, 'no message went to the host that failed DANE');
  assert.deepEqual([attempt.tls_policy, attempt.tls_result], ['tlsa', 'tlsa-invalid']);
});

test('a host failing DANE is skipped for the next MX: delivered to the second MX, whose certificate matches; nothing went to the first', async () => {
  const before = mxs[1].received.length;
  const { row, attempt } = await send('u@two.dane.test');
  assert.equal(row.status, 'delivered', row.last_reply);
  assert.equal(attempt.mx, 'mx-ok.dane.test');
  assert.ok(mxs[0].received.find((x) => x.to.includes('u@two.dane.test'))?.secure);
  assert.equal(mxs[1].received.length, before);
});

test('DANE takes precedence over MTA-STS (RFC 8461 §2): an enforce policy names the MX, whose self-signed certificate only its TLSA record vouches for → delivered', async () => {
  const { row, attempt } = await send('u@sts.dane.test');
  assert.equal(row.status, 'delivered', `${row.last_reply}\n${attempt?.transcript}`);
  assert.equal(attempt.mx, 'mx-ok.dane.test');
  assert.ok(mxs[0].received.find((x) => x.to.includes('u@sts.dane.test'))?.secure);
  // The policy was fetched and applies (it is stored): the Web PKI check of MTA-STS was not what let it through.
  assert.equal(app.db.prepare("SELECT mode FROM mta_sts_policies WHERE domain = 'sts.dane.test'").pluck().get(), 'enforce');
  assert.deepEqual([attempt.tls_policy, attempt.tls_result], ['tlsa', 'success'], 'reported under DANE, not MTA-STS');
});

test('an MX host name that is a (validated) CNAME: the TLSA records of the expanded name are used first (RFC 7672 §2.2.2) → delivered', async () => {
  const { row, attempt } = await send('u@cn.dane.test');
  assert.equal(row.status, 'delivered', `${row.last_reply}\n${attempt?.transcript}`);
  assert.ok(mxs[0].received.find((x) => x.to.includes('u@cn.dane.test'))?.secure);
});

test('no TLSA (authenticated denial) → delivered opportunistically over TLS, as without DANE', async () => {
  const { row, attempt } = await send('u@plain.dane.test');
  assert.equal(row.status, 'delivered', row.last_reply);
  assert.ok(attempt.tls_version);
  assert.ok(mxs[2].received[0]?.secure);
  assert.deepEqual([attempt.tls_policy, attempt.tls_result], ['no-policy-found', 'success']);
});

test('TLSA present but the MX offers no STARTTLS → deferred, never sent in clear', async () => {
  const { row, attempt } = await send('u@notls.dane.test');
  assert.equal(row.status, 'queued');
  assert.match(row.last_reply, /^451 4\.7\.5 DANE: TLSA records of mx-notls\.dane\.test require STARTTLS/);
  assert.match(attempt.transcript, /require STARTTLS/);
  assert.deepEqual([attempt.tls_policy, attempt.tls_result], ['tlsa', 'starttls-not-supported']);
  assert.equal(mxs[3].received.length, 0);
});

test('DANE-TA 2 0 1 with a CA-issued certificate (chain sent by the MX) → delivered over TLS', async () => {
  const { row, attempt } = await send('u@ta.dane.test');
  assert.equal(row.status, 'delivered', `${row.last_reply}\n${attempt?.transcript}`);
  assert.ok(mxs[4].received[0]?.secure);
});

test('bogus TLSA answer (signature does not verify: SERVFAIL from unbound) → deferred without connecting', async () => {
  const { row, attempt } = await send('u@bogus.dane.test');
  assert.equal(row.status, 'queued');
  assert.match(row.last_reply, /^451 4\.7\.5 DANE: the TLSA lookup of _\d+\._tcp\.mx-bogus\.dane\.test failed DNSSEC validation/);
  assert.doesNotMatch(attempt.transcript, /connecting to mx-bogus/);
  assert.deepEqual([attempt.tls_policy, attempt.tls_result], ['tlsa', 'dnssec-invalid']);
  assert.equal(mxs[5].received.length, 0);
});

test('doctor: the DANE resolver check is ok when dns.servers validates (AD), a warning with the fix when it does not', async () => {
  const withServer = (server: string) => ({ ...app.config, dns: { ...app.config.dns, servers: [server], timeout_ms: 1000 } });
  const [ok] = await checkDane(withServer(zone.server), 'dane.test');
  assert.equal(ok.status, 'ok', ok.message);
  assert.match(ok.message, /validates DNSSEC \(AD set for dane\.test DNSKEY\)/);
  const plain = await new TestDns().start(); // answers, but does not validate
  try {
    const [w] = await checkDane(withServer(plain.server), 'dane.test');
    assert.equal(w.status, 'warn');
    assert.match(w.message, /without the AD bit.*DANE .* is never applied/);
    assert.match(w.fix!, /validating resolver.*local unbound/);
  } finally {
    await plain.stop();
  }
  assert.deepEqual(await checkDane({ ...app.config, outbound: { ...app.config.outbound, dane: false } }, 'dane.test'), [], 'dane = false: no check');
  assert.deepEqual(await checkDane(withServer(zone.server), ''), [], "--dane-probe '' skips");
});
