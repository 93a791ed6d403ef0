import { randomBytes } from 'node:crypto';
import { checkWebhookUrl } from '../../webhooks/ssrf.ts';
import {
  createWebhook,
  deleteWebhook,
  deliveryOut,
  deliveryRow,
  getDelivery,
  getWebhookRow,
  insertDelivery,
  listDeliveries,
  listWebhookRows,
  rotateSecret,
  updateWebhook,
  webhookOut,
} from '../../webhooks/store.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { keyDomains } from '../access.ts';
import { decodeCursor, encodeCursor, page } from '../schemas/common.ts';
import {
  DeliveryListQuery,
  DeliveryParams,
  DeliverySchema,
  RotateBody,
  WebhookCreate,
  WebhookListQuery,
  WebhookParams,
  WebhookPatch,
  WebhookSchema,
  WebhookWithSecretSchema,
} from '../schemas/ops.ts';
import type { ApiRequest } from '../types.ts';
import type { ThreadContext } from '../../context.ts';

const tag = 'Webhooks';

function delivered(req: ApiRequest<any, any, any, ThreadContext>, id: string) {
  const db = req.app.db;
  return deliveryOut(db, deliveryRow(db, id)!);
}

export const webhookRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/webhooks', operationId: 'listWebhooks', anyThread: true, tag, scope: 'webhooks:read', list: true,
    summary: 'Webhook endpoints',
    query: WebhookListQuery, response: WebhookSchema,
    handler: (req) => {
      const now = req.app.clock.now();
      const rows = listWebhookRows(req.app.db, keyDomains(req.key), decodeCursor(req.query.cursor), req.query.limit);
      return page(rows.map((r) => webhookOut(r, now)), req.query.limit, (w) => w.id);
    },
  }),
  defineRoute({
    method: 'post', path: '/webhooks', operationId: 'createWebhook', tag, scope: 'webhooks:write', status: 201,
    summary: 'Subscribe a URL to events',
    description:
      'Each event is POSTed as JSON `{ id, type, createdAt, data }` with `Letterbox-Event-Id` and `Letterbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the secret>`. Failed deliveries (non-2xx, timeout, network error; redirects are not followed) are retried with growing delays for about 32 hours. The secret is returned only here and by rotate-secret. A key restricted to domains creates a webhook that only receives those domains\' events.',
    body: WebhookCreate, response: WebhookWithSecretSchema,
    handler: (req) => {
      checkWebhookUrl(req.body.url, req.app.config.webhooks);
      const { row, secret } = createWebhook(req.app.db, req.app.clock, { url: req.body.url, events: req.body.events, description: req.body.description, domains: keyDomains(req.key), createdBy: req.key?.id ?? null });
      return { status: 201, data: { ...webhookOut(row, req.app.clock.now()), secret } };
    },
  }),
  defineRoute({
    method: 'get', path: '/webhooks/:id', operationId: 'getWebhook', anyThread: true, tag, scope: 'webhooks:read',
    summary: 'A webhook endpoint', params: WebhookParams, response: WebhookSchema,
    handler: (req) => ({ data: webhookOut(getWebhookRow(req.app.db, req.params.id, keyDomains(req.key)), req.app.clock.now()) }),
  }),
  defineRoute({
    method: 'patch', path: '/webhooks/:id', operationId: 'updateWebhook', tag, scope: 'webhooks:write',
    summary: 'Change URL, events, description; enable or disable',
    params: WebhookParams, body: WebhookPatch, response: WebhookSchema,
    handler: (req) => {
      if (req.body.url) checkWebhookUrl(req.body.url, req.app.config.webhooks);
      return { data: webhookOut(updateWebhook(req.app.db, req.app.clock, req.params.id, keyDomains(req.key), req.body), req.app.clock.now()) };
    },
  }),
  defineRoute({
    method: 'delete', path: '/webhooks/:id', operationId: 'deleteWebhook', tag, scope: 'webhooks:write',
    summary: 'Remove a webhook endpoint (and its delivery log)', params: WebhookParams, response: WebhookSchema,
    handler: (req) => ({ data: webhookOut(deleteWebhook(req.app.db, req.params.id, keyDomains(req.key)), req.app.clock.now()) }),
  }),
  defineRoute({
    method: 'post', path: '/webhooks/:id/rotate-secret', operationId: 'rotateWebhookSecret', tag, scope: 'webhooks:write',
    summary: 'Replace the signing secret; the old one stays valid for a grace period',
    description: 'Until `secretRotatedGraceUntil`, deliveries carry two v1 signatures (new secret first, then the old one), so receivers can switch without losing events.',
    params: WebhookParams, body: RotateBody, response: WebhookWithSecretSchema,
    handler: (req) => {
      const graceMs = req.body?.graceSeconds !== undefined ? req.body.graceSeconds * 1000 : req.app.config.webhooks.secret_grace;
      const { row, secret } = rotateSecret(req.app.db, req.app.clock, req.params.id, keyDomains(req.key), graceMs);
      return { data: { ...webhookOut(row, req.app.clock.now()), secret } };
    },
  }),
  defineRoute({
    method: 'post', path: '/webhooks/:id/test', operationId: 'testWebhook', tag, scope: 'webhooks:write',
    summary: 'Send a webhook.test event now and report the result',
    description: 'One attempt, no retries; the answer is the delivery with its attempt (status code, error, duration). Works on a disabled endpoint too.',
    params: WebhookParams, response: DeliverySchema,
    handler: async (req) => {
      const w = getWebhookRow(req.app.db, req.params.id, keyDomains(req.key));
      const now = req.app.clock.now();
      const eventId = `evt_test_${randomBytes(8).toString('hex')}`;
      const payload = JSON.stringify({ id: eventId, type: 'webhook.test', createdAt: new Date(now).toISOString(), data: { webhookId: w.id, message: 'This is a test event from Letterbox.' } });
      const id = insertDelivery(req.app.db, now, { webhookId: w.id, eventId, eventType: 'webhook.test', payload });
      await req.app.webhooks.attempt(id);
      return { data: delivered(req, id) };
    },
  }),
  defineRoute({
    method: 'get', path: '/webhooks/:id/deliveries', operationId: 'listWebhookDeliveries', anyThread: true, tag, scope: 'webhooks:read', list: true,
    summary: 'Delivery log of an endpoint (kept webhooks.retention, 7 days), newest first',
    params: WebhookParams, query: DeliveryListQuery, response: DeliverySchema,
    handler: (req) => {
      const w = getWebhookRow(req.app.db, req.params.id, keyDomains(req.key));
      const rows = listDeliveries(req.app.db, w.id, { status: req.query.status, before: decodeCursor(req.query.cursor), limit: req.query.limit });
      const more = rows.length > req.query.limit;
      const data = rows.slice(0, req.query.limit).map((r) => deliveryOut(req.app.db, r));
      return { data, nextCursor: more ? encodeCursor(data[data.length - 1].id) : null };
    },
  }),
  defineRoute({
    method: 'get', path: '/webhooks/:id/deliveries/:deliveryId', operationId: 'getWebhookDelivery', anyThread: true, tag, scope: 'webhooks:read',
    summary: 'One delivery with every attempt', params: DeliveryParams, response: DeliverySchema,
    handler: (req) => {
      const w = getWebhookRow(req.app.db, req.params.id, keyDomains(req.key));
      return { data: deliveryOut(req.app.db, getDelivery(req.app.db, w.id, req.params.deliveryId)) };
    },
  }),
  defineRoute({
    method: 'post', path: '/webhooks/:id/deliveries/:deliveryId/replay', operationId: 'replayWebhookDelivery', tag, scope: 'webhooks:write', status: 201,
    summary: 'Send a delivery again (same event id and body, new signature)',
    description: 'Creates a new delivery (replayOf = the original), attempts it at once, and retries it on failure like any other. Answers with the new delivery after its first attempt.',
    params: DeliveryParams, response: DeliverySchema,
    handler: async (req) => {
      const w = getWebhookRow(req.app.db, req.params.id, keyDomains(req.key));
      const orig = getDelivery(req.app.db, w.id, req.params.deliveryId);
      const id = insertDelivery(req.app.db, req.app.clock.now(), { webhookId: w.id, eventId: orig.event_id, eventType: orig.event_type, payload: orig.payload, replayOf: orig.id });
      await req.app.webhooks.attempt(id);
      return { status: 201, data: delivered(req, id) };
    },
  }),
];
