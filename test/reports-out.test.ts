// Reports Letterbox sends (issue #18 items 2 and 3 out): DMARC aggregate reports (RFC 7489 §7.2)
// and SMTP TLS reports (RFC 8460). A real appliance receives mail over SMTP from domains whose
// DMARC records (the test's DNS server) ask for reports, and delivers mail to two loopback MX
// hosts, one with STARTTLS and one without; `letterbox reports send` then queues the reports, the
// real queue delivers them to a loopback sink, and the test checks them as a receiver would: DKIM
// with dkimpy, the gzip, the XML against RFC 7489 appendix C's schema with xmllint (and with our
// own inbound parser), the JSON fields of RFC 8460 §4.4, the §7.1 external destination check, and
// that nothing is sent twice or while switched off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import nodemailer from 'nodemailer';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import Database from 'better-sqlite3';
import { freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { Sink, testCert, type Received } from './helpers/sink.ts';
import { call, createKey, waitFor } from './helpers/mailapi.ts';
import { parseDmarcReport } from '../src/reports/dmarc.ts';
import { parseTlsReport } from '../src/reports/tlsrpt.ts';
import { parseRua, parseTags, reportPeriod } from '../src/reports/send-out.ts';
import { dmarcEvaluationOf, groupRecords, schemaIp } from '../src/reports/dmarc-out.ts';
import { tlsSessions } from '../src/reports/tls-out.ts';
import { tlsFailureOf, sessionOutcome } from '../src/queue/tls-outcome.ts';
import { configSchema } from '../src/config/schema.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const OURS = 'ours.test';

// ---- pure parts ---------------------------------------------------------------------------------

test('rua= destinations: mailto only, with the !size suffix (k, m, g)', () => {
  assert.deepEqual(parseRua('mailto:a@x.test!10m, https://x.test/r ,mailto:B@Y.test,mailto:c@z.test!500k,mailto:bad'), [
    { address: 'a@x.test', maxSize: 10 * 1024 * 1024 },
    { address: 'b@y.test', maxSize: null },
    { address: 'c@z.test', maxSize: 500 * 1024 },
  ]);
  assert.deepEqual(parseTags('v=TLSRPTv1; rua=mailto:t@x.test,https://r.x.test/'), { v: 'TLSRPTv1', rua: 'mailto:t@x.test,https://r.x.test/' });
});

test('the report period is one whole UTC day: the day before now, or the one named', () => {
  const now = Date.UTC(2026, 11, 8, 0, 23);
  assert.deepEqual(reportPeriod(now), { begin: Date.UTC(2026, 11, 7), end: Date.UTC(2026, 11, 8) });
  assert.deepEqual(reportPeriod(now, '2026-02-28'), { begin: Date.UTC(2026, 1, 28), end: Date.UTC(2026, 2, 1) });
  assert.throws(() => reportPeriod(now, '2026-02-30'), /YYYY-MM-DD/);
});

test('IPv6 sources are written out in full (appendix C IPAddress pattern)', () => {
  assert.equal(schemaIp('2001:db8::25'), '2001:db8:0:0:0:0:0:25');
  assert.equal(schemaIp('::1'), '0:0:0:0:0:0:0:1');
  assert.equal(schemaIp('192.0.2.1'), '192.0.2.1');
});

test('DMARC evaluation: disposition from what our policy did, local_policy when quarantined instead of rejected, none when no record', () => {
  const auth = (result: string, policy: string) => ({
    dmarc: { status: { result, header: { from: 'a.test' } }, policyDomain: 'a.test', policy, p: policy, alignment: { spf: { result: result === 'pass' ? 'a.test' : false }, dkim: { result: false } } },
    spf: { domain: 'a.test', status: { result: result === 'pass' ? 'pass' : 'fail' } },
    dkim: { results: [{ signingDomain: 'x.test', selector: 's1', status: { result: 'pass' } }] },
  });
  const m = { ip: '::ffff:192.0.2.7', mailFrom: 'b@a.test', rcptDomain: 'ours.test', at: 1 };
  const pass = dmarcEvaluationOf(auth('pass', 'reject'), { ...m, action: 'accept', reason: 'dmarc=pass' })!;
  assert.deepEqual([pass.disposition, pass.spfAligned, pass.dkimAligned, pass.sourceIp, pass.reason], ['none', 'pass', 'fail', '192.0.2.7', null]);
  const q = dmarcEvaluationOf(auth('fail', 'reject'), { ...m, action: 'quarantine', reason: 'dmarc=fail (p=reject, quarantined by configuration) for a.test' })!;
  assert.deepEqual([q.disposition, q.reason], ['quarantine', 'local_policy']);
  const spam = dmarcEvaluationOf(auth('pass', 'none'), { ...m, action: 'reject', reason: 'spam' })!;
  assert.equal(spam.disposition, 'none', 'a rejection for another reason is not a DMARC disposition');
  assert.equal(dmarcEvaluationOf({ dmarc: { status: { result: 'none' } } }, { ...m, action: 'accept', reason: 'no dmarc' }), null);
});

test('records group by source, disposition, results and identifiers; TLS sessions count once per connection', () => {
  const row = (ip: string, disposition: string) => ({ at: 1, header_from: 'a.test', policy_domain: 'a.test', source_ip: ip, envelope_from: 'a.test', envelope_to: 'o.test', disposition, dkim_aligned: 'fail', spf_aligned: 'pass', reason: null, dkim: '[]', spf: '{"domain":"a.test","result":"pass"}', policy: '{}' });
  const g = groupRecords([row('1.1.1.1', 'none'), row('1.1.1.1', 'none'), row('2.2.2.2', 'none'), row('1.1.1.1', 'quarantine')]);
  assert.deepEqual(g.map((r) => [r.sourceIp, r.disposition, r.count]), [['1.1.1.1', 'none', 2], ['1.1.1.1', 'quarantine', 1], ['2.2.2.2', 'none', 1]]);
  const a = { domain: 'd', message_id: 'm1', at: 5, mx: 'mx', ip: '1.2.3.4', source_ip: null, tls_policy: 'no-policy-found', tls_result: 'success' };
  assert.equal(tlsSessions([a, a, { ...a, message_id: 'm2' }]).length, 2, 'two recipients of one attempt are one session');
});

test('TLS failure result types (RFC 8460 §4.3) from the client errors', () => {
  assert.equal(tlsFailureOf({ code: 'ETLS', message: 'Error upgrading connection with STARTTLS', command: 'STARTTLS', response: '502 5.5.1 Unrecognized command' } as any), 'starttls-not-supported');
  assert.equal(tlsFailureOf({ code: 'ETLS', message: 'Error initiating TLS - certificate has expired' }), 'certificate-expired');
  assert.equal(tlsFailureOf({ code: 'ETLS', message: "Error initiating TLS - Hostname/IP does not match certificate's altnames: Host: mx.x. is not in the cert's altnames" }), 'certificate-host-mismatch');
  assert.equal(tlsFailureOf({ code: 'ETLS', message: 'Error initiating TLS - self-signed certificate' }), 'certificate-not-trusted');
  assert.equal(tlsFailureOf({ code: 'ETLS', message: 'Error initiating TLS - handshake failure' }), 'validation-failure');
  assert.deepEqual(sessionOutcome('sts', false), { policy: 'sts', result: 'starttls-not-supported' });
});

test('sending reports is off by default', () => {
  const reports = configSchema.shape.reports.parse(undefined);
  assert.equal(reports.dmarc_send, false);
  assert.equal(reports.tls_send, false);
});

// ---- end to end ---------------------------------------------------------------------------------

let app: Appliance;
let dns: TestDns;
let sink: Sink;
let plain: SMTPServer;
let sts: HttpsServer;
const plainReceived: string[] = [];
let certDir: string;
let key: string;
const published: Record<string, string> = {};
const DAY = new Date().toISOString().slice(0, 10);

before(async () => {
  dns = await new TestDns().start();
  const cert = testCert(['mx.remote.test', 'mta-sts.stsok.test', 'mta-sts.stsbad.test', 'mta-sts.stsgone.test']);
  certDir = cert.dir;
  sink = await new Sink(cert).start();
  // A second MX on the same port of another loopback address, without STARTTLS.
  plain = new SMTPServer({ authOptional: true, disableReverseLookup: true, logger: false, hideSTARTTLS: true, onData: (s, sess, cb) => (s.on('data', () => {}), s.on('end', () => (plainReceived.push(sess.envelope.rcptTo[0].address), cb()))) });
  plain.on('error', () => {});
  await new Promise<void>((r) => plain.listen(sink.port, '127.0.0.2', () => r()));

  dns.a('mx.remote.test', '127.0.0.1').a('mx.plain.test', '127.0.0.2').a('mail.letterbox.test', '127.0.0.1');
  // Senders of mail to us, each with a DMARC record asking for aggregate reports.
  for (const d of ['sender.test', 'ext.test', 'noauth.test']) dns.txt(d, 'v=spf1 ip4:127.0.0.1 -all');
  dns.txt('_dmarc.sender.test', 'v=DMARC1; p=quarantine; rua=mailto:dmarc@sender.test');
  dns.mx('sender.test', 'mx.remote.test');
  dns.txt('_dmarc.ext.test', 'v=DMARC1; p=none; rua=mailto:agg@collector.test!1m');
  dns.txt('ext.test._report._dmarc.collector.test', 'v=DMARC1');
  dns.txt('_dmarc.noauth.test', 'v=DMARC1; p=none; rua=mailto:agg@collector.test');
  dns.mx('collector.test', 'mx.remote.test');
  // Recipients of our mail publishing TLS-RPT: one MX with STARTTLS, one without.
  dns.mx('tls.test', 'mx.remote.test').txt('_smtp._tls.tls.test', 'v=TLSRPTv1; rua=mailto:tlsrpt@collector.test');
  dns.mx('plain.test', 'mx.plain.test').txt('_smtp._tls.plain.test', 'v=TLSRPTv1; rua=mailto:tlsrpt@collector.test');
  // MTA-STS (enforce): stsok.test's MX has a certificate for its name; stsbad.test's MX does not;
  // stsgone.test publishes the TXT record but its policy host answers 404.
  const policies: Record<string, string> = { 'mta-sts.stsok.test': 'mx.remote.test', 'mta-sts.stsbad.test': 'mx.badcert.test' };
  dns.a('mx.badcert.test', '127.0.0.1');
  for (const [d, mx] of [['stsok.test', 'mx.remote.test'], ['stsbad.test', 'mx.badcert.test'], ['stsgone.test', 'mx.remote.test']]) {
    dns.mx(d, mx).txt(`_mta-sts.${d}`, 'v=STSv1; id=1').a(`mta-sts.${d}`, '127.0.0.1').txt(`_smtp._tls.${d}`, 'v=TLSRPTv1; rua=mailto:tlsrpt@collector.test');
  }
  const stsPort = await freePort();
  sts = createHttpsServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    const mx = policies[String(req.headers.host).replace(/:\d+$/, '')];
    if (req.url === '/.well-known/mta-sts.txt' && mx) res.writeHead(200, { 'content-type': 'text/plain' }).end(`version: STSv1\nmode: enforce\nmx: ${mx}\nmax_age: 86400\n`);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => sts.listen(stsPort, '127.0.0.1', () => r()));
  app = await startAppliance({
    extraToml: `[dns]
servers = ["${dns.server}"]
timeout_ms = 1000
[outbound]
port = ${sink.port}
ipv4_only = true
retry_schedule = ["1h"]
mta_sts_port = ${stsPort}
tls_ca_file = "${join(certDir, 'cert.pem')}"
[reports]
dmarc_send = true
tls_send = true
`,
  });
  await app.cliJson(['domain', 'add', OURS]);
  await app.cliJson(['mailbox', 'add', `alice@${OURS}`, '--password', 'alice password 12345']);
  for (const r of (await app.cliJson(['dns', OURS])).records) {
    if (r.type === 'TXT') {
      dns.txt(r.name, r.value);
      if (r.purpose === 'dkim') published[r.name] = r.value;
    }
  }
  key = await createKey(app, '*');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await sink?.stop();
  await new Promise<void>((r) => (plain ? plain.close(() => r()) : r()));
  await new Promise<void>((r) => (sts ? sts.close(() => r()) : r()));
  await dns?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

async function receive(mailFrom: string, headerFrom: string, subject: string): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'mta.sender.test' });
  try {
    return (await t.sendMail({ envelope: { from: mailFrom, to: [`alice@${OURS}`] }, from: headerFrom, to: `alice@${OURS}`, subject, text: 'hello' })).response;
  } finally {
    t.close();
  }
}

