// Header fix-ups of submitted messages (pure): Message-ID and Date when missing, Bcc removed, a
// Received header on top. Only the header block is touched; the body is passed through as bytes.
import addressparser from 'nodemailer/lib/addressparser';
import { rfc5322Date } from '../mail/date.ts';

export interface HeaderField {
  name: string; // lower-case
  raw: string; // the field as it appears, folded lines included, with its line ending
}

/** Splits at the first empty line. A message without one is all header. */
export function splitMessage(msg: Buffer): { header: string; body: Buffer } {
  let i = msg.indexOf('\r\n\r\n');
  let sep = 4;
  const j = msg.indexOf('\n\n');
  if (j >= 0 && (i < 0 || j < i)) (i = j), (sep = 2);
  if (i < 0) return { header: msg.toString('utf8'), body: Buffer.alloc(0) };
  return { header: msg.subarray(0, i + sep / 2).toString('utf8'), body: msg.subarray(i + sep) };
}

export function parseHeader(header: string): HeaderField[] {
  const out: HeaderField[] = [];
  for (const line of header.split(/(?<=\n)/)) {
    if (line === '' || line === '\r\n' || line === '\n') continue;
    if ((line[0] === ' ' || line[0] === '\t') && out.length) out[out.length - 1].raw += line;
    else out.push({ name: line.slice(0, Math.max(0, line.indexOf(':'))).trim().toLowerCase(), raw: line.endsWith('\n') ? line : line + '\r\n' });
  }
  return out;
}

export function headerValue(f: HeaderField): string {
  return f.raw.slice(f.raw.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim();
}

/** The addresses in the From header fields (lower-cased as written; empty when there is none). */
export function fromAddresses(fields: HeaderField[]): string[] {
  const out: string[] = [];
  for (const f of fields.filter((x) => x.name === 'from')) {
    const walk = (list: any[]) => {
      for (const a of list) {
        if (a.group) walk(a.group);
        else if (a.address) out.push(String(a.address));
      }
    };
    walk(addressparser(headerValue(f)) as any[]);
  }
  return out;
}

export interface FixupInput {
  message: Buffer;
  received: string; // the Received header value (without "Received: ")
  now: Date;
  /** Used when Message-ID is missing: <random@domain>. */
  newMessageId: () => string;
}

export interface FixupResult {
  message: Buffer;
  messageId: string;
  from: string[];
  headers: HeaderField[];
}

export function applyFixups(i: FixupInput): FixupResult {
  // Bare-LF messages (some scripts) are normalised to CRLF, as SMTP and DKIM expect.
  const raw = i.message.includes('\r\n') ? i.message : Buffer.from(i.message.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
  const { header, body } = splitMessage(raw);
  let fields = parseHeader(header).filter((f) => f.name !== 'bcc' && f.name !== 'x-letterbox-id'); // X-Letterbox-Id keys the MX's stored verdicts: only the MX writes it
  let messageIdField = fields.find((f) => f.name === 'message-id');
  let messageId = messageIdField ? headerValue(messageIdField) : '';
  const add: HeaderField[] = [];
  if (!messageId) {
    messageId = i.newMessageId();
    add.push({ name: 'message-id', raw: `Message-ID: ${messageId}\r\n` });
  }
  if (!fields.some((f) => f.name === 'date')) add.push({ name: 'date', raw: `Date: ${rfc5322Date(i.now)}\r\n` });
  fields = [{ name: 'received', raw: `Received: ${i.received}\r\n` }, ...fields, ...add];
  const headText = fields.map((f) => f.raw).join('');
  return { message: Buffer.concat([Buffer.from(headText + '\r\n', 'utf8'), body]), messageId, from: fromAddresses(fields), headers: fields };
}
