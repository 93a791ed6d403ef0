// Mail clients that set themselves up: Thunderbird autoconfig and Outlook autodiscover on the public
// HTTPS listener (fetched the way the clients fetch them, verified against the certificate the
// appliance got from a local ACME CA, which must name autoconfig.<domain> and autodiscover.<domain>),
// the Apple .mobileconfig through the API (parsed by Python's plistlib), and the pure parts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { XMLParser } from 'fast-xml-parser';
import { TestAcmeCa } from './helpers/acme-ca.ts';
import { TestDns } from './helpers/dns.ts';
import { freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { readCertificate } from '../src/tls/acme.ts';
import { autodiscoverRequestAddress, requestDomain, thunderbirdConfig } from '../src/autoconfig/index.ts';

const PW = 'correct horse battery staple';
const parse = (xml: string) => new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false }).parse(xml);
const arr = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

test('requestDomain: the address decides, within the host it was sent to; nothing for junk', () => {
  assert.equal(requestDomain('autoconfig.example.com', 'a@example.com', 'mail.example.net'), 'example.com');
  assert.equal(requestDomain('autoconfig.example.com', null, 'mail.example.net'), 'example.com');
  assert.equal(requestDomain('example.com', 'a@Example.COM', 'mail.example.net'), 'example.com');
  assert.equal(requestDomain('autoconfig.example.com', 'a@other.org', 'mail.example.net'), null, 'an address at another domain than the host');
  assert.equal(requestDomain('mail.example.net', 'a@other.org', 'mail.example.net'), 'other.org', 'under our own name the address decides');
  assert.equal(requestDomain('autodiscover.example.com', 'no-at-sign', 'mail.example.net'), null);
  assert.equal(requestDomain('autodiscover.example.com', 'a@', 'mail.example.net'), null);
});

test('autodiscover request parsing: the address; entities are not expanded, junk gives null', () => {
  const ok = `<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress> bob@example.com </EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`;
  assert.equal(autodiscoverRequestAddress(ok), 'bob@example.com');
  const xxe = `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>`;
  assert.ok(!String(autodiscoverRequestAddress(xxe)).includes('root:'));
  assert.equal(autodiscoverRequestAddress('not xml at all <<<'), null);
  assert.equal(autodiscoverRequestAddress('<a><b/></a>'), null);
});

test('Thunderbird config: escapes the domain, leaves out listeners that are not configured', () => {
  const x = parse(thunderbirdConfig('ex<a>mple.com', { host: 'mail.example.com', imaps: 993, submissions: null, submission: 587 }));
  assert.equal(x.clientConfig.emailProvider['@id'], 'ex<a>mple.com');
  assert.equal(arr(x.clientConfig.emailProvider.outgoingServer).length, 1);
  assert.equal(x.clientConfig.emailProvider.outgoingServer.socketType, 'STARTTLS');
});

// ---- against a running appliance

let ca: TestAcmeCa;
let dns: TestDns;
let app: Appliance;
let httpPort: number;
let httpsPort: number;
let key: string;

async function until<T>(what: string, fn: () => T | Promise<T>, ms = 30000): Promise<T> {
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

/** HTTPS to the appliance's public listener as a client would: SNI and Host the name, the certificate verified. */
function https(method: string, host: string, path: string, body?: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((res, rej) => {
    const req = httpsRequest({ host: '127.0.0.1', port: httpsPort, method, path, servername: host, headers: { host, ...(body ? { 'content-type': 'text/xml' } : {}) }, ca: ca.caCert }, (r) => {
      let b = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (b += d));
      r.on('end', () => res({ status: r.statusCode!, type: String(r.headers['content-type'] ?? ''), body: b }));
    });
    req.once('error', rej);
    req.end(body);
  });
}

/** Plain HTTP to the appliance's port-80 listener with a chosen Host (fetch does not let one set Host). */
function http(host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = httpRequest({ host: '127.0.0.1', port: httpPort, path, headers: { host } }, (r) => {
      let b = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (b += d));
      r.on('end', () => res({ status: r.statusCode!, body: b }));
    });
    req.once('error', rej);
    req.end();
  });
}

