import { defineRoute, type RouteSpec } from '../route.ts';
import { keyDomains, visibleDomain, visibleMailbox } from '../access.ts';
import { decodeCursor, page } from '../schemas/common.ts';
import { EventListQuery, EventSchema } from '../schemas/ops.ts';
import { listEvents } from '../../events/record.ts';

const tag = 'Events';

export const eventRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/events', operationId: 'listEvents', anyThread: true, tag, scope: 'events:read', list: true,
    summary: 'The message tracking log',
    description: 'message.received, message.queued, message.delivered, message.deferred, message.bounced, message.suppressed, message.blocked_outbound, domain.verified, domain.verification_failed, dkim.rotation_started, dkim.rotated, dkim.retired (DKIM key rotation), report.sent (a DMARC or TLS report queued to another domain). Filters: type (repeatable), mailbox, domain, since. Newest first by default; order=asc follows the log oldest first.',
    query: EventListQuery, response: EventSchema,
    handler: (req) => {
      const q = req.query;
      const after = decodeCursor(q.cursor);
      const rows = listEvents(req.app.db, {
        types: q.type,
        mailboxId: q.mailbox ? visibleMailbox(req, q.mailbox).id : undefined,
        domain: q.domain ? visibleDomain(req, q.domain).name : undefined,
        since: q.since ? new Date(q.since).toISOString() : undefined,
        domains: keyDomains(req.key),
        after: after ? Number(after) : undefined,
        order: q.order === 'asc' ? 'asc' : 'desc',
        limit: q.limit + 1,
      });
      const items = rows.map((r) => {
        let data: Record<string, unknown> = {};
        try {
          data = JSON.parse(r.data);
        } catch {}
        return { id: `evt_${r.id}`, type: r.type, createdAt: r.created_at, mailboxId: r.mailbox_id, domain: r.domain, messageId: r.message_id, data, _n: r.id };
      });
      const p = page(items, q.limit, (e) => String(e._n));
      return { data: p.data.map(({ _n, ...e }) => e), nextCursor: p.nextCursor };
    },
  }),
];
