import type { ComponentFactory } from './server.ts';
import { mxComponent } from './smtp/inbound/index.ts';
import { createQueueComponent } from './queue/engine.ts';
import { createSubmissionComponent } from './smtp/submission/server.ts';
import { createInjectComponent } from './smtp/inject/server.ts';
import { apiComponent } from './api/index.ts';
import { acmeComponent } from './tls/acme-component.ts';
import { dailyVerifyComponent } from './doctor/daily.ts';
import { createImapPoolComponent } from './imap/pool.ts';
import { createWebhookComponent } from './webhooks/dispatcher.ts';
import { spamComponent } from './spam/component.ts';
import { dkimJobComponent } from './dkim/job.ts';
import { reportsOutComponent } from './reports/out-job.ts';

/**
 * The components `letterbox serve` runs, in start order (stopped in reverse). Each issue's module
 * adds its factory here: the MX listener, submission listeners, the outbound queue, the API, jobs.
 */
// The IMAP pool comes first so that it closes last (after the API that uses it).
export const components: ComponentFactory[] = [createImapPoolComponent, createQueueComponent, spamComponent, mxComponent, createSubmissionComponent, createInjectComponent, apiComponent, createWebhookComponent, acmeComponent, dailyVerifyComponent,
  dkimJobComponent, reportsOutComponent];
