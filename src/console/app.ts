// The admin web console (issue #19), served under /console on the management API's listener
// (listen.api). Server-rendered pages (src/console/pages.ts) with htmx for partial updates; every
// action calls the management API's own route handlers through `invoke` (same validation, same
// services, no second code path), as an unrestricted administrator.
//
// Security: sessions live in SQLite (src/console/store.ts), the cookie is HttpOnly; Secure;
// SameSite=Strict; every POST of a signed-in page must carry the session's CSRF token (hidden
// field `_csrf` or header X-CSRF-Token, which htmx sends from <body hx-headers>); the passkey
// endpoints take JSON only (a cross-site form cannot send it without a CORS preflight, which is
// never granted); login attempts go through the shared login guard; a strict CSP forbids inline
// script and style.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type Koa from 'koa';
import { LetterboxError, isLetterboxError } from '../errors.ts';
import type { AppContext } from '../context.ts';
import type { Html } from './html.ts';
import * as pages from './pages.ts';
import { BASE, type FormErrors, type Frame } from './pages.ts';
import * as store from './store.ts';
import { relyingParty } from './relying-party.ts';

/** Calls a management API operation by its operationId, validated with the route's own schemas. */
export type Invoke = (operationId: string, input: { params?: Record<string, string>; query?: Record<string, unknown>; body?: unknown }, ctx: Koa.Context) => Promise<{ data?: any; nextCursor?: string | null }>;

export interface ConsoleDeps {
  app: Pick<AppContext, 'db' | 'config' | 'log' | 'clock' | 'loginGuard'>;
  invoke: Invoke;
  sessions?: store.SessionPolicy;
}

const SESSION_COOKIE = 'lb_console';
const CHALLENGE_COOKIE = 'lb_console_login';
const MAX_BODY = 64 * 1024;

export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The static files, read once: our own CSS and script, and htmx and the WebAuthn browser bundle from node_modules (no CDN). */
function staticFiles(): Map<string, { body: Buffer; type: string }> {
  const require = createRequire(import.meta.url);
  const here = (f: string) => new URL(`./static/${f}`, import.meta.url);
  const files = new Map<string, { body: Buffer; type: string }>();
  files.set('console.css', { body: readFileSync(here('console.css')), type: 'text/css; charset=utf-8' });
  files.set('console.js', { body: readFileSync(here('console.js')), type: 'text/javascript; charset=utf-8' });
  files.set('htmx.min.js', { body: readFileSync(require.resolve('htmx.org/dist/htmx.min.js')), type: 'text/javascript; charset=utf-8' });
  // The package exports only its module entry (script/index.js); the browser bundle sits beside it.
  const webauthnDir = require.resolve('@simplewebauthn/browser').replace(/script\/index\.js$/, '');
  files.set('webauthn.js', { body: readFileSync(webauthnDir + 'dist/bundle/index.umd.min.js'), type: 'text/javascript; charset=utf-8' });
  return files;
}

/** Decide: a cookie header value with the attributes every console cookie has. Pure. */
export function cookie(name: string, value: string, maxAgeSeconds: number): string {
  return `${name}=${value}; Path=${BASE}; Max-Age=${maxAgeSeconds}; HttpOnly; Secure; SameSite=Strict`;
}

