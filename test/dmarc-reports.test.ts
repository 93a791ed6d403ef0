// DMARC aggregate reports and SMTP TLS reports received (issue #18 items 1 and 3). Samples written from RFC 7489 appendix C in
// the shapes real reporters send (a default namespace, Microsoft's xsd/xsi prologue, prefixed
// elements, optional elements left out, several records), packed as zip (by Python's zipfile, an
// independent implementation), gzip and plain XML, and delivered through the real MX listener of a
// `letterbox serve` child; hostile input (zip and gzip bombs, a zip whose sizes lie, malformed XML,
// DOCTYPE entities) is stored as rejected with its reason and never crashes anything. The summary is
// read back through the CLI and the API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import nodemailer from 'nodemailer';
import Database from 'better-sqlite3';
import { startAppliance, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { RawSmtp } from './helpers/smtp-raw.ts';
import { parseDmarcReport, summarizeDmarc } from '../src/reports/dmarc.ts';
import { unpack, packKind } from '../src/reports/unpack.ts';
import { reportKindOf, reportMixRefusal } from '../src/reports/receive.ts';
import { parseTlsReport, summarizeTls } from '../src/reports/tlsrpt.ts';
import { parseReport } from '../src/reports/parse.ts';

const HOST = 'mail.letterbox.test';
const D = 'example.test';
const OURS = '203.0.113.10';
const SPOOFER = '198.51.100.99';
const FORWARDER = '2001:db8:77::25';

// ---- samples (RFC 7489 appendix C) --------------------------------------------------------------

/** Google-style: a default namespace, extra_contact_info, two records (ours passing, a spoofer failing). */
const google = (id = '11801155921112455125') => `<?xml version="1.0" encoding="UTF-8" ?>
<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">
  <version>1.0</version>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>${id}</report_id>
    <date_range>
      <begin>${DAY - 86400}</begin>
      <end>${DAY - 1}</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>${D}</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>quarantine</p>
    <sp>quarantine</sp>
    <pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>${OURS}</source_ip>
      <count>12</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>pass</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>${D}</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>${D}</domain>
        <result>pass</result>
        <selector>lb202612r</selector>
      </dkim>
      <dkim>
        <domain>${D}</domain>
        <result>pass</result>
        <selector>lb202612e</selector>
      </dkim>
      <spf>
        <domain>${D}</domain>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>${SPOOFER}</source_ip>
      <count>3</count>
      <policy_evaluated>
        <disposition>quarantine</disposition>
        <dkim>fail</dkim>
        <spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>${D}</header_from>
    </identifiers>
    <auth_results>
      <spf>
        <domain>spoofer.example</domain>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
</feedback>
`;

/** Microsoft-style: xsd/xsi namespaces, envelope_to/envelope_from, fo, a forwarder failing SPF but passing DKIM, a reason. */
const microsoft = () => `<?xml version="1.0"?>
<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <version>1.0</version>
  <report_metadata>
    <org_name>Enterprise Outlook</org_name>
    <email>dmarcreport@microsoft.com</email>
    <report_id>9d0b6e5e2b3e4d0c8a1f7c6b5a4e3d2c</report_id>
    <date_range>
      <begin>${DAY - 86400}</begin>
      <end>${DAY}</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>${D}</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>quarantine</p>
    <sp>quarantine</sp>
    <pct>100</pct>
    <fo>0</fo>
  </policy_published>
  <record>
    <row>
      <source_ip>2001:DB8:77:0:0:0:0:25</source_ip>
      <count>2</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>fail</spf>
        <reason>
          <type>forwarded</type>
          <comment>list &amp; forwarder</comment>
        </reason>
      </policy_evaluated>
    </row>
    <identifiers>
      <envelope_to>outlook.com</envelope_to>
      <envelope_from>lists.example.org</envelope_from>
      <header_from>${D}</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>${D}</domain>
        <selector>lb202612r</selector>
        <result>pass</result>
      </dkim>
      <spf>
        <domain>lists.example.org</domain>
        <scope>mfrom</scope>
        <result>fail</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>${OURS}</source_ip>
      <count>5</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>pass</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <envelope_to>hotmail.com</envelope_to>
      <envelope_from>${D}</envelope_from>
      <header_from>${D}</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>${D}</domain>
        <result>pass</result>
      </dkim>
      <spf>
        <domain>${D}</domain>
        <scope>mfrom</scope>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
</feedback>`;

/** The least a report may hold: prefixed elements, no email, no identifiers or auth_results, odd case and spaces. */
const minimal = () => `<dmarc:feedback xmlns:dmarc="urn:ietf:params:xml:ns:dmarc-2.0"><dmarc:report_metadata><dmarc:org_name> Yahoo </dmarc:org_name><dmarc:report_id>1701</dmarc:report_id><dmarc:date_range><dmarc:begin>${DAY - 3600}</dmarc:begin><dmarc:end>${DAY}</dmarc:end></dmarc:date_range></dmarc:report_metadata><dmarc:policy_published><dmarc:domain>Mail.${D.toUpperCase()}</dmarc:domain><dmarc:p>Reject</dmarc:p></dmarc:policy_published><dmarc:record><dmarc:row><dmarc:source_ip>${SPOOFER}</dmarc:source_ip><dmarc:count>4</dmarc:count><dmarc:policy_evaluated><dmarc:disposition>Reject</dmarc:disposition><dmarc:dkim>FAIL</dmarc:dkim><dmarc:spf>fail</dmarc:spf></dmarc:policy_evaluated></dmarc:row></dmarc:record></dmarc:feedback>`;

/** RFC 8460 §4.4's example, for our domain: an MTA-STS policy, two kinds of failure. */
const tlsRfc = (id = '5065427c-23d3-47ca-b6e0-946ea0e8c4be') =>
  JSON.stringify({
    'organization-name': 'Company-X',
    'date-range': { 'start-datetime': new Date((DAY - 86400) * 1000).toISOString(), 'end-datetime': new Date((DAY - 1) * 1000).toISOString() },
    'contact-info': 'sts-reporting@company-x.example',
    'report-id': id,
    policies: [
      {
        policy: { 'policy-type': 'sts', 'policy-string': ['version: STSv1', 'mode: testing', `mx: ${HOST}`, 'max_age: 86400'], 'policy-domain': D, 'mx-host': [HOST] },
        summary: { 'total-successful-session-count': 5326, 'total-failure-session-count': 303 },
        'failure-details': [
          { 'result-type': 'certificate-expired', 'sending-mta-ip': '2001:db8:abcd:0012::1', 'receiving-mx-hostname': HOST, 'failed-session-count': 100 },
          { 'result-type': 'starttls-not-supported', 'sending-mta-ip': '2001:db8:abcd:0013::1', 'receiving-mx-hostname': HOST, 'receiving-ip': '203.0.113.56', 'failed-session-count': 200, 'additional-information': 'https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported' },
          { 'result-type': 'validation-failure', 'sending-mta-ip': '198.51.100.62', 'receiving-ip': '203.0.113.58', 'receiving-mx-hostname': HOST, 'failed-session-count': 3, 'failure-reason-code': 'X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED' },
        ],
      },
    ],
  });

/** Google-style: no failures, a "no-policy-found" policy, no contact-info, pretty-printed. */
const tlsGoogle = () =>
  JSON.stringify(
    {
      'organization-name': 'Google Inc.',
      'date-range': { 'start-datetime': new Date((DAY - 86400) * 1000).toISOString().replace('.000', ''), 'end-datetime': new Date((DAY - 1) * 1000).toISOString().replace('.000', '') },
      'report-id': '2026-12-06T00:00:00Z_example.test',
      policies: [{ policy: { 'policy-type': 'no-policy-found', 'policy-domain': D }, summary: { 'total-successful-session-count': 41 } }],
    },
    null,
    2,
  );

// Report periods end at the start of today (UTC) so `--days` windows include them.
const DAY = Math.floor(Date.now() / 86_400_000) * 86400;

const work = mkdtempSync(join(tmpdir(), 'lbt-dmarc-'));

/** A zip archive made by Python's zipfile (an implementation independent of the one reading it). */
function zip(name: string, content: Buffer | string, opts: { stored?: boolean } = {}): Buffer {
  const src = join(work, 'in.bin');
  const out = join(work, 'out.zip');
  writeFileSync(src, content);
  execFileSync('python3', ['-c', 'import sys,zipfile\nwith zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED if sys.argv[4] == "1" else zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[2], arcname=sys.argv[3])', out, src, name, opts.stored ? '1' : '0']);
  return readFileSync(out);
}

/** A zip with two files. */
function zip2(): Buffer {
  const out = join(work, 'two.zip');
  execFileSync('python3', ['-c', 'import sys,zipfile\nwith zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:\n  z.writestr("a.xml", "<feedback/>")\n  z.writestr("b.xml", "<feedback/>")', out]);
  return readFileSync(out);
}

const limits = { maxBytes: 50 * 1024 * 1024, maxRatio: 200 };

// ---- pure: parsing and unpacking ----------------------------------------------------------------

test('parse: Google-style (default namespace), Microsoft-style (xsd/xsi, envelope ids, reasons), minimal prefixed report', () => {
  const g = parseDmarcReport(google());
  assert.equal(g.orgName, 'google.com');
  assert.equal(g.email, 'noreply-dmarc-support@google.com');
  assert.equal(g.reportId, '11801155921112455125', 'report ids stay strings (no number precision loss)');
  assert.deepEqual([g.begin, g.end], [DAY - 86400, DAY - 1]);
  assert.deepEqual(g.policy, { domain: D, adkim: 'r', aspf: 'r', p: 'quarantine', sp: 'quarantine', pct: 100, fo: null });
  assert.equal(g.records.length, 2);
  assert.deepEqual(g.records[0].dkimResults.map((x) => x.selector), ['lb202612r', 'lb202612e']);
  assert.deepEqual([g.records[1].sourceIp, g.records[1].count, g.records[1].disposition, g.records[1].dkim, g.records[1].spf], [SPOOFER, 3, 'quarantine', 'fail', 'fail']);
  assert.deepEqual(g.records[1].dkimResults, [], 'no <dkim> in auth_results');

  const m = parseDmarcReport(microsoft());
  assert.equal(m.orgName, 'Enterprise Outlook');
  assert.equal(m.policy.fo, '0');
  assert.deepEqual(m.records[0].reasons, [{ type: 'forwarded', comment: 'list & forwarder' }]);
  assert.deepEqual([m.records[0].envelopeTo, m.records[0].envelopeFrom, m.records[0].headerFrom], ['outlook.com', 'lists.example.org', D]);
  assert.deepEqual(m.records[0].spfResults, [{ domain: 'lists.example.org', scope: 'mfrom', result: 'fail' }]);
  assert.equal(m.records[1].dkimResults[0].selector, null, 'selector is optional');

  const y = parseDmarcReport(minimal());
  assert.equal(y.orgName, 'Yahoo');
  assert.equal(y.email, null);
  assert.equal(y.policy.domain, `mail.${D}`);
  assert.equal(y.policy.p, 'reject');
  assert.deepEqual([y.records[0].disposition, y.records[0].dkim, y.records[0].headerFrom], ['reject', 'fail', null]);
});

test('summary: per source IP, aligned DKIM/SPF, DMARC pass/fail, disposition; sources failing alignment flagged', () => {
  const s = summarizeDmarc([parseDmarcReport(google()), parseDmarcReport(microsoft()), parseDmarcReport(minimal())]);
  assert.deepEqual([s.reports, s.messages, s.dmarcPass, s.dmarcFail], [3, 26, 19, 7]);
  assert.deepEqual(s.sources.map((x) => x.sourceIp), [OURS, SPOOFER, FORWARDER], 'most messages first');
  const [ours, spoofer, fwd] = s.sources;
  assert.deepEqual([ours.messages, ours.dkimAligned, ours.spfAligned, ours.dmarcFail, ours.failing], [17, 17, 17, 0, false]);
  assert.deepEqual(ours.reporters, ['Enterprise Outlook', 'google.com']);
  assert.deepEqual([spoofer.messages, spoofer.dmarcFail, spoofer.failing], [7, 7, true]);
  assert.deepEqual(spoofer.disposition, { none: 0, quarantine: 3, reject: 4 });
  assert.deepEqual([fwd.dkimAligned, fwd.spfAligned, fwd.dmarcPass, fwd.failing], [2, 0, 2, false], 'DKIM alone passes DMARC');
});

test('parse: malformed and hostile XML is refused with a reason', () => {
  const bad: [string, RegExp][] = [
    ['<feedback><report_metadata></feedback>', /malformed XML/],
    ['not xml at all', /malformed XML/],
    ['<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><feedback>&lol2;</feedback>', /DOCTYPE/],
    ['<rss><channel/></rss>', /no <feedback> root/],
    [google().replace('<org_name>google.com</org_name>', ''), /org_name/],
    [google().replace(`<source_ip>${SPOOFER}</source_ip>`, '<source_ip>999.1.1.1</source_ip>'), /record 2: source_ip "999\.1\.1\.1" is not an IP/],
    [google().replace('<count>12</count>', '<count>-1</count>'), /record 1: count is not a non-negative integer/],
    [google().replace(/<record>[\s\S]*<\/record>/, ''), /no <record>/],
    [google().replace(`<end>${DAY - 1}</end>`, '<end>5</end>'), /ends before it begins/],
  ];
  for (const [xml, why] of bad) {
    assert.throws(() => parseDmarcReport(xml), (err: any) => err.code === 'validation_error' && why.test(err.message), `${why}`);
  }
});

test('parsing runs in a worker thread: the same result, the reason of a bad document, a deadline', async () => {
  assert.deepEqual(await parseReport('dmarc', Buffer.from(google()), { timeoutMs: 60000, heapMb: 128 }), parseDmarcReport(google()));
  assert.deepEqual(await parseReport('tlsrpt', Buffer.from(tlsRfc()), { timeoutMs: 60000, heapMb: 128 }), parseTlsReport(tlsRfc()));
  await assert.rejects(parseReport('dmarc', Buffer.from('<feedback>'), { timeoutMs: 60000, heapMb: 128 }), (err: any) => err.code === 'validation_error' && /malformed XML/.test(err.message));
  await assert.rejects(parseReport('dmarc', Buffer.from(google()), { timeoutMs: 1, heapMb: 128 }), (err: any) => err.code === 'validation_error' && /longer than 1 ms/.test(err.message));
});

test('unpack: zip (deflate and stored), gzip and plain; bombs, lying sizes, several files and corrupt data refused', async () => {
  const xml = google();
  for (const packed of [zip('google.com!example.test!1!2.xml', xml), zip('r.xml', xml, { stored: true }), gzipSync(xml), Buffer.from(xml)]) {
    const u = await unpack(packed, limits);
    assert.equal(u.data.toString(), xml, u.kind);
  }
  assert.deepEqual([packKind(zip('a.xml', 'x')), packKind(gzipSync('x')), packKind(Buffer.from('<x/>'))], ['zip', 'gzip', 'plain']);

  const zeros = Buffer.alloc(30 * 1024 * 1024, 0x20);
  // Ratio: 30 MB of spaces pack into ~30 KB (1000×); the limit is 200× the packed size.
  await assert.rejects(unpack(zip('bomb.xml', zeros), limits), /decompression bomb/);
  await assert.rejects(unpack(gzipSync(zeros), limits), /decompression bomb/);
  // Size: under the ratio but over the absolute limit.
  await assert.rejects(unpack(gzipSync(zeros), { maxBytes: 1024 * 1024, maxRatio: 100000 }), /expands beyond 1048576 bytes/);
  await assert.rejects(unpack(Buffer.from(xml), { maxBytes: 100, maxRatio: 200 }), /report too large/);
  // A zip whose headers claim 100 bytes for 1 MB of content: stopped, not believed.
  const liar = zip('liar.xml', Buffer.alloc(1024 * 1024, 0x20));
  const cd = liar.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  liar.writeUInt32LE(100, 22); // local header: uncompressed size
  liar.writeUInt32LE(100, cd + 24); // central directory: uncompressed size
  await assert.rejects(unpack(liar, limits), (err: any) => err.code === 'validation_error' && /zip entry/.test(err.message));
  await assert.rejects(unpack(zip2(), limits), /holds 2 entries/);
  await assert.rejects(unpack(zip('a.xml', xml).subarray(0, 60), limits), /not a valid zip archive/);
  const corrupt = gzipSync(xml);
  corrupt.fill(0x55, 12, 40);
  await assert.rejects(unpack(corrupt, limits), /gzip data is corrupt/);
});

test('RCPT: a transaction carries report addresses or other mail, never both (452 4.5.3)', () => {
  assert.equal(reportMixRefusal({ mailRecipients: 0, reportRecipients: 0, isReport: true }), null);
  assert.equal(reportMixRefusal({ mailRecipients: 0, reportRecipients: 1, isReport: true }), null);
  assert.equal(reportMixRefusal({ mailRecipients: 2, reportRecipients: 0, isReport: false }), null);
  assert.equal(reportMixRefusal({ mailRecipients: 1, reportRecipients: 0, isReport: true })?.responseCode, 452);
  assert.equal(reportMixRefusal({ mailRecipients: 0, reportRecipients: 1, isReport: false })?.enhanced, '4.5.3');
});

test('TLS reports: RFC 8460 example and Google-style parse; summary per policy and per failure; bad documents refused', () => {
  const r = parseTlsReport(tlsRfc());
  assert.deepEqual([r.orgName, r.contact, r.reportId], ['Company-X', 'sts-reporting@company-x.example', '5065427c-23d3-47ca-b6e0-946ea0e8c4be']);
  assert.equal(r.policies[0].policyType, 'sts');
  assert.deepEqual(r.policies[0].mxHost, [HOST]);
  assert.deepEqual(r.policies[0].failures.map((f) => [f.resultType, f.failedSessionCount]), [['certificate-expired', 100], ['starttls-not-supported', 200], ['validation-failure', 3]]);
  assert.equal(r.policies[0].failures[2].failureReasonCode, 'X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED');
  const g = parseTlsReport(tlsGoogle());
  assert.deepEqual([g.contact, g.policies[0].policyType, g.policies[0].successful, g.policies[0].failed, g.policies[0].failures], [null, 'no-policy-found', 41, 0, []]);
  const s = summarizeTls([r, g]);
  assert.deepEqual([s.reports, s.successful, s.failed], [2, 5367, 303]);
  assert.deepEqual(s.failures.map((f) => [f.resultType, f.sessions]), [['starttls-not-supported', 200], ['certificate-expired', 100], ['validation-failure', 3]]);
  assert.deepEqual(s.policies.map((p) => p.policyType), ['sts', 'no-policy-found']);
  const bad: [string, RegExp][] = [
    ['{"organization-name": "x", ', /malformed JSON/],
    ['[1,2]', /not a JSON object/],
    [tlsRfc().replace('"report-id"', '"report-ix"'), /report-id missing/],
    [tlsRfc().replace(/"start-datetime":"[^"]+"/, '"start-datetime":"yesterday"'), /start-datetime is not a date-time/],
    [tlsRfc().replace('"failed-session-count":100', '"failed-session-count":-5'), /failed-session-count is not a non-negative integer/],
    [tlsRfc().replace(/"policies":\[.*\]\}$/, '"policies":[]}'), /policies missing or empty/],
  ];
  for (const [doc, why] of bad) assert.throws(() => parseTlsReport(doc), (err: any) => err.code === 'validation_error' && why.test(err.message), `${why}`);
  assert.deepEqual([reportKindOf(Buffer.from(' {"a":1}'), 'dmarc'), reportKindOf(Buffer.from('<?xml?>'), 'tlsrpt'), reportKindOf(Buffer.from('garbage'), 'tlsrpt')], ['tlsrpt', 'dmarc', 'tlsrpt']);
});

// ---- through the MX listener ----------------------------------------------------------------------

let app: Appliance;
let dns: TestDns;
let apiKey: string;

before(async () => {
  dns = await new TestDns().start();
  dns.add({ type: 'PTR', name: '10.113.0.203.in-addr.arpa', data: HOST });
  app = await startAppliance({ hostname: HOST, extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[reports]\nmax_message_size = "2M"\n` });
  await app.cliJson(['domain', 'add', D]);
  await app.cliJson(['domain', 'add', 'other.test']);
  await app.cliJson(['mailbox', 'add', `alice@${D}`, '--password', 'a long enough password 1']);
  apiKey = (await app.cliJson(['key', 'create', '--name', 'reports', '--scopes', 'domains:read'])).secret;
});
after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function deliver(to: string, attachments: { filename: string; content: Buffer | string; contentType: string }[], o: { text?: string; from?: string } = {}) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'reporter.example' });
  try {
    const info = await t.sendMail({ envelope: { from: o.from ?? 'noreply-dmarc-support@google.com', to: [to] }, from: 'DMARC reports <reports@reporter.example>', to, subject: `Report domain: ${D}`, text: o.text ?? 'This is an aggregate report.', attachments });
    return info.response;
  } finally {
    t.close();
  }
}

function db() {
  return new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
}

test('the DMARC and TLS-RPT records publish the reports addresses', async () => {
  const r = await app.cliJson(['dns', D]);
  const dmarc = r.records.find((x: any) => x.purpose === 'dmarc');
  assert.match(dmarc.value, new RegExp(`rua=mailto:dmarc-reports@${D.replace('.', '\\.')}$`));
  const tls = r.records.find((x: any) => x.purpose === 'tlsrpt');
  assert.deepEqual([tls.name, tls.value], [`_smtp._tls.${D}`, `v=TLSRPTv1; rua=mailto:tls-reports@${D}`]);
});

test('reports delivered to the MX (zip, gzip, plain XML) are stored before the 250, and summarised by the CLI and API', async () => {
  const r1 = await deliver(`dmarc-reports@${D}`, [{ filename: `google.com!${D}!${DAY - 86400}!${DAY - 1}.zip`, content: zip(`google.com!${D}!${DAY - 86400}!${DAY - 1}.xml`, google()), contentType: 'application/zip' }]);
  assert.match(r1, /^250 /);
  // Stored (committed) by the time the 250 came: visible to another connection at once.
  const id = /\(([^)]+)\)/.exec(r1)![1];
  const h = db();
  try {
    assert.equal(h.prepare('SELECT status FROM dmarc_reports WHERE id = ?').pluck().get(id), 'accepted');
    assert.equal(h.prepare('SELECT count(*) FROM dmarc_report_records WHERE report_id = ?').pluck().get(id), 2);
  } finally {
    h.close();
  }
  assert.match(await deliver(`dmarc-reports@${D}`, [{ filename: `enterprise.protection.outlook.com!${D}!1!2.xml.gz`, content: gzipSync(microsoft()), contentType: 'application/gzip' }], { from: 'dmarcreport@microsoft.com' }), /^250 /);
  assert.match(await deliver(`DMARC-Reports@${D.toUpperCase()}`, [{ filename: 'report.xml', content: minimal(), contentType: 'text/xml' }]), /^250 /);
  // The same report again (a reporter's retry) is stored once.
  assert.match(await deliver(`dmarc-reports@${D}`, [{ filename: 'again.zip', content: zip('again.xml', google()), contentType: 'application/zip' }]), /^250 /);

  const v = await app.cliJson(['dmarc', 'report', D, '--days', '30']);
  assert.equal(v.address, `dmarc-reports@${D}`);
  assert.deepEqual([v.summary.reports, v.summary.messages, v.summary.dmarcPass, v.summary.dmarcFail], [3, 26, 19, 7]);
  const by = (ip: string) => v.summary.sources.find((s: any) => s.sourceIp === ip);
  assert.equal(by(OURS).ptr, HOST, 'the PTR of the source, looked up');
  assert.equal(by(OURS).failing, false);
  assert.equal(by(SPOOFER).failing, true);
  assert.deepEqual(by(SPOOFER).disposition, { none: 0, quarantine: 3, reject: 4 });
  assert.equal(by(FORWARDER).ptr, null);
  assert.equal(v.reports.filter((r: any) => r.status === 'accepted').length, 3);

  const text = await app.cli(['dmarc', 'report', D, '--no-ptr']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /3 report\(s\), 26 message\(s\): 19 passed DMARC \(73%\), 7 failed/);
  assert.match(text.stdout, new RegExp(`${SPOOFER.replace(/\./g, '\\.')}\\s+-\\s+7\\s+0 \\(0%\\)\\s+0 \\(0%\\)\\s+7\\s+quarantine 3, reject 4\\s+FAILING`));
  assert.match(text.stdout, /1 source\(s\) fail DMARC alignment/);

  // The API gives the same, under the domains:read scope.
  const api = async (path: string, key = apiKey) => {
    const res = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1${path}`, { headers: { authorization: `Bearer ${key}` } });
    return { status: res.status, body: (await res.json()) as any };
  };
  const a = await api(`/domains/${D}/dmarc-reports?days=30`);
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.deepEqual(a.body.data.summary.sources.map((s: any) => [s.sourceIp, s.messages, s.failing]), [[OURS, 17, false], [SPOOFER, 7, true], [FORWARDER, 2, false]]);
  assert.equal(a.body.data.summary.sources[0].ptr, HOST);
  // A period that ends before the reports: nothing.
  const none = await app.cliJson(['dmarc', 'report', 'other.test', '--no-ptr']);
  assert.deepEqual([none.summary.reports, none.summary.sources], [0, []]);
  assert.equal((await api(`/domains/${D}/dmarc-reports?days=0`)).status, 400);
  const noScope = (await app.cliJson(['key', 'create', '--name', 'mbx', '--scopes', 'mailboxes:read'])).secret;
  assert.equal((await api(`/domains/${D}/dmarc-reports`, noScope)).status, 403);
  assert.equal((await app.cli(['dmarc', 'report', 'nope.test'])).code, 2);
  assert.equal((await app.cli(['dmarc', 'report', D, '--days', 'x'])).code, 2);
});

test('hostile and malformed reports are answered 250 and stored as rejected with the reason', async () => {
  const before = (await app.cliJson(['dmarc', 'report', D, '--no-ptr'])).summary;
  const cases: [string, { filename: string; content: Buffer | string; contentType: string }[], RegExp, string?][] = [
    ['zip bomb', [{ filename: 'bomb.zip', content: zip('bomb.xml', Buffer.alloc(30 * 1024 * 1024, 0x20)), contentType: 'application/zip' }], /decompression bomb/],
    ['gzip bomb', [{ filename: 'bomb.xml.gz', content: gzipSync(Buffer.alloc(30 * 1024 * 1024, 0x20)), contentType: 'application/gzip' }], /decompression bomb/],
    ['malformed XML', [{ filename: 'bad.xml', content: '<feedback><report_metadata>', contentType: 'text/xml' }], /malformed XML/],
    ['entities', [{ filename: 'lol.xml', content: '<!DOCTYPE f [<!ENTITY a "aaaa">]><feedback>&a;</feedback>', contentType: 'text/xml' }], /DOCTYPE/],
    ['another domain', [{ filename: 'o.xml', content: google('x1').replace(`<domain>${D}</domain>\n    <adkim>`, '<domain>victim.example</domain>\n    <adkim>'), contentType: 'text/xml' }], /report is about victim\.example, not example\.test/],
    ['no attachment', [], /no report attachment/, 'just some text, no report'],
  ];
  for (const [name, att, why, text] of cases) {
    const r = await deliver(`dmarc-reports@${D}`, att, { text, from: `${name.replace(/\s/g, '-')}@sender.example` });
    assert.match(r, /^250 /, name);
  }
  const v = await app.cliJson(['dmarc', 'report', D, '--no-ptr']);
  for (const [name, , why] of cases) {
    const r = v.reports.find((x: any) => x.mailFrom === `${name.replace(/\s/g, '-')}@sender.example`);
    assert.ok(r, name);
    assert.equal(r.status, 'rejected', name);
    assert.match(r.reason, why, name);
  }
  assert.deepEqual(v.summary, before, 'rejected reports do not count');
  const text = await app.cli(['dmarc', 'report', D, '--no-ptr']);
  assert.match(text.stdout, /Rejected reports:/);
  assert.match(text.stdout, /decompression bomb/);
  // A message over reports.max_message_size (2M here) is refused at DATA, not stored.
  await assert.rejects(deliver(`dmarc-reports@${D}`, [{ filename: 'big.xml', content: Buffer.alloc(3 * 1024 * 1024, 0x41), contentType: 'text/xml' }]), /552/);
  // The appliance is still up and answering.
  assert.match(await deliver(`dmarc-reports@${D}`, [{ filename: 'r.xml', content: google('after-the-bombs'), contentType: 'text/xml' }]), /^250 /);
});

test('report addresses and other recipients in one transaction: the second kind gets 452 4.5.3; the normal mailbox is unaffected', async () => {
  const { client } = await RawSmtp.open(app.ports.mx);
  const cmd = async (line: string) => (await client.cmd(line))!;
  try {
    assert.equal((await cmd('EHLO reporter.example')).code, 250);
    assert.equal((await cmd('MAIL FROM:<r@reporter.example>')).code, 250);
    assert.equal((await cmd(`RCPT TO:<dmarc-reports@${D}>`)).code, 250);
    const mixed = await cmd(`RCPT TO:<alice@${D}>`);
    assert.equal(mixed.code, 452);
    assert.match(mixed.text, /4\.5\.3/);
    assert.equal((await cmd(`RCPT TO:<dmarc-reports@other.test>`)).code, 250, 'report addresses of several domains may share a transaction');
    assert.equal((await cmd('RSET')).code, 250);
    assert.equal((await cmd('MAIL FROM:<r@reporter.example>')).code, 250);
    assert.equal((await cmd(`RCPT TO:<alice@${D}>`)).code, 250);
    assert.equal((await cmd(`RCPT TO:<dmarc-reports@${D}>`)).code, 452);
    assert.equal((await cmd('QUIT')).code, 221);
  } finally {
    await client.close();
  }
  // Ordinary mail still reaches the mailbox.
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: app.ports.mx, secure: false, ignoreTLS: true, name: 'reporter.example' });
  const info = await t.sendMail({ envelope: { from: 'x@reporter.example', to: [`alice@${D}`] }, raw: `From: x@reporter.example\r\nTo: alice@${D}\r\nSubject: hi\r\nMessage-ID: <m1@reporter.example>\r\n\r\nhello\r\n` });
  t.close();
  assert.match(info.response, /^250 /);
});

