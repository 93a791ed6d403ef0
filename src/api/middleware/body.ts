import { LetterboxError } from '../../errors.ts';
import type { ApiContext } from '../types.ts';

/**
 * Reads the request body as JSON, refusing more than `maxBytes` (413, before reading when
 * Content-Length says so, else as soon as the count passes it). Returns undefined for an empty body.
 * A body must be sent as application/json (else 415), be valid UTF-8 and have no key twice in one
 * object (else 400): what a client meant must never be guessed.
 */
export async function readJsonBody(ctx: ApiContext, maxBytes: number, opts: { takesBody?: boolean } = {}): Promise<unknown> {
  // HTTP/1.1: a request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112
  // §6.3): nothing to read (most GETs; spares a stream iterator per request).
  const h = ctx.req.headers;
  if (h['content-length'] === undefined && h['transfer-encoding'] === undefined) return undefined;
  const declared = Number(ctx.get('Content-Length') || NaN);
  const tooLarge = () => new LetterboxError('payload_too_large', `the request body is larger than the limit of ${maxBytes} bytes (api.max_body_size)`);
  if (Number.isFinite(declared) && declared > maxBytes) {
    ctx.set('Connection', 'close');
    await discard(ctx, declared <= 2 * maxBytes ? declared : 0);
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      ctx.set('Connection', 'close');
      await discard(ctx, 2 * maxBytes - size);
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  const type = ctx.get('Content-Type');
  if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    if (opts.takesBody === false) throw new LetterboxError('validation_error', `body: ${ctx.method} ${ctx.path} takes no body`, { issues: [{ path: 'body', message: 'no body expected' }] });
    throw new LetterboxError('unsupported_media_type', `the body must be JSON sent with Content-Type: application/json (got ${type ? type.slice(0, 100) : 'no Content-Type'})`);
  }
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(type)?.[1];
  if (charset && !/^utf-?8$/i.test(charset)) throw new LetterboxError('unsupported_media_type', `the body must be UTF-8 (got charset=${charset.slice(0, 40)})`);
  let text: string;
  try {
    text = UTF8.decode(Buffer.concat(chunks, size));
  } catch {
    throw new LetterboxError('validation_error', 'the request body is not valid UTF-8');
  }
  if (!text.trim()) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err: any) {
    throw new LetterboxError('validation_error', `malformed JSON in the request body: ${err.message}`);
  }
  const dup = duplicateKey(text);
  if (dup !== null) throw new LetterboxError('validation_error', `malformed JSON in the request body: duplicate key ${JSON.stringify(dup.slice(0, 100))} (a key may appear only once in an object)`);
  return value;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * The first key that appears twice in one object of `text` (valid JSON, already parsed), or null.
 * JSON.parse keeps the last of duplicate keys silently and offers no hook to notice, and no
 * maintained npm parser both reports duplicates and is as fast as JSON.parse on 30 MB bodies; this
 * scan only tracks object nesting and string boundaries (strings are skipped with indexOf).
 */
export function duplicateKey(text: string): string | null {
  const stack: (Set<string> | null)[] = []; // a Set per open object, null per open array
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: find its closing quote (one not preceded by an odd number of backslashes).
      let j = i + 1;
      for (;;) {
        j = text.indexOf('"', j);
        if (j === -1) return null;
        let b = j - 1;
        while (text.charCodeAt(b) === 0x5c) b--;
        if ((j - 1 - b) % 2 === 0) break;
        j++;
      }
      const top = stack[stack.length - 1];
      if (top) {
        let k = j + 1;
        while (k < n && (text.charCodeAt(k) === 0x20 || text.charCodeAt(k) === 0x09 || text.charCodeAt(k) === 0x0a || text.charCodeAt(k) === 0x0d)) k++;
        if (text.charCodeAt(k) === 0x3a) {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (top.has(key)) return key;
          top.add(key);
        }
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b) stack.push(new Set());
    else if (c === 0x5b) stack.push(null);
    else if (c === 0x7d || c === 0x5d) stack.pop();
    i++;
  }
  return null;
}

/**
 * Reads and drops up to `limit` more bytes of an oversized body, so a client still writing it gets
 * the 413 instead of a broken pipe; a body beyond that is cut off (the connection closes).
 */
async function discard(ctx: ApiContext, limit: number): Promise<void> {
  let n = 0;
  if (limit <= 0) return;
  try {
    for await (const chunk of ctx.req) {
      n += (chunk as Buffer).length;
      if (n > limit) break;
    }
  } catch {
    /* the client went away: nothing to answer */
  }
}
