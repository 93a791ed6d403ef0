// The login guard (src/auth/guard.ts) without sockets: reserve before the check, settle after it,
// per client network (IPv6 /64) and per account, known networks of the owner, lockout events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoginGuard, failureDelay, type GuardEvent, type GuardPolicy } from '../src/auth/guard.ts';
import { clientNetwork } from '../src/auth/client-network.ts';
import { parsePolicyRequest } from '../src/auth/dovecot-policy.ts';
import { renderLoginProtection } from '../src/dovecot/login-policy.ts';
import { ClientSlots } from '../src/smtp/stress.ts';
import { nonAsciiWithoutSmtpUtf8 } from '../src/smtp/mail-from.ts';

const M = 60_000;
const P: GuardPolicy = { maxFailures: 3, window: 15 * M, lockout: 15 * M, delayMs: 500, delayMaxMs: 1500, knownNetworkTtl: 30 * 24 * 60 * M, reservationTtl: M };

const make = () => {
  let now = 1_000_000;
  const events: GuardEvent[] = [];
  const g = new LoginGuard(P, () => now, (e) => events.push(e));
  return { g, events, tick: (ms: number) => void (now += ms), now: () => now };
};

test('parallel attempts: reserved before the check, so only maxFailures of them are let through', () => {
  const { g } = make();
  const r = Array.from({ length: 20 }, (_, i) => g.reserve('carol@x.test', `198.51.100.${i + 1}`, 'imap'));
  assert.equal(r.filter((x) => x.ok).length, 3, 'three in flight at most for one account');
  assert.deepEqual(r.filter((x) => !x.ok).map((x) => !x.ok && x.scope), Array(17).fill('account'));
  // From one network, over many accounts.
  const { g: g2 } = make();
  const n = Array.from({ length: 10 }, (_, i) => g2.reserve(`u${i}@x.test`, '2001:db8:1:2::' + (i + 1).toString(16), 'submission'));
  assert.equal(n.filter((x) => x.ok).length, 3, 'an IPv6 /64 is one client network');
  assert.equal(g2.reserve('u0@x.test', '2001:db8:1:3::1', 'submission').ok, true, 'another /64 is another network');
});

test('settle: failures lock the key (one lockout event), a success frees the slot; delays grow', () => {
  const { g, events, tick } = make();
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = g.reserve('carol@x.test', '192.0.2.1', 'submission');
    assert.ok(r.ok);
    delays.push(g.settle(r.ticket, false));
    tick(1000);
  }
  assert.deepEqual(delays, [500, 1000, 1500]);
  assert.deepEqual(events.map((e) => `${e.scope}:${e.key}`).sort(), ['account:carol@x.test', 'network:192.0.2.1']);
  assert.equal(g.refusesNow('carol@x.test', '192.0.2.99'), 'account');
  assert.equal(g.refusesNow('bob@x.test', '192.0.2.1'), 'network');
  assert.equal(g.refusesNow('bob@x.test', '192.0.2.2'), null);
  tick(15 * M);
  assert.equal(g.refusesNow('carol@x.test', '192.0.2.99'), null, 'lockout and window over');
  // A success settles without counting.
  const ok = g.reserve('dave@x.test', '192.0.2.5', 'imap');
  assert.ok(ok.ok);
  assert.equal(g.settle(ok.ticket, true), 0);
  assert.equal(g.settle(ok.ticket, false), 0, 'settling twice does nothing');
  assert.equal(failureDelay(0, P), 0);
});

