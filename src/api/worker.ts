// Entry point of an API worker thread (started by src/api/threads.ts): serves the API listener
// beside the other API threads (SO_REUSEPORT: the kernel spreads connections over them), answers
// routes marked `anyThread` from its own database connection, and hands every other request to
// the main thread.
import { parentPort, workerData } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { systemClock } from '../clock.ts';
import type { Config } from '../config/schema.ts';
import { dbPath, openDatabase } from '../db/index.ts';
import { createLogger } from '../log.ts';
import { defineApiMetrics } from '../metrics/index.ts';
import type { ThreadContext } from '../context.ts';
import { buildApi, type SharedBuckets } from './app.ts';
import { forwarder } from './forward.ts';
import { apiHttpServer, apiListenAddress, listen } from './http-server.ts';
import { allRoutes } from './routes/index.ts';

export interface WorkerData {
  config: Config;
  buckets: SharedBuckets;
  socketPath: string;
  index: number;
}

export type ToWorker = { type: 'metrics'; id: number } | { type: 'stop' };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'listen_failed'; message: string }
  | { type: 'log'; text: string }
  | { type: 'metrics'; id: number; data: unknown };

const port = parentPort!;
const { config, buckets, socketPath, index } = workerData as WorkerData;
const send = (m: FromWorker) => port.postMessage(m);

// Log lines go to the main thread, which writes them with its own: two threads writing one pipe
// could interleave parts of lines. Batched for up to 20 ms (or 64 KB): one message, one wake-up of
// the main thread and one write per batch rather than per request, which at a few thousand
// requests a second was ~20 % of the CPU a request costs.
const LOG_BATCH_MS = 20;
const LOG_BATCH_BYTES = 64 * 1024;
let pending = '';
let logTimer: NodeJS.Timeout | undefined;
const destination = {
  write(line: string) {
    pending += line;
    if (pending.length >= LOG_BATCH_BYTES) flushLog();
    else logTimer ??= setTimeout(flushLog, LOG_BATCH_MS);
  },
};
// A worker that dies (even of an uncaught exception) still hands over what it had batched.
process.on('exit', () => flushLog());
function flushLog(): void {
  if (logTimer) clearTimeout(logTimer);
  logTimer = undefined;
  if (!pending) return;
  send({ type: 'log', text: pending });
  pending = '';
}

const log = createLogger({ level: config.log.level, destination }).child({ apiThread: index });
// The main thread has migrated the database; a worker only opens it.
const db = openDatabase(dbPath(config.data_dir), { log, clock: systemClock, migrations: [] });
// Routes answered here (anyThread) get a ThreadContext: the database, config, clock and log only.
// Everything else is the main thread's, and the compiler refuses a route that reaches for it.
const app: ThreadContext = { db, config, log, clock: systemClock };

const registry = new Registry();
const relay = forwarder(socketPath);
const { koa } = buildApi({ thread: 'worker', app, buckets, forward: relay.forward, metrics: defineApiMetrics(registry) }, allRoutes);

const http = apiHttpServer(koa.callback());
const { host, port: listenPort, where } = apiListenAddress(config);
listen(http.server, where, { port: listenPort, host, reusePort: true }).then(
  () => send({ type: 'ready' }),
  (err: Error) => send({ type: 'listen_failed', message: err.message }),
);

port.on('message', async (m: ToWorker) => {
  if (m.type === 'metrics') {
    send({ type: 'metrics', id: m.id, data: await registry.getMetricsAsJSON() });
  } else if (m.type === 'stop') {
    await http.close();
    relay.close();
    db.close();
    flushLog();
    port.close();
  }
});
