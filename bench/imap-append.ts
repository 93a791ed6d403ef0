// The IMAP appender (src/imap/append.ts) alone: how many messages a second one Dovecot session stores
// for concurrent callers (what the API's Sent copies ride on), and how many APPEND commands carried them.
// Usage: node bench/imap-append.ts [--messages 2000] [--concurrency 20] [--size 4000]
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { ImapAppender } from '../src/imap/append.ts';
import { startAppliance, applianceImapLogin, doveadm } from '../test/helpers/appliance.ts';
import { waitFor } from '../test/helpers/mailapi.ts';
import { machine } from './lib.ts';

const { values: o } = parseArgs({ options: { messages: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '20' }, size: { type: 'string', default: '4000' } } });
const N = Number(o.messages);
const C = Number(o.concurrency);
console.log(`# IMAP appender benchmark — ${machine()}`);
const app = await startAppliance();
try {
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', 'alice@ours.test', '--password', 'alice password 12345']);
  await waitFor(async () => (await doveadm(app, ['user', 'alice@ours.test'])).code === 0, 'Dovecot to know the mailbox');
  const a = new ImapAppender(applianceImapLogin(app));
  const line = 'Hello from the benchmark, a line of an ordinary message body.\r\n';
  const msg = Buffer.from(`From: alice@ours.test\r\nTo: someone@remote.test\r\nSubject: benchmark\r\n\r\n${line.repeat(Math.ceil(Number(o.size) / line.length))}`);
  for (let i = 0; i < 20; i++) await a.append('alice@ours.test', 'Sent', msg, ['\\Seen']); // warm-up
  execFileSync('sync');
  const commands0 = a.appendCommands;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next++ < N) await a.append('alice@ours.test', 'Sent', msg, ['\\Seen']);
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  console.log(`${N} messages of ${msg.length} bytes from ${C} concurrent callers, one session: ${(N / secs).toFixed(0)} messages/s in ${a.appendCommands - commands0} APPEND commands (${a.logins} login)`);
  await a.close();
} finally {
  await app.stop();
  app.cleanup();
}
