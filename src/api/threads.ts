import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.ts';
import type { Config } from '../config/schema.ts';
import { LetterboxError } from '../errors.ts';
import type { SharedBuckets } from './app.ts';
import type { FromWorker, ToWorker, WorkerData } from './worker.ts';

/**
 * The API worker threads (api.threads): each listens on listen.api with SO_REUSEPORT and serves
 * the read routes that need only the database (`anyThread`), so list and get requests are spread
 * over several cores; everything else reaches the main thread through them (src/api/forward.ts).
 * The token buckets are shared memory, the log lines and the API metrics are gathered here.
 * A worker that dies is started again after a second.
 */
export class ApiThreads {
  private readonly workers = new Map<number, Worker>();
  private readonly opts: { count: number; config: Config; buckets: SharedBuckets; socketPath: string; log: Logger; write: (text: string) => void };
  private stopping = false;
  private nextId = 1;
  private readonly waiting = new Map<number, (data: unknown) => void>();

  constructor(opts: ApiThreads['opts']) {
    this.opts = opts;
  }

  async start(): Promise<void> {
    try {
      await Promise.all(Array.from({ length: this.opts.count }, (_, i) => this.spawn(i)));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private spawn(index: number): Promise<void> {
    const { config, buckets, socketPath, log } = this.opts;
    const data: WorkerData = { config, buckets, socketPath, index };
    const worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: data });
    this.workers.set(index, worker);
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'log') this.opts.write(m.text);
        else if (m.type === 'ready') {
          ready = true;
          resolve();
        } else if (m.type === 'listen_failed') {
          reject(new LetterboxError('unavailable', m.message));
        } else if (m.type === 'metrics') {
          this.waiting.get(m.id)?.(m.data);
          this.waiting.delete(m.id);
        }
      });
      worker.on('error', (err) => {
        log.error({ component: 'api', apiThread: index, err: err.message, stack: err.stack }, 'API thread failed');
        if (!ready) reject(new LetterboxError('internal_error', `the API thread failed to start: ${err.message}`));
      });
      worker.on('exit', (code) => {
        if (this.workers.get(index) === worker) this.workers.delete(index);
        if (!ready) reject(new LetterboxError('internal_error', `the API thread exited with ${code} before listening`));
        else if (!this.stopping) {
          log.error({ component: 'api', apiThread: index, code }, 'API thread exited; starting it again in 1 s');
          setTimeout(() => {
            if (!this.stopping) this.spawn(index).catch((err) => log.error({ component: 'api', apiThread: index, err: err.message }, 'API thread did not start again'));
          }, 1000).unref();
        }
      });
    });
  }

  /** Each worker's API metrics (prom-client JSON), for /metrics to add to the main thread's. */
  metrics(): Promise<unknown[]> {
    return Promise.all(
      [...this.workers.values()].map(
        (w) =>
          new Promise<unknown>((resolve) => {
            const id = this.nextId++;
            const timer = setTimeout(() => {
              this.waiting.delete(id);
              resolve([]); // a worker that does not answer in time: its counts are missing from this scrape
            }, 2000);
            this.waiting.set(id, (data) => {
              clearTimeout(timer);
              resolve(data);
            });
            w.postMessage({ type: 'metrics', id } satisfies ToWorker);
          }),
      ),
    );
  }

  /** Each worker stops accepting, finishes what it has in flight (bounded) and exits. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.workers.values()].map(
        (w) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => void w.terminate(), 7000);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            w.postMessage({ type: 'stop' } satisfies ToWorker);
          }),
      ),
    );
  }
}
