import type { Config } from './config/schema.ts';
import type { Logger } from './log.ts';
import { systemClock } from './clock.ts';
import { startServer } from './server.ts';
import { components } from './components.ts';
import { readyBanner } from './banner.ts';

/** `letterbox serve`: runs until SIGTERM/SIGINT, then stops gracefully and exits 0 (within 10 s). */
export async function serve(config: Config, log: Logger, opts: { banner?: (text: string) => void } = {}): Promise<void> {
  log.info({ config: config.source, dataDir: config.data_dir, hostname: config.hostname }, 'starting');
  const server = await startServer({ config, log, clock: systemClock, components });
  log.info({ listen: config.listen, dataDir: config.data_dir }, 'letterbox ready');
  opts.banner?.(readyBanner(config, { dovecotSeries: server.app.dovecot.series, relocatedTo: server.app.dovecot.relocatedTo }));
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      const hard = setTimeout(() => {
        log.error('shutdown took longer than 10 s; exiting');
        process.exit(1);
      }, 10000);
      hard.unref();
      server.stop().then(
        () => {
          log.info('stopped');
          resolve();
        },
        (err) => {
          log.error({ err: err.message }, 'error during shutdown');
          resolve();
        },
      );
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
  });
}
