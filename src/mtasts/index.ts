// MTA-STS policy hosting (RFC 8461): https://mta-sts.<domain>/.well-known/mta-sts.txt for every
// domain Letterbox serves, naming this server as the only MX.
import type { IncomingMessage, ServerResponse } from 'node:http';

export type MtaStsMode = 'testing' | 'enforce' | 'none';

export interface PolicyOptions {
  mode: MtaStsMode;
  mx: string[];
  maxAge: number; // seconds
}

/** The policy file: CRLF-separated key: value lines (RFC 8461 §3.2). */
export function mtaStsPolicy(o: PolicyOptions): string {
  const lines = ['version: STSv1', `mode: ${o.mode}`, ...(o.mode === 'none' ? [] : o.mx.map((m) => `mx: ${m}`)), `max_age: ${o.maxAge}`];
  return lines.join('\r\n') + '\r\n';
}

/**
 * The TXT record value for _mta-sts.<domain>: the id must change whenever the policy changes, so it
 * is derived from the policy itself.
 */
export function mtaStsRecordId(policy: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < policy.length; i++) h = Math.imul(h ^ policy.charCodeAt(i), 0x01000193) >>> 0;
  return `lb${h.toString(36)}`;
}

export interface MtaStsHandlerOptions {
  hostname: string;
  mode: MtaStsMode;
  maxAge: number;
  /** Is `domain` (A-label, lower case) one of ours? Looked up per request. */
  isDomain: (domain: string) => boolean;
}

const POLICY_PATH = '/.well-known/mta-sts.txt';

/** Answers GET /.well-known/mta-sts.txt for Host mta-sts.<one of our domains>; false for other paths. */
export function handleMtaSts(o: MtaStsHandlerOptions, req: IncomingMessage, res: ServerResponse): boolean {
  const path = (req.url ?? '').split('?')[0];
  if (path !== POLICY_PATH) return false;
  const host = String(req.headers.host ?? '')
    .toLowerCase()
    .replace(/:\d+$/, '')
    .replace(/\.$/, '');
  const domain = host.startsWith('mta-sts.') ? host.slice('mta-sts.'.length) : '';
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return true;
  }
  if (!domain || !o.isDomain(domain)) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('no MTA-STS policy for this host\n');
    return true;
  }
  const body = mtaStsPolicy({ mode: o.mode, mx: [o.hostname], maxAge: o.maxAge });
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'max-age=300' }).end(req.method === 'HEAD' ? undefined : body);
  return true;
}
