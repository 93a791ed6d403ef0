// A small ACME CA (RFC 8555 subset) on loopback for tests, spoken to by the real acme-client:
// directory, nonces, accounts, orders, authorizations, HTTP-01 validation — it fetches
// /.well-known/acme-challenge/<token> from the port the test names and checks the key
// authorization against the account key's thumbprint — finalization signing the CSR with its own
// CA (openssl), and the certificate chain. JWS signatures are not verified (the client is trusted).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './appliance.ts';

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const unb64u = (s: string) => Buffer.from(s, 'base64url');

function thumbprint(jwk: any): string {
  const canon = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return b64u(createHash('sha256').update(JSON.stringify(canon)).digest());
}

interface Authz {
  id: string;
  identifier: { type: 'dns'; value: string };
  status: 'pending' | 'valid' | 'invalid' | 'deactivated';
  token: string;
  chStatus: 'pending' | 'valid' | 'invalid';
  error?: string;
}
interface Order {
  id: string;
  status: 'pending' | 'ready' | 'valid' | 'invalid';
  identifiers: { type: 'dns'; value: string }[];
  authz: string[];
  cert?: string;
}

export class TestAcmeCa {
  port = 0;
  /** Where HTTP-01 validation connects (the appliance's acme.http_listen port). */
  challengePort = 0;
  /** Fail this many orders at finalization (to test retries). */
  failNext = 0;
  readonly issued: string[][] = [];
  readonly validations: { host: string; token: string; ok: boolean }[] = [];
  caCert = '';
  private dir = '';
  private server: Server | null = null;
  private accounts = new Map<string, any>(); // kid → jwk
  private authzs = new Map<string, Authz>();
  private orders = new Map<string, Order>();
  private seq = 0;

  get directoryUrl(): string {
    return `http://127.0.0.1:${this.port}/directory`;
  }
  private url(p: string): string {
    return `http://127.0.0.1:${this.port}${p}`;
  }

