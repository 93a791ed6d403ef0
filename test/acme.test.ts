// ACME and MTA-STS. No public ACME CA is reachable from the test machines, so the real acme-client
// talks to a small local ACME CA (test/helpers/acme-ca.ts) that validates HTTP-01 by fetching the
// challenge from Letterbox's own responder. Checked: the responder, issuance, renewal decisions and
// retry delays, the appliance obtaining a certificate at start and hot-reloading Dovecot with it,
// mta-sts.<domain> joining the certificate once it points at us, and the MTA-STS policy over HTTPS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestAcmeCa } from './helpers/acme-ca.ts';
import { TestDns } from './helpers/dns.ts';
import { freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { ChallengeStore, acmeIssuer, handleChallenge, installCertificate, readCertificate, renewalDue, retryDelayMs } from '../src/tls/acme.ts';
import { mtaStsPolicy, mtaStsRecordId } from '../src/mtasts/index.ts';

let ca: TestAcmeCa;
let tmp: string;

before(async () => {
  ca = await new TestAcmeCa().start();
  tmp = mkdtempSync(join(tmpdir(), 'lba-'));
});
after(async () => {
  await ca?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

async function responder(store: ChallengeStore): Promise<{ server: Server; port: number }> {
  const port = await freePort();
  const server = createServer((req, res) => {
    if (!handleChallenge(store, req, res)) res.writeHead(418).end();
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return { server, port };
}

test('HTTP-01 responder: the key authorization for a known token, 404 otherwise', async () => {
  const store = new ChallengeStore();
  store.set('tok_123-abc', 'tok_123-abc.thumb');
  const { server, port } = await responder(store);
  try {
    const ok = await fetch(`http://127.0.0.1:${port}/.well-known/acme-challenge/tok_123-abc`);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), 'tok_123-abc.thumb');
    assert.equal((await fetch(`http://127.0.0.1:${port}/.well-known/acme-challenge/unknown`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/.well-known/acme-challenge/..%2Fetc`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/.well-known/acme-challenge/tok_123-abc`, { method: 'POST' })).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 418, 'other paths are left to the next handler');
  } finally {
    server.close();
  }
});

test('acme-client issues a certificate through the HTTP-01 responder; a failed validation is an error', async () => {
  const store = new ChallengeStore();
  const { server, port } = await responder(store);
  ca.challengePort = port;
  try {
    const issuer = acmeIssuer({ directoryUrl: ca.directoryUrl, email: 'ops@example.test', accountKeyPath: join(tmp, 'account.pem'), store, backoff: { minMs: 50, maxMs: 200 } });
    const got = await issuer.issue(['mail.example.test', 'mta-sts.example.test']);
    const leaf = new X509Certificate(got.cert);
    assert.ok(leaf.verify(new X509Certificate(ca.caCert).publicKey), 'signed by the CA');
    assert.ok(leaf.checkHost('mail.example.test') && leaf.checkHost('mta-sts.example.test'));
    assert.deepEqual(ca.validations.map((v) => [v.host, v.ok]).sort(), [['mail.example.test', true], ['mta-sts.example.test', true]]);
    assert.equal(store.size, 0, 'challenges are removed afterwards');
    assert.equal(statSync(join(tmp, 'account.pem')).mode & 0o777, 0o600);
    // Atomic install, old pair kept.
    const certPath = join(tmp, 'fullchain.pem');
    const keyPath = join(tmp, 'privkey.pem');
    installCertificate(certPath, keyPath, got);
    installCertificate(certPath, keyPath, got);
    assert.equal(readFileSync(certPath, 'utf8'), got.cert);
    assert.equal(statSync(keyPath).mode & 0o777, 0o600);
    assert.equal(readFileSync(`${keyPath}.previous`, 'utf8'), got.key);
    assert.throws(() => installCertificate(certPath, keyPath, { cert: got.cert, key: readFileSync(join(tmp, 'account.pem'), 'utf8') }), /does not match its key/);
    // The responder does not know the token (another server answers): the CA refuses, issue() throws.
    const other = await responder(new ChallengeStore());
    ca.challengePort = other.port;
    try {
      await assert.rejects(issuer.issue(['mail.example.test']), /did not match|invalid/i);
    } finally {
      other.server.close();
    }
  } finally {
    server.close();
  }
});

test('renewal: due when missing, self-signed, a name is missing or within renew_days_before; retry delays grow', () => {
  const now = Date.parse('2026-11-23T00:00:00Z');
  const day = 86400000;
  const state = { names: ['mail.example.test'], issuer: 'CN=CA', notAfter: now + 60 * day, selfSigned: false };
  assert.equal(renewalDue(null, ['mail.example.test'], now, 30).due, true);
  assert.equal(renewalDue({ ...state, selfSigned: true }, ['mail.example.test'], now, 30).due, true);
  assert.equal(renewalDue(state, ['mail.example.test'], now, 30).due, false);
  assert.equal(renewalDue(state, ['mail.example.test'], now + 29 * day, 30).due, false);
  const late = renewalDue(state, ['mail.example.test'], now + 31 * day, 30);
  assert.equal(late.due, true);
  assert.match(late.reason, /expires in 29 days/);
  const more = renewalDue(state, ['mail.example.test', 'mta-sts.example.test'], now, 30);
  assert.equal(more.due, true);
  assert.match(more.reason, /does not cover mta-sts\.example\.test/);
  assert.deepEqual([1, 2, 3, 4].map(retryDelayMs), [300000, 600000, 1200000, 2400000]);
  assert.equal(retryDelayMs(20), 12 * 3600000);
});

test('MTA-STS policy text (RFC 8461) and a policy id that changes with it', () => {
  const p = mtaStsPolicy({ mode: 'testing', mx: ['mail.example.test'], maxAge: 604800 });
  assert.equal(p, 'version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 604800\r\n');
  const e = mtaStsPolicy({ mode: 'enforce', mx: ['mail.example.test'], maxAge: 604800 });
  assert.notEqual(mtaStsRecordId(p), mtaStsRecordId(e));
  assert.match(mtaStsRecordId(p), /^[a-z0-9]{1,32}$/);
});

function peerIssuer(port: number, servername: string): Promise<string> {
  return new Promise((res, rej) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      s.destroy();
      res(String(c?.issuer?.CN ?? ''));
    });
    s.once('error', rej);
  });
}

