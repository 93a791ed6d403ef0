// `letterbox doctor` against a real running appliance and a real DNS server on loopback serving
// first correct, then broken records: every check's status, the fixes, --json and the exit code.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { checkTls } from '../src/doctor/index.ts';
import { loadConfig } from '../src/config/load.ts';
import { openDatabase, dbPath } from '../src/db/index.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { createResolver } from '../src/dns/resolver.ts';
import { verifyAllDomains } from '../src/doctor/daily.ts';

const HOST = 'mail.letterbox.test';
const V4 = '192.0.2.10';
const V6 = '2001:db8::10';
// The doctor sees these as the server's public addresses (the appliance itself listens on loopback).
const env = { LETTERBOX_IPS: `${V4},${V6}` };

let dns: TestDns;
let app: Appliance;
// A fake SNTP server on loopback whose clock is `skewMs` ahead of ours.
let ntp: Socket;
let ntpPort = 0;
let skewMs = 0;
function ntpTime(buf: Buffer, off: number, ms: number) {
  const secs = Math.floor(ms / 1000) + 2208988800;
  buf.writeUInt32BE(secs >>> 0, off);
  buf.writeUInt32BE(Math.floor(((ms % 1000) / 1000) * 2 ** 32) >>> 0, off + 4);
}
let records: { purpose: string; type: string; name: string; value: string; priority?: number }[];

function ptrName(ip: string): string {
  if (!ip.includes(':')) return ip.split('.').reverse().join('.') + '.in-addr.arpa';
  const [head, tail] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => g.padStart(4, '0'));
  return groups.join('').split('').reverse().join('.') + '.ip6.arpa';
}

function publishGood() {
  dns.clear();
  for (const r of records) {
    if (r.type === 'MX') dns.mx(r.name, r.value, r.priority);
    else if (r.type === 'TXT') dns.txt(r.name, r.value);
  }
  dns.a(HOST, V4).a(HOST, V6);
  dns.add({ type: 'PTR', name: ptrName(V4), data: HOST }, { type: 'PTR', name: ptrName(V6), data: HOST });
}

async function doctor() {
  // Outbound port 25 is probed against the appliance's own MX: tests never leave loopback.
  const r = await app.cli(['--json', 'doctor', '--timeout-ms', '2000', '--outbound-probe', `127.0.0.1:${app.ports.mx}`, '--ntp', `127.0.0.1:${ntpPort}`], { env });
  const report = JSON.parse(r.stdout);
  const by = (area: string, name: string) => report.checks.find((c: any) => c.area === area && c.name === name);
  return { code: r.code, stderr: r.stderr, report, by };
}