  async start(): Promise<this> {
    this.dir = mkdtempSync(join(tmpdir(), 'lbca-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '3650', '-subj', '/CN=Letterbox Test ACME CA', '-keyout', join(this.dir, 'ca.key'), '-out', join(this.dir, 'ca.pem')], { stdio: 'ignore' });
    this.caCert = readFileSync(join(this.dir, 'ca.pem'), 'utf8');
    this.port = await freePort();
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => this.problem(res, 500, 'serverInternal', String(err?.message ?? err)));
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', () => r()));
    return this;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server?.closeAllConnections();
    await closed;
    rmSync(this.dir, { recursive: true, force: true });
  }

  private nonce(res: ServerResponse) {
    res.setHeader('Replay-Nonce', b64u(randomBytes(16)));
    res.setHeader('Cache-Control', 'no-store');
  }
  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    this.nonce(res);
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  }
  private problem(res: ServerResponse, status: number, type: string, detail: string) {
    this.nonce(res);
    res.writeHead(status, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ type: `urn:ietf:params:acme:error:${type}`, detail, status }));
  }

  private authzJson(a: Authz) {
    return {
      identifier: a.identifier,
      status: a.status,
      expires: new Date(Date.now() + 86400000).toISOString(),
      challenges: [{ type: 'http-01', url: this.url(`/chall/${a.id}`), token: a.token, status: a.chStatus, ...(a.error ? { error: { type: 'urn:ietf:params:acme:error:unauthorized', detail: a.error } } : {}) }],
    };
  }
  private orderJson(o: Order) {
    return {
      status: o.status,
      expires: new Date(Date.now() + 86400000).toISOString(),
      identifiers: o.identifiers,
      authorizations: o.authz.map((id) => this.url(`/authz/${id}`)),
      finalize: this.url(`/order/${o.id}/finalize`),
      ...(o.cert ? { certificate: this.url(`/cert/${o.id}`) } : {}),
    };
  }

  private async body(req: IncomingMessage): Promise<{ protected: any; payload: any }> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const jws = JSON.parse(Buffer.concat(chunks).toString());
    const prot = JSON.parse(unb64u(jws.protected).toString());
    const payload = jws.payload === '' ? null : JSON.parse(unb64u(jws.payload).toString());
    return { protected: prot, payload };
  }

  private async validate(a: Authz, kid: string): Promise<void> {
    const expected = `${a.token}.${thumbprint(this.accounts.get(kid))}`;
    let ok = false;
    try {
      const r = await fetch(`http://127.0.0.1:${this.challengePort}/.well-known/acme-challenge/${a.token}`, { headers: { host: a.identifier.value }, signal: AbortSignal.timeout(3000) });
      ok = r.status === 200 && (await r.text()).trim() === expected;
    } catch {}
    this.validations.push({ host: a.identifier.value, token: a.token, ok });
    a.chStatus = ok ? 'valid' : 'invalid';
    a.status = ok ? 'valid' : 'invalid';
    if (!ok) a.error = `the HTTP-01 response for ${a.identifier.value} did not match`;
  }

  private refresh(o: Order) {
    if (o.status === 'pending') {
      const as = o.authz.map((id) => this.authzs.get(id)!);
      if (as.some((a) => a.status === 'invalid')) o.status = 'invalid';
      else if (as.every((a) => a.status === 'valid')) o.status = 'ready';
    }
  }

  private sign(csrB64u: string, names: string[]): string {
    // Lines of 64; no empty line before END when the length is a multiple of 64 (openssl refuses it).
    const csr = `-----BEGIN CERTIFICATE REQUEST-----\n${unb64u(csrB64u).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE REQUEST-----\n`;
    const id = String(++this.seq);
    const csrFile = join(this.dir, `${id}.csr`);
    const ext = join(this.dir, `${id}.ext`);
    writeFileSync(csrFile, csr);
    writeFileSync(ext, `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n`);
    const leaf = execFileSync('openssl', ['x509', '-req', '-in', csrFile, '-CA', join(this.dir, 'ca.pem'), '-CAkey', join(this.dir, 'ca.key'), '-set_serial', String(1000 + this.seq), '-days', '90', '-extfile', ext], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return leaf + this.caCert;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/directory') {
      return this.json(res, 200, { newNonce: this.url('/new-nonce'), newAccount: this.url('/new-account'), newOrder: this.url('/new-order'), revokeCert: this.url('/revoke'), keyChange: this.url('/key-change'), meta: { termsOfService: this.url('/terms') } });
    }
    if (path === '/new-nonce') {
      this.nonce(res);
      res.writeHead(req.method === 'HEAD' ? 200 : 204).end();
      return;
    }
    if (req.method !== 'POST') return this.problem(res, 405, 'malformed', 'POST expected');
    const { protected: prot, payload } = await this.body(req);
    if (path === '/new-account') {
      const kid = this.url(`/acct/${thumbprint(prot.jwk).slice(0, 12)}`);
      const existed = this.accounts.has(kid);
      this.accounts.set(kid, prot.jwk);
      return this.json(res, existed ? 200 : 201, { status: 'valid', contact: payload?.contact ?? [] }, { location: kid });
    }
    const kid = prot.kid;
    if (!this.accounts.has(kid)) return this.problem(res, 400, 'accountDoesNotExist', 'unknown account');
    if (path.startsWith('/acct/')) return this.json(res, 200, { status: 'valid', contact: payload?.contact ?? [] });
    if (path === '/new-order') {
      const id = String(++this.seq);
      const authz = (payload.identifiers as { type: 'dns'; value: string }[]).map((identifier, i) => {
        const a: Authz = { id: `${id}-${i}`, identifier, status: 'pending', token: b64u(randomBytes(24)), chStatus: 'pending' };
        this.authzs.set(a.id, a);
        return a.id;
      });
      const o: Order = { id, status: 'pending', identifiers: payload.identifiers, authz };
      this.orders.set(id, o);
      return this.json(res, 201, this.orderJson(o), { location: this.url(`/order/${id}`) });
    }
    let m = /^\/authz\/([\w-]+)$/.exec(path);
    if (m) {
      const a = this.authzs.get(m[1]);
      if (!a) return this.problem(res, 404, 'malformed', 'no such authorization');
      if (payload?.status === 'deactivated') a.status = 'deactivated';
      return this.json(res, 200, this.authzJson(a));
    }
    m = /^\/chall\/([\w-]+)$/.exec(path);
    if (m) {
      const a = this.authzs.get(m[1]);
      if (!a) return this.problem(res, 404, 'malformed', 'no such challenge');
      if (payload && a.chStatus === 'pending') await this.validate(a, kid);
      const ch = this.authzJson(a).challenges[0];
      return this.json(res, 200, ch, { link: `<${this.url(`/authz/${a.id}`)}>;rel="up"` });
    }
    m = /^\/order\/(\d+)\/finalize$/.exec(path);
    if (m) {
      const o = this.orders.get(m[1]);
      if (!o) return this.problem(res, 404, 'malformed', 'no such order');
      this.refresh(o);
      if (o.status !== 'ready') return this.problem(res, 403, 'orderNotReady', `order is ${o.status}`);
      if (this.failNext > 0) {
        this.failNext--;
        o.status = 'invalid';
        return this.problem(res, 500, 'serverInternal', 'injected failure');
      }
      const names = o.identifiers.map((i) => i.value);
      o.cert = this.sign(payload.csr, names);
      o.status = 'valid';
      this.issued.push(names);
      return this.json(res, 200, this.orderJson(o), { location: this.url(`/order/${o.id}`) });
    }
    m = /^\/order\/(\d+)$/.exec(path);
    if (m) {
      const o = this.orders.get(m[1]);
      if (!o) return this.problem(res, 404, 'malformed', 'no such order');
      this.refresh(o);
      return this.json(res, 200, this.orderJson(o));
    }
    m = /^\/cert\/(\d+)$/.exec(path);
    if (m) {
      const o = this.orders.get(m[1]);
      if (!o?.cert) return this.problem(res, 404, 'malformed', 'no certificate');
      this.nonce(res);
      res.writeHead(200, { 'content-type': 'application/pem-certificate-chain' }).end(o.cert);
      return;
    }
    return this.problem(res, 404, 'malformed', `unknown path ${path}`);
  }
}