before(async () => {
  ca = await new TestAcmeCa().start();
  dns = await new TestDns().start();
  httpPort = await freePort();
  httpsPort = await freePort();
  ca.challengePort = httpPort;
  app = await startAppliance({
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[acme]\nenabled = true\nemail = "ops@letterbox.test"\ndirectory_url = "${ca.directoryUrl}"\nhttp_listen = ["127.0.0.1:${httpPort}"]\nhttps_listen = ["127.0.0.1:${httpsPort}"]\n`,
  });
  // The names are checked at start (and daily): once the first certificate is in, add the domain
  // and its records, then restart.
  const certPath = join(app.dir, 'certs', 'fullchain.pem');
  await until('the first ACME certificate', () => (readCertificate(certPath)?.issuer ?? '').includes('Letterbox Test ACME CA'), 60000);
  await app.stop();
  assert.equal((await app.cli(['domain', 'add', 'example.test'])).code, 0);
  assert.equal((await app.cli(['mailbox', 'add', 'alice@example.test', '--password', PW])).code, 0);
  dns.a('mail.letterbox.test', '127.0.0.1').a('autoconfig.example.test', '127.0.0.1').a('autodiscover.example.test', '127.0.0.1');
  await app.restart();
  key = (await app.cliJson(['key', 'create', '--name', 'ac', '--scopes', 'mailboxes:read'])).secret;
});
after(async () => {
  app?.cleanup();
  await dns?.stop();
  await ca?.stop();
});

test('the certificate names autoconfig.<domain> and autodiscover.<domain>; letterbox dns lists them', { timeout: 120000 }, async () => {
  const certPath = join(app.dir, 'certs', 'fullchain.pem');
  await until('autoconfig names in the certificate', () => {
    const n = readCertificate(certPath)?.names ?? [];
    return n.includes('autoconfig.example.test') && n.includes('autodiscover.example.test');
  }, 90000).catch((err) => {
    throw new Error(`${err.message}\n${app.logs.filter((l) => l.includes('acme')).join('\n')}`);
  });
  const recs = (await app.cliJson(['dns', 'example.test'])).records;
  assert.deepEqual(
    recs.filter((r: any) => r.purpose === 'autoconfig').map((r: any) => `${r.type} ${r.name} ${r.value}`),
    ['CNAME autoconfig.example.test mail.letterbox.test', 'CNAME autodiscover.example.test mail.letterbox.test'],
  );
  const zone = (await app.cli(['dns', 'example.test', '--zone'])).stdout;
  assert.match(zone, new RegExp(`^_imaps\\._tcp\\.example\\.test\\.\\t3600\\tIN\\tSRV\\t0 1 ${app.ports.imap} mail\\.letterbox\\.test\\.$`, 'm'));
  assert.match(zone, /^_imap\._tcp\.example\.test\.\t3600\tIN\tSRV\t0 0 0 \.$/m);
});

test('Thunderbird autoconfig over HTTPS (verified certificate): IMAP over TLS, submission over TLS and STARTTLS', { timeout: 60000 }, async () => {
  const path = `/mail/config-v1.1.xml?emailaddress=${encodeURIComponent('alice@example.test')}`;
  // The listener may still be on the first certificate: wait until the verified handshake works.
  const r = await until('autoconfig.example.test over verified HTTPS', () => https('GET', 'autoconfig.example.test', path));
  assert.equal(r.status, 200, r.body);
  assert.match(r.type, /xml/);
  const p = parse(r.body).clientConfig.emailProvider;
  assert.equal(p.domain, 'example.test');
  const inc = arr(p.incomingServer);
  assert.deepEqual(inc.map((s: any) => [s['@type'], s.hostname, Number(s.port), s.socketType, s.authentication, s.username]), [
    ['imap', 'mail.letterbox.test', app.ports.imap, 'SSL', 'password-cleartext', '%EMAILADDRESS%'],
  ]);
  assert.deepEqual(arr(p.outgoingServer).map((s: any) => [s['@type'], s.hostname, Number(s.port), s.socketType, s.username]), [
    ['smtp', 'mail.letterbox.test', app.ports.submissions, 'SSL', '%EMAILADDRESS%'],
    ['smtp', 'mail.letterbox.test', app.ports.submission, 'STARTTLS', '%EMAILADDRESS%'],
  ]);
  // The same answer for an address that does not exist: nothing is learned about mailboxes.
  const nobody = await https('GET', 'autoconfig.example.test', `/mail/config-v1.1.xml?emailaddress=${encodeURIComponent('nobody@example.test')}`);
  assert.equal(nobody.body, r.body);
  // Other domains: nothing.
  assert.equal((await https('GET', 'autoconfig.example.test', `/mail/config-v1.1.xml?emailaddress=${encodeURIComponent('x@gmail.example')}`)).status, 404);
  assert.equal((await https('GET', 'mail.letterbox.test', `/mail/config-v1.1.xml?emailaddress=${encodeURIComponent('x@gmail.example')}`)).status, 404);
  assert.equal((await https('POST', 'autoconfig.example.test', path, '<x/>')).status, 405);
  // Thunderbird's other URLs: /.well-known/ on the domain itself, and plain HTTP as a fallback.
  const wk = await http('example.test', '/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40example.test');
  assert.equal(wk.status, 200);
  assert.equal(wk.body, r.body);
  assert.equal((await http('autoconfig.example.test', path)).body, r.body);
  const other = await http('other.test', '/.well-known/autoconfig/mail/config-v1.1.xml');
  assert.equal(other.status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${httpPort}/.well-known/acme-challenge/none`)).status, 404, 'the challenge responder is unchanged');
});