function httpsGet(port: number, host: string): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/.well-known/mta-sts.txt', servername: host, headers: { host }, ca: ca.caCert }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode!, body }));
    });
    req.once('error', rej);
    req.end();
  });
}

async function until<T>(what: string, fn: () => T | Promise<T>, ms = 20000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
}

test('the appliance obtains a certificate at start, hot-reloads Dovecot, adds mta-sts.<domain> and serves the policy', { timeout: 120000 }, async () => {
  const dns = await new TestDns().start();
  const httpPort = await freePort();
  const httpsPort = await freePort();
  ca.challengePort = httpPort;
  let app: Appliance | null = null;
  try {
    app = await startAppliance({
      extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[acme]\nenabled = true\nemail = "ops@letterbox.test"\ndirectory_url = "${ca.directoryUrl}"\nhttp_listen = ["127.0.0.1:${httpPort}"]\nhttps_listen = ["127.0.0.1:${httpsPort}"]\n`,
    });
    const certPath = join(app.dir, 'certs', 'fullchain.pem');
    const issuedBy = () => readCertificate(certPath)?.issuer ?? '';
    await until('the ACME certificate', () => issuedBy().includes('Letterbox Test ACME CA'));
    assert.deepEqual(readCertificate(certPath)!.names, ['mail.letterbox.test']);
    // Dovecot was reloaded (SIGHUP), not restarted: new IMAP connections get the new certificate.
    await until('Dovecot serving the new certificate', async () => (await peerIssuer(app!.ports.imap, 'mail.letterbox.test')) === 'Letterbox Test ACME CA');
    assert.ok(!app.logs.some((l) => l.includes('Dovecot exited unexpectedly')));
    assert.ok(app.logs.some((l) => l.includes('Dovecot reloaded with the new certificate')));
    // The SMTP listeners take it too, without a restart (implicit TLS on 465 shows it directly).
    await until('submissions (465) serving the new certificate', async () => (await peerIssuer(app!.ports.submissions, 'mail.letterbox.test')) === 'Letterbox Test ACME CA');
    // A domain whose mta-sts name points at us joins the certificate (checked at start and daily).
    await app.stop();
    assert.equal((await app.cli(['domain', 'add', 'example.test'])).code, 0);
    // autoconfig.<domain> too (issue #17); autodiscover.example.test does not point here: left out.
    dns.a('mail.letterbox.test', '127.0.0.1').a('mta-sts.example.test', '127.0.0.1').a('autoconfig.example.test', '127.0.0.1');
    await app.restart();
    await until('mta-sts.example.test in the certificate', () => readCertificate(certPath)!.names.includes('mta-sts.example.test')).catch((err) => {
      throw new Error(`${err.message}\n${app!.logs.filter((l) => l.includes('acme')).join('\n')}`);
    });
    await until('the HTTPS listener using the new certificate', async () => (await httpsGet(httpsPort, 'mta-sts.example.test')).status === 200);
    const policy = await httpsGet(httpsPort, 'mta-sts.example.test');
    assert.equal(policy.body, 'version: STSv1\r\nmode: testing\r\nmx: mail.letterbox.test\r\nmax_age: 604800\r\n');
    const unknown = await new Promise<number>((res, rej) => {
      const req = httpsRequest({ host: '127.0.0.1', port: httpsPort, path: '/.well-known/mta-sts.txt', servername: 'mta-sts.example.test', headers: { host: 'mta-sts.other.test' }, ca: ca.caCert }, (r) => {
        r.resume();
        res(r.statusCode!);
      });
      req.once('error', rej);
      req.end();
    });
    assert.equal(unknown, 404);
    assert.ok(ca.issued.some((n) => n.includes('mta-sts.example.test') && n.includes('mail.letterbox.test')));
    assert.ok(readCertificate(certPath)!.names.includes('autoconfig.example.test'), 'autoconfig.<domain> pointing here joins the ACME certificate');
    assert.ok(!readCertificate(certPath)!.names.includes('autodiscover.example.test'), 'a name that does not point here is left out');
    // doctor checks the MTA-STS set-up (network checks off: loopback only).
    const doctor = async () => {
      const r = await app!.cli(['--json', 'doctor', '--outbound-probe', '', '--ntp', '', '--dnsbl', '', '--timeout-ms', '2000']);
      if (!r.stdout) throw new Error(`doctor printed nothing (exit ${r.code}): ${r.stderr}`);
      const rep = JSON.parse(r.stdout);
      return (n: string) => rep.checks.find((c: any) => c.area === 'mta-sts' && c.name === `example.test ${n}`);
    };
    let by = await doctor();
    assert.equal(by('host').status, 'ok');
    assert.equal(by('policy').status, 'ok', JSON.stringify(by('policy')));
    assert.equal(by('TXT').status, 'warn');
    const txtFix = /TXT "(v=STSv1; id=[a-z0-9]+)"/.exec(by('TXT').fix)!;
    assert.ok(txtFix, by('TXT').fix);
    assert.equal(by('TLS-RPT').status, 'warn');
    dns.txt('_mta-sts.example.test', txtFix[1]).txt('_smtp._tls.example.test', 'v=TLSRPTv1; rua=mailto:postmaster@example.test');
    by = await doctor();
    assert.equal(by('TXT').status, 'ok');
    assert.equal(by('TLS-RPT').status, 'ok');
    // Already current: a third start requests nothing.
    const before = ca.issued.length;
    await app.stop();
    await app.restart();
    await until('the start-up check', () => app!.logs.filter((l) => l.includes('certificate is current')).length > 0);
    assert.equal(ca.issued.length, before);
    const st = await app.cliJson(['tls', 'status']);
    assert.deepEqual(st.names.sort(), ['autoconfig.example.test', 'mail.letterbox.test', 'mta-sts.example.test']);
    assert.match(st.issuer, /Letterbox Test ACME CA/);
    assert.equal(st.selfSigned, false);
    assert.ok(st.daysLeft >= 88, String(st.daysLeft));
    assert.match(st.renewal, /^not due/);
  } finally {
    app?.cleanup();
    await dns.stop();
  }
});

test('a busy port 80 does not stop the appliance; the failed request is retried with backoff', { timeout: 60000 }, async () => {
  const busy = createServer((_req, res) => res.writeHead(404).end());
  const busyPort = await freePort();
  await new Promise<void>((r) => busy.listen(busyPort, '127.0.0.1', () => r()));
  ca.challengePort = busyPort; // the CA validates against whatever holds the port: it fails
  let app: Appliance | null = null;
  try {
    app = await startAppliance({
      extraToml: `[dns]\nservers = ["127.0.0.1:9"]\ntimeout_ms = 300\n[acme]\nenabled = true\ndirectory_url = "${ca.directoryUrl}"\nhttp_listen = ["127.0.0.1:${busyPort}"]\nhttps_listen = ["127.0.0.1:${await freePort()}"]\n`,
    });
    assert.ok(app.logs.some((l) => l.includes(`cannot listen on 127.0.0.1:${busyPort} for ACME HTTP-01 challenges`)));
    const failed = (await until('the failed request', () => app!.logs.find((l) => l.includes('certificate request failed; will retry'))))!;
    assert.equal(JSON.parse(failed).retryInMs, 300000);
    assert.equal(JSON.parse(failed).failures, 1);
    assert.ok(readCertificate(join(app.dir, 'certs', 'fullchain.pem'))!.selfSigned, 'the self-signed certificate stays in place');
    // Mail keeps working meanwhile: IMAP answers.
    assert.equal(await peerIssuer(app.ports.imap, 'mail.letterbox.test'), 'mail.letterbox.test');
  } finally {
    app?.cleanup();
    busy.close();
  }
});
