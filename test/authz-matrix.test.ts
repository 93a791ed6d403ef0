// The authorization matrix over EVERY route, generated from the served openapi.json, so a new route
// cannot be forgotten: each key route × (no key, malformed, wrong scheme, unknown, revoked,
// expired) → 401; × (no scopes, the same resource's other action, another resource's same action)
// → 403 naming the scope; × a key with exactly the documented scope → past the scope gate; × a key
// restricted to another domain, on this domain's objects → 404 (403 for creating a domain), its
// lists never mention the other domain. After every refused request nothing has changed: the
// database (every table, every row) and the mail store (messages, flags, Sieve scripts) are
// compared before and after. test/api.test.ts keeps the detailed per-route cases of part 1
// (fresh fixtures, reply schemas, sandbox flags).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { waitFor } from './helpers/mailapi.ts';

const OWN = 'own-side.test';
const OTHER = 'other-side.test';
const PW = 'correct horse battery staple';

let app: Appliance;
let dns: TestDns;
let hookSink: Server;
let base: string;
let doc: any;
const K: Record<string, string> = {};
/** Ids of the fixtures in each domain, by kind. */
const F: Record<string, Record<string, string>> = { [OWN]: {}, [OTHER]: {} };

interface Res {
  status: number;
  body: any;
  text: string;
}

async function call(method: string, path: string, opts: { key?: string | null; auth?: string; body?: unknown } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  if (opts.auth !== undefined) headers.authorization = opts.auth;
  else if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(base + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const text = await r.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: r.status, body, text };
}

