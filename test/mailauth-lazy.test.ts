// The MX's mailauth wrapper (src/smtp/inbound/mailauth.ts): loading it leaves mailauth's BIMI code
// (and undici, @postalsys/vmc, fast-xml-parser) unloaded (#15, memory), and authenticate() still
// does everything, BIMI included when asked for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const BIMI = require.resolve('mailauth/lib/bimi/index.js');
const SVG = require.resolve('mailauth/lib/bimi/validate-svg.js');

test('importing the wrapper loads mailauth without its BIMI modules', () => {
  // A fresh process: this test process may have loaded anything already.
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(new URL('../src/smtp/inbound/mailauth.ts', import.meta.url).href)});
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({
      mailauth: loaded.some((p) => p.endsWith('/mailauth/lib/mailauth.js')),
      heavy: loaded.filter((p) => /\\/mailauth\\/lib\\/bimi\\/|\\/node_modules\\/(undici|@postalsys\\/vmc|@peculiar\\/|fast-xml-parser)\\//.test(p)),
    }));
  `;
  const out = JSON.parse(execFileSync(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], { encoding: 'utf8' }));
  assert.equal(out.mailauth, true);
  assert.deepEqual(out.heavy, []);
});

const message = [
  'From: Alice <alice@example.test>',
  'To: bob@example.org',
  'Subject: hello',
  'Message-ID: <1@example.test>',
  'Date: Mon, 07 Dec 2026 20:00:00 +0000',
  '',
  'Hello.',
  '',
].join('\r\n');
const nxdomain = async () => {
  throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
};

test('authenticate() runs SPF, DKIM and DMARC, and BIMI (the real module, loaded then) when asked', async () => {
  const { authenticate } = await import('../src/smtp/inbound/mailauth.ts');
  const opts = { ip: '192.0.2.1', helo: 'mx.example.test', sender: 'alice@example.test', mta: 'mx.example.org', resolver: nxdomain };
  const without = await authenticate(Buffer.from(message), { ...opts, disableBimi: true });
  assert.equal(without.spf && without.spf.status.result, 'none');
  assert.equal(without.dkim.results[0].status.result, 'none');
  assert.equal(without.dmarc && without.dmarc.status.result, 'none');
  assert.equal(without.bimi, false);
  assert.match(without.headers, /^Authentication-Results: mx\.example\.org;/m);

  const withBimi = await authenticate(Buffer.from(message), { ...opts, disableBimi: false });
  assert.ok(withBimi.bimi, 'the BIMI step ran');
  assert.ok(require.cache[BIMI], 'the real BIMI module is loaded once used');
  assert.equal(typeof (require(BIMI) as { bimi: unknown }).bimi, 'function');
  assert.equal(typeof (require(SVG) as { validateSvg: unknown }).validateSvg, 'function');
});
