import { checkNewAddress } from '../../services/local-part.ts';
import { z } from 'zod';
import { LetterboxError } from '../../errors.ts';
import { parseHostPort, type Config } from '../../config/schema.ts';
import { addMailbox, findMailbox, listMailboxes, removeMailbox, updateMailbox, type Mailbox } from '../../services/mailboxes.ts';
import { findAlias } from '../../services/aliases.ts';
import { resolveRecipient, parseRecipient } from '../../routing/resolve.ts';
import { ensureSecret } from '../../secrets.ts';
import { quotaUsage } from '../../services/quota.ts';
import { parseAddress } from '../../util/address.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { canSeeDomain, keyDomains, requireVisibleDomainOf, visibleMailbox } from '../access.ts';
import { IdParams, decodeCursor, page } from '../schemas/common.ts';
import type { ApiRequest } from '../types.ts';
import type { ThreadContext } from '../../context.ts';
import {
  MailboxCreate,
  MailboxCreateBody,
  MailboxCreatedSchema,
  MailboxDetailSchema,
  MailboxEnsuredSchema,
  MailboxListQuery,
  MailboxPatch,
  MailboxSchema,
  QuotaStatusSchema,
  ResolutionSchema,
  ResolveQuery,
  mailboxOut,
} from '../schemas/mailboxes.ts';

const tag = 'Mailboxes';

/** Where mail clients connect: the server's name and the first port of each listener. */
function clientInfo(config: Config) {
  const port = (l: string[], fallback: number) => (l[0] ? parseHostPort(l[0])!.port : fallback);
  return {
    imapHost: config.hostname,
    imapPort: port(config.listen.imap, 993),
    smtpHost: config.hostname,
    submissionPort: port(config.listen.submission, 587),
    submissionsPort: port(config.listen.submissions, 465),
  };
}

function detail(req: ApiRequest<any, any, any, ThreadContext>, m: Mailbox) {
  return { ...mailboxOut(m), ...clientInfo(req.app.config) };
}

type CreateInput = z.output<typeof MailboxCreate>;

/** Checks what would make a creation fail before anything is created (a batch is all or none). */
function precheck(req: ApiRequest<any, any, any, ThreadContext>, items: CreateInput[]): void {
  const seen = new Set<string>();
  items.forEach((it, i) => {
    const where = items.length > 1 ? `body[${i}].address` : 'body.address';
    let address: string;
    try {
      checkNewAddress(it.address, { kind: 'mailbox' });
      address = parseAddress(it.address).address;
    } catch (err: any) {
      throw new LetterboxError('validation_error', `${where}: ${err.message}`);
    }
    requireVisibleDomainOf(req, address);
    if (seen.has(address)) throw new LetterboxError('validation_error', `${where}: ${address} appears twice`);
    seen.add(address);
    if (findMailbox(req.app, address)) throw new LetterboxError('conflict', `mailbox ${address} already exists`);
    if (findAlias(req.app, address)) throw new LetterboxError('conflict', `${address} is an alias; remove the alias first`);
  });
}

async function create(req: ApiRequest<any, any, any, ThreadContext>, it: CreateInput) {
  const r = await addMailbox(req.app, { address: it.address, password: it.password, quota: it.quota, tags: it.tags, disabled: it.disabled });
  return { ...detail(req, r.mailbox), ...(r.generatedPassword ? { password: r.generatedPassword } : {}) };
}

