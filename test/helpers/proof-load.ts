// Load generators for the chaos test and the benchmarks: SMTP clients that behave like a real MTA
// (retry on 4xx and on a lost connection, give up on 5xx) and keep a ledger of every message that
// got a final 250, so that a later check can prove none of them was lost.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImapFlow } from 'imapflow';
import { RawSmtp, authPlain } from './proof-smtp.ts';

export interface Acked {
  token: string;
  kind: 'mx' | 'submission';
  /** Where it must end up: a local mailbox address, or 'sink' for a remote recipient. */
  dest: string;
}

export class Ledger {
  acked: Acked[] = [];
  /** Messages refused with 5xx (a real MTA would bounce them): token, code, text. */
  permanent: { token: string; code: number; text: string }[] = [];
  /** Every 4xx reply seen (any stage) and every connection lost or refused mid-transaction. */
  temporary = 0;
  connectionErrors = 0;
  /** Replies seen, by code (e.g. { 250: 120, 451: 3 }). */
  codes: Record<number, number> = {};
  attempts = 0;
  count(code: number) {
    this.codes[code] = (this.codes[code] ?? 0) + 1;
  }
}

export interface Target {
  port: number;
  /** 465-style implicit TLS with AUTH (submission), else plain MX. */
  submission?: { user: string; pass: string; ca: string };
}

export function token(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`;
}

/** A 4 KB-ish multipart message carrying the token in Message-ID, Subject and body. */
export function message(tok: string, from: string, to: string): string {
  const filler = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n'.repeat(20);
  return (
    `From: <${from}>\r\nTo: <${to}>\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@proof.example>\r\nDate: ${new Date().toUTCString()}\r\n` +
    `MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b-${tok}"\r\n\r\n` +
    `--b-${tok}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${tok}\r\n${filler}\r\n` +
    `--b-${tok}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>${tok}</p>\r\n${filler}\r\n--b-${tok}--\r\n`
  );
}

type Outcome = { ok: true } | { ok: false; permanent: boolean; code?: number; text?: string };

async function attempt(t: Target, from: string, to: string, body: string, ledger: Ledger): Promise<Outcome> {
  let c: RawSmtp | null = null;
  const check = (r: { code: number; text: string }, want: number): Outcome | null => {
    ledger.count(r.code);
    if (r.code === want) return null;
    if (r.code >= 400 && r.code < 500) ledger.temporary++;
    return { ok: false, permanent: r.code >= 500, code: r.code, text: r.text };
  };
  try {
    c = t.submission
      ? await RawSmtp.connect(t.port, { tls: true, ca: t.submission.ca, timeoutMs: 10000 })
      : await RawSmtp.connect(t.port, { timeoutMs: 10000 });
    let bad = check(await c.read(20000), 220);
    if (bad) return { ok: false, permanent: false, code: (bad as any).code, text: (bad as any).text }; // a 554 greeting is a busy server, not a verdict
    if ((bad = check(await c.cmd('EHLO load.proof.example', 20000), 250))) return bad;
    if (t.submission && (bad = check(await c.cmd(authPlain(t.submission.user, t.submission.pass), 20000), 235))) return bad;
    if ((bad = check(await c.cmd(`MAIL FROM:<${from}>`, 20000), 250))) return bad;
    if ((bad = check(await c.cmd(`RCPT TO:<${to}>`, 20000), 250))) return bad;
    if ((bad = check(await c.data(body, { timeoutMs: 60000 }), 250))) return bad;
    c.quit().catch(() => {});
    c = null;
    return { ok: true };
  } catch {
    ledger.connectionErrors++;
    return { ok: false, permanent: false };
  } finally {
    c?.close();
  }
}

/**
 * Sends one message like an MTA: retries (after a short pause) on 4xx or a lost connection until
 * `deadline`; records it as acked only on a final 250.
 */
export async function sendReliably(t: Target, from: string, to: string, dest: string, tok: string, ledger: Ledger, deadline: number): Promise<'acked' | 'refused' | 'gave-up'> {
  const body = message(tok, from, to);
  while (Date.now() < deadline) {
    ledger.attempts++;
    const o = await attempt(t, from, to, body, ledger);
    if (o.ok) {
      ledger.acked.push({ token: tok, kind: t.submission ? 'submission' : 'mx', dest });
      return 'acked';
    }
    if (o.permanent) {
      ledger.permanent.push({ token: tok, code: o.code ?? 0, text: o.text ?? '' });
      return 'refused';
    }
    await sleep(150 + Math.random() * 250);
  }
  return 'gave-up';
}

/** Sends one message once (no retry): the reply code, or 0 for a lost connection. Acked → ledger. */
export async function sendOnce(t: Target, from: string, to: string, dest: string, tok: string, ledger: Ledger): Promise<number> {
  ledger.attempts++;
  const o = await attempt(t, from, to, message(tok, from, to), ledger);
  if (o.ok) {
    ledger.acked.push({ token: tok, kind: t.submission ? 'submission' : 'mx', dest });
    return 250;
  }
  return o.code ?? 0;
}

/** Every message token (from Message-ID / Subject) in every folder of a mailbox, with counts. */
export async function mailboxTokens(opts: { port: number; ca: string; user: string; pass: string }): Promise<Map<string, number>> {
  const client = new ImapFlow({ host: '127.0.0.1', port: opts.port, secure: true, tls: { ca: opts.ca, servername: 'localhost' }, auth: { user: opts.user, pass: opts.pass }, logger: false });
  client.on('error', () => {});
  const out = new Map<string, number>();
  await client.connect();
  try {
    for (const box of await client.list()) {
      const lock = await client.getMailboxLock(box.path);
      try {
        if ((client.mailbox as any)?.exists === 0) continue;
        for await (const m of client.fetch('1:*', { envelope: true })) {
          const tok = String(m.envelope?.subject ?? m.envelope?.messageId ?? '');
          out.set(tok, (out.get(tok) ?? 0) + 1);
        }
      } finally {
        lock.release();
      }
    }
  } finally {
    await client.logout().catch(() => {});
  }
  return out;
}

export interface Tally {
  acked: number;
  found: number;
  lost: string[];
  duplicates: number;
}

/** Compares a ledger with what arrived: tokens per mailbox, and the sink's received messages. */
export function tally(ledger: Ledger, mailboxes: Map<string, Map<string, number>>, sinkCount: (tok: string) => number): Tally {
  const lost: string[] = [];
  let duplicates = 0;
  let found = 0;
  for (const a of ledger.acked) {
    const n = a.dest === 'sink' ? sinkCount(a.token) : (mailboxes.get(a.dest)?.get(a.token) ?? 0);
    if (n === 0) lost.push(`${a.kind}→${a.dest} ${a.token}`);
    else {
      found++;
      duplicates += n - 1;
    }
  }
  return { acked: ledger.acked.length, found, lost, duplicates };
}
