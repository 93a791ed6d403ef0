import { LetterboxError } from '../../errors.ts';
import type { ApiContext } from '../types.ts';

/**
 * Reads the request body as JSON, refusing more than `maxBytes` (413, before reading when
 * Content-Length says so, else as soon as the count passes it). Returns undefined for an empty body.
 */
export async function readJsonBody(ctx: ApiContext, maxBytes: number): Promise<unknown> {
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
  if (type && !/^application\/([\w.+-]+\+)?json\b/i.test(type)) {
    throw new LetterboxError('validation_error', `the body must be JSON sent with Content-Type: application/json (got ${type})`);
  }
  const text = Buffer.concat(chunks, size).toString('utf8');
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (err: any) {
    throw new LetterboxError('validation_error', `malformed JSON in the request body: ${err.message}`);
  }
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
