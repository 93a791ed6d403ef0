import { defineRoute, type RouteSpec } from '../route.ts';
import { MeSchema } from '../schemas/meta.ts';

export const meRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/me', operationId: 'getMe', anyThread: true, tag: 'Keys',
    summary: 'The API key making the request',
    description: 'Any valid key may call it (no scope needed). Keys are created, listed and revoked only with the CLI (letterbox key …).',
    response: MeSchema,
    handler: (req) => {
      const k = req.key!;
      return {
        data: { id: k.id, name: k.name, prefix: k.prefix, mode: k.mode, sandbox: k.mode === 'test', scopes: k.scopes, domains: k.domains, createdAt: k.createdAt, expiresAt: k.expiresAt, lastUsedAt: k.lastUsedAt },
      };
    },
  }),
];
