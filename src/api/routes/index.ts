import type { RouteSpec } from '../route.ts';
import { systemRoutes } from './system.ts';
import { meRoutes } from './me.ts';
import { domainRoutes } from './domains.ts';
import { mailboxRoutes } from './mailboxes.ts';
import { aliasRoutes } from './aliases.ts';

/**
 * Every route of the API, in registration order (static paths such as /mailboxes/resolve before
 * /mailboxes/:id). A new resource adds its file's list here.
 */
export const allRoutes: RouteSpec[] = [...systemRoutes, ...meRoutes, ...domainRoutes, ...mailboxRoutes, ...aliasRoutes];
