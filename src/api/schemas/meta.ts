import { z } from 'zod';

export const MeSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z.string().describe('The first 8 characters after lb_live_/lb_test_.'),
    mode: z.enum(['live', 'test']),
    sandbox: z.boolean().describe('true for test keys: nothing is ever delivered.'),
    scopes: z.array(z.string()),
    domains: z.array(z.string()).nullable().describe('The domains the key is restricted to; null = all.'),
    createdAt: z.string(),
    expiresAt: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
  })
  .meta({ id: 'Me' });

const Check = z.object({ ok: z.boolean(), problem: z.string().nullable() });
export const HealthSchema = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    problems: z.array(z.string()).describe('What is wrong, one line each (empty when ok).'),
    checks: z.object({
      database: Check,
      dovecot: Check.extend({ managed: z.boolean(), running: z.boolean().nullable(), imap: z.string() }),
      listeners: z.array(Check.extend({ name: z.string(), address: z.string() })),
      // rspamd + Redis (issue #14); null = not run (spam filtering off).
      spam: Check.extend({ enabled: z.boolean(), rspamd: z.boolean().nullable(), redis: z.boolean().nullable() }),
    }),
  })
  .meta({ id: 'Health' });
