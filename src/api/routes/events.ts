import { defineRoute, type RouteSpec } from '../route.ts';
import { keyDomains, visibleDomain, visibleMailbox } from '../access.ts';
import { decodeCursor, page } from '../schemas/common.ts';
import { EventListQuery, EventSchema } from '../schemas/ops.ts';
import type { EventRow } from '../../webhooks/dispatcher.ts';

const tag = 'Events';

export const eventRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/events', operationId: 'listEvents', anyThread: true, tag, scope: 'events:read', list: true,
    summary: 'The message tracking log',
    description: 'message.received, message.queued, message.delivered, message.deferred, message.bounced, message.suppressed, message.blocked_outbound, domain.verified, domain.verification_failed. Filters: type (repeatable), mailbox, domain, since. Newest first by default; order=asc follows the log oldest first.',
    query: EventListQuery, response: EventSchema,
    handler: (req) => {
      const q = req.query;
      const where: string[] = [];
      const args: unknown[] = [];
      if (q.type?.length) (where.push(`type IN (${q.type.map(() => '?').join(',')})`), args.push(...q.type));
      if (q.mailbox) (where.push('mailbox_id = ?'), args.push(visibleMailbox(req, q.mailbox).id));
      if (q.domain) (where.push('domain = ?'), args.push(visibleDomain(req, q.domain).name));
      if (q.since) (where.push('created_at >= ?'), args.push(new Date(q.since).toISOString()));
      const domains = keyDomains(req.key);
      if (domains) (where.push(`domain IN (${domains.map(() => '?').join(',') || "''"})`), args.push(...domains));
      const after = decodeCursor(q.cursor);
      if (after) (where.push(q.order === 'asc' ? 'id > ?' : 'id < ?'), args.push(Number(after)));
      const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id ${q.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
      const rows = req.app.db.prepare(sql).all(...args, q.limit + 1) as EventRow[];
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