export const mailboxRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/mailboxes', operationId: 'listMailboxes', anyThread: true, tag, scope: 'mailboxes:read', list: true,
    summary: 'List mailboxes',
    description: 'In address order. Filters: domain, tag (repeat it: all must match), status, search (address prefix).',
    query: MailboxListQuery, response: MailboxSchema,
    handler: (req) => {
      const { domain, tag: tags, status, search, limit, cursor } = req.query;
      const rows = listMailboxes(req.app, { domain, tags, status, search, domains: keyDomains(req.key) ?? undefined, after: decodeCursor(cursor), limit: limit + 1 });
      return page(rows.map(mailboxOut), limit, (m) => m.address);
    },
  }),
  defineRoute({
    method: 'post', path: '/mailboxes', operationId: 'createMailboxes', tag, scope: 'mailboxes:write', status: 201, errors: [404, 409],
    summary: 'Create one mailbox or several',
    description: 'Send one mailbox object, or a list of up to 100 (all are created or none). Without a password a strong one is generated and returned once, in this response only.',
    body: MailboxCreateBody, response: z.union([MailboxCreatedSchema, z.array(MailboxCreatedSchema)]),
    handler: async (req) => {
      const items = Array.isArray(req.body) ? req.body : [req.body];
      precheck(req, items);
      const done: Awaited<ReturnType<typeof create>>[] = [];
      try {
        for (const it of items) done.push(await create(req, it));
      } catch (err) {
        for (const m of done) {
          try {
            removeMailbox(req.app, m.id);
          } catch {}
        }
        throw err;
      }
      return { status: 201, data: Array.isArray(req.body) ? done : done[0] };
    },
  }),
  defineRoute({
    method: 'post', path: '/mailboxes/ensure', operationId: 'ensureMailbox', tag, scope: 'mailboxes:write', errors: [404, 409], altStatus: [201],
    summary: 'Get or create a mailbox by address (idempotent)',
    description: 'Answers 200 with the existing mailbox (unchanged) or 201 with a new one (and its generated password, once).',
    body: MailboxCreate, response: MailboxEnsuredSchema,
    handler: async (req) => {
      requireVisibleDomainOf(req, req.body.address);
      const existing = findMailbox(req.app, parseAddress(req.body.address).address);
      if (existing) return { status: 200, data: { ...detail(req, existing), created: false } };
      try {
        return { status: 201, data: { ...(await create(req, req.body)), created: true } };
      } catch (err: any) {
        // Two concurrent ensures: the loser answers with the winner's mailbox.
        const now = err?.code === 'conflict' ? findMailbox(req.app, req.body.address) : null;
        if (now) return { status: 200, data: { ...detail(req, now), created: false } };
        throw err;
      }
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/resolve', operationId: 'resolveAddress', anyThread: true, tag, scope: 'mailboxes:read', errors: [404],
    summary: 'Which mailboxes receive mail for an address',
    description: 'Answered by the inbound path\'s own recipient resolution: the address without its +detail, then its mailbox, its alias (followed to the targets), else the catch-all. 404 when a message to it would be refused (unknown, disabled, alias loop).',
    query: ResolveQuery, response: ResolutionSchema,
    handler: (req) => {
      requireVisibleDomainOf(req, req.query.address);
      // The inbound path's own resolver, so the answer is what an incoming message would get.
      // ensureSecret, not app.srsSecret: this route is `anyThread`, and a worker thread's ThreadContext
      // (db, config, log, clock) has no srsSecret; the secret file is read (created once) per call.
      const r = resolveRecipient(req.app.db, req.query.address, { srsSecret: ensureSecret(req.app.config.data_dir, 'srs'), now: req.app.clock.now() });
      if (!r.ok) throw new LetterboxError(r.reply.responseCode === 553 ? 'validation_error' : 'not_found', `mail for ${req.query.address} would be refused: ${r.reply.enhanced} ${r.reply.text}`);
      const p = parseRecipient(req.query.address) as { local: string; detail: string | null; domain: string };
      const base = `${p.local}@${p.domain}`;
      const via = findMailbox(req.app, base) ? 'mailbox' : findAlias(req.app, base) ? 'alias' : 'catch-all';
      const mailboxes: Mailbox[] = [];
      const external: string[] = [];
      for (const t of r.targets) {
        if (t.kind === 'forward') external.push(t.address);
        else {
          const m = findMailbox(req.app, t.mailboxId);
          if (m && canSeeDomain(req.key, m.domain) && !mailboxes.some((x) => x.id === m.id)) mailboxes.push(m);
        }
      }
      return { data: { address: base, via, detail: p.detail, mailboxes: mailboxes.map(mailboxOut), external } };
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/quota-status', operationId: 'quotaStatus', tag, scope: 'mailboxes:read', list: true, errors: [503],
    summary: 'Usage against quota, from Dovecot',
    description: 'Same filters and pagination as the list. Usage is what Dovecot counts (the numbers IMAP clients and the delivery quota check see).',
    query: MailboxListQuery, response: QuotaStatusSchema,
    handler: async (req) => {
      const { domain, tag: tags, status, search, limit, cursor } = req.query;
      if (req.app.supervisor && !req.app.supervisor.running) throw new LetterboxError('unavailable', 'Dovecot is not running; quota usage is unavailable (see the log)');
      const rows = listMailboxes(req.app, { domain, tags, status, search, domains: keyDomains(req.key) ?? undefined, after: decodeCursor(cursor), limit: limit + 1 });
      const p = page(rows, limit, (m) => m.address);
      const usage = await quotaUsage({ doveadm: req.runtime.doveadm, config: req.app.dovecot.paths.config, users: p.data.map((m) => m.address) });
      return {
        nextCursor: p.nextCursor,
        data: p.data.map((m) => {
          const u = usage.get(m.address);
          return {
            id: m.id,
            address: m.address,
            quotaBytes: m.quotaBytes,
            usedBytes: u ? u.usedBytes : null,
            messages: u ? u.messages : null,
            percent: u && m.quotaBytes > 0 ? Math.round((u.usedBytes / m.quotaBytes) * 10000) / 100 : null,
          };
        }),
      };
    },
  }),
  defineRoute({
    method: 'get', path: '/mailboxes/:id', operationId: 'getMailbox', anyThread: true, tag, scope: 'mailboxes:read',
    summary: 'Get a mailbox (by id or address), with the settings mail clients need',
    params: IdParams, response: MailboxDetailSchema,
    handler: (req) => ({ data: detail(req, visibleMailbox(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'patch', path: '/mailboxes/:id', operationId: 'updateMailbox', tag, scope: 'mailboxes:write',
    summary: 'Change quota, password, tags, or disable/enable',
    description: 'Dovecot applies the change within about a second, without a restart.',
    params: IdParams, body: MailboxPatch, response: MailboxDetailSchema,
    handler: async (req) => {
      const m = visibleMailbox(req, req.params.id);
      return { data: detail(req, await updateMailbox(req.app, m.id, req.body)) };
    },
  }),
  defineRoute({
    method: 'delete', path: '/mailboxes/:id', operationId: 'deleteMailbox', tag, scope: 'mailboxes:write',
    summary: 'Remove a mailbox',
    description: 'Removes its login and address; its stored mail stays on disk and is served again if the mailbox is re-created.',
    params: IdParams, response: MailboxSchema,
    handler: (req) => {
      const m = visibleMailbox(req, req.params.id);
      return { data: mailboxOut(removeMailbox(req.app, m.id)) };
    },
  }),
];
