import { LetterboxError } from '../../errors.ts';
import { addAlias, listAliasesPage, removeAlias } from '../../services/aliases.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { keyDomains, requireVisibleDomainOf, visibleAlias, canSeeDomain } from '../access.ts';
import { IdParams, decodeCursor, page } from '../schemas/common.ts';
import { AliasCreate, AliasListQuery, AliasSchema, aliasOut } from '../schemas/aliases.ts';

const tag = 'Aliases';

export const aliasRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/aliases', operationId: 'listAliases', anyThread: true, tag, scope: 'aliases:read', list: true,
    summary: 'List aliases and forwards (catch-alls included, as *@domain)',
    query: AliasListQuery, response: AliasSchema,
    handler: (req) => {
      const { domain, limit, cursor } = req.query;
      if (domain && !canSeeDomain(req.key, domain)) return { data: [], nextCursor: null };
      const rows = listAliasesPage(req.app, { domain, domains: keyDomains(req.key), after: decodeCursor(cursor), limit: limit + 1 });
      return page(rows.map(aliasOut), limit, (a) => a.address);
    },
  }),
  defineRoute({
    method: 'post', path: '/aliases', operationId: 'createAlias', tag, scope: 'aliases:write', status: 201, errors: [404, 409],
    summary: 'Create an alias or forward',
    description: 'address → targets: local mailboxes, other aliases, or external addresses (forwarded). *@domain is the catch-all. 409 if the address is a mailbox or an alias already.',
    body: AliasCreate, response: AliasSchema,
    handler: (req) => {
      requireVisibleDomainOf(req, req.body.address);
      if (req.body.targets.length === 0) throw new LetterboxError('validation_error', 'body.targets: at least one target');
      return { status: 201, data: aliasOut(addAlias(req.app, req.body.address, req.body.targets)) };
    },
  }),
  defineRoute({
    method: 'get', path: '/aliases/:id', operationId: 'getAlias', anyThread: true, tag, scope: 'aliases:read',
    summary: 'Get an alias (by id or address)',
    params: IdParams, response: AliasSchema,
    handler: (req) => ({ data: aliasOut(visibleAlias(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'delete', path: '/aliases/:id', operationId: 'deleteAlias', tag, scope: 'aliases:write',
    summary: 'Remove an alias',
    params: IdParams, response: AliasSchema,
    handler: (req) => {
      const a = visibleAlias(req, req.params.id);
      return { data: aliasOut(removeAlias(req.app, a.id)) };
    },
  }),
];
