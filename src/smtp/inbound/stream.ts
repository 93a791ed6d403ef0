import { Transform, type TransformCallback } from 'node:stream';
import { canonicalAuthservId, parseAuthResults } from '../../verdicts/auth-results.ts';

/**
 * SMTP smuggling guard for the DATA stream (after smtp-server removed dot-stuffing; smtp-server
 * itself ends DATA only at <CRLF>.<CRLF>). A bare LF, a bare CR or a NUL in the message could be
 * read as a line end (and "<LF>.<LF>" as end-of-data) by another MTA this message passes through
 * later, so:
 *  - 'reject':    any bare LF / bare CR / NUL marks the message bad; the rest is drained, not kept.
 *  - 'normalize': bare LF and bare CR become CRLF (so "<LF>.<LF>" is an ordinary "." line, which
 *                 LMTP/SMTP clients dot-stuff); a NUL still marks the message bad.
 */
export class LineEndingGuard extends Transform {
  bareLf = false;
  bareCr = false;
  nul = false;
  private pendingCr = false;
  private readonly mode: 'reject' | 'normalize';

  constructor(mode: 'reject' | 'normalize') {
    super();
    this.mode = mode;
  }

  get bad(): boolean {
    return this.nul || (this.mode === 'reject' && (this.bareLf || this.bareCr));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.bad) return cb();
    if (chunk.indexOf(0) !== -1) {
      this.nul = true;
      return cb();
    }
    const parts: Buffer[] = [];
    let from = 0;
    let i = 0;
    // A CR at the end of the previous chunk: this chunk must start with LF.
    if (this.pendingCr) {
      this.pendingCr = false;
      if (chunk[0] === 0x0a) i = 1;
      else {
        this.bareCr = true;
        if (this.mode === 'reject') return cb();
        parts.push(Buffer.from('\n'));
      }
    }
    const len = chunk.length;
    for (;;) {
      const lf = chunk.indexOf(0x0a, i);
      const cr = chunk.indexOf(0x0d, i);
      if (lf === -1 && cr === -1) break;
      const pos = cr !== -1 && (lf === -1 || cr < lf) ? cr : lf;
      if (chunk[pos] === 0x0d) {
        if (pos + 1 === len) {
          this.pendingCr = true;
          i = len;
          break;
        }
        if (chunk[pos + 1] === 0x0a) {
          i = pos + 2;
          continue;
        }
        this.bareCr = true;
        if (this.mode === 'reject') return cb();
        parts.push(chunk.subarray(from, pos + 1), Buffer.from('\n'));
        from = i = pos + 1;
      } else {
        // LF not preceded by CR (a CR right before pos would have been consumed as CRLF above,
        // except at the start of the chunk, which the pendingCr check covered).
        this.bareLf = true;
        if (this.mode === 'reject') return cb();
        parts.push(chunk.subarray(from, pos), Buffer.from('\r\n'));
        from = i = pos + 1;
      }
    }
    if (parts.length === 0) return cb(null, chunk);
    parts.push(chunk.subarray(from));
    cb(null, Buffer.concat(parts));
  }

  override _flush(cb: TransformCallback): void {
    if (this.pendingCr && !this.bad) {
      this.bareCr = true;
      if (this.mode === 'normalize') return cb(null, Buffer.from('\n'));
    }
    cb();
  }
}

export interface HeaderInfo {
  from: string | null;
  subject: string | null;
  messageId: string | null;
  /** Authentication-Results headers dropped because they claimed our authserv-id. */
  removedAuthResults: number;
  /** Delivered-To addresses (lower-case): a mailbox's forwarding adds one; the loop guard reads them. */
  deliveredTo: string[];
}

/**
 * Buffers the header section (up to `maxHeaderBytes`), drops Authentication-Results fields that
 * claim our host name as authserv-id (only we may write those), and notes From, Subject and
 * Message-ID. The body passes through untouched.
 */
export class HeaderFilter extends Transform {
  info: HeaderInfo = { from: null, subject: null, messageId: null, removedAuthResults: 0, deliveredTo: [] };
  tooLarge = false;
  private head: Buffer[] = [];
  private headLen = 0;
  private done = false;
  private readonly authservId: string;
  private readonly max: number;