async function adminOk(method: string, path: string, body?: unknown): Promise<any> {
  const r = await call(method, path, { key: K.admin, body });
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path} → ${r.status} ${r.text}`);
  return r.body?.data;
}

/** A valid request body per operation, for domain `d` (validation runs before the domain check). */
const BODIES: Record<string, (d: string) => unknown> = {
  'POST /api/v1/domains': () => ({ name: 'created-by-matrix.test' }),
  'PUT /api/v1/domains/{id}/catch-all': (d) => ({ target: `alice@${d}` }),
  'POST /api/v1/mailboxes': (d) => ({ address: `made@${d}`, password: PW }),
  'POST /api/v1/mailboxes/ensure': (d) => ({ address: `made@${d}`, password: PW }),
  'PATCH /api/v1/mailboxes/{id}': () => ({ tags: ['changed'], disabled: true }),
  'PUT /api/v1/mailboxes/{id}/vacation': () => ({ subject: 'changed', text: 'changed' }),
  'PUT /api/v1/mailboxes/{id}/sieve/scripts/{name}': () => ({ script: 'discard;\n', activate: true }),
  'POST /api/v1/mailboxes/{id}/mobileconfig': () => ({ password: PW }),
  'POST /api/v1/aliases': (d) => ({ address: `made-alias@${d}`, targets: [`alice@${d}`] }),
  'POST /api/v1/mailboxes/{id}/send': () => ({ to: ['someone@elsewhere.test'], subject: 'must not leave', text: 'x' }),
  'PATCH /api/v1/mailboxes/{id}/messages/{uid}': () => ({ seen: true, flagged: true }),
  'POST /api/v1/suppressions': (d) => ({ domain: d, address: 'made@elsewhere.test' }),
  'POST /api/v1/webhooks': () => ({ url: 'http://127.0.0.1:9/made', events: ['message.received'] }),
  'PATCH /api/v1/webhooks/{id}': () => ({ description: 'changed', enabled: false }),
  'POST /api/v1/webhooks/{id}/rotate-secret': () => ({ graceSeconds: 0 }),
  'PUT /api/v1/mailboxes/{id}/spam': () => ({ junk: 3, mode: 'off' }),
  'PUT /api/v1/domains/{id}/spam': () => ({ junk: 3, mode: 'off' }),
  'POST /api/v1/mailboxes/{id}/spam/learn': () => ({ as: 'spam', message: 'Subject: x\r\n\r\nx\r\n' }),
  'POST /api/v1/mailboxes/{id}/app-passwords': () => ({ name: 'made by the matrix' }),
  'PUT /api/v1/mailboxes/{id}/require-app-passwords': () => ({ enabled: true }),
  'PUT /api/v1/mailboxes/{id}/forwarding': () => ({ targets: ['changed@elsewhere.test'], keepCopy: false }),
};

/**
 * Operations a domain-restricted key may call on no particular domain's object, and why they are not
 * "another domain's object" cases. Every other operation takes a path parameter that names an
 * object of a domain, or a body naming a domain, and is checked with the other domain's objects.
 */
const NOT_DOMAIN_BOUND: Record<string, string> = {
  'GET /api/v1/me': 'the key itself',
  'GET /metrics': 'global counters by design (README: Metrics), no per-domain data',
  'POST /api/v1/webhooks': 'allowed: the webhook it creates is limited to the key\'s domains',
};

/** The concrete URL of an operation on the objects of domain `d`. */
function urlFor(template: string, d: string): string {
  const f = F[d];
  let url = template
    .replace('/domains/{id}', `/domains/${d}`)
    .replace('/mailboxes/{id}', `/mailboxes/alice@${d}`)
    .replace('/aliases/{id}', `/aliases/${f.alias}`)
    .replace('/queue/{id}', `/queue/${f.queue}`)
    .replace('/webhooks/{id}', `/webhooks/${f.webhook}`)
    .replace('{deliveryId}', f.delivery)
    .replace('/suppressions/{address}', `/suppressions/${encodeURIComponent(f.suppression)}`)
    .replace('{name}', 'matrix')
    .replace('{appId}', f.appPassword)
    .replace('{uid}', f.uid)
    .replace('{index}', '1');
  if (template === '/api/v1/mailboxes/resolve') url += `?address=info@${d}`;
  assert.doesNotMatch(url, /\{/, `urlFor: no fixture for a parameter of ${template}; add one`);
  return url;
}

const ops = () =>
  Object.entries<any>(doc.paths).flatMap(([p, o]) => Object.entries<any>(o).map(([m, op]) => ({ method: m.toUpperCase(), template: p, op, name: `${m.toUpperCase()} ${p}` })));
const keyOps = () => ops().filter((o) => !Array.isArray(o.op.security) || o.op.security.length > 0);

// ---- what must not change

/** Rows of every table, and the files of every mail store and Sieve folder (names carry the flags). */
function snapshot(): Map<string, string> {
  const out = new Map<string, string>();
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
    for (const t of tables) {
      for (const row of db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).all() as Record<string, unknown>[]) {
        // A key's last use is recorded when it authenticates, whatever the route then answers.
        if (t === 'api_keys') for (const c of Object.keys(row)) if (c.startsWith('last_used')) delete row[c];
        const text = JSON.stringify(row, (_k, v) => (Buffer.isBuffer(v) ? v.toString('base64') : typeof v === 'bigint' ? String(v) : v));
        out.set(`${t}:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`, text.slice(0, 300));
      }
    }
  } finally {
    db.close();
  }
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      // Dovecot's own index and cache files change when the API reads mail; messages and scripts are what counts.
      else if ((/\/Maildir\/.*\/(cur|new)\//.test(p) || /\/Maildir\/(cur|new)\//.test(p) || /sieve/.test(p)) && !e.name.startsWith('dovecot')) out.set(`file:${p.slice(app.dataDir.length)}`, String(statSync(p).size));
    }
  };
  walk(app.dataDir);
  return out;
}

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  const d: string[] = [];
  for (const [k, v] of a) if (!b.has(k)) d.push(`gone: ${k} ${v}`);
  for (const [k, v] of b) if (!a.has(k)) d.push(`new: ${k} ${v}`);
  return d;
}

// ---- fixtures

before(async () => {
  dns = await new TestDns().start();
  dns.add({ type: 'MX', name: 'nullmx.test', data: { preference: 0, exchange: '.' } });
  hookSink = createServer((req, res) => req.resume().on('end', () => res.end('ok')));
  await new Promise<void>((r) => hookSink.listen(0, '127.0.0.1', () => r()));
  app = await startAppliance({
    env: { LETTERBOX_LISTEN_INJECT: `127.0.0.1:${await freePort()}` },
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 2000\n[api]\nrate_per_minute = 100000\nrate_burst = 100000\nsend_rate_per_minute = 100000\nsend_rate_burst = 100000\n[webhooks]\nallow_loopback = true\n`,
  });
  base = `http://127.0.0.1:${app.ports.api}`;
  doc = (await call('GET', '/api/v1/openapi.json')).body;
  const scopes = [...new Set(keyOps().map((o) => o.op['x-scope']).filter((s): s is string => !!s))];
  const mk = async (name: string, args: string[]) => (await app.cliJson(['key', 'create', '--name', name, ...args])).secret as string;
  const specs: [string, string[]][] = [
    ['admin', []],
    ['none', ['--scopes', '']],
    ['revoked', []],
    ['expired', ['--expires', '1s']],
    ['restricted', ['--domains', OWN]],
    ...scopes.map((s): [string, string[]] => [s, ['--scopes', s]]),
  ];
  const secrets = await Promise.all(specs.map(([n, a]) => mk(n, a)));
  specs.forEach(([n], i) => (K[n] = secrets[i]));
  const list = await app.cliJson(['key', 'list']);
  assert.equal((await app.cli(['key', 'revoke', list.find((k: any) => k.name === 'revoked').id])).code, 0);

  for (const d of [OWN, OTHER]) {
    await adminOk('POST', '/api/v1/domains', { name: d });
    await adminOk('POST', '/api/v1/mailboxes', { address: `alice@${d}`, password: PW });
    F[d].alias = (await adminOk('POST', '/api/v1/aliases', { address: `info@${d}`, targets: [`alice@${d}`] })).id;
    await adminOk('PUT', `/api/v1/domains/${d}/catch-all`, { target: `alice@${d}` });
    await adminOk('PUT', `/api/v1/mailboxes/alice@${d}/vacation`, { subject: 'away', text: 'back soon', enabled: false });
    await waitFor(async () => (await call('PUT', `/api/v1/mailboxes/alice@${d}/sieve/scripts/matrix`, { key: K.admin, body: { script: 'keep;\n' } })).status === 200, `a Sieve script for alice@${d}`);
    F[d].suppression = `gone-${d}@elsewhere.test`;
    await adminOk('POST', '/api/v1/suppressions', { domain: d, address: F[d].suppression });
    // A message in the mailbox (local delivery), and a queue entry that bounced at once (null MX).
    await adminOk('POST', `/api/v1/mailboxes/alice@${d}/send`, { to: [`alice@${d}`], subject: 'in the mailbox', text: 'x' });
    await adminOk('POST', `/api/v1/mailboxes/alice@${d}/send`, { to: ['x@nullmx.test'], subject: 'to a null MX', text: 'x' });
    const msgs = await waitFor(async () => (await adminOk('GET', `/api/v1/mailboxes/alice@${d}/messages?folder=INBOX`)).messages.filter((m: any) => m.subject === 'in the mailbox'), `the message in alice@${d}`);
    F[d].uid = String(msgs[0].uid);
    const q = await waitFor(async () => (await adminOk('GET', `/api/v1/queue?mailbox=alice@${d}&state=bounced`)).find((e: any) => e.status === 'bounced'), `the bounced queue entry of ${d}`);
    F[d].queue = q.id;
  }
  // A device password, and forwarding (set last: mail to alice now also goes to elsewhere.test).
  for (const d of [OWN, OTHER]) {
    F[d].appPassword = (await adminOk('POST', `/api/v1/mailboxes/alice@${d}/app-passwords`, { name: 'phone' })).id;
    await adminOk('PUT', `/api/v1/mailboxes/alice@${d}/forwarding`, { targets: [`copy@elsewhere.test`], keepCopy: true });
  }
  // Webhooks: one made by a key limited to OWN (so it is OWN's), one by the admin (every domain).
  const hookUrl = `http://127.0.0.1:${(hookSink.address() as any).port}/hook`;
  const own = await call('POST', '/api/v1/webhooks', { key: K.restricted, body: { url: hookUrl, events: ['domain.verified'] } });
  assert.equal(own.status, 201, own.text);
  F[OWN].webhook = own.body.data.id;
  F[OTHER].webhook = (await adminOk('POST', '/api/v1/webhooks', { url: hookUrl, events: ['domain.verified'] })).id;
  for (const d of [OWN, OTHER]) {
    await adminOk('POST', `/api/v1/webhooks/${F[d].webhook}/test`);
    const dl = await waitFor(async () => (await adminOk('GET', `/api/v1/webhooks/${F[d].webhook}/deliveries`)).find((x: any) => x.status === 'succeeded'), 'the test delivery');
    F[d].delivery = dl.id;
  }
  const expiry = list.find((k: any) => k.name === 'expired').expiresAt;
  while (Date.now() <= Date.parse(expiry)) await sleep(100);
  // Quiet: no background work changes anything any more (bounce DSNs delivered, hooks sent).
  await waitFor(async () => {
    const a = snapshot();
    await sleep(1500);
    return diff(a, snapshot()).length === 0;
  }, 'the appliance to be quiet', 60000);
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
  hookSink?.close();
});

