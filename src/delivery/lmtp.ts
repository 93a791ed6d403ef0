import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { LetterboxError } from '../errors.ts';
import { reply } from '../mail/reply.ts';

const STORED = reply(250, '2.0.0', 'stored by Dovecot').line;

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

function openConnection(socketPath: string, lhlo: string, timeoutMs?: number): Promise<any> {
  const conn = new (SMTPConnection as any)({
    lmtp: true,
    name: lhlo,
    connection: connect(socketPath),
    ignoreTLS: true,
    connectionTimeout: timeoutMs ?? 30000,
    greetingTimeout: timeoutMs ?? 30000,
    socketTimeout: timeoutMs ?? 120000,
    logger: false,
  });
  return new Promise((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => {
      conn.removeListener('error', reject);
      // An idle pooled connection that fails (Dovecot restarted, idle timeout) is simply dropped.
      conn.on('error', () => {});
      resolve(conn);
    });
  }).catch((err: any) => {
    conn.close();
    throw new LetterboxError('unavailable', `Dovecot LMTP is not reachable (${err.code ?? err.message})`, undefined, { cause: err });
  });
}

/**
 * Keeps a few LMTP sessions to Dovecot open between messages, so a message costs MAIL/RCPT/DATA and
 * not a connect, greeting and LHLO each time (and Dovecot keeps its lmtp process). nodemailer's
 * smtp-pool does this for SMTP but not for LMTP over a unix socket, hence this small pool.
 */
export class LmtpPool {
  private idle: { conn: any; uses: number; timer: NodeJS.Timeout }[] = [];
  private closed = false;
  readonly socketPath: string;
  readonly lhlo: string;
  private readonly max: number;
  private readonly idleMs: number;
  private readonly maxUses: number;
  constructor(o: { socketPath: string; lhlo: string; max?: number; idleMs?: number; maxUses?: number }) {
    this.socketPath = o.socketPath;
    this.lhlo = o.lhlo;
    this.max = o.max ?? 8;
    this.idleMs = o.idleMs ?? 10_000;
    this.maxUses = o.maxUses ?? 200;
  }

  /** A session ready for MAIL FROM: an idle one (reused: true) or a new one. */
  async acquire(timeoutMs?: number): Promise<{ conn: any; uses: number; reused: boolean }> {
    while (this.idle.length) {
      const it = this.idle.pop()!;
      clearTimeout(it.timer);
      if (!it.conn._destroyed && !it.conn._closing) return { conn: it.conn, uses: it.uses, reused: true };
    }
    return { conn: await openConnection(this.socketPath, this.lhlo, timeoutMs), uses: 0, reused: false };
  }

  /** Returns a session after a completed transaction; closes it when the pool is full or it is worn. */
  release(conn: any, uses: number): void {
    if (this.closed || conn._destroyed || this.idle.length >= this.max || uses >= this.maxUses) return quit(conn);
    const timer = setTimeout(() => {
      this.idle = this.idle.filter((x) => x.conn !== conn);
      quit(conn);
    }, this.idleMs);
    timer.unref();
    this.idle.push({ conn, uses, timer });
  }

  close(): void {
    this.closed = true;
    for (const it of this.idle) {
      clearTimeout(it.timer);
      quit(it.conn);
    }
    this.idle = [];
  }
}

function quit(conn: any): void {
  try {
    conn.quit();
  } catch {
    /* already gone */
  }
  conn.close();
}

function sendOnce(conn: any, env: LmtpEnvelope, body: Buffer | Readable): Promise<any> {
  return new Promise((resolve, reject) => {
    const onError = (err: any) => reject(err);
    conn.once('error', onError);
    conn.send({ from: env.from, to: env.to }, body, (err: any, result: any) => {
      conn.removeListener('error', onError);
      if (err && err.code === 'EENVELOPE') resolve({ accepted: [], rejected: err.rejected ?? env.to, rejectedErrors: err.rejectedErrors ?? [err], envelopeRefused: true });
      else if (err) reject(err);
      else resolve(result);
    });
  });
}

/**
 * Hands one message to Dovecot over LMTP (its unix socket) and returns one result per recipient.
 * LMTP answers DATA once per recipient; nodemailer does not throw for those, so every recipient's
 * answer is read from the envelope (NOTES). A connection or protocol failure throws `unavailable`:
 * nothing was stored for any recipient that has no 'delivered' result. With a `pool`, a session is
 * reused; if a reused session turns out dead before DATA was sent (nothing can have been stored),
 * the message goes once more over a new connection.
 */
