// Open-relay battery: every classic trick to make a mail server relay for strangers, played over
// real sockets against the real MX and submission listeners of a running appliance. Each trick is
// its own test and asserts the exact reply class; the last test proves that nothing was relayed:
// the remote MX (a loopback sink reached through the test DNS) received only the one legitimate,
// authenticated message, and the outbound queue holds nothing else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { RawSmtp, authPlain, type Reply } from './helpers/proof-smtp.ts';
import { ProofSink } from './helpers/proof-sink.ts';

let app: Appliance;
let dns: TestDns;
let sink: ProofSink;
let ca: string;
const PW = 'relay battery password 1';
const OURS = 'ours.test';
const HOST = 'mail.letterbox.test';

before(async () => {
  dns = await new TestDns().start();
  sink = await new ProofSink().start();
  // other.test and evil.test are "the Internet": their MX is the sink on loopback.
  for (const d of ['other.test', 'evil.test']) dns.mx(d, `mx.${d}`);
  dns.a('mx.other.test', '127.0.0.1').a('mx.evil.test', '127.0.0.1');
  app = await startAppliance({
    hostname: HOST,
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 500\n[outbound]\nport = ${sink.port}\nmta_sts = false\npoll_interval_ms = 200\n`,
  });
  ca = applianceCert(app);
  await app.cliJson(['domain', 'add', OURS]);
  const r = await app.cli(['mailbox', 'add', `alice@${OURS}`, '--password', PW]);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  app?.cleanup();
  await sink?.stop();
  await dns?.stop();
});

/** Greeting + EHLO on the MX; returns the open session. */
async function mx(helo = 'client.example.net'): Promise<RawSmtp> {
  const c = await RawSmtp.connect(app.ports.mx);
  const g = await c.read();
  assert.equal(g.code, 220, g.text);
  const e = await c.cmd(`EHLO ${helo}`);
  assert.equal(e.code, 250, e.text);
  return c;
}

/** One MX transaction up to RCPT; returns the MAIL and RCPT replies. */
async function mxRcpt(rcpt: string, opts: { from?: string; helo?: string } = {}): Promise<{ mail: Reply; rcpt: Reply; c: RawSmtp }> {
  const c = await mx(opts.helo);
  const mail = await c.cmd(`MAIL FROM:${opts.from ?? '<someone@sender.example>'}`);
  const r = await c.cmd(`RCPT TO:${rcpt}`);
  return { mail, rcpt: r, c };
}

const RELAY_DENIED = /^5\.7\.1 /;

function assertRefused(r: Reply, codes: number[], what: string) {
  assert.ok(codes.includes(r.code), `${what}: expected ${codes.join('/')}, got ${r.code} ${r.text}`);
  assert.ok(r.code >= 500 && r.code < 600, `${what}: a permanent refusal (5xx), got ${r.code}`);
}

// Each trick: the RCPT argument as sent (after "RCPT TO:"), the accepted reply codes (all 5xx) and,
// for 554, the enhanced code 5.7.1 (relay access denied). 501/553 are syntax refusals (smtp-server's
// parser or ours); 550 5.1.1 means "our domain, no such user" — also no relay.
const TRICKS: { name: string; rcpt: string; codes: number[]; from?: string; helo?: string }[] = [
  { name: 'unauthenticated RCPT to a foreign domain', rcpt: '<bob@other.test>', codes: [554] },
  { name: 'foreign domain in upper case', rcpt: '<BOB@OTHER.TEST>', codes: [554] },
  { name: 'foreign domain in mixed case', rcpt: '<bob@OtHeR.tEsT>', codes: [554] },
  { name: 'foreign domain with a trailing dot', rcpt: '<bob@other.test.>', codes: [501, 553, 554] },
  { name: 'our domain with a trailing dot', rcpt: `<alice@${OURS}.>`, codes: [501, 553, 554] },
  { name: 'quoted local part containing @ ("bob@other"@ours)', rcpt: `<"bob@other.test"@${OURS}>`, codes: [501, 553, 554] },
  { name: 'quoted local part containing % ("bob%other"@ours)', rcpt: `<"bob%other.test"@${OURS}>`, codes: [501, 553, 554] },
  { name: 'backslash-escaped @ in the local part', rcpt: `<bob\\@other.test@${OURS}>`, codes: [501, 553, 554] },
  { name: 'percent hack (bob%other@ours)', rcpt: `<bob%other.test@${OURS}>`, codes: [554] },
  { name: 'double percent hack', rcpt: `<bob%other.test%evil.test@${OURS}>`, codes: [554] },
  { name: 'percent hack inside a plus detail', rcpt: `<alice+bob%other.test@${OURS}>`, codes: [554] },
  { name: 'percent hack without a domain', rcpt: '<bob%other.test>', codes: [501, 553, 554] },
  { name: 'source route through us (@ours:bob@other)', rcpt: `<@${OURS}:bob@other.test>`, codes: [554] },
  { name: 'multi-hop source route', rcpt: `<@${OURS},@${HOST}:bob@other.test>`, codes: [554] },
  { name: 'source route naming our host to a foreign user', rcpt: `<@${HOST}:bob@evil.test>`, codes: [554] },
  { name: 'bang path (other!bob@ours)', rcpt: `<other.test!bob@${OURS}>`, codes: [554] },
  { name: 'bang path without a domain', rcpt: '<other.test!bob>', codes: [501, 553, 554] },
  { name: 'two @ signs (alice@ours@other)', rcpt: `<alice@${OURS}@other.test>`, codes: [501, 553, 554] },
  { name: 'two @ signs, ours last', rcpt: `<bob@other.test@${OURS}>`, codes: [501, 553, 554] },
  { name: 'IPv4 address literal of this host', rcpt: '<alice@[127.0.0.1]>', codes: [501, 553, 554] },
  { name: 'IPv6 address literal', rcpt: '<alice@[IPv6:::1]>', codes: [501, 553, 554] },
  { name: 'foreign user at our IP literal', rcpt: '<bob@[127.0.0.1]>', codes: [501, 553, 554] },
  { name: 'subdomain of ours that is not ours', rcpt: `<bob@relay.${OURS}>`, codes: [554] },
  { name: 'our domain as a prefix of a foreign one', rcpt: `<bob@${OURS}.other.test>`, codes: [554] },
  { name: 'our host name as the recipient domain', rcpt: `<bob@${HOST}>`, codes: [554] },
  { name: 'Unicode full-width @ inside the local part', rcpt: `<bob\uff20other.test@${OURS}>`, codes: [501, 550, 553, 554] },
  { name: 'Unicode look-alike foreign domain (full-width letters)', rcpt: '<bob@\uff4f\uff54\uff48\uff45\uff52.test>', codes: [501, 553, 554] },
  { name: 'IDN homograph of a foreign domain (Cyrillic o)', rcpt: '<bob@\u043ether.test>', codes: [501, 553, 554] },
  { name: 'NUL byte splitting the address', rcpt: `<alice@${OURS}\u0000@other.test>`, codes: [501, 553, 554] },
  { name: 'missing angle brackets', rcpt: 'bob@other.test', codes: [501, 553, 554] },
  { name: 'no domain at all (local user "bob")', rcpt: '<bob>', codes: [501, 553, 554] },
  { name: 'forged SRS0 bounce address to a foreign user', rcpt: `<SRS0=abcd=TT=other.test=bob@${OURS}>`, codes: [550, 553, 554] },
  { name: 'forged SRS1 address', rcpt: `<SRS1=abcd=other.test==efgh=TT=evil.test=bob@${OURS}>`, codes: [550, 553, 554] },
  { name: 'ORCPT parameter naming a foreign address', rcpt: '<bob@other.test> ORCPT=rfc822;bob@other.test', codes: [501, 553, 554, 555] },
  { name: 'local sender forged (MAIL FROM our own mailbox) to a foreign recipient', rcpt: '<bob@other.test>', from: `<alice@${OURS}>`, codes: [554] },
  { name: 'local sender forged, our host name as HELO', rcpt: '<bob@other.test>', from: `<postmaster@${OURS}>`, helo: HOST, codes: [554] },
  { name: 'null sender (bounce) to a foreign recipient', rcpt: '<bob@other.test>', from: '<>', codes: [554] },
  { name: 'HELO as localhost from loopback (no trusted networks)', rcpt: '<bob@other.test>', helo: 'localhost', codes: [554] },
  { name: 'HELO as our own IP literal', rcpt: '<bob@other.test>', helo: '[127.0.0.1]', codes: [554] },
];

for (const t of TRICKS) {
  test(`MX refuses: ${t.name}`, async () => {
    const { mail, rcpt, c } = await mxRcpt(t.rcpt, { from: t.from, helo: t.helo });
    try {
      assert.equal(mail.code, 250, `MAIL FROM accepted: ${mail.text}`);
      assertRefused(rcpt, t.codes, t.rcpt);
      if (rcpt.code === 554) assert.match(rcpt.text, RELAY_DENIED);
      // And DATA after a refused-only transaction cannot go anywhere.
      const d = await c.cmd('DATA');
      assert.ok(d.code >= 500 && d.code < 600, `DATA with no accepted recipient: ${d.code} ${d.text}`);
    } finally {
      await c.quit();
    }
  });
}

test('MX: AUTH is not offered and not accepted, and a relay attempt after it is still refused', async () => {
  const c = await mx();
  try {
    const ehlo = await c.cmd('EHLO client.example.net');
    assert.equal(ehlo.code, 250);
    assert.ok(!ehlo.lines.some((l) => /^250[ -]AUTH\b/i.test(l)), `AUTH not advertised on the MX: ${ehlo.text}`);
    const a = await c.cmd(authPlain(`alice@${OURS}`, PW));
    assert.ok(a.code >= 500 && a.code < 600, `AUTH on the MX: ${a.code} ${a.text}`);
    assert.equal((await c.cmd('MAIL FROM:<x@sender.example>')).code, 250);
    const r = await c.cmd('RCPT TO:<bob@other.test>');
    assert.equal(r.code, 554, r.text);
  } finally {
    await c.quit();
  }
});

test('MX: XCLIENT / XFORWARD cannot impersonate a trusted client', async () => {
  const c = await mx();
  try {
    for (const cmd of ['XCLIENT ADDR=127.0.0.1 LOGIN=alice@ours.test', 'XFORWARD ADDR=127.0.0.1']) {
      const r = await c.cmd(cmd);
      assert.ok(r.code >= 500 && r.code < 600, `${cmd}: ${r.code} ${r.text}`);
    }
    assert.equal((await c.cmd('MAIL FROM:<x@sender.example>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<bob@other.test>')).code, 554);
  } finally {
    await c.quit();
  }
});

test('MX: BDAT (not advertised) cannot carry a message around the checks', async () => {
  const c = await mx();
  try {
    const ehlo = await c.cmd('EHLO client.example.net');
    assert.ok(!/CHUNKING/i.test(ehlo.text), 'CHUNKING not advertised');
    assert.equal((await c.cmd('MAIL FROM:<x@sender.example>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<bob@other.test>')).code, 554);
    const b = await c.cmd('BDAT 5 LAST');
    assert.ok(b.code >= 500 && b.code < 600, `BDAT: ${b.code} ${b.text}`);
    // The 5 "bytes" are read as a command line, which must not do anything either.
    const junk = await c.cmd('hello');
    assert.ok(junk.code >= 500, `chunk bytes as a command: ${junk.code}`);
  } finally {
    await c.quit();
  }
});

test('MX: pipelined transaction with one local and several foreign recipients delivers only locally', async () => {
  const c = await mx();
  const token = `pipelined-${randomBytes(6).toString('hex')}`;
  try {
    c.write(
      `MAIL FROM:<x@sender.example>\r\nRCPT TO:<bob@other.test>\r\nRCPT TO:<alice@${OURS}>\r\nRCPT TO:<bob%other.test@${OURS}>\r\nRCPT TO:<@${OURS}:carol@evil.test>\r\nDATA\r\n`,
    );
    const codes = [];
    for (let i = 0; i < 6; i++) codes.push((await c.read()).code);
    assert.deepEqual(codes, [250, 554, 250, 554, 554, 354]);
    c.write(`From: x@sender.example\r\nTo: bob@other.test\r\nSubject: ${token}\r\nMessage-ID: <${token}@sender.example>\r\n\r\n${token}\r\n.\r\n`);
    const d = await c.read(60000);
    // 250, or 451 while Dovecot has not yet picked up the new mailbox: either way not relayed.
    assert.ok(d.code === 250 || d.code === 451, `${d.code} ${d.text}`);
    assert.equal(sink.find(token).length, 0);
  } finally {
    await c.quit();
  }
});

test('MX: too many refused recipients end the session with 421', async () => {
  const c = await mx();
  try {
    assert.equal((await c.cmd('MAIL FROM:<x@sender.example>')).code, 250);
    let last: Reply | null = null;
    const seen: number[] = [];
    for (let i = 0; i < 12; i++) {
      try {
        last = await c.cmd(`RCPT TO:<user${i}@other.test>`);
      } catch {
        break; // connection closed after the 421
      }
      seen.push(last.code);
      if (last.code === 421) break;
    }
    assert.ok(seen.includes(421), `421 after repeated relay attempts, saw ${seen.join(',')}`);
    assert.ok(seen.slice(0, seen.indexOf(421)).every((x) => x === 554));
  } finally {
    c.close();
  }
});

for (const [name, terminator] of [
  ['<LF>.<LF>', '\n.\n'],
  ['<CR>.<CR>', '\r.\r'],
  ['<LF>.<CR><LF>', '\n.\r\n'],
  ['<CR><LF>.<LF>', '\r\n.\n'],
] as const) {
  test(`MX: SMTP smuggling with ${name} cannot inject a relayed second message`, async () => {
    const c = await mx();
    const token = `smuggled-${randomBytes(6).toString('hex')}`;
    try {
      assert.equal((await c.cmd('MAIL FROM:<x@sender.example>')).code, 250);
      const r = await c.cmd(`RCPT TO:<alice@${OURS}>`);
      assert.equal(r.code, 250, r.text);
      assert.equal((await c.cmd('DATA')).code, 354);
      c.write(
        `From: x@sender.example\r\nSubject: outer\r\n\r\nhello${terminator}` +
          `MAIL FROM:<alice@${OURS}>\r\nRCPT TO:<bob@other.test>\r\nDATA\r\nFrom: alice@${OURS}\r\nSubject: ${token}\r\n\r\n${token}\r\n.\r\n`,
      );
      const d = await c.read(60000);
      // The message as a whole is refused (bare CR/LF): nothing after the fake terminator ran.
      assert.equal(d.code, 554, `${d.code} ${d.text}`);
      const h = await c.cmd('HELP');
      assert.equal(h.code, 214, `the next reply belongs to our next command, not to smuggled ones: ${h.code} ${h.text}`);
      assert.equal(sink.find(token).length, 0);
    } finally {
      await c.quit();
    }
  });
}

// ---- Submission (587 STARTTLS, 465 implicit TLS) ----

async function sub587(): Promise<RawSmtp> {
  const c = await RawSmtp.connect(app.ports.submission);
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.example.net')).code, 250);
  return c;
}

test('587: AUTH over plaintext (before STARTTLS) is refused with 530', async () => {
  const c = await sub587();
  try {
    const a = await c.cmd(authPlain(`alice@${OURS}`, PW));
    assert.equal(a.code, 530, a.text);
    const l = await c.cmd('AUTH LOGIN');
    assert.equal(l.code, 530, l.text);
  } finally {
    await c.quit();
  }
});

test('587: no MAIL FROM without AUTH, in plaintext', async () => {
  const c = await sub587();
  try {
    const m = await c.cmd(`MAIL FROM:<alice@${OURS}>`);
    assert.equal(m.code, 530, m.text);
    const r = await c.cmd('RCPT TO:<bob@other.test>');
    assert.ok(r.code >= 500 && r.code < 600, `${r.code} ${r.text}`);
  } finally {
    await c.quit();
  }
});

test('587: no MAIL FROM without AUTH after STARTTLS', async () => {
  const c = await sub587();
  try {
    await c.starttls(ca);
    assert.equal((await c.cmd('EHLO client.example.net')).code, 250);
    const m = await c.cmd(`MAIL FROM:<alice@${OURS}>`);
    assert.equal(m.code, 530, m.text);
    const r = await c.cmd('RCPT TO:<bob@other.test>');
    assert.ok(r.code >= 500 && r.code < 600, `${r.code} ${r.text}`);
  } finally {
    await c.quit();
  }
});

test('587: failed AUTH, then a relay attempt is refused', async () => {
  const c = await sub587();
  try {
    await c.starttls(ca);
    assert.equal((await c.cmd('EHLO client.example.net')).code, 250);
    const a = await c.cmd(authPlain(`alice@${OURS}`, 'wrong password here'));
    assert.equal(a.code, 535, a.text);
    const m = await c.cmd(`MAIL FROM:<alice@${OURS}>`);
    assert.equal(m.code, 530, m.text);
    const r = await c.cmd('RCPT TO:<bob@other.test>');
    assert.ok(r.code >= 500 && r.code < 600, `${r.code} ${r.text}`);
    const d = await c.cmd('DATA');
    assert.ok(d.code >= 500 && d.code < 600, `${d.code} ${d.text}`);
  } finally {
    await c.quit();
  }
});

test('465: no MAIL FROM without AUTH over implicit TLS', async () => {
  const c = await RawSmtp.connect(app.ports.submissions, { tls: true, ca });
  try {
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO client.example.net')).code, 250);
    const m = await c.cmd('MAIL FROM:<x@sender.example>');
    assert.equal(m.code, 530, m.text);
    const r = await c.cmd('RCPT TO:<bob@other.test>');
    assert.ok(r.code >= 500 && r.code < 600, `${r.code} ${r.text}`);
  } finally {
    await c.quit();
  }
});

test('465: an authenticated user cannot send as another domain (MAIL FROM spoofing)', async () => {
  const c = await RawSmtp.connect(app.ports.submissions, { tls: true, ca });
  try {
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO client.example.net')).code, 250);
    assert.equal((await c.cmd(authPlain(`alice@${OURS}`, PW))).code, 235);
    for (const from of ['<bob@other.test>', `<postmaster@${OURS}>`, `<alice%other.test@${OURS}>`, `<@${OURS}:alice@${OURS}>x`]) {
      const m = await c.cmd(`MAIL FROM:${from}`);
      assert.ok(m.code >= 500 && m.code < 600, `MAIL FROM:${from}: ${m.code} ${m.text}`);
    }
  } finally {
    await c.quit();
  }
});

// ---- Positive control: the sink really is reachable, so "nothing at the sink" means something ----

let legit = '';
test('control: an authenticated submission to a foreign domain does reach the remote MX', async () => {
  legit = `legit-${randomBytes(6).toString('hex')}`;
  const c = await sub587();
  try {
    await c.starttls(ca);
    assert.equal((await c.cmd('EHLO client.example.net')).code, 250);
    assert.equal((await c.cmd(authPlain(`alice@${OURS}`, PW))).code, 235);
    assert.equal((await c.cmd(`MAIL FROM:<alice@${OURS}>`)).code, 250);
    assert.equal((await c.cmd('RCPT TO:<bob@other.test>')).code, 250);
    const d = await c.data(`From: alice@${OURS}\r\nTo: bob@other.test\r\nSubject: ${legit}\r\n\r\n${legit}\r\n`);
    assert.equal(d.code, 250, d.text);
  } finally {
    await c.quit();
  }
  const end = Date.now() + 30000;
  while (sink.find(legit).length === 0 && Date.now() < end) await sleep(100);
  assert.equal(sink.find(legit).length, 1, 'the legitimate message reached the sink');
});

test('nothing was relayed: the sink holds only the legitimate message and the queue is empty', async () => {
  assert.ok(legit, 'the control test ran');
  const others = sink.received.filter((m) => !m.data.includes(legit));
  assert.deepEqual(
    others.map((m) => ({ from: m.from, to: m.to })),
    [],
  );
  // Nothing left waiting either (a relayed message could be sitting in the queue, deferred).
  const end = Date.now() + 10000;
  let q: any[] = [];
  do {
    const r = await app.cliJson(['queue', 'list']);
    q = Array.isArray(r) ? r : (r.entries ?? r.items ?? r.data ?? []);
    if (q.length === 0) break;
    await sleep(200);
  } while (Date.now() < end);
  assert.deepEqual(q, []);
});
