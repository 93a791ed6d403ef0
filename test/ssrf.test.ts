// Webhook target checks (src/webhooks/ssrf.ts), pure: every IPv6 form that embeds an IPv4 address
// is judged by that IPv4 address, deprecated and translation-only ranges are refused, and cloud
// metadata addresses stay refused whatever the configuration allows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressProblem, checkWebhookUrl } from '../src/webhooks/ssrf.ts';

const strict = { allow_loopback: false, allow_private: false };
const open = { allow_loopback: true, allow_private: true };

test('IPv4 embedded in IPv6 (compatible, mapped, SIIT, NAT64, 6to4) is checked as that IPv4 address', () => {
  for (const ip of [
    '::127.0.0.1', '::7f00:1', '0:0:0:0:0:0:127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:0:127.0.0.1', '::ffff:0:7f00:1',
    '64:ff9b::127.0.0.1', '64:ff9b::7f00:1', '64:ff9b::10.0.0.1', '::10.1.2.3', '::ffff:0:192.168.1.1', '2002:7f00:1::', '2002:a00:1::1',
    '::169.254.169.254', '64:ff9b::a9fe:a9fe', '::ffff:0:a9fe:a9fe',
  ]) {
    assert.ok(addressProblem(ip, strict), `${ip} refused`);
  }
  // A public IPv4 embedded the same ways stays allowed (the embedding itself is not the problem)...
  for (const ip of ['::ffff:93.184.216.34', '64:ff9b::93.184.216.34', '2002:5db8:d822::1']) assert.equal(addressProblem(ip, strict), null, ip);
  // ...and the loopback/private ones are allowed exactly when the IPv4 address would be.
  assert.equal(addressProblem('::127.0.0.1', open), null);
  assert.equal(addressProblem('64:ff9b::10.0.0.1', open), null);
});

test('deprecated and translation-only IPv6 ranges are refused: site-local fec0::/10, local-use NAT64 64:ff9b:1::/48', () => {
  for (const ip of ['fec0::1', 'feff::1', '64:ff9b:1::7f00:1', '64:ff9b:1:2::a00:1']) {
    assert.ok(addressProblem(ip, strict), `${ip} refused`);
    assert.ok(addressProblem(ip, open), `${ip} refused even when private targets are allowed`);
  }
});

test('cloud metadata addresses stay refused with allow_private and allow_loopback', () => {
  for (const ip of ['169.254.169.254', 'fd00:ec2::254', 'fd00:ec2::23', '100.100.100.200', '192.0.0.192', '169.254.170.2', '::ffff:169.254.169.254', '64:ff9b::a9fe:a9fe', 'fd20:ce::254']) {
    assert.ok(addressProblem(ip, open), `${ip} refused even with allow_private = true`);
  }
  // Other private addresses are allowed when configured.
  assert.equal(addressProblem('10.1.2.3', open), null);
  assert.equal(addressProblem('fd12:3456::1', open), null);
  assert.equal(addressProblem('100.64.0.1', open), null);
});

test('URL literals: every form is refused at creation', () => {
  for (const u of ['http://[::127.0.0.1]/x', 'http://[::ffff:0:127.0.0.1]/', 'http://[64:ff9b::7f00:1]/', 'http://[fec0::1]/', 'http://[fd00:ec2::254]/latest/meta-data/']) {
    assert.throws(() => checkWebhookUrl(u, u.includes('fd00:ec2') ? open : strict), /validation|address/i, u);
  }
});
