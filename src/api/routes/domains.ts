import { LetterboxError } from '../../errors.ts';
import { addDomain, domainRecords, listDomainsPage, removeDomain, setOutbound } from '../../services/domains.ts';
import { addAlias, findAlias, removeAlias } from '../../services/aliases.ts';
import { verifyDomain } from '../../services/verify.ts';
import { normalizeDomain } from '../../util/address.ts';
import { toZone } from '../../dns/records.ts';
import { defineRoute, type RouteSpec } from '../route.ts';
import { canSeeDomain, keyDomains, visibleDomain } from '../access.ts';
import { IdParams, decodeCursor, page } from '../schemas/common.ts';
import { AliasSchema, aliasOut } from '../schemas/aliases.ts';
import {
  CatchAllPut,
  DomainCreate,
  DomainDeleteQuery,
  DomainDnsSchema,
  DomainListQuery,
  DomainSchema,
  DomainWithRecordsSchema,
  VerificationSchema,
  domainOut,
} from '../schemas/domains.ts';

const tag = 'Domains';

export const domainRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/domains', operationId: 'listDomains', anyThread: true, tag, scope: 'domains:read', list: true,
    summary: 'List domains',
    query: DomainListQuery, response: DomainSchema,
    handler: (req) => {
      const { limit, cursor } = req.query;
      const rows = listDomainsPage(req.app, { after: decodeCursor(cursor), limit: limit + 1, names: keyDomains(req.key) });
      return page(rows.map(domainOut), limit, (d) => d.name);
    },
  }),
  defineRoute({
    method: 'post', path: '/domains', operationId: 'createDomain', tag, scope: 'domains:write', status: 201, errors: [409],
    summary: 'Add a domain',
    description: 'Creates two DKIM keys (RSA-2048 and Ed25519) and answers with the DNS records to publish. A domain-restricted key may add only domains in its list.',
    body: DomainCreate, response: DomainWithRecordsSchema,
    handler: async (req) => {
      let name: string;
      try {
        name = normalizeDomain(req.body.name);
      } catch (err: any) {
        throw new LetterboxError('validation_error', `body.name: ${err.message}`, { issues: [{ path: 'body.name', message: err.message }] });
      }
      if (!canSeeDomain(req.key, name)) throw new LetterboxError('forbidden', `this API key is restricted to ${req.key!.domains!.join(', ')}; it cannot add ${name}`);
      const d = await addDomain(req.app, name);
      return { status: 201, data: { ...domainOut(d), records: domainRecords(req.app, d) } };
    },
  }),
  defineRoute({
    method: 'get', path: '/domains/:id', operationId: 'getDomain', anyThread: true, tag, scope: 'domains:read',
    summary: 'Get a domain (by id or name)',
    params: IdParams, response: DomainSchema,
    handler: (req) => ({ data: domainOut(visibleDomain(req, req.params.id)) }),
  }),
  defineRoute({
    method: 'delete', path: '/domains/:id', operationId: 'deleteDomain', tag, scope: 'domains:write', errors: [409],
    summary: 'Remove a domain',
    description: 'Refused (409) while it has mailboxes unless ?force=1, which also removes its mailboxes and aliases. Stored mail stays on disk.',
    params: IdParams, query: DomainDeleteQuery, response: DomainSchema,
    handler: (req) => {
      const d = visibleDomain(req, req.params.id);
      return { data: domainOut(removeDomain(req.app, d.id, { force: !!req.query.force })) };
    },
  }),
  defineRoute({
    method: 'get', path: '/domains/:id/dns', operationId: 'getDomainDns', anyThread: true, tag, scope: 'domains:read',
    summary: 'The DNS records to publish',
    description: 'As JSON records and as a BIND zone-file snippet.',
    params: IdParams, response: DomainDnsSchema,
    handler: (req) => {
      const d = visibleDomain(req, req.params.id);
      const records = domainRecords(req.app, d);
      return { data: { domain: d.name, records, zone: toZone(records) } };
    },
  }),
  defineRoute({
    method: 'post', path: '/domains/:id/verify', operationId: 'verifyDomain', tag, scope: 'domains:write',
    summary: 'Check the published DNS records',
    description:
      'Live lookups through the configured resolvers (no cache): MX points to this server, SPF authorizes its IPs, each DKIM selector is published with the matching key, DMARC is present. Per-record ok flags with the expected and found values.',
    params: IdParams, response: VerificationSchema,
    handler: async (req) => {
      const d = visibleDomain(req, req.params.id);
      return { data: await verifyDomain(req.app, req.runtime.liveResolve, d.id) };
    },
  }),
  ...(['enable', 'suspend'] as const).map((action) =>
    defineRoute({
      method: 'post', path: `/domains/:id/outbound/${action}`, operationId: action === 'enable' ? 'enableOutbound' : 'suspendOutbound', tag, scope: 'domains:write',
      summary: action === 'enable' ? 'Allow outbound mail from the domain' : 'Suspend outbound mail from the domain',
      params: IdParams, response: DomainSchema,
      handler: (req) => {
        const d = visibleDomain(req, req.params.id);
        return { data: domainOut(setOutbound(req.app, d.id, action === 'enable')) };
      },
    }),
  ),
  defineRoute({
    method: 'put', path: '/domains/:id/catch-all', operationId: 'setCatchAll', tag, scope: 'domains:write', errors: [409],
    summary: 'Set the catch-all',
    description: 'Mail for any address of the domain that is neither a mailbox nor an alias goes to the target(s). Replaces an existing catch-all.',
    params: IdParams, body: CatchAllPut, response: AliasSchema,
    handler: (req) => {
      const d = visibleDomain(req, req.params.id);
      const targets = typeof req.body.target === 'string' ? [req.body.target] : req.body.target;
      return { data: aliasOut(addAlias(req.app, `*@${d.name}`, targets, { replace: true })) };
    },
  }),
  defineRoute({
    method: 'delete', path: '/domains/:id/catch-all', operationId: 'deleteCatchAll', tag, scope: 'domains:write',
    summary: 'Remove the catch-all',
    params: IdParams, response: AliasSchema,
    handler: (req) => {
      const d = visibleDomain(req, req.params.id);
      const a = findAlias(req.app, `*@${d.name}`);
      if (!a) throw new LetterboxError('not_found', `domain ${d.name} has no catch-all`);
      return { data: aliasOut(removeAlias(req.app, a.id)) };
    },
  }),
];
