import { z } from 'zod';
import { Cursor, DnsRecordSchema, Flag, Limit } from './common.ts';
import type { Domain } from '../../services/domains.ts';

export const DomainCreate = z.strictObject({
  name: z.string().min(1).max(253).describe('The domain, e.g. example.com (an IDN is stored as its A-label).'),
});

export const DomainListQuery = z.strictObject({ limit: Limit, cursor: Cursor });
export const DomainDeleteQuery = z.strictObject({
  force: Flag.optional().describe('1 = also remove its mailboxes and aliases (their stored mail stays on disk).'),
});

export const CatchAllPut = z.strictObject({
  target: z
    .union([z.string().min(3).max(320), z.array(z.string().min(3).max(320)).min(1).max(100)])
    .describe('Where mail for any unknown address of the domain goes: one address or a list (local or external).'),
});

export const DomainSchema = z
  .object({
    id: z.string(),
    name: z.string().describe('Lower-case A-label.'),
    unicodeName: z.string(),
    outboundEnabled: z.boolean().describe('false while outbound mail is suspended.'),
    createdAt: z.string(),
    lastVerifiedAt: z.string().nullable().describe('When a DNS verification last found every record correct.'),
    mailboxCount: z.number().int(),
    aliasCount: z.number().int().describe('Aliases, not counting the catch-all.'),
    catchAll: z.array(z.string()).nullable().describe('Targets of *@domain, or null.'),
    dkim: z.array(z.object({ selector: z.string(), algorithm: z.enum(['rsa', 'ed25519']), publicKey: z.string(), active: z.boolean(), state: z.enum(['pending', 'active', 'retiring', 'removed']).describe('Key rotation: pending (publish it; signing switches once domain verify finds it), active (signing), retiring (still published for dkim.rotation_grace), removed (private key deleted; the DNS record may go).') })),
  })
  .meta({ id: 'Domain' });

export const DomainWithRecordsSchema = DomainSchema.extend({ records: z.array(DnsRecordSchema).describe('The DNS records to publish.') }).meta({ id: 'DomainWithRecords' });

export const DomainDnsSchema = z
  .object({ domain: z.string(), records: z.array(DnsRecordSchema), zone: z.string().describe('The same records as a BIND zone-file snippet.') })
  .meta({ id: 'DomainDns' });

export const VerificationSchema = z
  .object({
    domain: z.string(),
    ok: z.boolean().describe('true when every required record is correct.'),
    checkedAt: z.string(),
    lastVerifiedAt: z.string().nullable(),
    records: z.array(
      z.object({
        purpose: z.enum(['mx', 'spf', 'helo-spf', 'dkim', 'dmarc', 'srv']),
        type: z.enum(['MX', 'TXT', 'SRV']),
        name: z.string(),
        expected: z.string(),
        found: z.array(z.string()),
        ok: z.boolean(),
        problem: z.string().nullable(),
        required: z.boolean().describe('false for the SRV records mail clients use, the SPF record of the host name (helo-spf) and DKIM keys of a rotation that do not sign (pending, retiring): reported, but they do not make `ok` false.'),
      }),
    ),
    rotation: z
      .object({ activated: z.array(z.string()), retiring: z.array(z.string()), graceUntil: z.string().nullable(), removed: z.array(z.string()) })
      .optional()
      .describe('Present when this verification moved a DKIM rotation on: the selectors that started signing (their records were found), those now retiring (kept published until graceUntil), those whose grace ended (private keys deleted).'),
  })
  .meta({ id: 'Verification' });

/** The API's view of a domain (the private key's path on disk is not part of it). */
export function domainOut(d: Domain): z.output<typeof DomainSchema> {
  return {
    id: d.id,
    name: d.name,
    unicodeName: d.unicodeName,
    outboundEnabled: d.outboundEnabled,
    createdAt: d.createdAt,
    lastVerifiedAt: d.lastVerifiedAt,
    mailboxCount: d.mailboxCount,
    aliasCount: d.aliasCount,
    catchAll: d.catchAll,
    dkim: d.dkim.map((k) => ({ selector: k.selector, algorithm: k.algorithm, publicKey: k.publicKey, active: k.active, state: k.state })),
  };
}