test("the owner's known network keeps working while strangers lock the account", () => {
  const { g, tick } = make();
  const home = g.reserve('carol@x.test', '192.0.2.10', 'imap');
  assert.ok(home.ok);
  g.settle(home.ticket, true);
  for (let i = 0; i < 5; i++) {
    const r = g.reserve('carol@x.test', `203.0.113.${i + 1}`, 'imap');
    if (r.ok) g.settle(r.ticket, false);
  }
  assert.equal(g.refusesNow('carol@x.test', '203.0.113.50'), 'account', 'a new network is refused');
  const again = g.reserve('carol@x.test', '192.0.2.10', 'submission');
  assert.ok(again.ok && again.knownNetwork, 'the home network still gets in');
  g.settle(again.ticket, true);
  tick(31 * 24 * 60 * M);
  for (let i = 0; i < 3; i++) {
    const r = g.reserve('carol@x.test', `203.0.113.${i + 1}`, 'imap');
    if (r.ok) g.settle(r.ticket, false);
  }
  assert.equal(g.refusesNow('carol@x.test', '192.0.2.10'), 'account', 'known only for auth_known_network_ttl');
});

test('a reservation never settled (a lost report) counts as a failure after reservationTtl', () => {
  const { g, tick } = make();
  for (let i = 0; i < 3; i++) assert.ok(g.reserve('erin@x.test', '192.0.2.1', 'imap').ok);
  assert.equal(g.refusesNow('erin@x.test', '192.0.2.2'), 'account');
  tick(M);
  assert.equal(g.reserve('x@x.test', '192.0.2.3', 'imap').ok, true); // runs the expiry
  assert.equal(g.refusesNow('erin@x.test', '192.0.2.2'), 'account', 'now three failures: locked');
});

test('client networks: IPv4 address, IPv6 /64, mapped IPv4', () => {
  assert.equal(clientNetwork('192.0.2.7'), '192.0.2.7');
  assert.equal(clientNetwork('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(clientNetwork('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(clientNetwork('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(clientNetwork('fe80::1%eth0'), 'fe80:0:0:0::/64');
});

test('per-client connection slots: IPv4 address or IPv6 /64, and a total', () => {
  const s = new ClientSlots(5, 2);
  assert.equal(s.take('a', '192.0.2.1'), null);
  assert.equal(s.take('b', '192.0.2.1'), null);
  assert.equal(s.take('c', '192.0.2.1'), 'client');
  assert.equal(s.take('d', '2001:db8::1'), null);
  assert.equal(s.take('e', '2001:db8::2'), null);
  assert.equal(s.take('f', '2001:db8::3'), 'client', 'same /64');
  assert.equal(s.take('g', '192.0.2.2'), null);
  assert.equal(s.take('h', '192.0.2.3'), 'total');
  s.release('a');
  s.release('a');
  assert.equal(s.size, 4);
  assert.equal(s.take('i', '192.0.2.1'), null);
});

test('Dovecot policy requests and the rendered block', () => {
  assert.deepEqual(parsePolicyRequest('allow', { login: 'a@b', remote: '192.0.2.1', protocol: 'imap', session_id: 's1' }), { command: 'allow', login: 'a@b', remote: '192.0.2.1', protocol: 'imap', session: 's1', success: null });
  assert.equal(parsePolicyRequest('report', [1]), null);
  assert.equal(parsePolicyRequest('report', { success: true })?.success, true);
  const block = renderLoginProtection({ url: 'http://127.0.0.1:1/', apiHeader: 'X-Letterbox-Policy: s', nonce: 'n' });
  assert.match(block, /^auth_policy_server_url = http:\/\/127\.0\.0\.1:1\/$/m);
  assert.match(block, /^auth_policy_reject_on_fail = yes$/m);
  assert.match(block, /unix_listener auth-userdb \{\n\s+mode = 0600\n/);
  assert.doesNotMatch(renderLoginProtection(undefined), /auth_policy/);
});

test('MAIL FROM: non-ASCII needs SMTPUTF8', () => {
  assert.equal(nonAsciiWithoutSmtpUtf8('jörg@example.test', {}), true);
  assert.equal(nonAsciiWithoutSmtpUtf8('jörg@example.test', { smtpUtf8: true }), false);
  assert.equal(nonAsciiWithoutSmtpUtf8('joerg@example.test', {}), false);
  assert.equal(nonAsciiWithoutSmtpUtf8('', {}), false);
});