test('Outlook autodiscover (POST): IMAP and SMTP settings for our addresses, an error for others', { timeout: 60000 }, async () => {
  const reqXml = (a: string) =>
    `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>${a}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`;
  const r = await until('autodiscover.example.test over verified HTTPS', () => https('POST', 'autodiscover.example.test', '/autodiscover/autodiscover.xml', reqXml('alice@example.test')));
  assert.equal(r.status, 200);
  const acct = parse(r.body).Autodiscover.Response.Account;
  assert.equal(acct.AccountType, 'email');
  assert.equal(acct.Action, 'settings');
  const protos = arr(acct.Protocol);
  const imap = protos.find((x: any) => x.Type === 'IMAP');
  const smtp = protos.find((x: any) => x.Type === 'SMTP');
  assert.deepEqual([imap.Server, Number(imap.Port), imap.SSL, imap.LoginName], ['mail.letterbox.test', app.ports.imap, 'on', 'alice@example.test']);
  assert.deepEqual([smtp.Server, Number(smtp.Port), smtp.SSL, smtp.AuthRequired], ['mail.letterbox.test', app.ports.submissions, 'on', 'on']);
  const foreign = await https('POST', 'autodiscover.example.test', '/autodiscover/autodiscover.xml', reqXml('x@elsewhere.example'));
  assert.equal(parse(foreign.body).Autodiscover.Response.Error.ErrorCode, '600');
  assert.ok(!foreign.body.includes('mail.letterbox.test'), 'no server information for other domains');
  const junk = await https('POST', 'autodiscover.example.test', '/autodiscover/autodiscover.xml', '<<<not xml');
  assert.equal(parse(junk.body).Autodiscover.Response.Error.ErrorCode, '600');
  assert.equal((await https('POST', 'autodiscover.example.test', '/autodiscover/autodiscover.xml', 'x'.repeat(40000))).status, 413);
  assert.equal((await https('GET', 'autodiscover.example.test', '/autodiscover/autodiscover.xml')).status, 405);
});

function plist(body: string): any {
  const f = join(app.dir, `p${Math.random()}.mobileconfig`);
  writeFileSync(f, body);
  return JSON.parse(execFileSync('python3', ['-c', 'import plistlib, json, sys; print(json.dumps(plistlib.load(open(sys.argv[1], "rb"))))', f], { encoding: 'utf8' }));
}

test('.mobileconfig through the API: a plist with the IMAP account, the password only when given and right', { timeout: 60000 }, async () => {
  const base = `http://127.0.0.1:${app.ports.api}/api/v1/mailboxes/alice@example.test/mobileconfig`;
  const auth = { authorization: `Bearer ${key}` };
  const r = await fetch(base, { headers: auth });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/x-apple-aspen-config');
  assert.match(r.headers.get('content-disposition') ?? '', /attachment; filename="alice@example\.test\.mobileconfig"/);
  const text = await r.text();
  const p = plist(text);
  assert.equal(p.PayloadType, 'Configuration');
  assert.equal(p.PayloadContent.length, 1);
  const a = p.PayloadContent[0];
  assert.equal(a.PayloadType, 'com.apple.mail.managed');
  assert.equal(a.EmailAccountType, 'EmailTypeIMAP');
  assert.equal(a.EmailAddress, 'alice@example.test');
  assert.deepEqual([a.IncomingMailServerHostName, a.IncomingMailServerPortNumber, a.IncomingMailServerUseSSL, a.IncomingMailServerUsername], ['mail.letterbox.test', app.ports.imap, true, 'alice@example.test']);
  assert.deepEqual([a.OutgoingMailServerHostName, a.OutgoingMailServerPortNumber, a.OutgoingMailServerUseSSL, a.OutgoingMailServerUsername], ['mail.letterbox.test', app.ports.submissions, true, 'alice@example.test']);
  assert.equal(a.IncomingPassword, undefined, 'no password unless asked');
  assert.match(p.PayloadUUID, /^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
  assert.equal(await (await fetch(base, { headers: auth })).text(), text, 'stable: reinstalling replaces the same profile');
  // With the password: checked first.
  const post = (password: unknown) => fetch(base, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ password }) });
  const wrong = await post('not the password at all');
  assert.equal(wrong.status, 400);
  assert.equal(((await wrong.json()) as any).error.code, 'validation_error');
  const right = await post(PW);
  assert.equal(right.status, 200);
  const withPw = plist(await right.text()).PayloadContent[0];
  assert.equal(withPw.IncomingPassword, PW);
  assert.equal(withPw.OutgoingPasswordSameAsIncomingPassword, true);
  assert.equal((await fetch(base.replace('alice@', 'nobody@'), { headers: auth })).status, 404);
  assert.ok(!app.logs.some((l) => l.includes(PW)), 'the password is never logged');
});
