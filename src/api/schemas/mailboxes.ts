import { z } from 'zod';
import { Cursor, Limit, Tag, repeated } from './common.ts';
import type { Mailbox } from '../../services/mailboxes.ts';

const Address = z.string().min(3).max(320);
const Password = z.string().min(12, 'at least 12 characters').max(1024).describe('At least 12 characters; omit it to have a strong one generated and returned once.');
const Quota = z
  .union([z.string().regex(/^\s*\d+(\.\d+)?\s*[kKmMgGtT]?i?[bB]?\s*$/, 'a size such as 500M or 2G'), z.number().int().min(0)])
  .describe('Bytes, or a size such as "500M" or "2G"; 0 = unlimited.');

export const MailboxCreate = z.strictObject({
  address: Address.describe('user@domain; the domain must exist.'),
  password: Password.optional(),
  quota: Quota.optional(),
  tags: z.array(Tag).max(50).optional(),
  disabled: z.boolean().optional(),
});

export const MailboxCreateBody = z.union([MailboxCreate, z.array(MailboxCreate).min(1).max(100)]).describe('One mailbox, or a list of up to 100 (all or none are created).');

export const MailboxPatch = z.strictObject({
  password: Password.optional(),
  quota: Quota.optional(),
  disabled: z.boolean().optional(),
  tags: z.array(Tag).max(50).optional().describe('Replaces the tags.'),
});

const Status = z.enum(['active', 'disabled']);
export const MailboxListQuery = z.strictObject({
  domain: z.string().min(1).max(253).optional(),
  tag: repeated(Tag).optional().describe('Repeat to require several tags (all must match).'),
  status: Status.optional(),
  search: z.string().min(1).max(320).optional().describe('Only addresses that start with this text (case-insensitive).'),
  limit: Limit,
  cursor: Cursor,
});

export const ResolveQuery = z.strictObject({ address: Address });

export const MailboxSchema = z
  .object({
    id: z.string(),
    address: z.string(),
    domain: z.string(),
    domainId: z.string(),
    quotaBytes: z.number().int().describe('0 = unlimited.'),
    disabled: z.boolean(),
    status: Status,
    tags: z.array(z.string()),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Mailbox' });

export const MailboxDetailSchema = MailboxSchema.extend({
  imapHost: z.string(),
  imapPort: z.number().int().describe('Implicit TLS.'),
  smtpHost: z.string(),
  submissionPort: z.number().int().describe('STARTTLS (587 in production).'),
  submissionsPort: z.number().int().describe('Implicit TLS (465 in production).'),
}).meta({ id: 'MailboxDetail' });

export const MailboxCreatedSchema = MailboxDetailSchema.extend({
  password: z.string().optional().describe('The generated password, shown only in this response (absent when one was given).'),
}).meta({ id: 'MailboxCreated' });

export const MailboxEnsuredSchema = MailboxCreatedSchema.extend({ created: z.boolean().describe('false when it already existed (left unchanged).') }).meta({ id: 'MailboxEnsured' });

export const ResolutionSchema = z
  .object({
    address: z.string(),
    via: z.enum(['mailbox', 'alias', 'catch-all']),
    detail: z.string().nullable().describe('The +detail of a plus address.'),
    mailboxes: z.array(MailboxSchema),
    external: z.array(z.string()).describe('External addresses the mail is forwarded to.'),
  })
  .meta({ id: 'Resolution' });

export const QuotaStatusSchema = z
  .object({
    id: z.string(),
    address: z.string(),
    quotaBytes: z.number().int().describe('0 = unlimited.'),
    usedBytes: z.number().int().nullable().describe('From Dovecot; null if Dovecot does not know the mailbox yet (added less than a second ago).'),
    messages: z.number().int().nullable(),
    percent: z.number().nullable().describe('usedBytes / quotaBytes × 100, null when unlimited.'),
  })
  .meta({ id: 'QuotaStatus' });

export function mailboxOut(m: Mailbox): z.output<typeof MailboxSchema> {
  return {
    id: m.id,
    address: m.address,
    domain: m.domain,
    domainId: m.domainId,
    quotaBytes: m.quotaBytes,
    disabled: m.disabled,
    status: m.disabled ? 'disabled' : 'active',
    tags: m.tags,
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
  };
}