function dkimpy(message: Buffer): { d: string; ok: boolean }[] {
  const dir = mkdtempSync(join(tmpdir(), 'lbt-dkim-'));
  try {
    writeFileSync(join(dir, 'msg.eml'), message);
    writeFileSync(join(dir, 'records.json'), JSON.stringify(published));
    return JSON.parse(execFileSync('/usr/bin/python3', [join(HERE, 'helpers', 'dkimverify.py'), join(dir, 'msg.eml'), join(dir, 'records.json')], { encoding: 'utf8' }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function xmllint(xml: Buffer): { ok: boolean; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lbt-xsd-'));
  try {
    writeFileSync(join(dir, 'r.xml'), xml);
    try {
      const out = execFileSync('xmllint', ['--noout', '--schema', join(HERE, 'fixtures', 'dmarc-rfc7489.xsd'), join(dir, 'r.xml')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { ok: true, out };
    } catch (err: any) {
      return { ok: false, out: String(err.stderr) };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function db() {
  return new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
}

const reportsTo = (rcpt: string, kind: string) => sink.for(rcpt).filter((m) => m.data.toString('latin1').includes(kind === 'tls' ? 'TLS-Report-Domain:' : 'Content-Type: application/gzip'));

test('switched off: `reports send` refuses and nothing is built', async () => {
  const r = await app.cli(['reports', 'send', '--date', DAY], { env: { LETTERBOX_REPORTS_DMARC_SEND: 'false', LETTERBOX_REPORTS_TLS_SEND: 'false' } });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /dmarc_send = true/);
  const d = db();
  try {
    assert.equal(d.prepare('SELECT count(*) FROM reports_sent').pluck().get(), 0);
  } finally {
    d.close();
  }
});

test('DMARC aggregate reports: grouped records, gzip XML valid against RFC 7489 appendix C, DKIM-signed, external destinations checked', async () => {
  for (let i = 0; i < 3; i++) assert.match(await receive('bob@sender.test', 'Bob <bob@sender.test>', `pass ${i}`), /^250/);
  assert.match(await receive('x@spoof.example', 'Bob <bob@sender.test>', 'spoofed'), /^250/, 'p=quarantine: accepted into Junk');
  assert.match(await receive('carol@ext.test', 'carol@ext.test', 'external'), /^250/);
  assert.match(await receive('dan@noauth.test', 'dan@noauth.test', 'not authorised'), /^250/);

  const run = await app.cliJson(['reports', 'send', '--date', DAY, '--kind', 'dmarc']);
  assert.deepEqual(run.sent.map((s: any) => [s.domain, s.destination]).sort(), [['ext.test', 'agg@collector.test'], ['sender.test', 'dmarc@sender.test']]);
  assert.deepEqual(run.skipped.map((s: any) => [s.domain, s.destination]), [['noauth.test', 'agg@collector.test']]);
  assert.match(run.skipped[0].reason, /noauth\.test\._report\._dmarc\.collector\.test/);

  await sink.waitFor(() => reportsTo('dmarc@sender.test', 'dmarc').length === 1 && reportsTo('agg@collector.test', 'dmarc').length === 1);
  const msg: Received = reportsTo('dmarc@sender.test', 'dmarc')[0];
  assert.equal(msg.from, '', 'null envelope sender');
  const sigs = dkimpy(msg.data);
  assert.ok(sigs.length >= 1 && sigs.every((s) => s.ok && s.d === OURS), `dkimpy verifies every signature: ${JSON.stringify(sigs)}`);
  const parsed = await simpleParser(msg.data);
  assert.equal(parsed.from?.value[0].address, `noreply-dmarc@${OURS}`);
  assert.match(parsed.subject ?? '', /^Report Domain: sender\.test Submitter: mail\.letterbox\.test Report-ID: <.+>$/);
  const att = parsed.attachments.find((a) => a.contentType === 'application/gzip')!;
  assert.match(att.filename ?? '', /^mail\.letterbox\.test!sender\.test!\d+!\d+\.xml\.gz$/);
  const xml = gunzipSync(att.content);
  const lint = xmllint(xml);
  assert.ok(lint.ok, `xmllint --schema (RFC 7489 appendix C): ${lint.out}`);

  const report = parseDmarcReport(xml);
  assert.equal(report.orgName, 'mail.letterbox.test');
  assert.equal(report.email, `noreply-dmarc@${OURS}`);
  assert.equal(report.end - report.begin, 86399);
  assert.equal(report.begin, Date.UTC(Number(DAY.slice(0, 4)), Number(DAY.slice(5, 7)) - 1, Number(DAY.slice(8, 10))) / 1000);
  assert.deepEqual([report.policy.domain, report.policy.p], ['sender.test', 'quarantine']);
  const byDisposition = Object.fromEntries(report.records.map((r) => [r.disposition, r]));
  assert.equal(report.records.length, 2);
  assert.deepEqual([byDisposition.none.count, byDisposition.none.spf, byDisposition.none.dkim, byDisposition.none.sourceIp], [3, 'pass', 'fail', '127.0.0.1']);
  assert.deepEqual([byDisposition.quarantine.count, byDisposition.quarantine.spf, byDisposition.quarantine.dkim], [1, 'fail', 'fail']);
  assert.equal(byDisposition.none.headerFrom, 'sender.test');
  assert.equal(byDisposition.quarantine.envelopeFrom, 'spoof.example');
  assert.equal(byDisposition.none.envelopeTo, OURS);

  const ext = parseDmarcReport(gunzipSync((await simpleParser(reportsTo('agg@collector.test', 'dmarc')[0].data)).attachments[0].content));
  assert.deepEqual([ext.policy.domain, ext.records.length, ext.records[0].count], ['ext.test', 1, 1]);

  // Logged, with an event; a second run for the same day sends nothing again.
  const sent = await app.cliJson(['reports', 'sent', '--kind', 'dmarc']);
  assert.deepEqual(sent.map((s: any) => `${s.domain}:${s.status}`).sort(), ['ext.test:queued', 'noauth.test:skipped', 'sender.test:queued']);
  const again = await app.cliJson(['reports', 'send', '--date', DAY, '--kind', 'dmarc']);
  assert.deepEqual([again.sent.length, again.skipped.length], [0, 0]);
  const d = db();
  try {
    assert.equal(d.prepare("SELECT count(*) FROM events WHERE type = 'report.sent'").pluck().get(), 2);
  } finally {
    d.close();
  }
});

test('TLS reports: per recipient domain and policy, successes and failures by result type, RFC 8460 fields, DKIM-signed', async () => {
  const sent = [['carol@tls.test', 'tls 1'], ['carol@tls.test', 'tls 2'], ['dave@plain.test', 'plain 1'], ['erin@stsok.test', 'sts ok'], ['fred@stsbad.test', 'sts bad cert'], ['gina@stsgone.test', 'sts no policy']];
  for (const [to, subject] of sent) {
    const r = await call(app, key, 'POST', `/mailboxes/alice@${OURS}/send`, { to, subject, text: 'hi' });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  await sink.waitFor((rs) => rs.filter((m) => m.to.includes('carol@tls.test')).length === 2 && rs.some((m) => m.to.includes('erin@stsok.test')) && rs.some((m) => m.to.includes('gina@stsgone.test')));
  await waitFor(() => plainReceived.includes('dave@plain.test') || null, 'delivery to the MX without STARTTLS');
  // The attempts carry the TLS outcome.
  await waitFor(() => {
    const d = db();
    try {
      return (d.prepare("SELECT count(*) FROM outbound_attempts a JOIN outbound_queue q ON q.id = a.queue_id WHERE q.domain IN ('tls.test', 'plain.test', 'stsok.test', 'stsbad.test', 'stsgone.test') AND a.tls_policy IS NOT NULL").pluck().get() as number) === 6 || null;
    } finally {
      d.close();
    }
  }, 'attempts recorded');

  const run = await app.cliJson(['reports', 'send', '--date', DAY, '--kind', 'tls']);
  assert.deepEqual(run.sent.map((s: any) => s.domain).sort(), ['plain.test', 'stsbad.test', 'stsgone.test', 'stsok.test', 'tls.test']);
  await sink.waitFor(() => reportsTo('tlsrpt@collector.test', 'tls').length === 5);
  const reports = new Map<string, any>();
  for (const m of reportsTo('tlsrpt@collector.test', 'tls')) {
    const sigs = dkimpy(m.data);
    assert.ok(sigs.length >= 1 && sigs.every((s) => s.ok && s.d === OURS), `dkimpy: ${JSON.stringify(sigs)}`);
    const head = m.data.toString('latin1').split('\r\n\r\n')[0];
    assert.match(head, /Content-Type: multipart\/report; report-type="tlsrpt"/);
    const p = await simpleParser(m.data);
    const domain = String(p.headers.get('tls-report-domain'));
    assert.equal(String(p.headers.get('tls-report-submitter')), 'mail.letterbox.test');
    assert.match(p.subject ?? '', new RegExp(`^Report Domain: ${domain.replace('.', '\\.')} Submitter: mail\\.letterbox\\.test Report-ID: <.+>$`));
    const att = p.attachments.find((a) => a.contentType === 'application/tlsrpt+gzip')!;
    assert.match(att.filename ?? '', new RegExp(`^mail\\.letterbox\\.test!${domain.replace('.', '\\.')}!\\d+!\\d+!\\w+\\.json\\.gz$`));
    const json = JSON.parse(gunzipSync(att.content).toString('utf8'));
    // RFC 8460 §4.4 fields, and our own inbound parser reads it.
    assert.equal(json['organization-name'], 'mail.letterbox.test');
    assert.equal(json['contact-info'], `noreply-tlsrpt@${OURS}`);
    assert.match(json['date-range']['start-datetime'], /^\d{4}-\d{2}-\d{2}T00:00:00Z$/);
    assert.match(json['date-range']['end-datetime'], /^\d{4}-\d{2}-\d{2}T23:59:59Z$/);
    assert.ok(json['report-id']);
    parseTlsReport(JSON.stringify(json));
    reports.set(domain, json);
  }
  const ok = reports.get('tls.test').policies;
  assert.deepEqual(ok.map((p: any) => [p.policy['policy-type'], p.policy['policy-domain'], p.summary['total-successful-session-count'], p.summary['total-failure-session-count']]), [['no-policy-found', 'tls.test', 2, 0]]);
  assert.equal(ok[0]['failure-details'], undefined);
  const bad = reports.get('plain.test').policies;
  assert.deepEqual(bad.map((p: any) => [p.policy['policy-type'], p.summary['total-successful-session-count'], p.summary['total-failure-session-count']]), [['no-policy-found', 0, 1]]);
  assert.deepEqual(bad[0]['failure-details'], [{ 'result-type': 'starttls-not-supported', 'sending-mta-ip': '127.0.0.1', 'receiving-mx-hostname': 'mx.plain.test', 'receiving-ip': '127.0.0.2', 'failed-session-count': 1 }]);
  const summary = (d: string) => reports.get(d).policies.map((p: any) => [p.policy['policy-type'], p.summary['total-successful-session-count'], p.summary['total-failure-session-count'], (p['failure-details'] ?? []).map((f: any) => `${f['result-type']}@${f['receiving-mx-hostname']}`)]);
  assert.deepEqual(summary('stsok.test'), [['sts', 1, 0, []]]);
  assert.deepEqual(reports.get('stsok.test').policies[0].policy['policy-string'], ['version: STSv1', 'mode: enforce', 'mx: mx.remote.test', 'max_age: 86400']);
  assert.deepEqual(reports.get('stsok.test').policies[0].policy['mx-host'], ['mx.remote.test']);
  assert.deepEqual(summary('stsbad.test'), [['sts', 0, 1, ['certificate-host-mismatch@mx.badcert.test']]]);
  assert.deepEqual(summary('stsgone.test'), [['sts', 0, 1, ['sts-policy-fetch-error@mx.remote.test']]]);
  assert.equal(sink.for('fred@stsbad.test').length, 0, 'nothing delivered to the MX whose certificate failed under MTA-STS enforce');
});
