// Spam filtering settings and learning over the API (issue #14): the same service layer as the CLI
// (src/spam/manage.ts).
import { z } from 'zod';
import { defineRoute, type RouteSpec } from '../route.ts';
import { visibleDomain, visibleMailbox } from '../access.ts';
import { IdParams } from '../schemas/common.ts';
import { getSpamSettings, learnMessage, setSpamSettings } from '../../spam/manage.ts';

const tag = 'Spam';
const score = z.number().min(-1000).max(1000);

const SpamSettingsSchema = z
  .object({
    scope: z.enum(['domain', 'mailbox']),
    id: z.string(),
    name: z.string(),
    override: z
      .object({ mode: z.enum(['on', 'off']).nullable(), reject: z.number().nullable(), junk: z.number().nullable(), greylist: z.number().nullable(), greylisting: z.enum(['on', 'off']).nullable() })
      .describe('Stored for this domain or mailbox; null = inherited.'),
    effective: z
      .object({ mode: z.enum(['on', 'off']), reject: z.number(), junk: z.number(), greylist: z.number(), greylisting: z.enum(['on', 'off']) })
      .describe('What applies: mailbox → domain → [spam] config. greylisting is "off" for everyone when [spam] greylisting = false.'),
  })
  .meta({ id: 'SpamSettings' });

const SpamSettingsBody = z
  .strictObject({
    mode: z.enum(['on', 'off']).nullable().optional().describe('"off": never scanned, always INBOX. null: inherit.'),
    reject: score.nullable().optional().describe('Refuse (550 5.7.1) at or above this rspamd score. null: inherit.'),
    junk: score.nullable().optional().describe('Deliver to Junk at or above this score. null: inherit.'),
    greylist: score.nullable().optional().describe('Greylist (451 4.7.1) a new sender at or above this score. null: inherit.'),
    greylisting: z.enum(['on', 'off']).nullable().optional().describe('"off": never greylisted. null: inherit. Cannot turn on what [spam] greylisting = false turns off.'),
  })
  .meta({ id: 'SpamSettingsUpdate' });

const LearnBody = z
  .strictObject({
    as: z.enum(['spam', 'ham']),
    message: z.string().min(1).describe('The whole message (RFC 5322 text, headers and body).'),
  })
  .meta({ id: 'SpamLearnRequest' });

const LearnResult = z.object({ mailbox: z.string(), kind: z.string(), learned: z.boolean(), detail: z.string().nullable() }).meta({ id: 'SpamLearnResult' });

export const spamRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/mailboxes/:id/spam', operationId: 'getMailboxSpam', tag, scope: 'mailboxes:read',
    summary: "A mailbox's spam filtering settings (stored and applying)",
    params: IdParams, response: SpamSettingsSchema,
    handler: (req) => ({ data: getSpamSettings(req.app, visibleMailbox(req, req.params.id).id, 'mailbox') }),
  }),
  defineRoute({
    method: 'put', path: '/mailboxes/:id/spam', operationId: 'setMailboxSpam', tag, scope: 'mailboxes:write',
    summary: "Set a mailbox's spam filtering: on/off and thresholds",
    description: 'Fields left out keep their stored value; null falls back to the domain, then the [spam] config.',
    params: IdParams, body: SpamSettingsBody, response: SpamSettingsSchema,
    handler: (req) => ({ data: setSpamSettings(req.app, visibleMailbox(req, req.params.id).id, req.body, 'mailbox') }),
  }),
  defineRoute({
    method: 'get', path: '/domains/:id/spam', operationId: 'getDomainSpam', tag, scope: 'domains:read',
    summary: "A domain's spam filtering settings",
    params: IdParams, response: SpamSettingsSchema,
    handler: (req) => ({ data: getSpamSettings(req.app, visibleDomain(req, req.params.id).id, 'domain') }),
  }),
  defineRoute({
    method: 'put', path: '/domains/:id/spam', operationId: 'setDomainSpam', tag, scope: 'domains:write',
    summary: "Set a domain's spam filtering (its mailboxes inherit it)",
    params: IdParams, body: SpamSettingsBody, response: SpamSettingsSchema,
    handler: (req) => ({ data: setSpamSettings(req.app, visibleDomain(req, req.params.id).id, req.body, 'domain') }),
  }),
  defineRoute({
    method: 'post', path: '/mailboxes/:id/spam/learn', operationId: 'learnMailboxSpam', tag, scope: 'mailboxes:write', errors: [503],
    summary: "Train the mailbox's Bayes filter with one message",
    description: 'The same as moving it into (spam) or out of (ham) Junk in a mail client. `learned` is false with a `detail` when rspamd declined (e.g. already learned, too few words).',
    params: IdParams, body: LearnBody, response: LearnResult,
    handler: async (req) => ({ data: await learnMessage(req.app, visibleMailbox(req, req.params.id).id, req.body.as, Buffer.from(req.body.message, 'utf8')) }),
  }),
];
