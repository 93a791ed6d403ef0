// Reading Authentication-Results header fields (RFC 8601) — only for mail stored before Letterbox
// kept structured verdicts (src/verdicts/store.ts); new mail is served from the store.
//
// The grammar has comments (nested, with quoted-pairs), quoted strings, folding and ptype.property
// pairs, so a substring scan is wrong: a sender-controlled value such as smtp.helo="x;dmarc=pass"
// or a comment "(…; dmarc=pass)" would read as a verdict. mailauth, which already writes these
// headers for us, ships a parser for exactly this grammar (lib/parse-dkim-headers.js, used by its
// ARC code for ARC-Authentication-Results); it is not part of mailauth's documented API, so it is
// loaded in this one place and wrapped in a small, tested interface.
import { createRequire } from 'node:module';
import { domainToASCII } from 'node:url';

const require = createRequire(import.meta.url);
const headerParser = require('mailauth/lib/parse-dkim-headers.js') as (line: string) => { parsed: Record<string, any> };

export interface ResInfo {
  /** The method (spf, dkim, dmarc, arc, …), lower case. */
  method: string;
  /** The result keyword (pass, fail, none, …), lower case. */
  result: string;
  /** ptype.property values, e.g. { 'header.d': 'example.com', 'smtp.mailfrom': 'a@b' }. */
  props: Record<string, string>;
}

export interface ParsedAuthResults {
  /** The authserv-id in canonical form (see canonicalAuthservId), '' when there is none. */
  authservId: string;
  results: ResInfo[];
}

/**
 * The canonical spelling of an authserv-id, so that every equivalent spelling compares equal:
 * quotes and quoted-pairs removed, the optional version after it dropped, lower case, trailing
 * dots removed, IDN U-labels turned into A-labels.
 */
export function canonicalAuthservId(raw: string): string {
  let s = raw.trim();
  if (s.startsWith('"')) {
    let out = '';
    for (let i = 1; i < s.length && s[i] !== '"'; i++) out += s[i] === '\\' && i + 1 < s.length ? s[++i] : s[i];
    s = out;
  } else {
    s = s.split(/\s+/)[0] ?? '';
  }
  s = s.trim().toLowerCase().replace(/\.+$/, '');
  if (!s) return '';
  const ascii = /[^\x00-\x7f]/.test(s) ? domainToASCII(s) : s;
  return ascii || s;
}

/** Parses one Authentication-Results field value (unfolded or not). Never throws. */
export function parseAuthResults(value: string): ParsedAuthResults {
  let parsed: Record<string, any>;
  try {
    parsed = headerParser(`Authentication-Results: ${value}`).parsed ?? {};
  } catch {
    return { authservId: '', results: [] };
  }
  const results: ResInfo[] = [];
  for (const [method, entry] of Object.entries(parsed)) {
    if (method === 'header' || method === 'value') continue;
    for (const e of Array.isArray(entry) ? entry : [entry]) {
      if (!e || typeof e !== 'object' || typeof e.value !== 'string' || !e.value) continue;
      const props: Record<string, string> = {};
      for (const ptype of ['smtp', 'header', 'body', 'policy']) {
        const p = e[ptype];
        if (p && typeof p === 'object') for (const [k, v] of Object.entries(p)) if (typeof v === 'string' || typeof v === 'number') props[`${ptype}.${k}`] = String(v);
      }
      results.push({ method: method.toLowerCase(), result: e.value.toLowerCase(), props });
    }
  }
  return { authservId: typeof parsed.value === 'string' ? canonicalAuthservId(parsed.value) : '', results };
}

/** The result of the first resinfo of `method`, or null. */
export function resultOf(p: ParsedAuthResults, method: string): string | null {
  return p.results.find((r) => r.method === method)?.result ?? null;
}
