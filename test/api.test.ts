// Management API v1 (part 1), end to end over real HTTP against a real `letterbox serve` with its
// supervised Dovecot and a real DNS server (TestDns) as its resolver. Keys are made with the real CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ImapFlow } from 'imapflow';
import fc from 'fast-check';
import { startAppliance, applianceCert, type Appliance } from './helpers/appliance.ts';
import { TestDns } from './helpers/dns.ts';
import { checkSchema } from './helpers/jsonschema.ts';
import { HTTP_STATUS, type ErrorCode } from '../src/errors.ts';

let app: Appliance;
let dns: TestDns;
let base: string;
let doc: any;
const PW = 'correct horse battery staple';

/** Secrets by role. */
const K: Record<string, string> = {};
const SCOPES = ['domains:read', 'domains:write', 'mailboxes:read', 'mailboxes:write', 'aliases:read', 'aliases:write'];
const RESTRICTED = ['a.test', 'ra.test', 'rb.test'];

interface Res {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

async function call(method: string, path: string, opts: { key?: string | null; auth?: string; body?: unknown; raw?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Res> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth !== undefined) headers.authorization = opts.auth;
  else if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  let body: string | Buffer | undefined = opts.raw;
  if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const r = await fetch(base + path, { method, headers, body });
  const text = await r.text();
  let parsed: any = null;
  try {
    parsed = JSON.parse(text);
  } catch {}
  // Every response, whatever it is, carries a request id.
  assert.match(r.headers.get('x-request-id') ?? '', /^req_[\w-]{16}$/, `${method} ${path}: X-Request-Id`);
  if (parsed?.error) assert.equal(parsed.error.requestId, r.headers.get('x-request-id'), 'requestId in the error body matches the header');
  return { status: r.status, headers: r.headers, body: parsed, text };
}

const admin = (method: string, path: string, body?: unknown) => call(method, path, { key: K.admin, body });

async function adminOk(method: string, path: string, body?: unknown): Promise<any> {
  const r = await admin(method, path, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path} → ${r.status} ${r.text}`);
  return r.body.data;
}

function rateHeaders(r: Res, what: string) {
  for (const h of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']) assert.match(r.headers.get(h) ?? '', /^\d+$/, `${what}: ${h}`);
}

/** The OpenAPI schema of the reply of one operation. */
function responseSchema(method: string, template: string, status: number): any {
  const op = doc.paths[template]?.[method.toLowerCase()];
  assert.ok(op, `${method} ${template} is in openapi.json`);
  let resp = op.responses[String(status)];
  assert.ok(resp, `${method} ${template} documents ${status}`);
  if (resp.$ref) resp = doc.components.responses[resp.$ref.split('/').pop()];
  return resp.content['application/json'].schema;
}

function assertMatchesDoc(method: string, template: string, r: Res) {
  const errs = checkSchema(doc, responseSchema(method, template, r.status), r.body);
  assert.deepEqual(errs, [], `${method} ${template} ${r.status} reply matches openapi.json: ${r.text.slice(0, 300)}`);
}

let n = 0;
const uniq = () => ++n;

before(async () => {
  dns = await new TestDns().start();
  app = await startAppliance({
    extraToml: `[dns]\nservers = ["${dns.server}"]\ntimeout_ms = 2000\n[api]\nrate_per_minute = 100000\nrate_burst = 100000\nmax_body_size = "64k"\n`,
  });
  base = `http://127.0.0.1:${app.ports.api}`;
  const mk = async (name: string, args: string[]) => (await app.cliJson(['key', 'create', '--name', name, ...args])).secret as string;
  const made = await Promise.all([
    mk('admin', []),
    mk('test', ['--test']),
    mk('resource-wildcard', ['--scopes', 'domains:*,mailboxes:*,aliases:*']),
    mk('wrong', ['--scopes', 'events:read,queue:*']),
    mk('none', ['--scopes', '']),
    mk('restricted', ['--domains', RESTRICTED.join(',')]),
    mk('revoked', []),
    mk('expired', ['--expires', '1s']),
    ...SCOPES.map((s) => mk(s, ['--scopes', s])),
  ]);
  [K.admin, K.test, K.reswild, K.wrong, K.none, K.restricted, K.revoked, K.expired] = made;
  SCOPES.forEach((s, i) => (K[s] = made[8 + i]));
  const list = await app.cliJson(['key', 'list']);
  const revoked = list.find((k: any) => k.name === 'revoked');
  assert.equal((await app.cli(['key', 'revoke', revoked.id])).code, 0);
  doc = (await call('GET', '/api/v1/openapi.json')).body;
  // Fixtures: one mailbox and one alias in each domain the matrix uses.
  for (const d of ['m.test', 'a.test', 'b.test']) {
    await adminOk('POST', '/api/v1/domains', { name: d });
    await adminOk('POST', '/api/v1/mailboxes', { address: `alice@${d}`, password: PW });
    await adminOk('POST', '/api/v1/aliases', { address: `info@${d}`, targets: [`alice@${d}`] });
  }
  const expiry = list.find((k: any) => k.name === 'expired').expiresAt;
  while (Date.now() <= Date.parse(expiry)) await sleep(100);
});

after(async () => {
  await app?.stop();
  app?.cleanup();
  await dns?.stop();
});

// ---- the authorization matrix

type Kind = 'normal' | 'own' | 'other';
interface Case {
  method: string;
  template: string;
  scope: string | null;
  ok: number;
  list?: boolean;
  /** A concrete request on a fresh fixture (made with the admin key) in `domain`. */
  make(domain: string, kind: Kind): Promise<{ url: string; body?: unknown }>;
}

const id = async (kind: 'domains' | 'mailboxes' | 'aliases', name: string) => (await adminOk('GET', `/api/v1/${kind}/${encodeURIComponent(name)}`)).id as string;