/** Decide: do two tokens match (constant time)? Pure. */
export function tokensMatch(a: string | undefined, b: string): boolean {
  if (!a) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Decide: where to go after login — only a console path of this site (no open redirect). Pure. */
export function safeNext(next: unknown): string {
  return typeof next === 'string' && next.startsWith(`${BASE}/`) && !next.startsWith('//') && !/[\\\r\n]/.test(next) ? next : `${BASE}/domains`;
}

/** Decide: field errors from a validation error's issues ("body.name" → "name"). Pure. */
export function formErrors(err: LetterboxError, fields: string[]): FormErrors {
  const issues = (err.details?.issues as { path: string; message: string }[] | undefined) ?? [];
  const out: FormErrors = {};
  for (const i of issues) {
    const f = i.path.split('.').pop()!;
    if (fields.includes(f) && !out[f]) out[f] = `${i.message}`;
  }
  if (Object.keys(out).length === 0) {
    const m = /^body\.(\w+): (.*)$/.exec(err.message);
    if (m && fields.includes(m[1])) out[m[1]] = m[2];
    else out._ = err.message;
  }
  return out;
}

async function readBody(ctx: Koa.Context): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of ctx.req) {
    size += c.length;
    if (size > MAX_BODY) throw new LetterboxError('payload_too_large', `the form is larger than ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(ctx: Koa.Context): Promise<URLSearchParams> {
  if (!ctx.is('application/x-www-form-urlencoded')) throw new LetterboxError('validation_error', 'expected a form (application/x-www-form-urlencoded)');
  return new URLSearchParams(await readBody(ctx));
}

async function readJson(ctx: Koa.Context): Promise<any> {
  // JSON only: a cross-site HTML form cannot send it, and a cross-site fetch needs a preflight we never answer.
  if (!ctx.is('application/json')) throw new LetterboxError('validation_error', 'expected application/json');
  try {
    return JSON.parse(await readBody(ctx));
  } catch {
    throw new LetterboxError('validation_error', 'the body is not valid JSON');
  }
}

interface ConsoleState {
  session: (store.Session & { id: string }) | null;
}

type Ctx = Koa.ParameterizedContext<ConsoleState>;

/** What every console route uses: the services, the session policy, page sending, audit, the sign-in gate. */
function consoleKit(deps: ConsoleDeps) {
  const { app, invoke } = deps;
  const policy = deps.sessions ?? store.DEFAULT_SESSION_POLICY;
  const log = app.log.child({ component: 'console' });
  // The passkey module is imported on the first passkey request (see src/console/passkeys.ts).
  let passkeysModule: Promise<typeof import('./passkeys.ts')> | null = null;
  const passkeys = () => (passkeysModule ??= import('./passkeys.ts'));
  const rp = (ctx: Ctx) => relyingParty(ctx.host, ctx.protocol, app.config.hostname);
  const frame = (ctx: Ctx, title: string): Frame => ({ title, session: ctx.state.session ? { admin: ctx.state.session.adminName, csrf: ctx.state.session.csrf } : null });
  const send = (ctx: Ctx, page: Html, status = 200) => {
    ctx.status = status;
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = page.value;
  };
  const record = (ctx: Ctx, action: string, target: string | null, detail?: unknown) =>
    store.audit(app, { admin: ctx.state.session?.adminName ?? '-', action, target, ip: ctx.request.ip, detail });
  const isHtmx = (ctx: Ctx) => ctx.get('HX-Request') === 'true';

  /** Signed-in pages: a live session, and on POST its CSRF token; otherwise to the login page (or 403). */
  const signedIn = async (ctx: Ctx, next: () => Promise<unknown>) => {
    if (!ctx.state.session) {
      const to = `${BASE}/login?next=${encodeURIComponent(ctx.method === 'GET' ? ctx.originalUrl : `${BASE}/domains`)}`;
      if (isHtmx(ctx)) {
        ctx.set('HX-Redirect', to);
        ctx.status = 401;
        return;
      }
      ctx.redirect(to);
      ctx.status = 303;
      return;
    }
    if (ctx.method === 'POST') {
      const form = ctx.is('application/x-www-form-urlencoded') ? await readForm(ctx) : null;
      (ctx.state as any).form = form ?? new URLSearchParams();
      const token = ctx.get('X-CSRF-Token') || form?.get('_csrf') || undefined;
      if (!tokensMatch(token, ctx.state.session.csrf)) {
        log.warn({ event: 'console.csrf_refused', path: ctx.path, ip: ctx.request.ip }, 'console POST without a valid CSRF token refused');
        send(ctx, pages.errorPage(frame(ctx, 'Refused'), 'This form is out of date or did not come from this console (missing or wrong CSRF token). Reload the page and try again.'), 403);
        return;
      }
    }
    await next();
  };
  const form = (ctx: Ctx): URLSearchParams => (ctx.state as any).form;

  /** Where passkeys cannot work (the console opened under another name): said on the page at once. */
  const wrongHost = (ctx: Ctx): string | undefined => {
    try {
      rp(ctx);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  };
  return { app, invoke, policy, log, passkeys, rp, frame, send, record, isHtmx, signedIn, form, wrongHost };
}

type Kit = ReturnType<typeof consoleKit>;
type ConsoleRouter = Router<ConsoleState>;

/** Static files (htmx, the passkey browser code, CSS, the console's script) and the entry. */
function staticRoutes(router: ConsoleRouter): void {
  const files = staticFiles();
  // ---- static files and the entry
  router.get('/static/:file', (ctx) => {
    const f = files.get(ctx.params.file);
    if (!f) throw new LetterboxError('not_found', 'no such file');
    ctx.type = f.type;
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = f.body;
  });
  router.get('/', (ctx) => {
    ctx.redirect(ctx.state.session ? `${BASE}/domains` : `${BASE}/login`);
  });
}

/** Sign-in with a passkey: the page, the WebAuthn options, the verification (rate-limited by the shared guard). */
function loginRoutes(router: ConsoleRouter, kit: Kit): void {
  const { app, policy, log, passkeys, rp, send, wrongHost } = kit;
  // ---- login, invitation, logout
  router.get('/login', (ctx) => send(ctx, pages.loginPage(safeNext(ctx.query.next), wrongHost(ctx))));
  router.post('/login/options', async (ctx) => {
    await readJson(ctx);
    const options = await (await passkeys()).authenticationOptions(rp(ctx));
    const handle = store.saveChallenge(app, options.challenge);
    ctx.set('Set-Cookie', cookie(CHALLENGE_COOKIE, handle, 300));
    ctx.body = options;
  });
  router.post('/login/verify', async (ctx) => {
    const body = await readJson(ctx);
    const response = body?.response;
    const credentialId = typeof response?.id === 'string' ? response.id.slice(0, 1024) : '';
    const party = rp(ctx);
    const reservation = app.loginGuard.reserve(`console:${credentialId}`, ctx.request.ip, 'console');
    if (!reservation.ok) {
      ctx.set('Retry-After', String(Math.ceil(reservation.retryAfterMs / 1000)));
      throw new LetterboxError('rate_limited', `too many failed sign-ins; try again in ${Math.ceil(reservation.retryAfterMs / 1000)} s`);
    }
    let ok = false;
    try {
      const handle = ctx.cookies.get(CHALLENGE_COOKIE);
      const challenge = handle ? store.takeChallenge(app, handle) : null;
      const cred = credentialId ? store.findCredential(app, credentialId) : null;
      const counter = challenge && cred ? await (await passkeys()).verifyLogin(party, challenge, response, cred) : null;
      if (cred && counter !== null) {
        ok = true;
        store.credentialUsed(app, cred.id, counter);
        const s = store.openSession(app, cred.adminId, ctx.request.ip, policy);
        ctx.append('Set-Cookie', cookie(SESSION_COOKIE, s.id, Math.floor(policy.absoluteMs / 1000)));
        ctx.append('Set-Cookie', cookie(CHALLENGE_COOKIE, '', 0));
        store.audit(app, { admin: cred.adminName, action: 'login', target: null, ip: ctx.request.ip, detail: { credential: cred.id.slice(0, 12) } });
        ctx.body = { ok: true, next: safeNext(body?.next) };
        return;
      }
    } finally {
      const wait = app.loginGuard.settle(reservation.ticket, ok);
      if (wait) await new Promise((r) => setTimeout(r, wait));
    }
    log.warn({ event: 'console.login_failed', ip: ctx.request.ip }, 'console sign-in with a passkey failed');
    throw new LetterboxError('unauthorized', 'the passkey was not accepted (unknown passkey, or the sign-in took too long): try again');
  });
}

/** An invitation link: its page, then passkey registration, which signs the new admin in; and logout. */
function inviteRoutes(router: ConsoleRouter, kit: Kit): void {
  const { app, policy, passkeys, rp, send, record, signedIn, wrongHost } = kit;
  router.get('/invite', (ctx) => {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const inv = token ? store.findInvite(app, token) : null;
    ctx.set('Referrer-Policy', 'no-referrer');
    if (!inv) return send(ctx, pages.inviteGonePage(), 410);
    send(ctx, pages.invitePage(token, inv.admin.name, wrongHost(ctx)));
  });
  const invitation = (ctx: Ctx, token: unknown) => {
    const reservation = app.loginGuard.reserve('console:invite', ctx.request.ip, 'console');
    if (!reservation.ok) throw new LetterboxError('rate_limited', `too many invalid invitation attempts; try again in ${Math.ceil(reservation.retryAfterMs / 1000)} s`);
    const inv = typeof token === 'string' && token ? store.findInvite(app, token) : null;
    const wait = app.loginGuard.settle(reservation.ticket, !!inv);
    if (!inv) return { inv: null, wait };
    return { inv, wait: 0 };
  };
  router.post('/invite/options', async (ctx) => {
    const body = await readJson(ctx);
    const { inv, wait } = invitation(ctx, body?.token);
    if (!inv) {
      await new Promise((r) => setTimeout(r, wait));
      throw new LetterboxError('not_found', 'this invitation has expired or was already used; ask for a new one (letterbox admin invite NAME)');
    }
    const options = await (await passkeys()).registrationOptions(rp(ctx), inv.admin, store.adminCredentials(app, inv.admin.id));
    store.setInviteChallenge(app, body.token, options.challenge);
    ctx.body = options;
  });
  router.post('/invite/verify', async (ctx) => {
    const body = await readJson(ctx);
    const { inv, wait } = invitation(ctx, body?.token);
    if (!inv || !inv.challenge) {
      await new Promise((r) => setTimeout(r, wait));
      throw new LetterboxError('not_found', 'this invitation has expired or was already used; ask for a new one (letterbox admin invite NAME)');
    }
    const cred = await (await passkeys()).verifyRegistration(rp(ctx), inv.challenge, body.response, inv.admin.id);
    if (!store.redeemInvite(app, body.token, cred)) throw new LetterboxError('conflict', 'this invitation was used meanwhile');
    const s = store.openSession(app, inv.admin.id, ctx.request.ip, policy);
    ctx.set('Set-Cookie', cookie(SESSION_COOKIE, s.id, Math.floor(policy.absoluteMs / 1000)));
    store.audit(app, { admin: inv.admin.name, action: 'passkey.register', target: null, ip: ctx.request.ip, detail: { credential: cred.id.slice(0, 12) } });
    ctx.body = { ok: true, next: `${BASE}/domains` };
  });

  router.post('/logout', signedIn, (ctx) => {
    store.closeSession(app, ctx.state.session!.id);
    record(ctx, 'logout', null);
    ctx.set('Set-Cookie', cookie(SESSION_COOKIE, '', 0));
    ctx.redirect(`${BASE}/login`);
    ctx.status = 303;
  });
}

/** Domains: list, add (then its records), the records page, check now. */
function domainRoutes(router: ConsoleRouter, kit: Kit): void {
  const { invoke, frame, send, record, isHtmx, signedIn, form } = kit;
  // ---- domains
  const domainsList = async (ctx: Ctx, cursor?: string) => invoke('listDomains', { query: { limit: '50', ...(cursor ? { cursor } : {}) } }, ctx);
  router.get('/domains', signedIn, async (ctx) => {
    const r = await domainsList(ctx, typeof ctx.query.cursor === 'string' ? ctx.query.cursor : undefined);
    send(ctx, pages.domainsPage(frame(ctx, 'Domains'), r.data, r.nextCursor ?? null));
  });
  router.post('/domains', signedIn, async (ctx) => {
    const name = (form(ctx).get('name') ?? '').trim();
    try {
      const r = await invoke('createDomain', { body: { name } }, ctx);
      record(ctx, 'domain.add', r.data.name);
      ctx.redirect(`${BASE}/domains/${encodeURIComponent(r.data.name)}?added=1`);
      ctx.status = 303;
    } catch (err) {
      if (!isLetterboxError(err) || !['validation_error', 'conflict', 'forbidden'].includes(err.code)) throw err;
      const r = await domainsList(ctx);
      send(ctx, pages.domainsPage(frame(ctx, 'Domains'), r.data, r.nextCursor ?? null, { name, errors: formErrors(err, ['name']) }), err.status);
    }
  });
  router.get('/domains/:name', signedIn, async (ctx) => {
    const dns = (await invoke('getDomainDns', { params: { id: ctx.params.name } }, ctx)).data;
    send(ctx, pages.domainPage(frame(ctx, dns.domain), dns.domain, dns.records, null, ctx.query.added ? `${dns.domain} was added with its DKIM keys. Publish these records, then check them.` : undefined));
  });
  router.post('/domains/:name/verify', signedIn, async (ctx) => {
    const v = (await invoke('verifyDomain', { params: { id: ctx.params.name } }, ctx)).data;
    record(ctx, 'domain.verify', v.domain, { ok: v.ok });
    if (isHtmx(ctx)) return send(ctx, pages.verificationFragment(v));
    const dns = (await invoke('getDomainDns', { params: { id: v.domain } }, ctx)).data;
    send(ctx, pages.domainPage(frame(ctx, dns.domain), dns.domain, dns.records, v));
  });
}

/** Mailboxes: list with search and pages, create (password shown once), disable and enable. */
function mailboxRoutes(router: ConsoleRouter, kit: Kit): void {
  const { invoke, frame, send, record, isHtmx, signedIn, form } = kit;
  // ---- mailboxes
  const mailboxQuery = (q: Record<string, unknown>): pages.MailboxQuery => {
    const s = (v: unknown) => (typeof v === 'string' && v.trim() ? v.trim() : undefined);
    return { search: s(q.search), domain: s(q.domain), cursor: s(q.cursor) };
  };
  const mailboxList = (ctx: Ctx, q: pages.MailboxQuery) =>
    invoke('listMailboxes', { query: { limit: '25', ...(q.search ? { search: q.search } : {}), ...(q.domain ? { domain: q.domain } : {}), ...(q.cursor ? { cursor: q.cursor } : {}) } }, ctx);
  router.get('/mailboxes', signedIn, async (ctx) => {
    const q = mailboxQuery(ctx.query);
    const r = await mailboxList(ctx, q);
    const f = frame(ctx, 'Mailboxes');
    if (isHtmx(ctx)) return send(ctx, pages.mailboxTable(f, r.data, q, r.nextCursor ?? null));
    send(ctx, pages.mailboxesPage(f, r.data, q, r.nextCursor ?? null));
  });
  router.post('/mailboxes', signedIn, async (ctx) => {
    const address = (form(ctx).get('address') ?? '').trim();
    const quota = (form(ctx).get('quota') ?? '').trim();
    try {
      const r = await invoke('createMailboxes', { body: { address, ...(quota ? { quota } : {}) } }, ctx);
      record(ctx, 'mailbox.create', r.data.address, quota ? { quota } : undefined);
      ctx.set('Cache-Control', 'no-store'); // the password is on this page
      send(ctx, pages.mailboxCreatedPage(frame(ctx, 'Mailbox created'), r.data, r.data.password));
    } catch (err) {
      if (!isLetterboxError(err) || !['validation_error', 'conflict', 'not_found', 'forbidden'].includes(err.code)) throw err;
      const r = await mailboxList(ctx, {});
      const errors = err.code === 'not_found' ? { address: err.message.replace(/; add it first with POST \/api\/v1\/domains$/, '; add the domain first') } : formErrors(err, ['address', 'quota']);
      send(ctx, pages.mailboxesPage(frame(ctx, 'Mailboxes'), r.data, {}, r.nextCursor ?? null, { address, quota, errors }), err.code === 'not_found' ? 400 : err.status);
    }
  });
  for (const action of ['disable', 'enable'] as const) {
    router.post(`/mailboxes/:id/${action}`, signedIn, async (ctx) => {
      const r = await invoke('updateMailbox', { params: { id: ctx.params.id }, body: { disabled: action === 'disable' } }, ctx);
      record(ctx, `mailbox.${action}`, r.data.address);
      const back = form(ctx).get('back') ?? '';
      ctx.redirect(`${BASE}/mailboxes${/^[\w%.=&+-]*$/.test(back) && back ? `?${back}` : ''}`);
      ctx.status = 303;
    });
  }
}

/** The audit log of admin actions, newest first. */
function auditRoutes(router: ConsoleRouter, kit: Kit): void {
  const { app, frame, send, signedIn } = kit;
  // ---- audit log
  router.get('/audit', signedIn, (ctx) => {
    const before = typeof ctx.query.before === 'string' && /^\d{1,15}$/.test(ctx.query.before) ? Number(ctx.query.before) : undefined;
    const rows = store.listAudit(app, { limit: 51, before });
    const more = rows.length > 50;
    send(ctx, pages.auditPage(frame(ctx, 'Audit log'), rows.slice(0, 50), more ? rows[49].id : null));
  });
}

/** The console's one entry: security headers, the session from its cookie, the routes, and errors as pages (or JSON, or an htmx fragment). */
function consoleHandler(kit: Kit, router: ConsoleRouter): Koa.Middleware {
  const { app, policy, log, frame, send, isHtmx } = kit;
  const routes = router.routes();
  const allowed = router.allowedMethods();
  return async (ctx, next) => {
    if (ctx.path !== BASE && !ctx.path.startsWith(`${BASE}/`)) return next();
    const c = ctx as unknown as Ctx;
    c.set('Content-Security-Policy', CSP);
    c.set('X-Content-Type-Options', 'nosniff');
    c.set('Referrer-Policy', 'same-origin');
    c.set('X-Frame-Options', 'DENY');
    c.set('Cache-Control', 'no-store');
    const id = c.cookies.get(SESSION_COOKIE);
    const s = id ? store.touchSession(app, id, policy) : null;
    c.state.session = s ? { ...s, id: id! } : null;
    try {
      if (ctx.path === BASE) return ctx.redirect(`${BASE}/`);
      await (routes as any)(c, () => (allowed as any)(c, async () => {}));
      if (c.status === 404 && c.body === undefined) throw new LetterboxError('not_found', 'no such page');
    } catch (err) {
      const json = c.is('application/json') || c.get('Accept').includes('application/json') && !c.get('Accept').includes('text/html');
      const known = isLetterboxError(err);
      if (!known) log.error({ err: (err as Error)?.message, stack: (err as Error)?.stack, path: c.path }, 'console request failed');
      const status = known ? err.status : 500;
      const message = known ? err.message : 'something went wrong on the server; the log has the details';
      if (isHtmx(c) && !json) {
        c.status = status;
        c.set('HX-Reswap', 'innerHTML');
        send(c, pages.errorFragment(message), status);
      } else if (json) {
        c.status = status;
        c.body = { error: { code: known ? err.code : 'internal_error', message, requestId: (ctx.state as any).requestId } };
      } else send(c, pages.errorPage(frame(c, status === 404 ? 'Not found' : 'Error'), message), status);
    }
  };
}

export function consoleMiddleware(deps: ConsoleDeps): Koa.Middleware {
  const kit = consoleKit(deps);
  const router = new Router<ConsoleState>({ prefix: BASE });
  staticRoutes(router);
  loginRoutes(router, kit);
  inviteRoutes(router, kit);
  domainRoutes(router, kit);
  mailboxRoutes(router, kit);
  auditRoutes(router, kit);
  return consoleHandler(kit, router);
}
