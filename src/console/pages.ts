// The console's pages: pure functions from data to HTML (src/console/html.ts escapes every value).
// No inline script or style anywhere (the Content-Security-Policy forbids both): behaviour lives in
// /console/static/console.js and htmx attributes, looks in /console/static/console.css.
import { html, type Html } from './html.ts';
import type { AuditEntry } from './store.ts';
import type { RecordCheck } from '../services/verify.ts';

export const BASE = '/console';

export interface Frame {
  title: string;
  /** The signed-in admin and the session's CSRF token; null on the login and invitation pages. */
  session: { admin: string; csrf: string } | null;
  /** Which navigation entry is current. */
  nav?: 'domains' | 'mailboxes' | 'audit';
}

/** Field-level errors of a form, by field name; `_` for the form as a whole. */
export type FormErrors = Record<string, string>;

/**
 * htmx without eval or injected styles (the CSP forbids both), requests to this site only, and
 * error answers (4xx/5xx: an alert fragment, see errorFragment) shown where the result would have
 * gone; 401 carries HX-Redirect to the login page instead.
 */
const HTMX_CONFIG = {
  includeIndicatorStyles: false,
  allowEval: false,
  allowScriptTags: false,
  selfRequestsOnly: true,
  responseHandling: [
    { code: '204', swap: false },
    { code: '[23]..', swap: true },
    { code: '401', swap: false, error: true },
    { code: '[45]..', swap: true, error: true },
  ],
};

/** What an htmx request gets when it fails: the message, put inside its target (HX-Reswap: innerHTML). */
export function errorFragment(message: string): Html {
  return html`<p class="form-error" role="alert">${message}</p>`;
}

export function layout(f: Frame, body: Html): Html {
  const link = (key: Frame['nav'], href: string, label: string) =>
    html`<li><a href="${href}"${key === f.nav ? html` aria-current="page"` : ''}>${label}</a></li>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="htmx-config" content="${JSON.stringify(HTMX_CONFIG)}">
<title>${f.title} · Letterbox console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${BASE}/static/console.css">
<script src="${BASE}/static/htmx.min.js" defer></script>
<script src="${BASE}/static/webauthn.js" defer></script>
<script src="${BASE}/static/console.js" defer></script>
</head>
<body${f.session ? html` hx-headers="${JSON.stringify({ 'X-CSRF-Token': f.session.csrf })}"` : ''}>
<header class="top">
<a class="brand" href="${BASE}/">Letterbox</a>
${f.session
  ? html`<nav aria-label="Main"><ul>${link('domains', `${BASE}/domains`, 'Domains')}${link('mailboxes', `${BASE}/mailboxes`, 'Mailboxes')}${link('audit', `${BASE}/audit`, 'Audit log')}</ul></nav>
<form class="logout" method="post" action="${BASE}/logout">${csrfField(f.session.csrf)}<span>${f.session.admin}</span> <button type="submit" class="secondary">Log out</button></form>`
  : ''}
</header>
<main id="main">
<h1>${f.title}</h1>
${body}
</main>
</body>
</html>`;
}

export function csrfField(token: string): Html {
  return html`<input type="hidden" name="_csrf" value="${token}">`;
}

function fieldError(errors: FormErrors | undefined, name: string): Html {
  const e = errors?.[name];
  return e ? html`<p class="field-error" id="${name}-error" role="alert">${e}</p>` : html``;
}

function formError(errors: FormErrors | undefined): Html {
  return errors?._ ? html`<p class="form-error" role="alert">${errors._}</p>` : html``;
}

const describedBy = (errors: FormErrors | undefined, name: string) => (errors?.[name] ? html` aria-invalid="true" aria-describedby="${name}-error"` : '');

// ---- login and invitation

export function loginPage(next: string, problem?: string): Html {
  return layout(
    { title: 'Sign in', session: null },
    html`<section class="card">
<p>Sign in with the passkey you registered from your invitation link.</p>
${problem ? html`<p class="form-error" role="alert">Passkeys will not work here: ${problem}.</p>` : ''}
<p class="form-error" id="login-error" role="alert" hidden></p>
<button type="button" id="passkey-login" data-next="${next}">Sign in with a passkey</button>
<noscript><p class="form-error">Passkeys need JavaScript: enable it for this page.</p></noscript>
<p class="hint">No passkey yet? Ask for an invitation: <code>letterbox admin invite NAME</code> on the server.</p>
</section>`,
  );
}