// ---- the matrix

test('every operation of openapi.json is in the matrix: each has a fixture URL, each body route a sample body', () => {
  const all = keyOps();
  assert.ok(all.length >= 60, `the document lists the key routes (${all.length})`);
  for (const o of all) {
    urlFor(o.template, OTHER);
    if (o.op.requestBody) assert.ok(BODIES[o.name], `${o.name}: add a sample body to BODIES`);
  }
  for (const name of Object.keys(BODIES)) assert.ok(all.some((o) => o.name === name), `BODIES names ${name}, which is not in the document`);
});

test('refused requests: 401 without a valid key, 403 without the scope, nothing changed', async () => {
  let refused = 0;
  for (const o of keyOps()) {
    const url = urlFor(o.template, OTHER);
    const body = BODIES[o.name]?.(OTHER);
    const before = snapshot();
    const unauthorized: [string, { key?: string | null; auth?: string }][] = [
      ['no key', { key: null }],
      ['malformed key', { auth: 'Bearer lb_live_tooshort' }],
      ['wrong scheme', { auth: `Basic ${Buffer.from('a:b').toString('base64')}` }],
      ['unknown key', { key: 'lb_live_' + 'A'.repeat(43) }],
      ['revoked key', { key: K.revoked }],
      ['expired key', { key: K.expired }],
    ];
    for (const [what, auth] of unauthorized) {
      const r = await call(o.method, url, { ...auth, body });
      assert.equal(r.status, 401, `${o.name} with ${what}: ${r.text}`);
      assert.equal(r.body?.error?.code, 'unauthorized', `${o.name} with ${what}`);
      refused++;
    }
    const scope: string | null = o.op['x-scope'];
    if (scope) {
      const [res, act] = scope.split(':');
      const others = [K.none];
      if (K[`${res}:${act === 'read' ? 'write' : 'read'}`]) others.push(K[`${res}:${act === 'read' ? 'write' : 'read'}`]);
      const otherRes = Object.keys(K).find((s) => s.endsWith(`:${act}`) && !s.startsWith(`${res}:`));
      if (otherRes) others.push(K[otherRes]);
      for (const key of others) {
        const r = await call(o.method, url, { key, body });
        assert.equal(r.status, 403, `${o.name} without ${scope}: ${r.text}`);
        assert.equal(r.body?.error?.code, 'forbidden');
        assert.ok(r.body.error.message.includes(scope), `${o.name}: the 403 names the scope`);
        refused++;
      }
    }
    assert.deepEqual(diff(before, snapshot()), [], `${o.name}: a refused request changed something`);
  }
  process.stdout.write(`# matrix: ${refused} refused requests over ${keyOps().length} operations\n`);
});

