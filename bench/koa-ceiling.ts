// The ceiling the API's framework sets on this machine: a bare Koa + @koa/router app (no auth, no
// database, no logging) answering the same shapes as the API's list (50 mailboxes, ~15 KB of JSON)
// and get (one mailbox) routes, loaded exactly like bench/api-load.ts loads Letterbox (wrk, one
// thread, 50 connections, no think time unless --think). Whatever the API does per request comes on
// top of these figures.
// --threads N serves from N worker threads of the one process, each listening on the port with
// SO_REUSEPORT (the kernel spreads the connections): what more threads would buy on this machine.
//   node bench/koa-ceiling.ts [--seconds 10] [--connections 50] [--think MS] [--threads 1]
import { spawn } from 'node:child_process';
import { Worker, isMainThread } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { arg, machine, runWrk, table } from './lib.ts';

const SECONDS = Number(arg('seconds', '10'));
const CONNECTIONS = Number(arg('connections', '50'));
const THINK = Number(arg('think', '0'));
const PORT = 18000 + Math.floor(Math.random() * 1000);

const THREADS = Number(arg('threads', '1'));

if (process.argv.includes('--serve') && isMainThread && THREADS > 1) {
  let ready = 0;
  for (let i = 0; i < THREADS; i++)
    new Worker(new URL(import.meta.url), { argv: process.argv.slice(2) }).on('message', () => {
      if (++ready === THREADS) console.log('ready');
    });
} else if (process.argv.includes('--serve')) {
  const { default: Koa } = await import('koa');
  const { default: Router } = await import('@koa/router');
  const mailbox = (i: number) => ({
    id: `mbx_${'abcdefghijklmnop'.slice(0, 12)}${String(i).padStart(4, '0')}`,
    address: `u${i}@bench.test`,
    domain: 'bench.test',
    domainId: 'dom_abcdefghijklmnop',
    quotaBytes: 0,
    disabled: false,
    status: 'active',
    tags: i % 10 ? [] : ['team'],
    createdAt: '2026-11-23T04:00:00.000Z',
    updatedAt: '2026-11-23T04:00:00.000Z',
  });
  const koa = new Koa();
  const router = new Router();
  router.get('/api/v1/mailboxes', (ctx) => {
    ctx.body = { data: Array.from({ length: 50 }, (_, i) => mailbox(i)), nextCursor: 'dTUwQGJlbmNoLnRlc3Q' };
  });
  router.get('/api/v1/mailboxes/:id', (ctx) => {
    ctx.body = { data: { ...mailbox(1), address: ctx.params.id, smtpHost: 'mail.bench.test', imapHost: 'mail.bench.test', submissionPort: 587, imapPort: 993 } };
  });
  koa.use(router.routes());
  koa.listen({ port: Number(arg('port', '0')), host: '127.0.0.1', reusePort: true }, async () => {
    if (isMainThread) console.log('ready');
    else (await import('node:worker_threads')).parentPort!.postMessage('ready');
  });
} else {
  console.log(`# bare Koa ceiling — ${machine()}`);
  const child = spawn(process.execPath, [import.meta.filename, '--serve', '--port', String(PORT), '--threads', String(THREADS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => child.stdout!.once('data', () => res()));
  const rows: Record<string, string>[] = [];
  try {
    await sleep(200);
    for (const [what, path] of [
      ['bare Koa: list of 50 (shape of GET /mailboxes?limit=50)', '/api/v1/mailboxes'],
      ['bare Koa: one mailbox (shape of GET /mailboxes/{address})', '/api/v1/mailboxes/u1@bench.test'],
    ]) {
      const url = `http://127.0.0.1:${PORT}${path}`;
      runWrk(url, { connections: CONNECTIONS, seconds: 2, thinkMs: THINK }); // warm-up
      const r = runWrk(url, { connections: CONNECTIONS, seconds: SECONDS, thinkMs: THINK });
      const row = { what, 'req/s': String(Math.round(r.rps)), p50: `${r.p50} ms`, p90: `${r.p90} ms`, p99: `${r.p99} ms`, note: `wrk, ${CONNECTIONS} connections${THINK ? `, think time ${THINK} ms` : ''}${THREADS > 1 ? `, ${THREADS} server threads` : ''}` };
      console.log(JSON.stringify(row));
      rows.push(row);
    }
  } finally {
    child.kill();
  }
  console.log('\n' + table(rows));
}