export function invitePage(token: string, admin: string, problem?: string): Html {
  return layout(
    { title: 'Register a passkey', session: null },
    html`<section class="card">
<p>This one-time link registers a passkey for the administrator <strong>${admin}</strong>. Your browser will ask where to keep it (this device, a phone or a security key).</p>
${problem ? html`<p class="form-error" role="alert">Passkeys will not work here: ${problem}.</p>` : ''}
<p class="form-error" id="register-error" role="alert" hidden></p>
<button type="button" id="passkey-register" data-token="${token}">Register a passkey</button>
<noscript><p class="form-error">Passkeys need JavaScript: enable it for this page.</p></noscript>
</section>`,
  );
}

export function inviteGonePage(): Html {
  return layout(
    { title: 'Invitation not valid', session: null },
    html`<section class="card"><p>This invitation link has expired or was already used. Ask for a new one: <code>letterbox admin invite NAME</code> on the server.</p>
<p><a href="${BASE}/login">Go to sign in</a></p></section>`,
  );
}

export function errorPage(frame: Frame, message: string): Html {
  return layout(frame, html`<section class="card"><p class="form-error" role="alert">${message}</p><p><a href="${BASE}/domains">Back to the console</a></p></section>`);
}

// ---- domains

export interface DomainRow {
  id: string;
  name: string;
  mailboxCount: number;
  outboundEnabled: boolean;
  lastVerifiedAt: string | null;
}

export function domainsPage(frame: Frame, domains: DomainRow[], nextCursor: string | null, form: { name?: string; errors?: FormErrors } = {}): Html {
  const csrf = frame.session!.csrf;
  return layout(
    { ...frame, nav: 'domains' },
    html`<section class="card">
<h2>Add a domain</h2>
<form method="post" action="${BASE}/domains" class="inline-form" novalidate>
${csrfField(csrf)}${formError(form.errors)}
<div class="field"><label for="domain-name">Domain name</label>
<input id="domain-name" name="name" type="text" inputmode="url" autocomplete="off" placeholder="example.com" value="${form.name ?? ''}" required${describedBy(form.errors, 'name')}>
${fieldError(form.errors, 'name')}</div>
<button type="submit">Add domain</button>
</form>
</section>
<section>
<h2>Domains</h2>
${domains.length === 0
  ? html`<p>No domains yet.</p>`
  : html`<div class="table-wrap"><table class="stack">
<thead><tr><th scope="col">Domain</th><th scope="col">Mailboxes</th><th scope="col">Outbound</th><th scope="col">DNS last verified</th></tr></thead>
<tbody>${domains.map(
      (d) => html`<tr><td data-label="Domain"><a href="${BASE}/domains/${encodeURIComponent(d.name)}">${d.name}</a></td><td data-label="Mailboxes">${d.mailboxCount}</td><td data-label="Outbound">${d.outboundEnabled ? 'enabled' : 'suspended'}</td><td data-label="DNS last verified">${d.lastVerifiedAt ?? 'never'}</td></tr>`,
    )}</tbody></table></div>`}
${nextCursor ? html`<p><a href="${BASE}/domains?cursor=${encodeURIComponent(nextCursor)}">Next page</a></p>` : ''}
</section>`,
  );
}

export interface RecordRow {
  type: string;
  name: string;
  value: string;
  priority?: number;
  weight?: number;
  port?: number;
  purpose: string;
}

/** The value as it is entered in most DNS editors (MX: priority then host; SRV: priority weight port target). Pure. */
export function recordValue(r: RecordRow): string {
  if (r.type === 'SRV') return `${r.priority} ${r.weight} ${r.port} ${r.value}`;
  return r.priority !== undefined ? `${r.priority} ${r.value}` : r.value;
}

/** One record's check, as `POST /domains/{id}/verify` returns it. */
export type CheckRow = RecordCheck;

