import { defineRoute, type RouteSpec } from '../route.ts';
import { visibleDomain } from '../access.ts';
import { IdParams } from '../schemas/common.ts';
import { DkimRotationSchema, DkimStatusSchema } from '../schemas/dkim.ts';
import { rotateDkim, rotationStatus } from '../../dkim/rotate.ts';

const tag = 'Domains';

// DKIM key rotation (issue #18; src/dkim/rotate.ts).
export const dkimRoutes: RouteSpec[] = [
  defineRoute({
    method: 'get', path: '/domains/:id/dkim', operationId: 'getDkimKeys', anyThread: true, tag, scope: 'domains:read',
    summary: 'DKIM keys and where a rotation stands',
    params: IdParams, response: DkimStatusSchema,
    handler: (req) => ({ data: rotationStatus(req.app, visibleDomain(req, req.params.id).id) }),
  }),
  defineRoute({
    method: 'post', path: '/domains/:id/dkim/rotate', operationId: 'rotateDkim', tag, scope: 'domains:write', status: 201, errors: [409],
    summary: 'Start a DKIM key rotation',
    description:
      'Creates the next RSA-2048 and Ed25519 keys under new selectors and answers with their records. Signing switches to them only once a domain verification (POST /domains/{id}/verify, or the daily check) finds both published; the old keys then stay published for dkim.rotation_grace before their private keys are deleted. 409 while an earlier rotation waits for its records. Events: dkim.rotation_started, dkim.rotated, dkim.retired.',
    params: IdParams, response: DkimRotationSchema,
    handler: async (req) => {
      const d = visibleDomain(req, req.params.id);
      return { status: 201, data: await rotateDkim(req.app, d.id) };
    },
  }),
];
