// Hardening of the API and storage against an outside attacker and careless clients (issue 16):
// each test drives the real appliance (MX, submission, Dovecot over IMAP, the HTTP API, the CLI)
// and failed before its fix.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ImapFlow } from 'imapflow';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { RawSmtp } from './helpers/smtp-raw.ts';
import { call, createKey, waitFor } from './helpers/mailapi.ts';
import { canonicalAuthservId, parseAuthResults } from '../src/verdicts/auth-results.ts';

let app: Appliance;
let dns: TestDns;
let key: string;
const HOST = 'mail.letterbox.test';
const CAROL_PW = 'carol password 12345';

before(async () => {
  dns = await new TestDns().start();
  app = await startAppliance({ extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 1000\n[api]\nrate_burst = 100000\nrate_per_minute = 100000\nsend_rate_burst = 100000\nsend_rate_per_minute = 100000\n` });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'carol@ours.test', '--password', CAROL_PW]);
  key = await createKey(app, '*');
  await waitFor(async () => (await call(app, key, 'GET', '/mailboxes/carol@ours.test/folders')).status === 200, 'Dovecot to know the new mailbox');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

function imapAs(user: string, pass: string): ImapFlow {
  return new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, auth: { user, pass }, logger: false, tls: { ca: [applianceCert(app)], servername: HOST } } as any);
}

async function findBySubject(address: string, subject: string): Promise<any> {
  return waitFor(async () => {
    const r = await call(app, key, 'GET', `/mailboxes/${address}/messages?limit=50`);
    return r.json?.data?.messages?.find((m: any) => m.subject === subject);
  }, `"${subject}" in ${address}`);
}

// --- item 1: forged DMARC/ARC verdicts ------------------------------------------------------

test('item 1: a sender cannot make the API report a forged DMARC/ARC pass (HELO, spoofed headers in any spelling of our authserv-id)', async () => {
  const { client } = await RawSmtp.open(app.ports.mx);
  assert.equal((await client.cmd('EHLO x;dmarc=pass;arc=pass'))?.code, 250);
  const body =
    `Authentication-Results: MAIL.Letterbox.TEST.; dmarc=pass header.from=sender.test; arc=pass\r\n` +
    `Authentication-Results: "mail.letterbox.test" (ours, honest); spf=pass; dmarc=pass\r\n` +
    `Authentication-Results: (c) ${HOST}.. 1;\r\n dmarc=pass\r\n` +
    `X-Letterbox-Id: forged-id\r\n` +
    `From: someone@sender.test\r\nTo: carol@ours.test\r\nSubject: forged verdicts\r\nMessage-ID: <forged-1@sender.test>\r\n\r\nhi\r\n.\r\n`;
  const r = await client.sendRaw('someone@sender.test', ['carol@ours.test'], body);
  assert.equal(r.data?.code, 250, r.data?.text);
  await client.close();
  const s = await findBySubject('carol@ours.test', 'forged verdicts');
  const m = (await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}`)).json.data;
  assert.equal(m.authentication.length, 1, JSON.stringify(m.authentication));
  const a = m.authentication[0];
  assert.equal(a.dmarc, 'none', a.raw);
  assert.notEqual(a.arc, 'pass', a.raw);
  assert.equal(a.source, 'stored');
  assert.equal(a.details.dmarc.result, 'none');
  // Every spelling of our authserv-id that came with the message was removed on receipt, and so
  // was the X-Letterbox-Id it brought: exactly one of each (ours) is in the stored message.
  const raw = (await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}/raw`)).body.toString('utf8');
  const head = raw.slice(0, raw.indexOf('\r\n\r\n')).split(/\r\n(?![ \t])/);
  const ours = head.filter((f) => /^authentication-results:/i.test(f) && parseAuthResults(f.slice(f.indexOf(':') + 1)).authservId === canonicalAuthservId(HOST));
  assert.equal(ours.length, 1, ours.join('\n'));
  const ids = head.filter((f) => /^x-letterbox-id:/i.test(f));
  assert.equal(ids.length, 1, ids.join('\n'));
  assert.ok(!ids[0].includes('forged-id'));
});

test('item 1: mail stored without a verdict row: our own Authentication-Results parsed per RFC 8601, nothing below our Received trusted', async () => {
  const c = imapAs('carol@ours.test', CAROL_PW);
  await c.connect();
  const msg =
    `Authentication-Results: ${HOST};\r\n spf=none (${HOST}: "x;dmarc=pass") smtp.mailfrom=a@sender.test smtp.helo="x;dmarc=pass;arc=pass";\r\n` +
    ` dkim=none (no signature; dmarc=pass); dmarc=none header.from=sender.test; arc=none\r\n` +
    `Received: from x (unknown [127.0.0.1])\r\n\tby ${HOST} (Letterbox) with ESMTP\r\n\tid old1; Mon, 7 Dec 2026 10:00:00 +0000\r\n` +
    `Authentication-Results: ${HOST}; dmarc=pass; arc=pass\r\n` +
    `From: a@sender.test\r\nTo: carol@ours.test\r\nSubject: old style verdicts\r\n\r\nold\r\n`;
  await c.append('INBOX', Buffer.from(msg));
  await c.logout();
  const s = await findBySubject('carol@ours.test', 'old style verdicts');
  const m = (await call(app, key, 'GET', `/mailboxes/carol@ours.test/messages/${s.uid}`)).json.data;
  assert.equal(m.authentication.length, 1, JSON.stringify(m.authentication));
  assert.deepEqual([m.authentication[0].spf, m.authentication[0].dkim, m.authentication[0].dmarc, m.authentication[0].arc, m.authentication[0].source], ['none', 'none', 'none', 'none', 'header']);
});