const CASES: Case[] = [
  { method: 'GET', template: '/api/v1/me', scope: null, ok: 200, make: async () => ({ url: '/api/v1/me' }) },
  { method: 'GET', template: '/api/v1/domains', scope: 'domains:read', ok: 200, list: true, make: async () => ({ url: '/api/v1/domains' }) },
  {
    method: 'POST', template: '/api/v1/domains', scope: 'domains:write', ok: 201,
    make: async (_d, kind) => ({ url: '/api/v1/domains', body: { name: kind === 'own' ? 'ra.test' : `new${uniq()}.test` } }),
  },
  { method: 'GET', template: '/api/v1/domains/{id}', scope: 'domains:read', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${await id('domains', d)}` }) },
  {
    method: 'DELETE', template: '/api/v1/domains/{id}', scope: 'domains:write', ok: 200,
    make: async (_d, kind) => {
      const name = kind === 'own' ? 'rb.test' : `del${uniq()}.test`;
      const created = await adminOk('POST', '/api/v1/domains', { name });
      return { url: `/api/v1/domains/${created.id}` };
    },
  },
  { method: 'GET', template: '/api/v1/domains/{id}/dns', scope: 'domains:read', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/dns` }) },
  { method: 'GET', template: '/api/v1/domains/{id}/dmarc-reports', scope: 'domains:read', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/dmarc-reports?days=7&ptr=0` }) },
  { method: 'GET', template: '/api/v1/domains/{id}/tls-reports', scope: 'domains:read', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/tls-reports?days=7` }) },
  { method: 'GET', template: '/api/v1/domains/{id}/dkim', scope: 'domains:read', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/dkim` }) },
  {
    // A rotation waits for its records (a second one is 409): each allowed call rotates a domain of its own.
    method: 'POST', template: '/api/v1/domains/{id}/dkim/rotate', scope: 'domains:write', ok: 201,
    make: async (d, kind) => {
      if (kind !== 'normal') return { url: `/api/v1/domains/${d}/dkim/rotate` };
      const name = `rot${uniq()}.test`;
      await adminOk('POST', '/api/v1/domains', { name });
      return { url: `/api/v1/domains/${name}/dkim/rotate` };
    },
  },
  { method: 'GET', template: '/api/v1/domains/{id}/spam', scope: 'domains:read', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/spam` }) },
  { method: 'PUT', template: '/api/v1/domains/{id}/spam', scope: 'domains:write', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/spam`, body: { junk: 7 } }) },
  { method: 'POST', template: '/api/v1/domains/{id}/verify', scope: 'domains:write', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/verify` }) },
  { method: 'POST', template: '/api/v1/domains/{id}/outbound/enable', scope: 'domains:write', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/outbound/enable` }) },
  { method: 'POST', template: '/api/v1/domains/{id}/outbound/suspend', scope: 'domains:write', ok: 200, make: async (d) => ({ url: `/api/v1/domains/${d}/outbound/suspend` }) },
  {
    method: 'PUT', template: '/api/v1/domains/{id}/catch-all', scope: 'domains:write', ok: 200,
    make: async (d) => ({ url: `/api/v1/domains/${d}/catch-all`, body: { target: `alice@${d}` } }),
  },
  {
    method: 'DELETE', template: '/api/v1/domains/{id}/catch-all', scope: 'domains:write', ok: 200,
    make: async (d) => {
      await adminOk('PUT', `/api/v1/domains/${d}/catch-all`, { target: [`alice@${d}`, 'someone@elsewhere.example'] });
      return { url: `/api/v1/domains/${d}/catch-all` };
    },
  },
  { method: 'GET', template: '/api/v1/mailboxes', scope: 'mailboxes:read', ok: 200, list: true, make: async () => ({ url: '/api/v1/mailboxes' }) },
  {
    method: 'POST', template: '/api/v1/mailboxes', scope: 'mailboxes:write', ok: 201,
    make: async (d) => ({ url: '/api/v1/mailboxes', body: { address: `u${uniq()}@${d}`, password: PW } }),
  },
  { method: 'POST', template: '/api/v1/mailboxes/ensure', scope: 'mailboxes:write', ok: 201, make: async (d) => ({ url: '/api/v1/mailboxes/ensure', body: { address: `e${uniq()}@${d}`, password: PW } }) },
  { method: 'GET', template: '/api/v1/mailboxes/resolve', scope: 'mailboxes:read', ok: 200, make: async (d) => ({ url: `/api/v1/mailboxes/resolve?address=info@${d}` }) },
  { method: 'GET', template: '/api/v1/mailboxes/quota-status', scope: 'mailboxes:read', ok: 200, list: true, make: async () => ({ url: '/api/v1/mailboxes/quota-status' }) },
  { method: 'GET', template: '/api/v1/mailboxes/{id}', scope: 'mailboxes:read', ok: 200, make: async (d) => ({ url: `/api/v1/mailboxes/${await id('mailboxes', `alice@${d}`)}` }) },
  { method: 'PATCH', template: '/api/v1/mailboxes/{id}', scope: 'mailboxes:write', ok: 200, make: async (d) => ({ url: `/api/v1/mailboxes/alice@${d}`, body: { tags: ['matrix'] } }) },
  {
    method: 'DELETE', template: '/api/v1/mailboxes/{id}', scope: 'mailboxes:write', ok: 200,
    make: async (d) => ({ url: `/api/v1/mailboxes/${(await adminOk('POST', '/api/v1/mailboxes', { address: `del${uniq()}@${d}`, password: PW })).id}` }),
  },
  { method: 'GET', template: '/api/v1/aliases', scope: 'aliases:read', ok: 200, list: true, make: async () => ({ url: '/api/v1/aliases' }) },
  {
    method: 'POST', template: '/api/v1/aliases', scope: 'aliases:write', ok: 201,
    make: async (d) => ({ url: '/api/v1/aliases', body: { address: `al${uniq()}@${d}`, targets: [`alice@${d}`, 'x@elsewhere.example'] } }),
  },
  { method: 'GET', template: '/api/v1/aliases/{id}', scope: 'aliases:read', ok: 200, make: async (d) => ({ url: `/api/v1/aliases/${await id('aliases', `info@${d}`)}` }) },
  {
    method: 'DELETE', template: '/api/v1/aliases/{id}', scope: 'aliases:write', ok: 200,
    make: async (d) => ({ url: `/api/v1/aliases/${(await adminOk('POST', '/api/v1/aliases', { address: `dal${uniq()}@${d}`, targets: [`alice@${d}`] })).id}` }),
  },
];

/**
 * The paths this issue owns (part 1): GET /me, domains, aliases, the mailbox routes without a
 * sub-resource, and the public ones. Other routes (messages, send, queue...) have their own tests.
 */
const OWNED = /^\/api\/v1\/(me|domains(\/.*)?|aliases(\/.*)?|mailboxes(\/(\{id\}|ensure|resolve|quota-status))?|openapi\.json)$|^\/healthz$|^\/api\/docs$/;
const ownedOps = () =>
  Object.entries<any>(doc.paths)
    .filter(([p]) => OWNED.test(p))
    .flatMap(([p, ops]) => Object.entries<any>(ops).map(([m, op]) => ({ path: p, method: m, op })));

/** The domain an item of a list reply belongs to. */
const itemDomain = (it: any): string => it.domain ?? (it.address ? it.address.slice(it.address.lastIndexOf('@') + 1) : it.name);

for (const c of CASES) {
  test(`authorization matrix: ${c.method} ${c.template}`, async () => {
    const label = `${c.method} ${c.template}`;
    // Refused: never reaches the handler.
    const fixture = await c.make('m.test', 'normal');
    const unauthorized: [string, { key?: string | null; auth?: string }][] = [
      ['no key', { key: null }],
      ['malformed key', { auth: 'Bearer lb_live_tooshort' }],
      ['wrong scheme', { auth: `Basic ${Buffer.from('a:b').toString('base64')}` }],
      ['unknown key', { key: 'lb_live_' + 'A'.repeat(43) }],
      ['revoked key', { key: K.revoked }],
      ['expired key', { key: K.expired }],
    ];
    for (const [what, auth] of unauthorized) {
      const r = await call(c.method, fixture.url, { ...auth, body: fixture.body });
      assert.equal(r.status, 401, `${label} with ${what}: ${r.text}`);
      assert.equal(r.body.error.code, 'unauthorized');
      assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="letterbox"');
      rateHeaders(r, `${label} ${what}`);
      assertMatchesDoc(c.method, c.template, r);
    }
    for (const [what, key] of [['wrong scope', K.wrong], ['no scopes', K.none]] as const) {
      const r = await call(c.method, fixture.url, { key, body: fixture.body });
      rateHeaders(r, `${label} ${what}`);
      if (c.scope === null) {
        assert.equal(r.status, c.ok, `${label} needs no scope`);
        continue;
      }
      assert.equal(r.status, 403, `${label} with ${what}: ${r.text}`);
      assert.equal(r.body.error.code, 'forbidden');
      assert.ok(r.body.error.message.includes(c.scope), 'the message names the scope needed');
      assertMatchesDoc(c.method, c.template, r);
    }
    // A key with only another resource's scope of the same kind is refused too.
    if (c.scope) {
      const other = SCOPES.find((s) => s.split(':')[0] !== c.scope!.split(':')[0] && s.split(':')[1] === c.scope!.split(':')[1])!;
      const r = await call(c.method, fixture.url, { key: K[other], body: fixture.body });
      assert.equal(r.status, 403, `${label} with ${other}`);
    }

    // Allowed: each gets its own fresh fixture.
    const allowed: [string, string, string, Kind][] = [
      ['right scope', c.scope ? K[c.scope] : K.none, 'm.test', 'normal'],
      ['wildcard *', K.admin, 'm.test', 'normal'],
      ['resource:*', K.reswild, 'm.test', 'normal'],
      ['test key', K.test, 'm.test', 'normal'],
      ['domain-restricted key, own domain', K.restricted, 'a.test', 'own'],
    ];
    for (const [what, key, domain, kind] of allowed) {
      const f = await c.make(domain, kind);
      const r = await call(c.method, f.url, { key, body: f.body });
      assert.equal(r.status, c.ok, `${label} with ${what}: ${r.text}`);
      rateHeaders(r, `${label} ${what}`);
      assertMatchesDoc(c.method, c.template, r);
      if (key === K.test) assert.equal(r.body.sandbox, true, 'test keys: "sandbox": true');
      else assert.equal(r.body.sandbox, undefined);
      if (c.list && key === K.restricted) {
        const domains = new Set(r.body.data.map(itemDomain));
        assert.ok(domains.has('a.test'), `${label}: the restricted key sees its domain`);
        for (const d of domains) assert.ok(RESTRICTED.includes(d as string), `${label}: the restricted key must not see ${d}`);
      }
      if (c.list && key === K.admin) assert.ok(r.body.data.some((it: any) => itemDomain(it) === 'b.test'), `${label}: others see every domain`);
    }
    // A domain-restricted key gets 404 for other domains (403 for adding a domain outside its list).
    if (!c.list && c.scope !== null) {
      const f = await c.make('b.test', 'other');
      const r = await call(c.method, f.url, { key: K.restricted, body: f.body });
      const expected = c.template === '/api/v1/domains' ? 403 : 404;
      assert.equal(r.status, expected, `${label} with a key restricted to other domains: ${r.text}`);
      rateHeaders(r, label);
      assertMatchesDoc(c.method, c.template, r);
    }
  });
}

// ---- the document, the docs page, every route answering

test('openapi.json is OpenAPI 3.1 and lists exactly the routes of this part (each in the matrix)', async () => {
  const r = await call('GET', '/api/v1/openapi.json');
  assert.equal(r.status, 200);
  assert.equal(doc.openapi, '3.1.0');
  const documented = ownedOps().map((o) => `${o.method.toUpperCase()} ${o.path}`).sort();
  const expected = [...CASES.map((c) => `${c.method} ${c.template}`), 'GET /healthz', 'GET /api/v1/openapi.json', 'GET /api/docs'].sort();
  assert.deepEqual(documented, expected);
  // Every $ref resolves; every key route declares its scope and the 401 reply.
  const text = JSON.stringify(doc);
  for (const m of text.matchAll(/"\$ref":"#\/([^"]+)"/g)) {
    let o = doc;
    for (const part of m[1].split('/')) o = o?.[part];
    assert.ok(o, `$ref ${m[1]} resolves`);
  }
  for (const c of CASES) {
    const op = doc.paths[c.template][c.method.toLowerCase()];
    assert.equal(op['x-scope'], c.scope, `${c.method} ${c.template} x-scope`);
    assert.ok(op.responses['401'], `${c.method} ${c.template} documents 401`);
  }
  // Request schemas are the validating ones: unknown fields are refused in the document too.
  assert.equal(doc.paths['/api/v1/mailboxes/{id}'].patch.requestBody.content['application/json'].schema.additionalProperties, false);
});

test('every documented route answers (never 404/405) and the docs page is self-contained', async () => {
  for (const { path: p, method: m } of ownedOps()) {
    {
      const url = p.replace('{id}', 'm.test').replace('/mailboxes/m.test', '/mailboxes/alice@m.test').replace('/aliases/m.test', '/aliases/info@m.test');
      if (m === 'get') {
        const r = await call('GET', url + (p.endsWith('/resolve') ? '?address=alice@m.test' : ''), { key: K.admin });
        assert.equal(r.status, 200, `GET ${url}: ${r.text.slice(0, 200)}`);
        continue;
      }
      // Methods that change things are called on a domain that does not exist (or without a body):
      // they must reach their handler, which answers 400/404 for the missing thing, not "no route".
      const r = await call(m.toUpperCase(), url.replace('m.test', 'not-there.test'), { key: K.admin });
      assert.ok([200, 400, 404].includes(r.status), `${m.toUpperCase()} ${url} → ${r.status}`);
      if (r.status === 404) assert.doesNotMatch(r.body.error.message, /^no route/);
    }
  }
  // Every operation in the document (whatever issue added it) is routed: no "no route" 404, no 405.
  // Called with the sandbox key, made-up ids and no body, so nothing is changed or sent.
  for (const [p, ops] of Object.entries<any>(doc.paths)) {
    for (const m of Object.keys(ops)) {
      const r = await call(m.toUpperCase(), p.replace(/\{\w+\}/g, 'does-not-exist'), { key: K.test });
      assert.notEqual(r.status, 405, `${m} ${p}`);
      assert.ok(r.status !== 404 || !/^no route/.test(r.body?.error?.message ?? ''), `${m} ${p} is routed`);
      assert.notEqual(r.status, 500, `${m} ${p}: ${r.text.slice(0, 200)}`);
    }
  }
  const page = await call('GET', '/api/docs');
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  for (const p of Object.keys(doc.paths)) assert.ok(page.text.includes(p), `docs page shows ${p}`); // every route, any issue's
  assert.doesNotMatch(page.text, /<script[^>]+src=|<link[^>]+href="https?:|https?:\/\/(?!json-schema\.org)/, 'no external resources');
});

// ---- bad input

test('bad input: 400 with the field path, malformed JSON, 413, 405, 404; never a 500', async () => {
  let r = await call('POST', '/api/v1/mailboxes', { key: K.admin, raw: '{"address": "x@m.test",' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'validation_error');
  assert.match(r.body.error.message, /malformed JSON/);

  r = await call('POST', '/api/v1/mailboxes', { key: K.admin, body: { address: 'bogus1@m.test', passwrd: 'typo in the field name' } });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^body\.passwrd: unknown field/);
  assert.deepEqual(r.body.error.details.issues, [{ path: 'body.passwrd', message: 'unknown field' }]);

  r = await call('POST', '/api/v1/mailboxes', { key: K.admin, body: [{ address: 'bogus2@m.test' }, { address: 'bogus3@m.test', extra: 1 }] });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^body\[1\]\.extra: unknown field/);
  assert.equal((await admin('GET', '/api/v1/mailboxes/bogus2@m.test')).status, 404, 'nothing of a refused batch is created');

  r = await call('PATCH', '/api/v1/mailboxes/alice@m.test', { key: K.admin, body: { quota: -5 } });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^body\.quota/);
  r = await call('PATCH', '/api/v1/mailboxes/alice@m.test', { key: K.admin, body: { disabled: 'yes' } });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^body\.disabled/);
  r = await call('POST', '/api/v1/mailboxes', { key: K.admin, body: { address: 'short@m.test', password: 'short' } });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^body\.password/);
  r = await call('POST', '/api/v1/domains', { key: K.admin, body: { name: 'not a domain' } });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^body\.name: invalid domain name/);
  r = await call('POST', '/api/v1/domains', { key: K.admin, body: 'example.com' });
  assert.equal(r.status, 400);
  r = await call('POST', '/api/v1/domains', { key: K.admin });
  assert.equal(r.status, 400, 'a missing body');

  r = await call('GET', '/api/v1/mailboxes?limit=0', { key: K.admin });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^query\.limit/);
  r = await call('GET', '/api/v1/mailboxes?colour=blue', { key: K.admin });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^query\.colour: unknown field/);
  r = await call('GET', '/api/v1/mailboxes?status=sleeping', { key: K.admin });
  assert.equal(r.status, 400);
  r = await call('GET', '/api/v1/mailboxes?cursor=garbage', { key: K.admin });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /^query\.cursor/);
  r = await call('POST', '/api/v1/domains/m.test/verify', { key: K.admin, body: { please: true } });
  assert.equal(r.status, 400, 'a body on a route that takes none');
  r = await call('POST', '/api/v1/domains', { key: K.admin, raw: 'name=x.test', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 415, 'not JSON: unsupported media type (issue 16)');
  assert.equal(r.body.error.code, 'unsupported_media_type');

  // Over api.max_body_size (64k here): 413, whether Content-Length says so or not.
  r = await call('POST', '/api/v1/aliases', { key: K.admin, raw: JSON.stringify({ address: 'big@m.test', targets: ['x'.repeat(70 * 1024)] }) });
  assert.equal(r.status, 413);
  assert.equal(r.body.error.code, 'payload_too_large');
  const chunked = new ReadableStream({
    start(ctl) {
      for (let i = 0; i < 10; i++) ctl.enqueue(new TextEncoder().encode(' '.repeat(10 * 1024)));
      ctl.close();
    },
  });
  const rs = await fetch(`${base}/api/v1/aliases`, { method: 'POST', headers: { authorization: `Bearer ${K.admin}`, 'content-type': 'application/json' }, body: chunked, duplex: 'half' } as any);
  assert.equal(rs.status, 413);
  assert.equal(((await rs.json()) as any).error.code, 'payload_too_large');

  r = await call('PUT', '/api/v1/mailboxes', { key: K.admin, body: {} });
  assert.equal(r.status, 405);
  assert.equal(r.body.error.code, 'method_not_allowed');
  assert.equal(HTTP_STATUS[r.body.error.code as ErrorCode], 405, 'the code is one of errors.ts');
  assert.match(r.headers.get('allow') ?? '', /GET/);
  rateHeaders(r, '405 with a valid key');
  r = await call('DELETE', '/healthz');
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('x-ratelimit-limit'), null, 'no key, no rate-limit headers');
  r = await call('GET', '/api/v1/nothing-here', { key: K.admin });
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'not_found');
  rateHeaders(r, '404 with a valid key');
  r = await call('GET', '/api/v1/nothing-here');
  assert.equal(r.status, 404);
  assert.equal(r.headers.get('x-ratelimit-limit'), null, 'no key, no rate-limit headers');
  r = await call('GET', '/api/v1/nothing-here', { key: 'lb_live_' + 'x'.repeat(43) });
  assert.equal(r.status, 401, 'an invalid key fails at once, even on an unknown path');
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="letterbox"');
  r = await call('GET', '/api/v1/mailboxes/nobody@m.test', { key: K.admin });
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'not_found');

  assert.ok(!app.logs.some((l) => l.includes('internal error in API request')), 'no request ended in a 500');
});

test('fuzz: random JSON bodies and query strings never cause a 500', async () => {
  const allowed = new Set([200, 201, 400, 404, 409, 413]);
  for (const { path: p, method: m, op } of ownedOps()) {
    {
      if (!p.startsWith('/api/v1/') || p.endsWith('openapi.json')) continue;
      const url = p.replace('{id}', 'fuzz.test').replace('/mailboxes/fuzz.test', '/mailboxes/nobody@fuzz.test');
      const schema = op.requestBody?.content['application/json'].schema;
      const fields = Object.keys(schema?.properties ?? schema?.anyOf?.[0]?.properties ?? {});
      const bodies = m === 'get' || m === 'delete' ? [] : [
        ...fc.sample(fc.jsonValue(), 15),
        ...fc.sample(fc.dictionary(fc.constantFrom(...fields, 'extra'), fc.jsonValue(), { maxKeys: 4 }), 25),
      ];
      for (const body of bodies) {
        const r = await call(m.toUpperCase(), url, { key: K.admin, raw: JSON.stringify(body) });
        assert.ok(allowed.has(r.status), `${m} ${url} ${JSON.stringify(body).slice(0, 200)} → ${r.status} ${r.text.slice(0, 200)}`);
      }
      const params = (op.parameters ?? []).filter((x: any) => x.in === 'query').map((x: any) => x.name);
      for (const q of fc.sample(fc.dictionary(fc.constantFrom(...params, 'x'), fc.string({ maxLength: 12 }), { maxKeys: 3 }), m === 'get' ? 25 : 5)) {
        const qs = new URLSearchParams(q as Record<string, string>).toString();
        const r = await call(m.toUpperCase(), `${url}?${qs}`, { key: K.admin });
        assert.ok(allowed.has(r.status), `${m} ${url}?${qs} → ${r.status} ${r.text.slice(0, 200)}`);
      }
    }
  }
  assert.ok(!app.logs.some((l) => l.includes('internal error in API request')), 'no request ended in a 500');
});

// ---- domains

test('domains: records on creation, dns as JSON and zone, delete refused while mailboxes exist, the CLI sees the same', async () => {
  let r = await admin('POST', '/api/v1/domains', { name: 'Bücher.Example' });
  assert.equal(r.status, 201);
  const d = r.body.data;
  assert.equal(d.name, 'xn--bcher-kva.example');
  assert.equal(d.unicodeName, 'bücher.example');
  assert.deepEqual(d.records.map((x: any) => x.purpose).sort(), ['dkim', 'dkim', 'dmarc', 'helo-spf', 'mx', 'spf', 'srv', 'srv', 'srv', 'srv', 'tlsrpt']);
  assert.deepEqual(
    d.records.filter((x: any) => x.type === 'SRV').map((x: any) => `${x.name} ${x.priority} ${x.weight} ${x.port} ${x.value}`),
    [
      `_submissions._tcp.xn--bcher-kva.example 0 1 ${app.ports.submissions} mail.letterbox.test`,
      `_submission._tcp.xn--bcher-kva.example 10 1 ${app.ports.submission} mail.letterbox.test`,
      `_imaps._tcp.xn--bcher-kva.example 0 1 ${app.ports.imap} mail.letterbox.test`,
      '_imap._tcp.xn--bcher-kva.example 0 0 0 .',
    ],
    'RFC 6186/8314 SRV records: implicit TLS first, plain IMAP not offered',
  );
  assert.equal(d.dkim.length, 2);
  assert.equal((await admin('POST', '/api/v1/domains', { name: 'bücher.example' })).status, 409);

  const cli = await app.cliJson(['domain', 'show', 'xn--bcher-kva.example']);
  assert.equal(cli.id, d.id, 'the CLI sees the domain the API added');
  const viaDns = await adminOk('GET', `/api/v1/domains/${d.id}/dns`);
  assert.deepEqual(viaDns.records, cli.records);
  assert.match(viaDns.zone, /^xn--bcher-kva\.example\.\t3600\tIN\tMX\t10 mail\.letterbox\.test\.$/m);
  assert.match(viaDns.zone, /_domainkey\.xn--bcher-kva\.example\.\t3600\tIN\tTXT\t/);

  await adminOk('POST', '/api/v1/mailboxes', { address: 'someone@xn--bcher-kva.example', password: PW });
  r = await admin('DELETE', `/api/v1/domains/${d.id}`);
  assert.equal(r.status, 409);
  assert.equal(r.body.error.code, 'conflict');
  assert.equal((await adminOk('POST', `/api/v1/domains/${d.id}/outbound/suspend`)).outboundEnabled, false);
  assert.equal((await app.cliJson(['domain', 'show', d.name])).outboundEnabled, false);
  assert.equal((await adminOk('POST', `/api/v1/domains/${d.id}/outbound/enable`)).outboundEnabled, true);

  const ca = await adminOk('PUT', `/api/v1/domains/${d.name}/catch-all`, { target: 'someone@xn--bcher-kva.example' });
  assert.equal(ca.address, '*@xn--bcher-kva.example');
  assert.deepEqual((await adminOk('GET', `/api/v1/domains/${d.id}`)).catchAll, ['someone@xn--bcher-kva.example']);
  await adminOk('DELETE', `/api/v1/domains/${d.id}/catch-all`);
  assert.equal((await admin('DELETE', `/api/v1/domains/${d.id}/catch-all`)).status, 404);

  r = await admin('DELETE', `/api/v1/domains/${d.id}?force=1`);
  assert.equal(r.status, 200);
  assert.equal((await app.cli(['domain', 'show', d.name])).code, 2, 'gone for the CLI too');
  assert.equal((await admin('GET', '/api/v1/mailboxes/someone@xn--bcher-kva.example')).status, 404);

  // Pagination over domains.
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page: Res = await admin('GET', `/api/v1/domains?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    assert.ok(page.body.data.length <= 2);
    seen.push(...page.body.data.map((x: any) => x.name));
    cursor = page.body.nextCursor;
  } while (cursor);
  const all = (await app.cliJson(['domain', 'list'])).map((x: any) => x.name);
  assert.deepEqual(seen, all, 'pages cover every domain once, in order');
});

