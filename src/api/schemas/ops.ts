import { z } from 'zod';
import { Cursor, Limit, repeated } from './common.ts';
import { WEBHOOK_EVENT_TYPES } from '../../webhooks/store.ts';

// --- queue
export const QueueState = z.enum(['queued', 'inflight', 'delivered', 'bounced', 'cancelled']);
export const QueueListQuery = z.strictObject({
  state: repeated(QueueState, 5).optional().describe('Repeat for several; default queued and inflight.'),
  domain: z.string().min(1).max(253).optional().describe('Recipient domain.'),
  mailbox: z.string().min(1).max(320).optional().describe('Sending mailbox (id or address).'),
  limit: Limit,
  cursor: Cursor,
});
export const QueueIdParams = z.strictObject({ id: z.string().min(1).max(64) });

export const QueueEntrySchema = z
  .object({
    id: z.string(),
    messageId: z.string(),
    recipient: z.string(),
    domain: z.string(),
    from: z.string(),
    status: QueueState,
    attempts: z.number().int(),
    nextAttemptAt: z.string().nullable(),
    lastCode: z.number().int().nullable(),
    lastReply: z.string().nullable(),
    origin: z.string(),
    sandbox: z.boolean(),
    messageIdHeader: z.string().nullable(),
    mailboxId: z.string().nullable(),
    size: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'QueueEntry' });

export const QueueAttemptSchema = z.object({
  at: z.string(),
  mx: z.string().nullable(),
  ip: z.string().nullable(),
  sourceIp: z.string().nullable(),
  tlsVersion: z.string().nullable(),
  tlsCipher: z.string().nullable(),
  code: z.number().int().nullable(),
  reply: z.string().nullable(),
  outcome: z.string(),
  transcript: z.string().nullable(),
});
export const QueueDetailSchema = QueueEntrySchema.extend({ attemptLog: z.array(QueueAttemptSchema) }).meta({ id: 'QueueEntryDetail' });

// --- suppressions
export const SuppressionListQuery = z.strictObject({ domain: z.string().min(1).max(253).optional().describe('Sending domain.'), limit: Limit, cursor: Cursor });
export const SuppressionCreate = z.strictObject({
  domain: z.string().min(1).max(253).describe('The sending domain whose list it goes on.'),
  address: z.string().min(3).max(320),
  reason: z.string().max(500).regex(/^[^\r\n\0]*$/).optional(),
});
export const SuppressionParams = z.strictObject({ address: z.string().min(3).max(320) });
export const SuppressionDeleteQuery = z.strictObject({ domain: z.string().min(1).max(253).optional().describe('Only from this sending domain\'s list (default: every list the key can see).') });
export const SuppressionSchema = z
  .object({ domain: z.string(), address: z.string(), reason: z.string(), code: z.number().int().nullable(), createdAt: z.string() })
  .meta({ id: 'Suppression' });

// --- events
const EventType = z.enum(WEBHOOK_EVENT_TYPES);
export const EventListQuery = z.strictObject({
  type: repeated(EventType, 10).optional().describe('Repeat for several types.'),
  mailbox: z.string().min(1).max(320).optional().describe('Mailbox id or address.'),
  domain: z.string().min(1).max(253).optional(),
  since: z.iso.datetime({ offset: true }).optional().describe('Only events at or after this time (ISO 8601).'),
  order: z.enum(['asc', 'desc']).default('desc').describe('desc (newest first, default) or asc (oldest first: follow the log with since/cursor).'),
  limit: Limit,
  cursor: Cursor,
});
export const EventSchema = z
  .object({
    id: z.string().describe('evt_<n>: also the Letterbox-Event-Id of webhook deliveries.'),
    type: z.string(),
    createdAt: z.string(),
    mailboxId: z.string().nullable(),
    domain: z.string().nullable(),
    messageId: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'Event' });

// --- webhooks
const WebhookEvent = z.union([EventType, z.literal('*')]);
const Url = z.string().min(8).max(2000);
export const WebhookCreate = z.strictObject({
  url: Url.describe('http(s) URL that receives POSTs.'),
  events: z.array(WebhookEvent).min(1).max(20).describe('Event types, or ["*"] for all.'),
  description: z.string().max(500).optional(),
});
export const WebhookPatch = z.strictObject({
  url: Url.optional(),
  events: z.array(WebhookEvent).min(1).max(20).optional(),
  description: z.string().max(500).optional(),
  enabled: z.boolean().optional().describe('Re-enable an endpoint that was disabled (by hand or after failing for webhooks.disable_after).'),
});
export const WebhookParams = z.strictObject({ id: z.string().min(1).max(64) });
export const DeliveryParams = z.strictObject({ id: z.string().min(1).max(64), deliveryId: z.string().min(1).max(64) });
export const RotateBody = z.strictObject({ graceSeconds: z.number().int().min(0).max(7 * 86400).optional().describe('How long the old secret stays valid (default webhooks.secret_grace, 24 h).') }).optional();
export const WebhookListQuery = z.strictObject({ limit: Limit, cursor: Cursor });
export const DeliveryListQuery = z.strictObject({ status: z.enum(['pending', 'succeeded', 'failed']).optional(), limit: Limit, cursor: Cursor });

export const WebhookSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(z.string()),
    description: z.string(),
    enabled: z.boolean(),
    disabledReason: z.string().nullable(),
    failingSince: z.string().nullable(),
    domains: z.array(z.string()).nullable().describe('Only events of these domains (webhooks created with a domain-restricted key).'),
    secretRotatedGraceUntil: z.string().nullable().describe('Until then deliveries carry a second v1 signature made with the previous secret.'),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Webhook' });
export const WebhookWithSecretSchema = WebhookSchema.extend({ secret: z.string().describe('whsec_…: shown only here; signs every delivery.') }).meta({ id: 'WebhookWithSecret' });

const AttemptSchema = z.object({ at: z.string(), statusCode: z.number().int().nullable(), error: z.string().nullable(), durationMs: z.number().int(), response: z.string().nullable() });
export const DeliverySchema = z
  .object({
    id: z.string(),
    webhookId: z.string(),
    eventId: z.string(),
    eventType: z.string(),
    status: z.enum(['pending', 'succeeded', 'failed']),
    attempts: z.number().int(),
    nextAttemptAt: z.string().nullable(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    lastDurationMs: z.number().int().nullable(),
    replayOf: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    attemptLog: z.array(AttemptSchema).optional(),
  })
  .meta({ id: 'WebhookDelivery' });
