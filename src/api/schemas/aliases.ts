import { z } from 'zod';
import { Cursor, Limit } from './common.ts';
import type { Alias } from '../../services/aliases.ts';

export const AliasCreate = z.strictObject({
  address: z.string().min(3).max(320).describe('user@domain, or *@domain for the catch-all.'),
  targets: z.array(z.string().min(3).max(320)).min(1).max(100).describe('Local mailboxes, other aliases or external addresses (forwarded).'),
});

export const AliasListQuery = z.strictObject({ domain: z.string().min(1).max(253).optional(), limit: Limit, cursor: Cursor });

export const AliasSchema = z
  .object({
    id: z.string(),
    address: z.string(),
    domain: z.string(),
    domainId: z.string(),
    targets: z.array(z.string()),
    catchAll: z.boolean(),
    createdAt: z.string(),
  })
  .meta({ id: 'Alias' });

export function aliasOut(a: Alias): z.output<typeof AliasSchema> {
  return { id: a.id, address: a.address, domain: a.domain, domainId: a.domainId, targets: a.targets, catchAll: a.catchAll, createdAt: a.createdAt };
}
