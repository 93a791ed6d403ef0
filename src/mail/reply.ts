import { randomBytes } from 'node:crypto';
import { isLetterboxError } from '../errors.ts';

/**
 * The one SMTP reply shape: code, enhanced status code (RFC 3463) and text. Every listener (MX,
 * submission, local injection) throws it or passes it to smtp-server's callbacks (smtp-server
 * answers `responseCode` and `message`, which is "<enhanced> <text>"); the MX server's connection
 * class writes the enhanced code we chose instead of smtp-server's default for the numeric code
 * (see src/smtp/inbound/server.ts). Replies read from elsewhere (Dovecot's LMTP answers, a
 * rejected recipient of the submission path) become one with parseReply. `enhanced` is '' only
 * for a reply read without one.
 */
export class SmtpReply extends Error {
  readonly responseCode: number;
  readonly enhanced: string;
  readonly text: string;
  /** Reference id for internal failures, also in the log line. */
  readonly ref: string | null;
  constructor(code: number, enhanced: string, text: string, ref: string | null = null) {
    super(`${enhanced ? `${enhanced} ` : ''}${text}${ref ? ` (ref ${ref})` : ''}`);
    this.name = 'SmtpReply';
    this.responseCode = code;
    this.enhanced = enhanced;
    this.text = text;
    this.ref = ref;
  }
  get temporary(): boolean {
    return this.responseCode >= 400 && this.responseCode < 500;
  }
  /** The reply as one line: "550 5.4.6 Alias loop detected". */
  get line(): string {
    return `${this.responseCode} ${this.message}`;
  }
}

export const reply = (code: number, enhanced: string, text: string) => new SmtpReply(code, enhanced, text);

/** A short id that ties a temporary failure reply to its log line. */
export function newRef(): string {
  return randomBytes(5).toString('hex').toUpperCase();
}

/** The one answer for any internal failure: retry later, quoting the reference. */
export function internalFailure(ref: string = newRef()): SmtpReply {
  return new SmtpReply(451, '4.3.0', 'Temporary local problem, please try again later', ref);
}

const REPLY_LINE = /^(\d{3})[ -](?:([245]\.\d{1,3}\.\d{1,3}) )?(.*)$/s;

/**
 * A reply read as text ("550 5.1.1 <a@b> User unknown", as Dovecot or a remote server answers), or
 * null when the text does not start with a reply code. The enhanced code is '' when absent.
 */
export function parseReply(line: string): SmtpReply | null {
  const m = REPLY_LINE.exec(line);
  return m ? new SmtpReply(Number(m[1]), m[2] ?? '', m[3]) : null;
}

/**
 * A code and its reply text ("5.7.1 <x@y> is on the suppression list..."), the form of a rejected
 * recipient of the submission path (src/submit/accept.ts, also the API's `rejected[]`), as a reply.
 */
export function replyOf(code: number, text: string): SmtpReply {
  return parseReply(`${code} ${text}`) ?? new SmtpReply(code, '', text);
}

/**
 * The reply for an error of the accept path: a LetterboxError that names its SMTP answer
 * (details.smtp = "553 5.7.1") is answered with it and its message; payload_too_large is 552 5.3.4;
 * null for anything else (the caller answers with a temporary failure).
 */
export function replyForError(err: unknown): SmtpReply | null {
  if (err instanceof SmtpReply) return err;
  if (!isLetterboxError(err)) return null;
  const m = /^(\d{3}) (\d\.\d+\.\d+)/.exec(String((err.details as any)?.smtp ?? ''));
  if (m) return new SmtpReply(Number(m[1]), m[2], err.message);
  if (err.code === 'payload_too_large') return new SmtpReply(552, '5.3.4', err.message);
  return null;
}
