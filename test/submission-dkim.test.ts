// DKIM signatures of outgoing mail: both algorithms verify with mailauth's verifier (python3-dkim
// checks delivered mail in submission.test.ts), From is over-signed, and a changed body or an added
// From header breaks them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { dkimVerify } from 'mailauth';
import { generateDkimKey, dkimTxt } from '../src/dkim/keys.ts';
import { dkimSignatures, type SigningKey } from '../src/dkim/sign.ts';

const msg = Buffer.from(
  'From: "Alice Example" <alice@example.com>\r\nTo: bob@example.org,\r\n  carol@example.org\r\nSubject:  Hello   there \r\nDate: Mon, 23 Nov 2026 01:02:03 +0000\r\nMessage-ID: <m1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nX-Unsigned: 1\r\n\r\nHello  Bob, \r\n\r\nline three\r\n\r\n\r\n',
);

async function setup() {
  const now = new Date(Date.UTC(2026, 10, 23));
  const rsa = await generateDkimKey('rsa', now);
  const ed = await generateDkimKey('ed25519', now);
  const keys: SigningKey[] = [rsa, ed].map((k) => ({ domain: 'example.com', selector: k.selector, algorithm: k.algorithm, key: createPrivateKey(k.privateKeyPem) }));
  const txt: Record<string, string> = { [`${rsa.selector}._domainkey.example.com`]: dkimTxt('rsa', rsa.publicKey), [`${ed.selector}._domainkey.example.com`]: dkimTxt('ed25519', ed.publicKey) };
  const resolver = async (name: string, type: string) => {
    if (type === 'TXT' && txt[name]) return [[txt[name]]];
    throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  };
  return { keys, resolver, now };
}

test('RSA and Ed25519 signatures verify (relaxed/relaxed); From is over-signed', async () => {
  const { keys, resolver, now } = await setup();
  const sigs = dkimSignatures(msg, keys, now);
  assert.equal(sigs.match(/^DKIM-Signature:/gm)?.length, 2);
  assert.match(sigs, /a=rsa-sha256/);
  assert.match(sigs, /a=ed25519-sha256/);
  assert.match(sigs, /c=relaxed\/relaxed/);
  for (const line of sigs.split(/\r\n(?![ \t])/).filter(Boolean)) assert.ok(line.split('\r\n').every((l) => l.length <= 998));
  const h = /h=([^;]+);/.exec(sigs.replace(/\r\n[ \t]/g, ' '))![1].replace(/\s/g, '').split(':');
  assert.equal(h.filter((x) => x === 'from').length, 2, 'From named twice for one From header');
  assert.ok(!h.includes('x-unsigned'));
  const signed = Buffer.concat([Buffer.from(sigs), msg]);
  const r = await dkimVerify(signed, { resolver: resolver as any, curTime: now } as any);
  assert.deepEqual(r.results.map((x: any) => x.status.result), ['pass', 'pass'], JSON.stringify(r.results.map((x: any) => x.status)));
});

test('an added From header or a changed body breaks both signatures', async () => {
  const { keys, resolver, now } = await setup();
  const signed = Buffer.concat([Buffer.from(dkimSignatures(msg, keys, now)), msg]);
  const extraFrom = Buffer.from(signed.toString('binary').replace('From: "Alice', 'From: ceo@example.com\r\nFrom: "Alice'), 'binary');
  const r1 = await dkimVerify(extraFrom, { resolver: resolver as any, curTime: now } as any);
  assert.ok(r1.results.every((x: any) => x.status.result !== 'pass'), JSON.stringify(r1.results.map((x: any) => x.status)));
  const changed = Buffer.from(signed.toString('binary').replace('line three', 'line 3'), 'binary');
  const r2 = await dkimVerify(changed, { resolver: resolver as any, curTime: now } as any);
  assert.ok(r2.results.every((x: any) => x.status.result !== 'pass'));
  // Header whitespace and folding changes are tolerated (relaxed header canonicalisation).
  const refolded = Buffer.from(signed.toString('binary').replace('Subject:  Hello   there ', 'Subject: Hello\r\n there'), 'binary');
  const r3 = await dkimVerify(refolded, { resolver: resolver as any, curTime: now } as any);
  assert.deepEqual(r3.results.map((x: any) => x.status.result), ['pass', 'pass']);
});