export function verificationFragment(v: { ok: boolean; checkedAt: string; records: CheckRow[] }): Html {
  return html`<div id="verify-result" class="verify" role="status">
<p class="${v.ok ? 'ok' : 'bad'}">${v.ok ? 'Every required record is published correctly.' : 'Some records are missing or wrong: see below.'} <span class="hint">Checked ${v.checkedAt}.</span></p>
<div class="table-wrap"><table class="stack">
<thead><tr><th scope="col">Record</th><th scope="col">Expected</th><th scope="col">Found</th><th scope="col">Result</th></tr></thead>
<tbody>${v.records.map(
    (c) => html`<tr><td data-label="Record"><span class="tag">${c.type}</span> <code>${c.name}</code></td><td data-label="Expected"><code class="value">${c.expected}</code></td>
<td data-label="Found">${c.found.length ? c.found.map((f) => html`<code class="value">${f}</code>`) : html`<em>nothing</em>`}</td>
<td data-label="Result">${c.ok ? html`<span class="ok">✓ correct</span>` : html`<span class="bad">✗ ${c.problem ?? 'wrong'}</span>${c.required ? '' : html` <span class="hint">(optional)</span>`}`}</td></tr>`,
  )}</tbody></table></div>
</div>`;
}

export function domainPage(frame: Frame, name: string, records: RecordRow[], verification: Parameters<typeof verificationFragment>[0] | null, notice?: string): Html {
  const csrf = frame.session!.csrf;
  const path = `${BASE}/domains/${encodeURIComponent(name)}`;
  return layout(
    { ...frame, nav: 'domains', title: name },
    html`${notice ? html`<p class="notice" role="status">${notice}</p>` : ''}
<section>
<h2>DNS records to publish</h2>
<p>Create these records at your DNS provider, then check them.</p>
<div class="table-wrap"><table class="records stack">
<thead><tr><th scope="col">Type</th><th scope="col">Name</th><th scope="col">Value</th></tr></thead>
<tbody>${records.map((r, i) => {
      const v = recordValue(r);
      return html`<tr><td data-label="Type"><span class="tag">${r.type}</span></td>
<td data-label="Name"><code id="rec-name-${i}">${r.name}</code> <button type="button" class="copy secondary" data-copy="${r.name}" aria-label="Copy the name of the ${r.type} record ${r.name}">Copy</button></td>
<td data-label="Value"><code class="value" id="rec-value-${i}">${v}</code> <button type="button" class="copy secondary" data-copy="${v}" aria-label="Copy the value of the ${r.type} record ${r.name}">Copy</button></td></tr>`;
    })}</tbody></table></div>
</section>
<section>
<h2>Check</h2>
<form method="post" action="${path}/verify" hx-post="${path}/verify" hx-target="#verify-result" hx-swap="outerHTML" hx-disabled-elt="find button">
${csrfField(csrf)}<button type="submit">Check now</button>
</form>
${verification ? verificationFragment(verification) : html`<div id="verify-result"></div>`}
</section>
<p><a href="${BASE}/mailboxes?domain=${encodeURIComponent(name)}">Mailboxes of ${name}</a></p>`,
  );
}

// ---- mailboxes

export interface MailboxRow {
  id: string;
  address: string;
  quotaBytes: number;
  disabled: boolean;
  tags: string[];
}

export function fmtBytes(n: number): string {
  if (!n) return 'unlimited';
  for (const [u, m] of [['TB', 1024 ** 4], ['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) if (n >= m) return `${Math.round((n / m) * 10) / 10} ${u}`;
  return `${n} B`;
}

export interface MailboxQuery {
  search?: string;
  domain?: string;
  cursor?: string;
}

export function mailboxTable(frame: Frame, rows: MailboxRow[], q: MailboxQuery, nextCursor: string | null): Html {
  const csrf = frame.session!.csrf;
  const qs = (extra: Record<string, string | undefined>) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ search: q.search, domain: q.domain, ...extra })) if (v) p.set(k, v);
    return p.toString();
  };
  return html`<div id="mailbox-results">
${rows.length === 0
  ? html`<p>No mailboxes${q.search ? html` starting with <strong>${q.search}</strong>` : ''}.</p>`
  : html`<div class="table-wrap"><table class="stack">
<thead><tr><th scope="col">Address</th><th scope="col">Quota</th><th scope="col">Status</th><th scope="col">Tags</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
<tbody>${rows.map(
      (m) => html`<tr><td data-label="Address">${m.address}</td><td data-label="Quota">${fmtBytes(m.quotaBytes)}</td><td data-label="Status">${m.disabled ? html`<span class="bad">disabled</span>` : 'active'}</td><td data-label="Tags">${m.tags.join(', ')}</td>
<td data-label=""><form method="post" action="${BASE}/mailboxes/${encodeURIComponent(m.id)}/${m.disabled ? 'enable' : 'disable'}">${csrfField(csrf)}<input type="hidden" name="back" value="${qs({ cursor: q.cursor })}">
<button type="submit" class="secondary" aria-label="${m.disabled ? 'Enable' : 'Disable'} ${m.address}">${m.disabled ? 'Enable' : 'Disable'}</button></form></td></tr>`,
    )}</tbody></table></div>`}
${nextCursor ? html`<p><a href="${BASE}/mailboxes?${qs({ cursor: nextCursor })}">Next page</a></p>` : ''}
</div>`;
}

