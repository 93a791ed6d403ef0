import { z } from 'zod';
import { DnsRecordSchema } from './common.ts';

// DKIM key rotation (issue #18; src/dkim/rotate.ts).

export const DkimRotationSchema = z
  .object({
    domain: z.string(),
    pending: z.array(z.object({ selector: z.string(), algorithm: z.enum(['rsa', 'ed25519']) })).describe('The new selectors: published first, signing once domain verification finds them.'),
    records: z.array(DnsRecordSchema).describe('The records to publish (the current selectors stay).'),
  })
  .meta({ id: 'DkimRotation' });

export const DkimStatusSchema = z
  .object({
    domain: z.string(),
    graceMs: z.number().int().describe('dkim.rotation_grace: how long a replaced key stays published.'),
    keys: z.array(
      z.object({
        selector: z.string(),
        algorithm: z.enum(['rsa', 'ed25519']),
        state: z.enum(['pending', 'active', 'retiring', 'removed']),
        createdAt: z.string(),
        activatedAt: z.string().nullable(),
        retiredAt: z.string().nullable(),
        removedAt: z.string().nullable(),
        record: DnsRecordSchema,
        graceUntil: z.string().nullable().describe('Retiring keys: when their grace period ends (then the private key is deleted).'),
      }),
    ),
    advice: z.array(z.string()).describe('What to do next.'),
  })
  .meta({ id: 'DkimStatus' });
