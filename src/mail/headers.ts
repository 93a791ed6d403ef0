// The one reader of a message's header section (for DSNs: the original headers and Subject).
import { promises as fsp } from 'node:fs';

/** How much of a message is looked at for its header section. */
export const HEADER_READ_LIMIT = 64 * 1024;

/** The header section of a message (up to the empty line, CRLF or bare LF), without its final line break. */
export function headerSection(message: Buffer): string {
  const text = message.subarray(0, HEADER_READ_LIMIT).toString('utf8');
  const end = text.search(/\r?\n\r?\n/);
  return end >= 0 ? text.slice(0, end) : text.replace(/\r?\n$/, '');
}

/** The same, read from the start of a file (never the whole file). */
export async function readHeaderSection(path: string): Promise<string> {
  const fh = await fsp.open(path, 'r');
  try {
    const buf = Buffer.alloc(HEADER_READ_LIMIT);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return headerSection(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** The (unfolded) value of the first `name` field of a header section; null when absent. */
export function headerValue(section: string, name: string): string | null {
  const esc = name.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  const m = new RegExp(`^${esc}:[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)`, 'im').exec(section);
  return m ? m[1].replace(/\r?\n(?=[ \t])/g, '') : null;
}