test('the documented scope is the enforced one: a key with exactly x-scope passes the scope gate', async () => {
  for (const o of keyOps()) {
    const scope: string | null = o.op['x-scope'];
    const key = scope ? K[scope] : K.none;
    if (o.method === 'GET') {
      // Reads on the real objects answer.
      const r = await call('GET', urlFor(o.template, OWN), { key });
      const ok = o.template.endsWith('/attachments/{index}') ? [200, 404] : [200]; // the fixture message has no attachment
      assert.ok(ok.includes(r.status), `${o.name} with exactly ${scope ?? 'no scope'}: ${r.status} ${r.text.slice(0, 200)}`);
      continue;
    }
    // Changes go to objects that do not exist, with an empty body: past authentication and the
    // scope check they answer 400 (validation) or 404, and nothing is changed.
    const url = o.template.replace(/\{\w+\}/g, 'does-not-exist');
    const r = await call(o.method, url, { key, body: {} });
    assert.ok([400, 404].includes(r.status), `${o.name} with exactly ${scope ?? 'no scope'}: ${r.status} ${r.text.slice(0, 200)}`);
  }
});

test('a key restricted to one domain: 404 for every object of another domain, lists without it, nothing changed', async () => {
  let checked = 0;
  for (const o of keyOps()) {
    if (NOT_DOMAIN_BOUND[o.name]) continue;
    const before = snapshot();
    const hasParam = o.template.includes('{') || o.template.endsWith('/resolve');
    const bodyNamesDomain = !hasParam && o.op.requestBody;
    if (hasParam || bodyNamesDomain) {
      const r = await call(o.method, urlFor(o.template, OTHER), { key: K.restricted, body: BODIES[o.name]?.(OTHER) });
      const expected = o.name === 'POST /api/v1/domains' ? 403 : 404;
      assert.equal(r.status, expected, `${o.name} on ${OTHER}'s object with a key restricted to ${OWN}: ${r.text}`);
      assert.equal(r.body?.error?.code, expected === 403 ? 'forbidden' : 'not_found');
    } else {
      // A list: it answers, and nothing in it belongs to the other domain.
      assert.equal(o.method, 'GET', `${o.name}: classify it (domain-bound or in NOT_DOMAIN_BOUND)`);
      const r = await call(o.method, urlFor(o.template, OWN), { key: K.restricted });
      assert.equal(r.status, 200, `${o.name}: ${r.text}`);
      for (const leak of [OTHER, ...Object.values(F[OTHER]).filter((v) => v.length > 8)]) assert.ok(!r.text.includes(leak), `${o.name}: a key restricted to ${OWN} sees ${leak}: ${r.text.slice(0, 300)}`);
      const admin = await call(o.method, urlFor(o.template, OWN), { key: K.admin });
      if (admin.text.includes(OTHER)) assert.ok(r.text.includes(OWN) || (Array.isArray(r.body.data) && r.body.data.length === 0), `${o.name}: the restricted key sees its own domain's items`);
    }
    checked++;
    assert.deepEqual(diff(before, snapshot()), [], `${o.name}: a refused request changed something`);
  }
  assert.ok(checked >= 55, `operations checked with the restricted key: ${checked}`);
});