export async function deliverLmtp(
  socketPath: string,
  env: LmtpEnvelope,
  message: Buffer | (() => Readable),
  opts: { lhlo: string; timeoutMs?: number; pool?: LmtpPool },
): Promise<LmtpRecipientResult[]> {
  if (env.to.length === 0) return [];
  const pool = opts.pool && opts.pool.socketPath === socketPath ? opts.pool : null;
  let info: any;
  for (let attempt = 0; ; attempt++) {
    const got = pool && attempt === 0 ? await pool.acquire(opts.timeoutMs) : { conn: await openConnection(socketPath, opts.lhlo, opts.timeoutMs), uses: 0, reused: false };
    const { conn } = got;
    try {
      info = await sendOnce(conn, env, typeof message === 'function' ? message() : message);
    } catch (err: any) {
      quit(conn);
      const beforeData = err?.command !== 'DATA' && !/^DATA|^\./.test(String(err?.command ?? ''));
      if (got.reused && beforeData && attempt === 0) continue;
      throw new LetterboxError('unavailable', `LMTP delivery to Dovecot failed (${err.response ?? err.code ?? err.message})`, undefined, { cause: err });
    }
    if (!pool) quit(conn);
    else if (info.envelopeRefused) {
      // Every recipient refused at RCPT: RSET before the session serves another message.
      conn.reset((e: any) => (e ? quit(conn) : pool.release(conn, got.uses + 1)));
    } else pool.release(conn, got.uses + 1);
    break;
  }
  const errors = new Map<string, any>();
  for (const e of info.rejectedErrors ?? []) if (e.recipient) errors.set(e.recipient, e);
  return env.to.map((recipient) => {
    if ((info.accepted ?? []).includes(recipient) && !errors.has(recipient)) {
      return { recipient, status: 'delivered', code: 250, response: STORED };
    }
    const e = errors.get(recipient) ?? (info.rejectedErrors ?? [])[0];
    const response = String(e?.response ?? e?.message ?? 'rejected');
    const code = Number(e?.responseCode) || Number(/^(\d{3})/.exec(response)?.[1]) || 450;
    return { recipient, status: code >= 500 ? 'permfail' : 'tempfail', code, response };
  });
}

export interface ProbeAnswer {
  code: number;
  enhanced: string | null;
  text: string;
}

/**
 * Asks Dovecot whether it would take mail for `address` now, without sending any: one pipelined
 * LMTP exchange (LHLO, MAIL FROM:<>, RCPT TO, QUIT) on its unix socket. Dovecot has
 * `lmtp_rcpt_check_quota = yes`, so a mailbox that is already over quota is refused here
 * (452 4.2.2, or 552 5.2.2 when smtp.quota_full_reply = "552"). Used only for mailboxes that have
 * a quota (unlimited ones cannot be full). Rejects when Dovecot cannot be reached.
 *
 * Written by hand rather than with nodemailer's SMTPConnection (which carries every other LMTP
 * exchange here): its public API only runs whole transactions (MAIL, RCPT, DATA) and has no way to
 * stop after RCPT, and sending a DATA to learn the RCPT answer would store mail. This is four
 * pipelined lines and one reply parse.
 */
export function probeRecipient(socketPath: string, address: string, opts: { lhlo: string; timeoutMs?: number }): Promise<ProbeAnswer> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    const replies: string[] = [];
    let buf = '';
    let sent = false;
    let settled = false;
    const finish = (err: Error | null, value?: ProbeAnswer) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    sock.setTimeout(opts.timeoutMs ?? 10000, () => finish(new Error('LMTP probe timed out')));
    sock.on('error', (err) => finish(err));
    sock.on('close', () => finish(new Error('LMTP connection closed early')));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (/^\d{3}-/.test(line)) continue; // continuation of a multi-line reply
        replies.push(line);
        if (replies.length === 1) {
          if (!line.startsWith('220')) return finish(new Error(`LMTP greeting: ${line}`));
          if (!sent) {
            sent = true;
            sock.write(`LHLO ${opts.lhlo}\r\nMAIL FROM:<>\r\nRCPT TO:<${address}>\r\nQUIT\r\n`);
          }
        }
        // greeting, LHLO, MAIL, RCPT
        if (replies.length === 4) {
          const m = /^(\d{3})[ -](?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)$/.exec(line);
          if (!m) return finish(new Error(`unexpected LMTP reply: ${line}`));
          if (!replies[2].startsWith('250')) return finish(new Error(`LMTP MAIL refused: ${replies[2]}`));
          return finish(null, { code: Number(m[1]), enhanced: m[2] ?? null, text: m[3] });
        }
      }
    });
  });
}
