import { randomBytes } from 'node:crypto';

/**
 * An SMTP reply chosen by Letterbox: code, enhanced status code (RFC 3463) and text. Thrown or
 * passed to smtp-server's callbacks; the MX server's connection class writes the enhanced code we
 * chose instead of smtp-server's default for the numeric code (see server.ts).
 */
export class SmtpReply extends Error {
  readonly responseCode: number;
  readonly enhanced: string;
  readonly text: string;
  /** Reference id for internal failures, also in the log line. */
  readonly ref: string | null;
  constructor(code: number, enhanced: string, text: string, ref: string | null = null) {
    super(`${enhanced} ${text}${ref ? ` (ref ${ref})` : ''}`);
    this.name = 'SmtpReply';
    this.responseCode = code;
    this.enhanced = enhanced;
    this.text = text;
    this.ref = ref;
  }
  get temporary(): boolean {
    return this.responseCode >= 400 && this.responseCode < 500;
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
