import type { RouteSpec } from '../route.ts';
import { systemRoutes } from './system.ts';
import { meRoutes } from './me.ts';
import { domainRoutes } from './domains.ts';
import { mailboxRoutes } from './mailboxes.ts';
import { selfServiceRoutes } from './selfservice.ts';
import { aliasRoutes } from './aliases.ts';
import { sendRoutes } from './send.ts';
import { messageRoutes } from './messages.ts';
import { queueRoutes } from './queue.ts';
import { suppressionRoutes } from './suppressions.ts';
import { eventRoutes } from './events.ts';
import { webhookRoutes } from './webhooks.ts';
import { metricsRoutes } from './metrics.ts';
import { spamRoutes } from './spam.ts';
import { reportRoutes } from './reports.ts';
import { dkimRoutes } from './dkim.ts';

/**
 * Every route of the API, in registration order (static paths such as /mailboxes/resolve before
 * /mailboxes/:id). A new resource adds its file's list here.
 */
export const allRoutes: RouteSpec[] = [...systemRoutes, ...meRoutes, ...domainRoutes, ...mailboxRoutes, ...selfServiceRoutes, ...aliasRoutes,
  ...sendRoutes, ...messageRoutes, ...queueRoutes, ...suppressionRoutes, ...eventRoutes, ...webhookRoutes, ...metricsRoutes, ...spamRoutes,
  ...reportRoutes, ...dkimRoutes];
