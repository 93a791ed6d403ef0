// Small HTTP client for the management API in tests (real HTTP on loopback), plus waiting helpers.
import type { Appliance } from './appliance.ts';
import { checkSchema } from './jsonschema.ts';

/** Every JSON reply seen, for checking against the served OpenAPI document (checkRepliesAgainstDoc). */
export const replies: { method: string; path: string; status: number; json: any }[] = [];

export interface ApiResponse {
  status: number;
  headers: Headers;
  body: Buffer;
  json: any;
}

export async function call(app: Appliance, key: string | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse> {
  const h: Record<string, string> = { ...headers };
  if (key) h.Authorization = `Bearer ${key}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['Content-Type'] ??= 'application/json';
  }
  const res = await fetch(`http://127.0.0.1:${app.ports.api}${path.startsWith('/metrics') ? '' : '/api/v1'}${path}`, { method, headers: h, body: payload });
  const buf = Buffer.from(await res.arrayBuffer());
  let json: any = null;
  if ((res.headers.get('content-type') ?? '').includes('json')) {
    try {
      json = JSON.parse(buf.toString('utf8'));
    } catch {}
  }
  if (json !== null) replies.push({ method, path: `${path.startsWith('/metrics') ? '' : '/api/v1'}${path}`.split('?')[0], status: res.status, json });
  return { status: res.status, headers: res.headers, body: buf, json };
}

/** Checks every recorded JSON reply against the schema openapi.json documents for its route and status. */
export async function checkRepliesAgainstDoc(app: Appliance): Promise<{ checked: number; problems: string[] }> {
  const doc = (await call(app, null, 'GET', '/openapi.json')).json;
  const templates = Object.keys(doc.paths).map((t) => ({ t, re: templateRegex(t), params: t.split('{').length - 1 }));
  const problems: string[] = [];
  let checked = 0;
  for (const r of replies) {
    const m = templates.filter((x) => x.re.test(r.path)).sort((a, b) => a.params - b.params)[0];
    if (!m) continue;
    const op = doc.paths[m.t][r.method.toLowerCase()];
    if (!op) continue;
    let resp = op.responses[String(r.status)];
    if (!resp) {
      problems.push(`${r.method} ${m.t}: status ${r.status} is not documented`);
      continue;
    }
    if (resp.$ref) resp = doc.components.responses[resp.$ref.split('/').pop()];
    const schema = resp.content?.['application/json']?.schema;
    if (!schema) continue;
    checked++;
    for (const e of checkSchema(doc, schema, r.json)) problems.push(`${r.method} ${m.t} ${r.status}: ${e}`);
  }
  return { checked, problems: [...new Set(problems)] };
}

/** Creates an API key through the real CLI and returns its secret. */
export async function createKey(app: Appliance, scopes: string, opts: { test?: boolean; domains?: string } = {}): Promise<string> {
  const args = ['key', 'create', '--name', `t-${scopes}`, '--scopes', scopes];
  if (opts.test) args.push('--test');
  if (opts.domains) args.push('--domains', opts.domains);
  const k = await app.cliJson(args);
  return k.secret;
}

/** Polls `fn` until it returns a truthy value (short intervals; no fixed sleeps). */
export async function waitFor<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 20000): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** /api/v1/mailboxes/{id}/messages → a regex matching concrete paths. */
function templateRegex(t: string): RegExp {
  const parts = t.split(/\{[^/}]+\}/).map((x) => x.replace(/[.*+?^$()|[\]\\]/g, (c) => '\\' + c));
  return new RegExp(`^${parts.join('[^/]+')}$`);
}
