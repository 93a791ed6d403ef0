import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { LetterboxError } from '../errors.ts';

export interface LmtpRecipientResult {
  recipient: string;
  /** 'delivered': Dovecot stored it; 'tempfail': 4xx, try later; 'permfail': 5xx, it never will. */
  status: 'delivered' | 'tempfail' | 'permfail';
  code: number; // the SMTP/LMTP reply code (250, 452, 550...)
  response: string; // Dovecot's reply line
}

export interface LmtpEnvelope {
  from: string; // '' for the null sender
  /** Recipients as Dovecot should see them: user@domain, or user+Folder@domain to file into Folder. */
  to: string[];
}

/**
 * Hands one message to Dovecot over LMTP (its unix socket) and returns one result per recipient.
 * LMTP answers DATA once per recipient; nodemailer does not throw for those, so every recipient's
 * answer is read from the envelope (NOTES). A connection or protocol failure throws `unavailable`:
 * nothing was stored for any recipient that has no 'delivered' result.
 */
export async function deliverLmtp(socketPath: string, env: LmtpEnvelope, message: Buffer | (() => Readable), opts: { lhlo: string; timeoutMs?: number }): Promise<LmtpRecipientResult[]> {
  if (env.to.length === 0) return [];
  const conn = new (SMTPConnection as any)({
    lmtp: true,
    name: opts.lhlo,
    connection: connect(socketPath),
    ignoreTLS: true,
    connectionTimeout: opts.timeoutMs ?? 30000,
    greetingTimeout: opts.timeoutMs ?? 30000,
    socketTimeout: opts.timeoutMs ?? 120000,
    logger: false,
  });
  const connected = new Promise<void>((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => {
      conn.removeListener('error', reject);
      resolve();
    });
  });
  try {
    await connected;
  } catch (err: any) {
    conn.close();
    throw new LetterboxError('unavailable', `Dovecot LMTP is not reachable (${err.code ?? err.message})`, undefined, { cause: err });
  }
  let info: any;
  try {
    info = await new Promise((resolve, reject) => {
      conn.on('error', reject);
      const body = typeof message === 'function' ? message() : message;
      conn.send({ from: env.from, to: env.to }, body, (err: any, result: any) => {
        if (err && err.code === 'EENVELOPE') resolve({ accepted: [], rejected: err.rejected ?? env.to, rejectedErrors: err.rejectedErrors ?? [err] });
        else if (err) reject(err);
        else resolve(result);
      });
    });
  } catch (err: any) {
    throw new LetterboxError('unavailable', `LMTP delivery to Dovecot failed (${err.response ?? err.code ?? err.message})`, undefined, { cause: err });
  } finally {
    conn.quit();
    conn.close();
  }
  const errors = new Map<string, any>();
  for (const e of info.rejectedErrors ?? []) if (e.recipient) errors.set(e.recipient, e);
  return env.to.map((recipient) => {
    if ((info.accepted ?? []).includes(recipient) && !errors.has(recipient)) {
      return { recipient, status: 'delivered', code: 250, response: '250 2.0.0 stored by Dovecot' };
    }
    const e = errors.get(recipient) ?? (info.rejectedErrors ?? [])[0];
    const response = String(e?.response ?? e?.message ?? 'rejected');
    const code = Number(e?.responseCode) || Number(/^(\d{3})/.exec(response)?.[1]) || 450;
    return { recipient, status: code >= 500 ? 'permfail' : 'tempfail', code, response };
  });
}
