// Micro-benchmark of the shared accept path alone (what SMTP submission and the API's send run after
// the protocol layer): sender checks, caps, fix-ups, DKIM (RSA + Ed25519), spool fsync, queue rows
// and events committed. In process, no sockets, no delivery (the queue is kept from scheduling), so
// the CPU figure (process.cpuUsage: main thread + thread pool) moves much less with other load on
// the machine than the end-to-end benchmarks do. Wall time still depends on the disk (fsyncs).
//   node bench/hotpath.ts [--messages 3000] [--concurrency 20] [--rounds 3]
import { mkdtempSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../src/server.ts';
import { loadConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/log.ts';
import { createQueueComponent, type Queue } from '../src/queue/engine.ts';
import { addDomain } from '../src/services/domains.ts';
import { addMailbox } from '../src/services/mailboxes.ts';
import { acceptOutbound } from '../src/submit/accept.ts';
import { freePort } from '../test/helpers/appliance.ts';
import { arg } from './lib.ts';

const N = Number(arg('messages', '3000'));
const CONC = Number(arg('concurrency', '20'));
const ROUNDS = Number(arg('rounds', '3'));

const dir = mkdtempSync(join(tmpdir(), 'lbb-hot-'));
chmodSync(dir, 0o755);
const p = async () => `127.0.0.1:${await freePort()}`;
writeFileSync(
  join(dir, 'letterbox.toml'),
  `hostname = "mail.bench.test"
data_dir = "${join(dir, 'data')}"
[listen]
mx = ["${await p()}"]
submission = []
submissions = []
imap = ["${await p()}"]
api = "${await p()}"
[tls]
cert = "${join(dir, 'cert.pem')}"
key = "${join(dir, 'key.pem')}"
[dns]
servers = ["127.0.0.1:9"]
[dovecot]
managed = false
[submission]
max_messages_per_hour = 0
max_recipients_per_day = 0
`,
);
const config = loadConfig({ path: join(dir, 'letterbox.toml') });
const server = await startServer({ config, log: silentLogger(), clock: { now: () => Date.now() }, components: [createQueueComponent] });
try {
  const queue = server.app.queue as Queue;
  (queue as any).wake = () => {}; // accept path only: nothing is scheduled for delivery
  await addDomain(server.app, 'bench.test');
  const { mailbox } = await addMailbox(server.app, { address: 'user@bench.test', password: 'bench password 123' });
  const para = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\r\n';
  const message = Buffer.from(`From: user@bench.test\r\nTo: rcpt@remote.bench.test\r\nSubject: hot path\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${para.repeat(45)}`);
  const one = () =>
    acceptOutbound(server.app, {
      mailbox: { id: mailbox.id, address: mailbox.address, domain: mailbox.domain },
      message,
      envelope: { from: 'user@bench.test', to: ['rcpt@remote.bench.test'] },
      origin: 'submission',
      client: { ip: '127.0.0.1', helo: 'bench', tls: null },
    });
  const round = async (n: number) => {
    let next = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CONC }, async () => {
      while (next < n) {
        next++;
        const r = await one();
        if (r.accepted.length !== 1) throw new Error(JSON.stringify(r));
      }
    }));
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { messages: n, 'msg/s': Math.round(n / (ms / 1000)), 'CPU ms/msg': ((c.user + c.system) / 1000 / n).toFixed(3) };
  };
  await round(Math.min(300, N)); // warm-up (JIT, key files)
  console.log(`# accept path, ${CONC} concurrent, load average before ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (let i = 0; i < ROUNDS; i++) console.log(JSON.stringify(await round(N)));
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
