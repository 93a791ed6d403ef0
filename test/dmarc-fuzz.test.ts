// Fuzzing the DMARC aggregate report parser (RFC 7489 appendix C), in process: reports are hostile
// input from anyone who can send us mail. (1) Reports from a grammar — namespaced or not, with or
// without an XML declaration, escaped text, IPv4 and IPv6 sources, one to five records — parse to
// exactly what they say. (2) The same documents mutated (cut, spliced, tags and bytes inserted) are
// either parsed or refused with a validation_error naming the reason: never another exception.
// Seed fixed and printed, as in test/fuzz.test.ts (PROOF_FUZZ_SEED=N or =random).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseDmarcReport } from '../src/reports/dmarc.ts';
import { LetterboxError } from '../src/errors.ts';

const SEED = process.env.PROOF_FUZZ_SEED === 'random' ? (Date.now() ^ (process.pid << 16)) >>> 0 : Number(process.env.PROOF_FUZZ_SEED ?? 20261207);
const SCALE = Math.max(1, Number(process.env.PROOF_FUZZ_SCALE ?? 1));
console.log(`# dmarc fuzz seed ${SEED}`);

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const text = fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,40}[\x21-\x7e]$/);
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const domain = fc.tuple(label, fc.constantFrom('example', 'test', 'org')).map(([a, b]) => `${a}.${b}`);
const ip = fc.oneof(
  fc.ipV4().map((v) => ({ given: v, canonical: v })),
  fc.constantFrom(
    { given: '2001:DB8::1', canonical: '2001:db8::1' },
    { given: '2001:0db8:0000:0000:0000:0000:0000:0042', canonical: '2001:db8::42' },
    { given: '::ffff:192.0.2.7', canonical: '192.0.2.7' },
  ),
);
const record = fc.record({
  ip,
  count: fc.integer({ min: 0, max: 1_000_000 }),
  disposition: fc.constantFrom('none', 'quarantine', 'reject'),
  dkim: fc.constantFrom('pass', 'fail'),
  spf: fc.constantFrom('pass', 'fail'),
  headerFrom: domain,
});
const report = fc.record({
  ns: fc.boolean(),
  decl: fc.boolean(),
  pretty: fc.boolean(),
  orgName: text,
  reportId: text,
  begin: fc.integer({ min: 0, max: 2_000_000_000 }),
  span: fc.integer({ min: 0, max: 86_400 * 7 }),
  domain,
  p: fc.constantFrom('none', 'quarantine', 'reject'),
  records: fc.array(record, { minLength: 1, maxLength: 5 }),
});
type Report = typeof report extends fc.Arbitrary<infer T> ? T : never;

function render(r: Report): string {
  const t = r.ns ? 'dmarc:' : '';
  const nl = r.pretty ? '\n  ' : '';
  const el = (name: string, body: string) => `<${t}${name}>${body}</${t}${name}>${nl}`;
  const recs = r.records
    .map((x) =>
      el(
        'record',
        el('row', el('source_ip', x.ip.given) + el('count', String(x.count)) + el('policy_evaluated', el('disposition', x.disposition) + el('dkim', x.dkim) + el('spf', x.spf))) +
          el('identifiers', el('header_from', x.headerFrom)) +
          el('auth_results', el('spf', el('domain', x.headerFrom) + el('result', x.spf))),
      ),
    )
    .join('');
  const root = `<${t}feedback${r.ns ? ' xmlns:dmarc="urn:ietf:params:xml:ns:dmarc-2.0"' : ''}>${nl}` +
    el('report_metadata', el('org_name', esc(r.orgName)) + el('report_id', esc(r.reportId)) + el('date_range', el('begin', String(r.begin)) + el('end', String(r.begin + r.span)))) +
    el('policy_published', el('domain', r.domain) + el('p', r.p)) +
    recs +
    `</${t}feedback>`;
  return (r.decl ? '<?xml version="1.0" encoding="UTF-8"?>\n' : '') + root;
}

test(`dmarc fuzz: ${2000 * SCALE} reports from the grammar parse to exactly what they say`, () => {
  fc.assert(
    fc.property(report, (r) => {
      const got = parseDmarcReport(render(r));
      assert.equal(got.orgName, r.orgName);
      assert.equal(got.reportId, r.reportId);
      assert.equal(got.begin, r.begin);
      assert.equal(got.end, r.begin + r.span);
      assert.equal(got.policy.domain, r.domain);
      assert.equal(got.policy.p, r.p);
      assert.deepEqual(
        got.records.map((x) => [x.sourceIp, x.count, x.disposition, x.dkim, x.spf, x.headerFrom]),
        r.records.map((x) => [x.ip.canonical, x.count, x.disposition, x.dkim, x.spf, x.headerFrom]),
      );
    }),
    { numRuns: 2000 * SCALE, seed: SEED, endOnFailure: true },
  );
});

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 200 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), what: fc.oneof(fc.constantFrom('<', '>', '&', '</feedback>', '<record>', '<!DOCTYPE x [<!ENTITY a "b">]>', '<![CDATA[', ']]>', '\u0000', '\uFFFF', '<count>-1</count>', '<source_ip>999.1.1.1</source_ip>', '<begin>99999999999999999999</begin>'), fc.string({ maxLength: 30 })) }),
  fc.record({ kind: fc.constant('dup' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 400 }) }),
  fc.record({ kind: fc.constant('nest' as const), depth: fc.integer({ min: 1, max: 200 }) }),
);

function mutate(doc: string, ms: (typeof mutation extends fc.Arbitrary<infer T> ? T : never)[]): string {
  let s = doc;
  for (const m of ms) {
    const at = s.length ? ('at' in m ? m.at % s.length : 0) : 0;
    if (m.kind === 'cut') s = s.slice(0, at) + s.slice(at + m.len);
    else if (m.kind === 'insert') s = s.slice(0, at) + m.what + s.slice(at);
    else if (m.kind === 'dup') s = s.slice(0, at) + s.slice(at, at + m.len) + s.slice(at);
    else s = s.replace('<record>', '<record>' + '<x>'.repeat(m.depth)).replace('</record>', '</x>'.repeat(m.depth) + '</record>');
  }
  return s;
}

test(`dmarc fuzz: ${3000 * SCALE} mutated reports are parsed or refused with a reason, never another error`, () => {
  const outcome = { parsed: 0, refused: 0 };
  fc.assert(
    fc.property(report, fc.array(mutation, { minLength: 1, maxLength: 4 }), (r, ms) => {
      const doc = mutate(render(r), ms);
      try {
        const got = parseDmarcReport(doc);
        outcome.parsed++;
        assert.ok(got.records.length >= 1 && got.orgName && got.reportId, 'a parsed report has what the schema requires');
        for (const x of got.records) assert.ok(Number.isSafeInteger(x.count) && x.count >= 0, `count ${x.count}`);
      } catch (err) {
        assert.ok(err instanceof LetterboxError && err.code === 'validation_error', `not a clean refusal: ${(err as Error)?.stack ?? err}`);
        assert.ok(err.message.length > 0);
        outcome.refused++;
      }
    }),
    { numRuns: 3000 * SCALE, seed: SEED, endOnFailure: true },
  );
  console.log(`# dmarc fuzz mutations: ${JSON.stringify(outcome)}`);
  assert.ok(outcome.refused > 0 && outcome.parsed > 0, 'the mutations both broke documents and left some parseable');
});
