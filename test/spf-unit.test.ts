// The one SPF evaluator (src/mail/spf.ts) that domain verification and the doctor share, over an
// in-memory zone (the resolver function mailauth calls; no sockets).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spfResult, spfUnauthorised } from '../src/mail/spf.ts';

function zone(records: Record<string, Record<string, any[]>>) {
  return async (name: string, type = 'A') => {
    const v = records[name.toLowerCase().replace(/\.$/, '')]?.[type];
    if (!v || v.length === 0) throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
    return v;
  };
}

const resolver = zone({
  'example.test': { TXT: [['v=spf1 include:_spf.example.test mx ~all']], MX: [{ priority: 10, exchange: 'mail.example.test' }] },
  '_spf.example.test': { TXT: [['v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all']] },
  'mail.example.test': { A: ['198.51.100.25'] },
  'redirected.test': { TXT: [['v=spf1 redirect=_spf.example.test']] },
  'open.test': { TXT: [['v=spf1 +all']] },
});

test('include:, CIDR ranges, mx and redirect= authorise; anything else is a miss with its result', async () => {
  assert.equal(await spfResult({ domain: 'example.test', ip: '192.0.2.10', helo: 'mail.example.test', resolver }), 'pass');
  assert.equal(await spfResult({ domain: 'example.test', ip: '2001:db8::25', helo: 'mail.example.test', resolver }), 'pass');
  assert.equal(await spfResult({ domain: 'example.test', ip: '198.51.100.25', helo: 'mail.example.test', resolver }), 'pass', 'via mx');
  assert.equal(await spfResult({ domain: 'redirected.test', ip: '192.0.2.99', helo: 'mail.example.test', resolver }), 'pass', 'via redirect=');
  assert.deepEqual(await spfUnauthorised(resolver, 'example.test', ['192.0.2.10', '203.0.113.5'], 'mail.example.test'), [{ ip: '203.0.113.5', result: 'softfail' }]);
  assert.deepEqual(await spfUnauthorised(resolver, 'redirected.test', ['203.0.113.5'], 'mail.example.test'), [{ ip: '203.0.113.5', result: 'fail' }]);
  assert.deepEqual(await spfUnauthorised(resolver, 'none.test', ['192.0.2.10'], 'mail.example.test'), [{ ip: '192.0.2.10', result: 'none' }]);
  assert.deepEqual(await spfUnauthorised(resolver, 'open.test', ['203.0.113.5'], 'mail.example.test'), [], '+all authorises everyone (the doctor warns about it separately)');
});
