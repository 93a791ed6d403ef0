// Small pieces the SMTP listeners built on smtp-server share (submission, local injection); their
// replies are the one SMTP reply shape, src/mail/reply.ts.
import type { Readable } from 'node:stream';

/** The whole DATA stream, or null when it went over `max` bytes (the rest is read and dropped). */
export async function readAll(stream: Readable & { sizeExceeded?: boolean }, max: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += c.length;
    if (size <= max) chunks.push(c);
  }
  return stream.sizeExceeded || size > max ? null : Buffer.concat(chunks);
}