export function mailboxesPage(frame: Frame, rows: MailboxRow[], q: MailboxQuery, nextCursor: string | null, form: { address?: string; quota?: string; errors?: FormErrors } = {}): Html {
  const csrf = frame.session!.csrf;
  return layout(
    { ...frame, nav: 'mailboxes' },
    html`<section class="card">
<h2>Create a mailbox</h2>
<form method="post" action="${BASE}/mailboxes" class="inline-form" novalidate>
${csrfField(csrf)}${formError(form.errors)}
<div class="field"><label for="mb-address">Address</label>
<input id="mb-address" name="address" type="email" autocomplete="off" placeholder="alice@example.com" value="${form.address ?? ''}" required${describedBy(form.errors, 'address')}>
${fieldError(form.errors, 'address')}</div>
<div class="field"><label for="mb-quota">Quota <span class="hint">(optional, e.g. 2G)</span></label>
<input id="mb-quota" name="quota" type="text" autocomplete="off" value="${form.quota ?? ''}"${describedBy(form.errors, 'quota')}>
${fieldError(form.errors, 'quota')}</div>
<button type="submit">Create mailbox</button>
</form>
<p class="hint">A strong password is generated and shown once.</p>
</section>
<section>
<h2>Mailboxes</h2>
<form method="get" action="${BASE}/mailboxes" role="search" class="inline-form" hx-get="${BASE}/mailboxes" hx-target="#mailbox-results" hx-swap="outerHTML" hx-trigger="submit, input changed delay:300ms from:#mb-search" hx-push-url="true">
<div class="field"><label for="mb-search">Search by address</label>
<input id="mb-search" name="search" type="search" autocomplete="off" placeholder="alice" value="${q.search ?? ''}"></div>
${q.domain ? html`<input type="hidden" name="domain" value="${q.domain}">` : ''}
<button type="submit" class="secondary">Search</button>
</form>
${q.domain ? html`<p>Showing ${q.domain} only. <a href="${BASE}/mailboxes">Show all domains</a></p>` : ''}
${mailboxTable(frame, rows, q, nextCursor)}
</section>`,
  );
}

export function mailboxCreatedPage(frame: Frame, m: { address: string; imapHost: string; imapPort: number; submissionPort: number }, password: string): Html {
  return layout(
    { ...frame, nav: 'mailboxes', title: `Mailbox ${m.address} created` },
    html`<section class="card">
<p class="notice" role="status">The mailbox is ready. Give its owner this password now: it is shown only once.</p>
<dl class="facts">
<dt>Address (login)</dt><dd><code>${m.address}</code></dd>
<dt>Password</dt><dd><code id="new-password">${password}</code> <button type="button" class="copy secondary" data-copy="${password}" aria-label="Copy the password">Copy</button></dd>
<dt>IMAP</dt><dd><code>${m.imapHost}</code> port ${m.imapPort} (TLS)</dd>
<dt>SMTP submission</dt><dd><code>${m.imapHost}</code> port ${m.submissionPort} (STARTTLS)</dd>
</dl>
<p><a href="${BASE}/mailboxes">Back to mailboxes</a></p>
</section>`,
  );
}

// ---- audit log

export function auditPage(frame: Frame, rows: AuditEntry[], nextBefore: number | null): Html {
  return layout(
    { ...frame, nav: 'audit' },
    html`<section>
${rows.length === 0
  ? html`<p>Nothing yet.</p>`
  : html`<div class="table-wrap"><table class="stack">
<thead><tr><th scope="col">When (UTC)</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Target</th><th scope="col">From</th></tr></thead>
<tbody>${rows.map((r) => html`<tr><td data-label="When">${r.at}</td><td data-label="Who">${r.admin}</td><td data-label="What">${r.action}</td><td data-label="Target">${r.target ?? ''}</td><td data-label="From">${r.ip}</td></tr>`)}</tbody></table></div>`}
${nextBefore ? html`<p><a href="${BASE}/audit?before=${nextBefore}">Older entries</a></p>` : ''}
</section>`,
  );
}
