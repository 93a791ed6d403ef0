import type { DB } from '../db/index.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import type { Clock } from '../clock.ts';

/** What the service layer needs; the CLI and the API both build one and share every service. */
export interface ServiceContext {
  db: DB;
  config: Config;
  log: Logger;
  clock: Clock;
}
