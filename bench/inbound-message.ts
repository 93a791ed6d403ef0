// The inbound benchmarks' message: a ~4 KB multipart/alternative message with a valid DKIM
// signature of SENDER_DOMAIN (bench/inbound.ts, bench/memory.ts).
import { createPrivateKey } from 'node:crypto';
import { dkimSignatures } from '../src/dkim/sign.ts';

export const SENDER_DOMAIN = 'sender.bench.test';

export function makeMessage(privateKeyPem: string, user: string, domain: string): string {
  const para = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\r\n';
  const text = para.repeat(18);
  const html = `<html><body><p>${para.repeat(14)}</p></body></html>\r\n`;
  const unsigned =
    `From: Bench Sender <news@${SENDER_DOMAIN}>\r\nTo: <${user}@${domain}>\r\nSubject: Benchmark message\r\n` +
    `Date: ${new Date().toUTCString()}\r\nMessage-ID: <bench.1@${SENDER_DOMAIN}>\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n` +
    `--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}--b1--\r\n`;
  const sig = dkimSignatures(Buffer.from(unsigned), [{ domain: SENDER_DOMAIN, selector: 'b1', algorithm: 'rsa', key: createPrivateKey(privateKeyPem) }], new Date());
  return sig + unsigned;
}
