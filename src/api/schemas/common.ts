import { z } from 'zod';
import { LetterboxError } from '../../errors.ts';

// Shared building blocks of the API's schemas. Schemas with `.meta({ id })` become named
// components in the OpenAPI document (response shapes only: request schemas are inlined).

/**
 * A whole number written in plain decimal digits, as path and query values arrive (strings):
 * z.coerce.number() would also take "0x5", " 5", "1e3" or "5.0", which no client means.
 */
export const decimal = (min: number, max: number) =>
  z
    .string()
    .regex(/^(0|[1-9][0-9]{0,15})$/, 'a whole number in decimal digits')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

export const Limit = decimal(1, 500).default(50).describe('Page size (1-500, default 50).');
export const Cursor = z.string().min(1).max(1024).optional().describe('The `nextCursor` of the previous page.');

/** Query flags: 1/true/yes or 0/false/no. */
export const Flag = z
  .enum(['1', 'true', 'yes', '0', 'false', 'no'])
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

/** A query key that may be repeated (?tag=a&tag=b): always an array after parsing. */
export const repeated = <T extends z.ZodType>(item: T, max = 20) => z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(item).max(max));

export const IdParams = z.strictObject({ id: z.string().min(1).max(320).describe('The id, or the name/address.') });

export const Tag = z.string().regex(/^[\w.:-]{1,64}$/, 'a tag has 1-64 letters, digits, _ . : -');

/** Opaque pagination cursors: the sort key of the last item of the page, base64url-encoded. */
export function encodeCursor(lastKey: string): string {
  return Buffer.from(JSON.stringify({ k: lastKey }), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (typeof v?.k === 'string') return v.k;
  } catch {}
  throw new LetterboxError('validation_error', 'query.cursor: not a cursor from this API; pass the nextCursor of the previous page', {
    issues: [{ path: 'query.cursor', message: 'invalid cursor' }],
  });
}

/** Fetches limit+1 items to know whether there is a next page. */
export function page<T>(items: T[], limit: number, keyOf: (t: T) => string): { data: T[]; nextCursor: string | null } {
  if (items.length <= limit) return { data: items, nextCursor: null };
  const data = items.slice(0, limit);
  return { data, nextCursor: encodeCursor(keyOf(data[data.length - 1])) };
}

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().describe('Stable machine-readable code, e.g. validation_error, unauthorized, forbidden, not_found, conflict, rate_limited.'),
      message: z.string().describe('What went wrong and what to do, for humans.'),
      requestId: z.string().describe('Also in the X-Request-Id header and the server log.'),
      details: z.object({ issues: z.array(z.object({ path: z.string(), message: z.string() })) }).optional(),
    }),
  })
  .meta({ id: 'Error' });

export const DnsRecordSchema = z
  .object({
    purpose: z.enum(['mx', 'spf', 'helo-spf', 'dkim', 'dmarc', 'host', 'tlsrpt', 'mta-sts', 'ptr', 'autoconfig', 'srv']),
    type: z.enum(['MX', 'TXT', 'A', 'AAAA', 'CNAME', 'PTR', 'SRV']),
    name: z.string(),
    value: z.string().describe('The target host for MX, CNAME, PTR and SRV ("." for an SRV service that is not offered).'),
    priority: z.number().int().optional().describe('MX preference, SRV priority.'),
    weight: z.number().int().optional().describe('SRV only.'),
    port: z.number().int().optional().describe('SRV only.'),
    ttl: z.number().int(),
  })
  .meta({ id: 'DnsRecord' });