test('TLS reports delivered to the MX (gzip as RFC 8460 says, and plain JSON) are stored and summarised; bad ones rejected with the reason', async () => {
  assert.match(await deliver(`tls-reports@${D}`, [{ filename: `company-x.example!${D}!${DAY - 86400}!${DAY - 1}!1.json.gz`, content: gzipSync(tlsRfc()), contentType: 'application/tlsrpt+gzip' }], { from: 'sts-reporting@company-x.example' }), /^250 /);
  assert.match(await deliver(`tls-reports@${D}`, [{ filename: `google.com!${D}!1!2.json`, content: tlsGoogle(), contentType: 'application/tlsrpt+json' }], { from: 'noreply-smtp-tls-reporting@google.com' }), /^250 /);
  assert.match(await deliver(`tls-reports@${D}`, [{ filename: 'again.json.gz', content: gzipSync(tlsRfc()), contentType: 'application/tlsrpt+gzip' }]), /^250 /);
  assert.match(await deliver(`tls-reports@${D}`, [{ filename: 'bad.json', content: '{"organization-name": ', contentType: 'application/tlsrpt+json' }], { from: 'broken@sender.example' }), /^250 /);
  assert.match(await deliver(`tls-reports@${D}`, [{ filename: 'bomb.json.gz', content: gzipSync(Buffer.alloc(30 * 1024 * 1024, 0x20)), contentType: 'application/tlsrpt+gzip' }], { from: 'bomb@sender.example' }), /^250 /);
  assert.match(await deliver(`tls-reports@${D}`, [{ filename: 'x.json', content: tlsRfc('other-domain').replaceAll(`"policy-domain":"${D}"`, '"policy-domain":"victim.example"'), contentType: 'application/tlsrpt+json' }], { from: 'other@sender.example' }), /^250 /);

  const v = await app.cliJson(['tlsrpt', 'report', D]);
  assert.equal(v.address, `tls-reports@${D}`);
  assert.deepEqual([v.summary.reports, v.summary.successful, v.summary.failed], [2, 5367, 303], 'the duplicate counted once');
  assert.deepEqual(v.summary.failures[0], { resultType: 'starttls-not-supported', receivingMx: HOST, sessions: 200, sendingIps: ['2001:db8:abcd:13::1'], reporters: ['Company-X'] });
  const reason = (from: string) => v.reports.find((r: any) => r.mailFrom === from)?.reason;
  assert.match(reason('broken@sender.example'), /malformed JSON/);
  assert.match(reason('bomb@sender.example'), /decompression bomb/);
  assert.match(reason('other@sender.example'), /report is about victim\.example/);
  assert.equal(v.rejected, 3);
  // DMARC summaries are not touched by TLS reports.
  assert.equal((await app.cliJson(['dmarc', 'report', D, '--no-ptr'])).summary.reports, 4, 'the three above and the one after the bombs');

  const text = await app.cli(['tlsrpt', 'report', D]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /2 report\(s\), 5670 TLS session\(s\): 5367 succeeded, 303 failed \(5%\)/);
  assert.match(text.stdout, /starttls-not-supported\s+mail\.letterbox\.test\s+200/);
  const res = await fetch(`http://127.0.0.1:${app.ports.api}/api/v1/domains/${D}/tls-reports?days=30`, { headers: { authorization: `Bearer ${apiKey}` } });
  assert.equal(res.status, 200);
  const body = (await res.json()) as any;
  assert.deepEqual(body.data.summary.policies.map((p: any) => [p.policyType, p.successful, p.failed]), [['sts', 5326, 303], ['no-policy-found', 41, 0]]);
});
