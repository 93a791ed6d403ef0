import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recordsForDomain, toZone } from '../src/dns/records.ts';

const base = { domain: 'example.com', hostname: 'mail.example.com', ips: ['203.0.113.10', '2001:db8::10', '127.0.0.1'], dkim: [{ selector: 'lb202611r', algorithm: 'rsa' as const, publicKey: 'A'.repeat(400) }] };

test('records: MX, SPF with our IPs, DKIM, DMARC, host A/AAAA (never loopback)', () => {
  const r = recordsForDomain(base);
  const by = (p: string) => r.filter((x) => x.purpose === p);
  assert.deepEqual(by('mx').map((x) => [x.name, x.value, x.priority]), [['example.com', 'mail.example.com', 10]]);
  assert.equal(by('spf')[0].value, 'v=spf1 mx ip4:203.0.113.10 ip6:2001:db8::10 ip4:127.0.0.1 -all');
  assert.equal(by('dkim')[0].name, 'lb202611r._domainkey.example.com');
  assert.match(by('dmarc')[0].value, /^v=DMARC1; p=quarantine;/);
  assert.deepEqual(by('host').map((x) => `${x.type} ${x.value}`), ['A 203.0.113.10', 'AAAA 2001:db8::10']);
  assert.equal(by('mta-sts').length, 0, 'no MTA-STS records unless Letterbox hosts the policy');
  assert.deepEqual(by('ptr').map((x) => `${x.name} ${x.value}`), [
    '10.113.0.203.in-addr.arpa mail.example.com',
    '0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa mail.example.com',
  ]);
});

test('records: SPF for the EHLO names (bounces are checked against HELO): host name and dedicated source names', () => {
  const helo = (i: Partial<Parameters<typeof recordsForDomain>[0]>) => recordsForDomain({ ...base, ...i }).filter((x) => x.purpose === 'helo-spf').map((x) => `${x.type} ${x.name} ${x.value}`);
  assert.deepEqual(helo({}), ['TXT mail.example.com v=spf1 ip4:203.0.113.10 ip6:2001:db8::10 ip4:127.0.0.1 -all']);
  assert.deepEqual(helo({ ips: [] }), ['TXT mail.example.com v=spf1 a -all'], 'no configured IPs: the host name\'s own addresses');
  assert.deepEqual(helo({ ips: ['203.0.113.10'], sourceIps: { '203.0.113.20': 'out2.example.net', '203.0.113.10': 'mail.example.com' } }), [
    'TXT mail.example.com v=spf1 ip4:203.0.113.10 -all',
    'TXT out2.example.net v=spf1 ip4:203.0.113.20 -all',
  ]);
  assert.deepEqual(helo({ hostname: 'example.com' }), [], 'a host named like the domain: the domain\'s SPF record is the one at that name');
});

test('records: MTA-STS and TLS-RPT when the policy is hosted', () => {
  const r = recordsForDomain({ ...base, mtaStsId: 'lbabc' });
  assert.deepEqual(
    r.filter((x) => x.purpose === 'mta-sts' || x.purpose === 'tlsrpt').map((x) => `${x.type} ${x.name} ${x.value}`),
    ['CNAME mta-sts.example.com mail.example.com', 'TXT _mta-sts.example.com v=STSv1; id=lbabc', 'TXT _smtp._tls.example.com v=TLSRPTv1; rua=mailto:postmaster@example.com'],
  );
});

test('records: the report addresses Letterbox reads are published in rua= (TLS-RPT then without MTA-STS too)', () => {
  const r = recordsForDomain({ ...base, reportAddresses: { dmarc: 'dmarc-reports', tls: 'tls-reports' } });
  assert.match(r.find((x) => x.purpose === 'dmarc')!.value, /; rua=mailto:dmarc-reports@example\.com$/);
  assert.deepEqual(r.filter((x) => x.purpose === 'tlsrpt').map((x) => `${x.name} ${x.value}`), ['_smtp._tls.example.com v=TLSRPTv1; rua=mailto:tls-reports@example.com']);
  const off = recordsForDomain({ ...base, reportAddresses: { dmarc: '', tls: '' } });
  assert.match(off.find((x) => x.purpose === 'dmarc')!.value, /rua=mailto:postmaster@example\.com$/);
  assert.equal(off.filter((x) => x.purpose === 'tlsrpt').length, 0, 'not read here and no MTA-STS: no TLS-RPT record');
});

test('zone snippet: absolute names, long TXT split into 255-octet strings', () => {
  const z = toZone(recordsForDomain({ ...base, mtaStsId: 'lbabc' }));
  assert.match(z, /^example\.com\.\t3600\tIN\tMX\t10 mail\.example\.com\.$/m);
  assert.match(z, /^mta-sts\.example\.com\.\t3600\tIN\tCNAME\tmail\.example\.com\.$/m);
  const dkim = z.split('\n').find((l) => l.startsWith('lb202611r'))!;
  const strings = [...dkim.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  assert.ok(strings.length >= 2 && strings.every((s) => s.length <= 255));
  assert.equal(strings.join(''), `v=DKIM1; k=rsa; p=${'A'.repeat(400)}`);
});

test('records: RFC 6186/8314 SRV records for mail clients; "." where a service is not offered; autoconfig names', () => {
  const r = recordsForDomain({ ...base, clientPorts: { imaps: 993, submissions: 465, submission: null }, autoconfig: true });
  assert.deepEqual(
    r.filter((x) => x.type === 'SRV').map((x) => `${x.name} ${x.priority} ${x.weight} ${x.port} ${x.value}`),
    [
      '_submissions._tcp.example.com 0 1 465 mail.example.com',
      '_submission._tcp.example.com 0 0 0 .',
      '_imaps._tcp.example.com 0 1 993 mail.example.com',
      '_imap._tcp.example.com 0 0 0 .',
    ],
  );
  assert.deepEqual(
    r.filter((x) => x.purpose === 'autoconfig').map((x) => `${x.type} ${x.name} ${x.value}`),
    ['CNAME autoconfig.example.com mail.example.com', 'CNAME autodiscover.example.com mail.example.com'],
  );
  const z = toZone(r);
  assert.match(z, /^_submissions\._tcp\.example\.com\.\t3600\tIN\tSRV\t0 1 465 mail\.example\.com\.$/m);
  assert.match(z, /^_imap\._tcp\.example\.com\.\t3600\tIN\tSRV\t0 0 0 \.$/m);
  assert.equal(recordsForDomain(base).filter((x) => x.type === 'SRV' || x.purpose === 'autoconfig').length, 0, 'only when asked');
});
