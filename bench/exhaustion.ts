// Exhaustion: 1,000 idle MX connections (from 50 loopback addresses, 20 each) plus slowloris
// senders (one byte every second), then a legitimate sender from another address: how fast is it
// answered, and with what? Run once with the default limits and once with max_connections raised.
//   node bench/exhaustion.ts [--idle 1000] [--slow 20]
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDns } from '../test/helpers/dns.ts';
import { RawSmtp } from '../test/helpers/proof-smtp.ts';
import { message } from '../test/helpers/proof-load.ts';
import { machine, table, arg, rssKb } from './lib.ts';
import { letterboxStack } from './stacks.ts';

const IDLE = Number(arg('idle', '1000'));
const SLOW = Number(arg('slow', '20'));

function opener(port: number, localAddress: string): Promise<{ sock: Socket; first: string }> {
  return new Promise((res) => {
    const sock = connect({ host: '127.0.0.1', port, localAddress });
    sock.setEncoding('latin1');
    sock.on('error', () => {});
    let first = '';
    sock.once('data', (d: string) => {
      first = d.slice(0, 3);
      res({ sock, first });
    });
    sock.once('close', () => res({ sock, first: first || 'closed' }));
    setTimeout(() => res({ sock, first: first || 'none' }), 5000);
  });
}

async function scenario(name: string, toml: string) {
  const dns = await new TestDns().start();
  const stack = await letterboxStack({ dnsServer: dns.server, domain: 'bench.test', user: 'user', smtpToml: toml });
  const port = stack.app.ports.mx;
  const socks: Socket[] = [];
  const codes: Record<string, number> = {};
  try {
    const opens = [];
    for (let i = 0; i < IDLE; i++) opens.push(opener(port, `127.0.0.${2 + Math.floor(i / 20)}`));
    for (const o of await Promise.all(opens)) {
      socks.push(o.sock);
      codes[o.first] = (codes[o.first] ?? 0) + 1;
    }
    // Slowloris: valid start of a command, one byte per second, from their own addresses.
    const slow: Socket[] = [];
    for (let i = 0; i < SLOW; i++) {
      const s = connect({ host: '127.0.0.1', port, localAddress: `127.0.1.${1 + i}` });
      s.on('error', () => {});
      slow.push(s);
    }
    const line = 'EHLO slow.example\r\nMAIL FROM:<slow@example.org>\r\n';
    let k = 0;
    const drip = setInterval(() => {
      for (const s of slow) s.write(line[k % line.length]);
      k++;
    }, 1000);
    await sleep(2000);
    // The legitimate sender, from its own address.
    const t0 = performance.now();
    let greeting = '';
    let greetMs = 0;
    let final = '';
    let totalMs = 0;
    try {
      const c = await RawSmtp.connect(port, { timeoutMs: 30000 });
      const g = await c.read(30000);
      greetMs = performance.now() - t0;
      greeting = `${g.code}`;
      if (g.code === 220) {
        await c.cmd('EHLO legit.example');
        await c.cmd('MAIL FROM:<legit@example.org>');
        await c.cmd('RCPT TO:<user@bench.test>');
        const d = await c.data(message('legit', 'legit@example.org', 'user@bench.test'));
        final = `${d.code}`;
      }
      totalMs = performance.now() - t0;
      await c.quit();
    } catch (err: any) {
      greeting ||= err.message;
    }
    clearInterval(drip);
    for (const s of slow) s.destroy();
    return {
      scenario: name,
      'idle connections: first reply': Object.entries(codes).map(([c, n]) => `${n}× ${c}`).join(', '),
      'legit greeting': `${greeting} after ${greetMs.toFixed(0)} ms`,
      'legit DATA reply': final ? `${final} after ${totalMs.toFixed(0)} ms` : '-',
      'Node RSS MB': Math.round(rssKb(stack.app.process.pid!) / 1024),
    };
  } finally {
    for (const s of socks) s.destroy();
    await stack.stop();
    await dns.stop();
  }
}

console.log(`# exhaustion benchmark — ${machine()}`);
const rows = [];
rows.push(await scenario('defaults (max_connections 200, per IP 20)', '[smtp]\nmax_connections = 200\nmax_connections_per_ip = 20\n'));
console.log(JSON.stringify(rows.at(-1)));
rows.push(await scenario('max_connections 2000, per IP 20', '[smtp]\nmax_connections = 2000\nmax_connections_per_ip = 20\n'));
console.log(JSON.stringify(rows.at(-1)));
console.log('\n' + table(rows));
