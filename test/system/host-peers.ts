// The host side of the system suite (test/system/run.sh): what the containers' Letterbox talks to
// on the host's loopback (the containers share the host's network).
//   - a DNS server (test/helpers/dns.ts): sink.test's MX is mx.sink.test = 127.0.0.1; every other
//     name answers NXDOMAIN at once (no lookups leave the machine, no timeouts);
//   - an SMTP sink on a reserved port, started only on SIGUSR1 (until then the MX is unreachable:
//     outbound mail for sink.test waits in the queue); each message received is written to OUT_DIR.
// Usage: node test/system/host-peers.ts STATE_JSON OUT_DIR  (writes {dnsServer, sinkPort} to STATE_JSON)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { TestDns } from '../helpers/dns.ts';
import { freePort } from '../helpers/appliance.ts';

const [stateFile, outDir] = process.argv.slice(2);
if (!stateFile || !outDir) {
  console.error('usage: host-peers.ts STATE_JSON OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const dns = await new TestDns().start();
dns.mx('sink.test', 'mx.sink.test').a('mx.sink.test', '127.0.0.1');
const sinkPort = await freePort();
let n = 0;
let sink: SMTPServer | null = null;

function startSink(): void {
  if (sink) return;
  sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    onData: (stream, session, cb) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const to = session.envelope.rcptTo.map((r) => r.address).join(',');
        writeFileSync(join(outDir, `${String(++n).padStart(4, '0')}.eml`), `X-Sink-Rcpt: ${to}\r\n` + Buffer.concat(chunks).toString('latin1'));
        cb();
      });
    },
  });
  sink.on('error', (e) => console.error('sink:', e.message));
  sink.listen(sinkPort, '127.0.0.1', () => console.error(`host-peers: sink listening on 127.0.0.1:${sinkPort}`));
}

process.on('SIGUSR1', startSink);
process.on('SIGTERM', () => {
  dns.stop().finally(() => process.exit(0));
  sink?.close();
});
writeFileSync(stateFile, JSON.stringify({ dnsServer: dns.server, sinkPort }));
console.error(`host-peers: DNS ${dns.server}, sink port ${sinkPort} (closed until SIGUSR1)`);