  constructor(authservId: string, maxHeaderBytes = 1024 * 1024) {
    super();
    this.authservId = canonicalAuthservId(authservId);
    this.max = maxHeaderBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.done) return cb(null, chunk);
    if (this.tooLarge) return cb();
    const searchFrom = Math.max(0, this.headLen - 3);
    this.head.push(chunk);
    this.headLen += chunk.length;
    const buf = this.head.length === 1 ? chunk : Buffer.concat(this.head, this.headLen);
    this.head = [buf];
    // The header section ends at the first empty line; a message may also start with it.
    let end = buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a ? 0 : buf.indexOf('\r\n\r\n', searchFrom);
    if (end === -1) {
      if (this.headLen > this.max) {
        this.tooLarge = true;
        this.head = [];
      }
      return cb();
    }
    if (end > 0) end += 2; // keep the CRLF that ends the last field
    this.done = true;
    this.head = [];
    cb(null, Buffer.concat([this.filterSection(buf.subarray(0, end)), buf.subarray(end)]));
  }

  override _flush(cb: TransformCallback): void {
    // A message that is all header section, without the empty line.
    if (!this.done && !this.tooLarge && this.headLen > 0) {
      const buf = Buffer.concat(this.head, this.headLen);
      this.head = [];
      return cb(null, this.filterSection(buf));
    }
    cb();
  }

  private filterSection(section: Buffer): Buffer {
    const text = section.toString('latin1');
    const fields = text.split(/\r\n(?![ \t])/);
    const kept: string[] = [];
    let changed = false;
    for (const f of fields) {
      if (f === '') continue;
      const colon = f.indexOf(':');
      const name = colon > 0 ? f.slice(0, colon).trim().toLowerCase() : '';
      const value = colon > 0 ? f.slice(colon + 1) : '';
      // Only we may write these: an Authentication-Results claiming our authserv-id (any spelling),
      // and the X-Letterbox-Id that keys our stored verdicts (src/verdicts/store.ts).
      if ((name === 'authentication-results' && authservIdOf(value) === this.authservId) || name === 'x-letterbox-id') {
        this.info.removedAuthResults++;
        changed = true;
        continue;
      }
      // Spam headers are ours to write (issue #14): any the message brings are removed first.
      if (name.startsWith('x-spam-')) {
        changed = true;
        continue;
      }
      if (name === 'from' && this.info.from === null) this.info.from = unfold(value);
      else if (name === 'subject' && this.info.subject === null) this.info.subject = unfold(value);
      else if (name === 'message-id' && this.info.messageId === null) this.info.messageId = unfold(value);
      else if (name === 'delivered-to' && this.info.deliveredTo.length < 50) this.info.deliveredTo.push(unfold(value).replace(/^<|>$/g, '').toLowerCase());
      kept.push(f);
    }
    if (!changed) return section;
    return Buffer.from(kept.length ? kept.join('\r\n') + '\r\n' : '', 'latin1');
  }
}

/** The authserv-id of an Authentication-Results value, canonical (RFC 8601 parser: comments, quoting, folding). */
export function authservIdOf(value: string): string {
  return parseAuthResults(Buffer.from(value, 'latin1').toString('utf8')).authservId;
}

// Header values are read as latin1 (byte-preserving); re-decode as UTF-8 for SMTPUTF8 messages.
function unfold(value: string): string {
  return decodeWords(Buffer.from(value, 'latin1').toString('utf8').replace(/\r\n[ \t]+/g, ' ').trim()).slice(0, 998);
}

/** RFC 2047 encoded-words (=?charset?B|Q?...?=) → text, for event data. */
export function decodeWords(s: string): string {
  return s
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([bBqQ])\?([^?]*)\?=/g, (all, charset: string, enc: string, data: string) => {
      try {
        const bytes =
          enc.toUpperCase() === 'B'
            ? Buffer.from(data, 'base64')
            : Buffer.from(data.replace(/_/g, ' ').replace(/=([0-9a-fA-F]{2})/g, (_m, h) => String.fromCharCode(parseInt(h, 16))), 'latin1');
        return new TextDecoder(charset.split('*')[0].trim().toLowerCase()).decode(bytes);
      } catch {
        return all;
      }
    });
}
