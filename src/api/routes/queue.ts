import { LetterboxError } from '../../errors.ts';
import { Spool } from '../../spool/index.ts';
import { findMailbox } from '../../services/mailboxes.ts';
import { getQueueEntry, listQueue, removeQueueEntry, retryQueue, type QueueEntry } from '../../queue/store.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { canSeeDomain, visibleMailbox } from '../access.ts';
import { decodeCursor, encodeCursor } from '../schemas/common.ts';
import { QueueDetailSchema, QueueEntrySchema, QueueIdParams, QueueListQuery } from '../schemas/ops.ts';
import type { ApiRequest } from '../types.ts';
import type { ThreadContext } from '../../context.ts';

const tag = 'Queue';

/** A domain-restricted key sees the entries of messages sent by mailboxes of its domains. */
function visibleEntry(req: ApiRequest<any, any, any, ThreadContext>, e: QueueEntry): boolean {
  if (!req.key?.domains) return true;
  if (!e.mailboxId) return false;
  const m = findMailbox(req.app, e.mailboxId);
  return !!m && canSeeDomain(req.key, m.domain);
}

function visibleQueueEntry(req: ApiRequest<any, any, any, ThreadContext>, id: string) {
  const e = getQueueEntry(req.app.db, id);
  if (!visibleEntry(req, e)) throw new LetterboxError('not_found', `no queue entry "${id}"; see GET /api/v1/queue`);
  return e;
}

export const queueRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/queue', operationId: 'listQueue', anyThread: true, tag, scope: 'queue:read', list: true,
    summary: 'Outbound queue entries (one per recipient), newest first',
    description: 'Filters: state (repeatable; default queued + inflight), domain (recipient domain), mailbox (sender).',
    query: QueueListQuery, response: QueueEntrySchema,
    handler: (req) => {
      const q = req.query;
      const mailboxId = q.mailbox ? visibleMailbox(req, q.mailbox).id : undefined;
      const r = listQueue(req.app.db, { status: q.state, domain: q.domain, mailboxId, mailboxDomains: req.key?.domains ?? undefined, limit: q.limit, cursor: decodeCursor(q.cursor) ?? null });
      // Filtered in SQL: a page (and its nextCursor) never holds another domain's entry.
      return { data: r.entries.filter((e) => visibleEntry(req, e)), nextCursor: r.nextCursor ? encodeCursor(r.nextCursor) : null };
    },
  }),
  defineRoute({
    method: 'get', path: '/queue/:id', operationId: 'getQueueEntry', anyThread: true, tag, scope: 'queue:read',
    summary: 'A queue entry with every delivery attempt (reply and, for failures, the SMTP transcript)',
    params: QueueIdParams, response: QueueDetailSchema,
    handler: (req) => ({ data: visibleQueueEntry(req, req.params.id) }),
  }),
  defineRoute({
    method: 'post', path: '/queue/:id/retry', operationId: 'retryQueueEntry', tag, scope: 'queue:write', errors: [409],
    summary: 'Make a waiting entry due now',
    description: 'The queue picks it up at its next poll (outbound.poll_interval_ms). 409 if the entry is not waiting for a retry.',
    params: QueueIdParams, response: QueueDetailSchema,
    handler: (req) => {
      visibleQueueEntry(req, req.params.id);
      retryQueue(req.app.db, req.app.clock.now(), { id: req.params.id });
      return { data: getQueueEntry(req.app.db, req.params.id) };
    },
  }),
  defineRoute({
    method: 'delete', path: '/queue/:id', operationId: 'deleteQueueEntry', tag, scope: 'queue:write', errors: [409],
    summary: 'Cancel a waiting entry (no bounce is sent)',
    description: '409 if it is being delivered right now or already final.',
    params: QueueIdParams, response: QueueDetailSchema,
    handler: async (req) => {
      visibleQueueEntry(req, req.params.id);
      const r = removeQueueEntry(req.app.db, req.app.clock.now(), req.params.id);
      if (r.spoolToRemove) await new Spool(req.app.config.data_dir).remove(r.spoolToRemove);
      return { data: r.entry };
    },
  }),
];