test('domain verification against a real DNS server: correct records, then wrong ones', async () => {
  const d = await adminOk('POST', '/api/v1/domains', { name: 'verify.test' });
  const publish = (records: any[]) => {
    for (const x of records) {
      if (x.type === 'MX') dns.mx(x.name, x.value, x.priority);
      else if (x.type === 'TXT') dns.txt(x.name, x.value);
      else if (x.type === 'SRV') dns.add({ type: 'SRV', name: x.name, data: { priority: x.priority, weight: x.weight, port: x.port, target: x.value } });
    }
  };
  // Without the SRV records the domain still verifies (they are for mail clients): reported as not ok, not required.
  publish(d.records.filter((x: any) => x.type !== 'SRV'));
  dns.a('mail.letterbox.test', '127.0.0.1');
  let v = await adminOk('POST', `/api/v1/domains/${d.id}/verify`);
  assert.equal(v.ok, true, JSON.stringify(v.records.filter((x: any) => !x.ok)));
  const srv = v.records.filter((x: any) => x.purpose === 'srv');
  assert.equal(srv.length, 4);
  for (const x of srv) assert.deepEqual([x.ok, x.required, x.type], [false, false, 'SRV'], JSON.stringify(x));
  assert.match(srv[0].problem, /not published/);
  publish(d.records.filter((x: any) => x.type === 'SRV'));
  v = await adminOk('POST', `/api/v1/domains/${d.id}/verify`);
  assert.equal(v.ok, true, JSON.stringify(v.records.filter((x: any) => !x.ok)));
  assert.deepEqual(v.records.map((x: any) => x.purpose).sort(), ['dkim', 'dkim', 'dmarc', 'helo-spf', 'mx', 'spf', 'srv', 'srv', 'srv', 'srv']);
  assert.deepEqual(v.records.filter((x: any) => x.type === 'SRV').map((x: any) => x.found), [
    [`0 1 ${app.ports.submissions} mail.letterbox.test`], [`10 1 ${app.ports.submission} mail.letterbox.test`], [`0 1 ${app.ports.imap} mail.letterbox.test`], ['0 0 0 .'],
  ]);
  for (const x of v.records) {
    assert.equal(x.ok, true);
    assert.equal(x.problem, null);
    assert.ok(x.found.length >= 1);
  }
  assert.equal(v.lastVerifiedAt, v.checkedAt);
  assert.equal((await adminOk('GET', `/api/v1/domains/${d.id}`)).lastVerifiedAt, v.checkedAt);
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  try {
    const ev = db.prepare("SELECT * FROM events WHERE type = 'domain.verified' AND domain = 'verify.test'").all();
    assert.equal(ev.length, 2, 'a domain.verified event per successful check (without, then with the SRV records)');
  } finally {
    db.close();
  }
  const goodAt = v.checkedAt;

  // Now wrong: MX elsewhere, SPF without our address, one DKIM key replaced, DMARC gone.
  const rsa = d.records.find((x: any) => x.purpose === 'dkim' && x.value.includes('k=rsa'));
  dns.remove('verify.test', 'MX').mx('verify.test', 'mx.elsewhere.example');
  dns.remove('verify.test', 'TXT').txt('verify.test', 'v=spf1 ip4:192.0.2.1 -all');
  dns.remove(rsa.name, 'TXT').txt(rsa.name, 'v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong');
  dns.remove('_dmarc.verify.test', 'TXT');
  await sleep(1100); // a different checkedAt
  v = await adminOk('POST', `/api/v1/domains/verify.test/verify`);
  assert.equal(v.ok, false);
  const by = (p: string, name?: string) => v.records.find((x: any) => x.purpose === p && (!name || x.name === name));
  assert.equal(by('mx').ok, false);
  assert.deepEqual(by('mx').found, ['10 mx.elsewhere.example']);
  assert.equal(by('mx').expected, '10 mail.letterbox.test');
  assert.match(by('mx').problem, /no MX record points to mail\.letterbox\.test/);
  assert.equal(by('spf').ok, false);
  assert.deepEqual(by('spf').found, ['v=spf1 ip4:192.0.2.1 -all']);
  assert.match(by('spf').problem, /127\.0\.0\.1/);
  assert.equal(by('dkim', rsa.name).ok, false);
  assert.match(by('dkim', rsa.name).problem, /does not match/);
  assert.equal(v.records.filter((x: any) => x.purpose === 'dkim' && x.ok).length, 1, 'the untouched Ed25519 selector is still ok');
  assert.equal(by('dmarc').ok, false);
  assert.deepEqual(by('dmarc').found, []);
  assert.equal(v.lastVerifiedAt, goodAt, 'lastVerifiedAt stays at the last good check');

  // SPF through include: counts (evaluated, not string-matched); the CLI agrees.
  dns.remove('verify.test', 'TXT').txt('verify.test', 'v=spf1 include:_spf.verify.test -all').txt('_spf.verify.test', 'v=spf1 ip4:127.0.0.0/8 -all');
  const cli = await app.cliJson(['domain', 'verify', 'verify.test']);
  assert.equal(cli.records.find((x: any) => x.purpose === 'spf').ok, true);
  assert.equal(cli.ok, false);
});