before(async () => {
  ntp = createSocket('udp4');
  ntp.on('message', (_m, rinfo) => {
    const r = Buffer.alloc(48);
    r[0] = 0x24; // version 4, mode 4 (server)
    r[1] = 2;
    const t = Date.now() + skewMs;
    ntpTime(r, 32, t);
    ntpTime(r, 40, t);
    ntp.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => ntp.bind(0, '127.0.0.1', () => r()));
  ntpPort = ntp.address().port;
  dns = await new TestDns().start();
  app = await startAppliance({ hostname: HOST, extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n` });
  assert.equal((await app.cli(['domain', 'add', 'example.test'])).code, 0);
  records = (await app.cliJson(['dns', 'example.test'])).records;
  // The SPF value must name the public IPs the doctor is told about.
  const spf = records.find((r) => r.purpose === 'spf')!;
  spf.value = `v=spf1 mx ip4:${V4} ip6:${V6} -all`;
  // And the host name's SPF record (bounces are checked against the HELO name) those IPs.
  const helo = records.find((r) => r.purpose === 'helo-spf')!;
  assert.equal(helo.name, HOST);
  helo.value = `v=spf1 ip4:${V4} ip6:${V6} -all`;
});
after(async () => {
  ntp?.close();
  app?.cleanup();
  await dns?.stop();
});

test('doctor passes on a healthy installation with correct DNS (exit 0, --json)', async () => {
  publishGood();
  const { code, stderr, report, by } = await doctor();
  const bad = report.checks.filter((c: any) => c.status === 'fail');
  assert.equal(code, 0, `failures: ${JSON.stringify(bad, null, 1)}\n${stderr}`);
  assert.equal(report.ok, true);
  for (const kind of ['mx', 'submission', 'submissions', 'imap', 'api']) {
    const c = report.checks.find((x: any) => x.area === 'ports' && x.name.startsWith(kind + ' '));
    assert.equal(c?.status, 'ok', `${kind}: ${JSON.stringify(c)}`);
    if (kind === 'mx' || kind === 'submission') assert.match(c.message, /STARTTLS TLSv1\.[23]/, 'STARTTLS and a handshake were checked');
  }
  for (const n of ['example.test MX', 'example.test SPF', 'example.test DMARC']) assert.equal(by('dns', n)?.status, 'ok', n);
  const dkim = report.checks.filter((c: any) => c.area === 'dns' && c.name.startsWith('example.test DKIM'));
  assert.equal(dkim.length, 2);
  for (const c of dkim) assert.equal(c.status, 'ok', c.name);
  assert.equal(by('rdns', `PTR ${V4}`)?.status, 'ok');
  assert.equal(by('rdns', `PTR ${V6}`)?.status, 'ok');
  for (const list of ['zen.spamhaus.org', 'bl.spamcop.net']) for (const ip of [V4, V6]) assert.equal(by('dnsbl', `${ip} on ${list}`)?.status, 'ok', `${ip} on ${list}`);
  for (const n of ['key pair', 'expiry', 'name']) assert.equal(by('tls', n)?.status, 'ok', n);
  assert.equal(by('tls', 'issuer')?.status, 'warn', 'a self-signed certificate is a warning');
  assert.match(by('tls', 'issuer').fix, /acme/i);
  for (const n of ['version', 'config', 'lmtp']) assert.equal(by('dovecot', n)?.status, 'ok', n);
  assert.equal(by('disk', 'space')?.status, 'ok');
  assert.equal(by('database', 'quick_check')?.status, 'ok');
  assert.equal(by('outbound', `port ${app.ports.mx} to 127.0.0.1`)?.status, 'ok');
  assert.equal(by('clock', 'skew vs 127.0.0.1')?.status, 'ok');
});

test('SPF through include: and CIDR ranges counts as authorising our IPs', async () => {
  publishGood();
  dns.remove('example.test', 'TXT').txt('example.test', 'v=spf1 include:_spf.example.test ~all').txt('_spf.example.test', 'v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all');
  const { by } = await doctor();
  assert.equal(by('dns', 'example.test SPF')?.status, 'ok', JSON.stringify(by('dns', 'example.test SPF')));
});

test('SPF for the host name: checked once, a warning with the record to publish when missing or not covering our IPs', async () => {
  publishGood();
  let { by } = await doctor();
  assert.equal(by('dns', `host SPF ${HOST}`)?.status, 'ok', JSON.stringify(by('dns', `host SPF ${HOST}`)));
  dns.remove(HOST, 'TXT').txt(HOST, 'v=spf1 a -all'); // the host's A/AAAA are our addresses: also fine
  assert.equal((await doctor()).by('dns', `host SPF ${HOST}`)?.status, 'ok');
  dns.remove(HOST, 'TXT').txt(HOST, `v=spf1 ip4:${V4} -all`);
  let c = (await doctor()).by('dns', `host SPF ${HOST}`);
  assert.equal(c.status, 'warn');
  assert.match(c.message, new RegExp(`does not authorise ${V6}`));
  dns.remove(HOST, 'TXT');
  ({ by } = await doctor());
  c = by('dns', `host SPF ${HOST}`);
  assert.equal(c.status, 'warn');
  assert.match(c.message, /bounces/);
  assert.equal(c.fix, `publish: ${HOST}. TXT "v=spf1 ip4:${V4} ip6:${V6} -all"`);
  publishGood();
});

test('the daily re-verification job: domain.verified when right, the failing records when not', async () => {
  const config = loadConfig({ path: app.configPath, env });
  const log = createLogger({ level: 'silent' });
  const db = openDatabase(dbPath(config.data_dir), { log, clock: systemClock });
  const resolve = createResolver({ servers: [dns.server], timeoutMs: 1000, clock: systemClock, cacheMs: 0, negativeCacheMs: 0 }).resolve;
  try {
    publishGood();
    const before = db.prepare("SELECT count(*) FROM events WHERE type = 'domain.verified'").pluck().get() as number;
    const good = await verifyAllDomains({ db, config, log, clock: systemClock }, resolve);
    assert.deepEqual(good, [{ domain: 'example.test', ok: true, failing: [] }]);
    assert.equal(db.prepare("SELECT count(*) FROM events WHERE type = 'domain.verified'").pluck().get(), before + 1);
    dns.remove('example.test', 'TXT');
    const failedBefore = db.prepare("SELECT count(*) FROM events WHERE type = 'domain.verification_failed'").pluck().get() as number;
    const bad = await verifyAllDomains({ db, config, log, clock: systemClock }, resolve);
    assert.equal(bad[0].ok, false);
    const failed = db.prepare("SELECT data FROM events WHERE type = 'domain.verification_failed' ORDER BY id DESC").pluck().all() as string[];
    assert.equal(failed.length, failedBefore + 1, 'a domain.verification_failed event');
    assert.ok(JSON.parse(failed[0]).failing.some((f: any) => f.purpose === 'spf'), failed[0]);
    assert.ok(bad[0].failing.some((f) => f.startsWith('spf example.test')), JSON.stringify(bad));
  } finally {
    db.close();
    publishGood();
  }
});

test('broken DNS and reverse DNS: each problem is reported with its fix, exit 1', async () => {
  publishGood();
  const dkimE = records.find((r) => r.purpose === 'dkim' && r.name.includes('e._domainkey'))!;
  dns.remove('example.test', 'TXT').txt('example.test', 'v=spf1 ip4:198.51.100.7 -all');
  dns.remove(dkimE.name);
  dns.remove('_dmarc.example.test').txt('_dmarc.example.test', 'v=DMARC1; p=none');
  dns.remove('example.test', 'MX').mx('example.test', 'mx.elsewhere.test');
  dns.remove(ptrName(V4)).add({ type: 'PTR', name: ptrName(V4), data: 'host-10.provider.test' });
  dns.remove(ptrName(V6));
  skewMs = 120000;
  dns.a('10.2.0.192.zen.spamhaus.org', '127.0.0.2').a('10.2.0.192.bl.spamcop.net', '127.255.255.254');
  const { code, report, by, stderr } = await doctor();
  assert.equal(code, 1);
  assert.match(stderr, /doctor found \d+ problem/);
  assert.equal(report.ok, false);
  const spf = by('dns', 'example.test SPF');
  assert.equal(spf.status, 'fail');
  assert.match(spf.message, new RegExp(`does not authorise ${V4.replace(/\./g, '\\.')}, ${V6}`));
  assert.ok(spf.fix.includes(`v=spf1 mx ip4:${V4} ip6:${V6} -all`), spf.fix);
  const mx = by('dns', 'example.test MX');
  assert.equal(mx.status, 'fail');
  assert.match(mx.message, /points to mx\.elsewhere\.test, not mail\.letterbox\.test/);
  assert.match(mx.fix, /example\.test\. MX 10 mail\.letterbox\.test/);
  const sel = dkimE.name.split('._domainkey.')[0];
  const dk = by('dns', `example.test DKIM ${sel}`);
  assert.equal(dk.status, 'fail');
  assert.ok(dk.fix.includes(dkimE.value), 'the fix gives the exact DKIM record');
  assert.equal(by('dns', 'example.test DMARC').status, 'warn');
  const p4 = by('rdns', `PTR ${V4}`);
  assert.equal(p4.status, 'fail');
  assert.match(p4.message, /does not resolve back/);
  assert.match(p4.fix, new RegExp(`set the reverse DNS \\(PTR\\) of ${V4.replace(/\./g, '\\.')} to ${HOST.replace(/\./g, '\\.')}`));
  assert.equal(by('rdns', `PTR ${V6}`).status, 'fail');
  const listed = by('dnsbl', `${V4} on zen.spamhaus.org`);
  assert.equal(listed.status, 'fail');
  assert.match(listed.message, /listed \(127\.0\.0\.2\)/);
  assert.match(listed.fix, /delisting/);
  const refused = by('dnsbl', `${V4} on bl.spamcop.net`);
  assert.equal(refused.status, 'warn', 'a refused query is not a listing');
  assert.match(refused.message, /public resolvers/);
  assert.equal(by('dnsbl', `${V6} on zen.spamhaus.org`).status, 'ok');
  const clock = by('clock', 'skew vs 127.0.0.1');
  assert.equal(clock.status, 'fail');
  assert.match(clock.message, /1[12]\d\.\d s behind/);
  assert.match(clock.fix, /timedatectl set-ntp true/);
  skewMs = 0;
  // The text output carries the same fixes.
  const text = await app.cli(['doctor', '--timeout-ms', '2000', '--outbound-probe', `127.0.0.1:${app.ports.mx}`, '--ntp', `127.0.0.1:${ntpPort}`], { env });
  assert.equal(text.code, 1);
  assert.match(text.stdout, /FAIL\s+dns\s+example\.test SPF: .*\n\s+fix: publish: example\.test\. TXT "v=spf1 mx ip4:192\.0\.2\.10/);
});

test('TLS: a certificate for another name, an expired or soon-expiring one and an unreadable key are reported', () => {
  const config = loadConfig({ path: app.configPath, env: {} });
  const future = Date.now() + 5 * 365 * 86400000;
  const expired = checkTls(config, future).find((c) => c.name === 'expiry')!;
  assert.equal(expired.status, 'fail');
  assert.match(expired.message, /expired/);
  const soon = checkTls(config, Date.parse(checkTlsValidTo(config)) - 3 * 86400000).find((c) => c.name === 'expiry')!;
  assert.equal(soon.status, 'warn');
  const other = checkTls({ ...config, hostname: 'other.example' }, Date.now()).find((c) => c.name === 'name')!;
  assert.equal(other.status, 'fail');
  assert.match(other.fix!, /other\.example/);
  const missing = checkTls({ ...config, tls: { ...config.tls, key: '/nonexistent/key.pem' } }, Date.now());
  assert.equal(missing[0].status, 'fail');
  assert.match(missing[0].message, /ENOENT/);
});

function checkTlsValidTo(config: ReturnType<typeof loadConfig>): string {
  return new X509Certificate(readFileSync(config.tls.cert)).validTo;
}

test('doctor reports a stopped appliance: listeners not answering and no Dovecot', async () => {
  await app.stop();
  const { code, by, report } = await doctor();
  assert.equal(code, 1);
  const mxc = report.checks.find((c: any) => c.area === 'ports' && c.name.startsWith('mx '));
  assert.equal(mxc.status, 'fail');
  assert.match(mxc.message, /not listening/);
  assert.match(mxc.fix, /systemctl start letterbox/);
  assert.equal(by('dovecot', 'lmtp').status, 'fail');
  const out = by('outbound', `port ${app.ports.mx} to 127.0.0.1`);
  assert.equal(out.status, 'fail');
  assert.match(out.fix, /smarthost/);
});
