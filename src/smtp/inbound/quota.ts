import { connect } from 'node:net';
import { SmtpReply, reply } from './replies.ts';

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

/**
 * What the RCPT reply is for Dovecot's probe answer: null = accept, an SmtpReply for a full
 * mailbox (smtp.quota_full_reply decides temporary or permanent), or an Error for anything else
 * (Dovecot not knowing the user yet, an internal error): the caller answers 451.
 */
export function quotaVerdict(a: ProbeAnswer, quotaFullReply: '452' | '552'): null | SmtpReply | Error {
  if (a.code >= 200 && a.code < 300) return null;
  if (a.enhanced === '4.2.2' || a.enhanced === '5.2.2') {
    return quotaFullReply === '552' ? reply(552, '5.2.2', 'Mailbox full') : reply(452, '4.2.2', 'Mailbox full, try again later');
  }
  return new Error(`Dovecot refused RCPT: ${a.code} ${a.enhanced ?? ''} ${a.text}`);
}
