import { LetterboxError } from '../../errors.ts';
import { addSuppression, listSuppressions, removeSuppression, type Suppression } from '../../queue/store.ts';
import { parseAddress } from '../../util/address.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { canSeeDomain, visibleDomain } from '../access.ts';
import { decodeCursor, page } from '../schemas/common.ts';
import { SuppressionCreate, SuppressionDeleteQuery, SuppressionListQuery, SuppressionParams, SuppressionSchema } from '../schemas/ops.ts';

const tag = 'Suppressions';

function checkedAddress(where: string, a: string): string {
  try {
    return parseAddress(a).address;
  } catch (err: any) {
    throw new LetterboxError('validation_error', `${where}: ${err.message}`);
  }
}

export const suppressionRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/suppressions', operationId: 'listSuppressions', anyThread: true, tag, scope: 'suppressions:read', list: true,
    summary: 'Suppressed recipients, per sending domain',
    description: 'Recipients that hard-bounced (or were added by hand): sends to them from that domain are refused per recipient (550).',
    query: SuppressionListQuery, response: SuppressionSchema,
    handler: (req) => {
      const { domain, limit, cursor } = req.query;
      const d = domain ? visibleDomain(req, domain).name : undefined;
      const after = decodeCursor(cursor);
      const rows = listSuppressions(req.app.db, d)
        .filter((s) => canSeeDomain(req.key, s.domain))
        .filter((s) => !after || `${s.domain} ${s.address}` > after);
      return page(rows.slice(0, limit + 1), limit, (s: Suppression) => `${s.domain} ${s.address}`);
    },
  }),
  defineRoute({
    method: 'post', path: '/suppressions', operationId: 'addSuppression', tag, scope: 'suppressions:write', status: 201, errors: [409],
    summary: 'Suppress a recipient for a sending domain',
    body: SuppressionCreate, response: SuppressionSchema,
    handler: (req) => {
      const d = visibleDomain(req, req.body.domain).name;
      const address = checkedAddress('body.address', req.body.address);
      const createdAt = new Date(req.app.clock.now()).toISOString();
      if (!addSuppression(req.app.db, { domain: d, address, reason: req.body.reason ?? 'manual', createdAt })) {
        throw new LetterboxError('conflict', `${address} is already suppressed for ${d}`);
      }
      return { status: 201, data: listSuppressions(req.app.db, d).find((s) => s.address === address)! };
    },
  }),
  defineRoute({
    method: 'delete', path: '/suppressions/:address', operationId: 'removeSuppression', tag, scope: 'suppressions:write',
    summary: 'Stop suppressing a recipient',
    description: 'From the list of ?domain=, or from every list the key can see. 404 if it was not suppressed.',
    params: SuppressionParams, query: SuppressionDeleteQuery, response: SuppressionSchema.array(),
    handler: (req) => {
      const address = checkedAddress('path.address', req.params.address);
      const only = req.query.domain ? visibleDomain(req, req.query.domain).name : null;
      const hits = listSuppressions(req.app.db, only ?? undefined).filter((s) => s.address === address && canSeeDomain(req.key, s.domain));
      if (!hits.length) throw new LetterboxError('not_found', `${address} is not suppressed${only ? ` for ${only}` : ''}`);
      for (const s of hits) removeSuppression(req.app.db, s.domain, s.address);
      return { data: hits };
    },
  }),
];