// ---- mailboxes

test('mailboxes: generated password once, batch all-or-none, ensure, filters and pagination, patch, delete', async () => {
  await adminOk('POST', '/api/v1/domains', { name: 'mbx.test' });
  let r = await admin('POST', '/api/v1/mailboxes', { address: 'Gen@MBX.test', quota: '10M', tags: ['team', 'sales'] });
  assert.equal(r.status, 201);
  const gen = r.body.data;
  assert.equal(gen.address, 'gen@mbx.test');
  assert.equal(gen.quotaBytes, 10 * 1024 * 1024);
  assert.match(gen.password, /^.{20}$/, 'a generated password, returned once');
  assert.equal(gen.imapHost, 'mail.letterbox.test');
  assert.equal(gen.imapPort, app.ports.imap);
  assert.equal(gen.submissionPort, app.ports.submission);
  assert.equal(gen.submissionsPort, app.ports.submissions);
  const got = await adminOk('GET', `/api/v1/mailboxes/${gen.id}`);
  assert.equal(got.password, undefined, 'never shown again');
  assert.equal(got.smtpHost, 'mail.letterbox.test');
  assert.equal((await app.cliJson(['mailbox', 'show', 'gen@mbx.test'])).id, gen.id, 'the CLI sees it');

  // A batch with one conflict creates nothing.
  r = await admin('POST', '/api/v1/mailboxes', [{ address: 'b1@mbx.test', password: PW }, { address: 'gen@mbx.test', password: PW }]);
  assert.equal(r.status, 409);
  assert.equal((await admin('GET', '/api/v1/mailboxes/b1@mbx.test')).status, 404);
  r = await admin('POST', '/api/v1/mailboxes', [
    { address: 'b1@mbx.test', password: PW, tags: ['team'] },
    { address: 'b2@mbx.test', password: PW, tags: ['team', 'sales'], disabled: true },
    { address: 'b3@mbx.test', password: PW },
    { address: 'b4@mbx.test' },
  ]);
  assert.equal(r.status, 201);
  assert.equal(r.body.data.length, 4);
  assert.equal(r.body.data[0].password, undefined, 'a given password is not echoed');
  assert.ok(r.body.data[3].password);

  // ensure: created once, then the same one.
  r = await admin('POST', '/api/v1/mailboxes/ensure', { address: 'ens@mbx.test' });
  assert.equal(r.status, 201);
  assert.equal(r.body.data.created, true);
  assert.ok(r.body.data.password);
  const again = await admin('POST', '/api/v1/mailboxes/ensure', { address: 'ENS@mbx.test', quota: '1G' });
  assert.equal(again.status, 200);
  assert.equal(again.body.data.created, false);
  assert.equal(again.body.data.id, r.body.data.id);
  assert.equal(again.body.data.password, undefined);
  assert.equal(again.body.data.quotaBytes, 0, 'ensure does not change an existing mailbox');
  assert.equal((await admin('POST', '/api/v1/mailboxes/ensure', { address: 'info@m.test' })).status, 409, 'an alias address');

  // Filters: repeated tags must all match; status; domain.
  const list = async (q: string) => (await adminOk('GET', `/api/v1/mailboxes?${q}`)).map((m: any) => m.address);
  assert.deepEqual(await list('domain=mbx.test&tag=team&tag=sales'), ['b2@mbx.test', 'gen@mbx.test']);
  assert.deepEqual(await list('domain=mbx.test&tag=team'), ['b1@mbx.test', 'b2@mbx.test', 'gen@mbx.test']);
  assert.deepEqual(await list('domain=mbx.test&status=disabled'), ['b2@mbx.test']);
  assert.deepEqual(await list('domain=mbx.test&status=active&tag=sales'), ['gen@mbx.test']);
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const p: Res = await admin('GET', `/api/v1/mailboxes?domain=mbx.test&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.equal(p.status, 200);
    seen.push(...p.body.data.map((m: any) => m.address));
    cursor = p.body.nextCursor;
    pages++;
  } while (cursor);
  assert.deepEqual(seen, ['b1@mbx.test', 'b2@mbx.test', 'b3@mbx.test', 'b4@mbx.test', 'ens@mbx.test', 'gen@mbx.test']);
  assert.equal(pages, 3);

  // patch
  const p = await adminOk('PATCH', '/api/v1/mailboxes/b2@mbx.test', { disabled: false, quota: '2G', tags: ['x'] });
  assert.equal(p.disabled, false);
  assert.equal(p.status, 'active');
  assert.equal(p.quotaBytes, 2 * 1024 ** 3);
  assert.deepEqual(p.tags, ['x']);
  assert.equal((await app.cliJson(['mailbox', 'show', 'b2@mbx.test'])).quotaBytes, 2 * 1024 ** 3);

  // resolve: through aliases, plus addresses and the catch-all.
  await adminOk('POST', '/api/v1/aliases', { address: 'team@mbx.test', targets: ['b1@mbx.test', 'list@mbx.test', 'ext@elsewhere.example'] });
  await adminOk('POST', '/api/v1/aliases', { address: 'list@mbx.test', targets: ['b3@mbx.test'] });
  let res = await adminOk('GET', '/api/v1/mailboxes/resolve?address=team@mbx.test');
  assert.equal(res.via, 'alias');
  assert.deepEqual(res.mailboxes.map((m: any) => m.address).sort(), ['b1@mbx.test', 'b3@mbx.test']);
  assert.deepEqual(res.external, ['ext@elsewhere.example']);
  res = await adminOk('GET', `/api/v1/mailboxes/resolve?address=${encodeURIComponent('b1+news@mbx.test')}`);
  assert.equal(res.via, 'mailbox');
  assert.equal(res.detail, 'news');
  assert.deepEqual(res.mailboxes.map((m: any) => m.address), ['b1@mbx.test']);
  assert.equal((await admin('GET', '/api/v1/mailboxes/resolve?address=nobody@mbx.test')).status, 404);
  await adminOk('PUT', '/api/v1/domains/mbx.test/catch-all', { target: 'b4@mbx.test' });
  res = await adminOk('GET', '/api/v1/mailboxes/resolve?address=nobody@mbx.test');
  assert.equal(res.via, 'catch-all');
  assert.deepEqual(res.mailboxes.map((m: any) => m.address), ['b4@mbx.test']);
  assert.equal((await admin('GET', '/api/v1/mailboxes/resolve?address=x@not-here.example')).status, 404);

  // delete
  const del = await adminOk('DELETE', '/api/v1/mailboxes/b3@mbx.test');
  assert.equal(del.address, 'b3@mbx.test');
  assert.equal((await admin('GET', `/api/v1/mailboxes/${del.id}`)).status, 404);
  assert.equal((await app.cli(['mailbox', 'show', 'b3@mbx.test'])).code, 2);
});

test('quota status is read from the real Dovecot', async () => {
  await adminOk('POST', '/api/v1/domains', { name: 'quota.test' });
  await adminOk('POST', '/api/v1/mailboxes', [
    { address: 'q1@quota.test', password: PW, quota: '1M' },
    { address: 'q2@quota.test', password: PW },
  ]);
  // Wait until Dovecot knows the users (the users file is re-read within about a second), so the
  // IMAP login below succeeds the first time (failed logins slow later ones).
  let rows: any[] = [];
  for (let i = 0; i < 40; i++) {
    rows = await adminOk('GET', '/api/v1/mailboxes/quota-status?domain=quota.test');
    if (rows.every((x) => x.usedBytes !== null)) break;
    await sleep(150);
  }
  assert.deepEqual(rows.map((x) => [x.address, x.usedBytes, x.messages]), [['q1@quota.test', 0, 0], ['q2@quota.test', 0, 0]]);
  const c = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, tls: { ca: applianceCert(app), servername: 'localhost' }, auth: { user: 'q1@quota.test', pass: PW }, logger: false });
  await c.connect();
  const message = `From: a@example.org\r\nTo: q1@quota.test\r\nSubject: quota\r\nMessage-ID: <q1@example.org>\r\n\r\n${'x'.repeat(100 * 1024)}\r\n`;
  await c.append('INBOX', message);
  await c.append('INBOX', message);
  const imapQuota: any = await c.getQuota('INBOX');
  await c.logout();
  rows = await adminOk('GET', '/api/v1/mailboxes/quota-status?domain=quota.test');
  const q1 = rows.find((x) => x.address === 'q1@quota.test');
  assert.equal(q1.messages, 2);
  assert.ok(q1.usedBytes >= 200 * 1024 && q1.usedBytes < 220 * 1024, `usedBytes ${q1.usedBytes}`);
  assert.equal(q1.quotaBytes, 1024 * 1024);
  assert.equal(q1.percent, Math.round((q1.usedBytes / q1.quotaBytes) * 10000) / 100);
  assert.equal(q1.usedBytes, imapQuota.storage.usage, 'the same figure IMAP GETQUOTAROOT gives');
  const q2 = rows.find((x) => x.address === 'q2@quota.test');
  assert.equal(q2.usedBytes, 0);
  assert.equal(q2.percent, null, 'unlimited');
  // The PATCHed password works over IMAP (the same service layer as the CLI).
  await adminOk('PATCH', '/api/v1/mailboxes/q2@quota.test', { password: 'another long password' });
  await sleep(2100); // Dovecot re-reads the users file at most once a second, on a later mtime
  const c2 = new ImapFlow({ host: '127.0.0.1', port: app.ports.imap, secure: true, tls: { ca: applianceCert(app), servername: 'localhost' }, auth: { user: 'q2@quota.test', pass: 'another long password' }, logger: false });
  await c2.connect();
  await c2.logout();
});

// ---- keys

test('keys: shown once, only a hash stored, listed without secrets, /me, last used, request ids in the log', async () => {
  const k = await app.cliJson(['key', 'create', '--name', 'ci', '--scopes', 'mailboxes:read,domains:*', '--test', '--expires', '90d', '--domains', 'M.test,a.test']);
  assert.match(k.secret, /^lb_test_[A-Za-z0-9_-]{43}$/);
  assert.equal(k.prefix, k.secret.slice(8, 16));
  assert.deepEqual(k.scopes, ['domains:*', 'mailboxes:read']);
  assert.deepEqual(k.domains, ['a.test', 'm.test']);
  assert.ok(Math.abs(Date.parse(k.expiresAt) - Date.now() - 90 * 86400000) < 60000);
  assert.match(K.admin, /^lb_live_[A-Za-z0-9_-]{43}$/);

  const me = await call('GET', '/api/v1/me', { key: k.secret });
  assert.equal(me.status, 200);
  assert.deepEqual(
    { ...me.body.data, createdAt: undefined, lastUsedAt: undefined },
    { id: k.id, name: 'ci', prefix: k.prefix, mode: 'test', sandbox: true, scopes: ['domains:*', 'mailboxes:read'], domains: ['a.test', 'm.test'], createdAt: undefined, expiresAt: k.expiresAt, lastUsedAt: undefined },
  );
  assert.equal(me.body.sandbox, true);

  const list = await app.cliJson(['key', 'list']);
  const row = list.find((x: any) => x.id === k.id);
  assert.ok(row.lastUsedAt, 'last used is recorded');
  assert.equal(list.find((x: any) => x.name === 'revoked').status, 'revoked');
  assert.equal(list.find((x: any) => x.name === 'expired').status, 'expired');
  const text = JSON.stringify(list);
  assert.ok(!text.includes(k.secret) && !text.includes('hash') && !/"secret"/.test(text), 'no secrets or hashes in key list');
  const human = await app.cli(['key', 'list']);
  assert.ok(human.stdout.includes(`lb_test_${k.prefix}…`));

  // Only the SHA-256 of the secret is in the database; the secret is nowhere in the data dir's db or logs.
  const db = new Database(join(app.dataDir, 'letterbox.db'), { readonly: true });
  try {
    const stored: any = db.prepare('SELECT * FROM api_keys WHERE id = ?').get(k.id);
    const { createHash } = await import('node:crypto');
    assert.equal(stored.hash, createHash('sha256').update(k.secret).digest('hex'));
    assert.ok(!Object.values(stored).includes(k.secret));
  } finally {
    db.close();
  }
  for (const f of ['letterbox.db', 'letterbox.db-wal']) {
    try {
      assert.ok(!readFileSync(join(app.dataDir, f)).includes(k.secret), `${f} does not contain the secret`);
    } catch (err: any) {
      if (err.code !== 'ENOENT') throw err;
    }
  }
  assert.ok(!app.logs.some((l) => l.includes(k.secret) || l.includes(K.admin)), 'no key in the logs');

  // The request's log line carries its id.
  const r = await call('GET', '/api/v1/domains', { key: k.secret });
  const rid = r.headers.get('x-request-id')!;
  await sleep(200);
  const line = app.logs.find((l) => l.includes(rid));
  assert.ok(line && line.includes('"api request"') && line.includes('"status":200'), 'one log line per request with its id');

  // Revoked from the CLI: refused from the next request on.
  assert.equal((await app.cli(['key', 'revoke', k.prefix])).code, 0);
  assert.equal((await call('GET', '/api/v1/me', { key: k.secret })).status, 401);
  // Bad CLI input is refused with a message.
  const bad = await app.cli(['key', 'create', '--name', 'x', '--scopes', 'mailboxes:delete']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid scope "mailboxes:delete"/);
  assert.equal((await app.cli(['key', 'create', '--name', 'x', '--expires', 'tomorrow'])).code, 2);
});
