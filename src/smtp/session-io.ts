// Small pieces the SMTP listeners built on smtp-server share (submission, local injection).
import type { Readable } from 'node:stream';

/** An error smtp-server answers with `code` and `message` as the reply text. */
export function smtpError(message: string, code: number): Error & { responseCode: number } {
  const e = new Error(message) as Error & { responseCode: number };
  e.responseCode = code;
  return e;
}

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
