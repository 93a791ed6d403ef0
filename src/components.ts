import type { ComponentFactory } from './server.ts';
import { mxComponent } from './smtp/inbound/index.ts';

/**
 * The components `letterbox serve` runs, in start order (stopped in reverse). Each issue's module
 * adds its factory here: the MX listener, submission listeners, the outbound queue, the API, jobs.
 */
export const components: ComponentFactory[] = [mxComponent];
