// Login attempts against a running appliance, for the login-guard tests on Dovecot 2.3
// (test/login-protection.test.ts, test/app-passwords.test.ts) and 2.4 (test/debian13/): one IMAP
// LOGIN, one submission AUTH PLAIN, and a burst of parallel wrong ones from distinct loopback
// addresses (all of 127/8 is loopback, so each address is a client network of its own).
import { connect as tlsConnect } from 'node:tls';
import type { Appliance } from './appliance.ts';
import { RawSmtp } from './smtp-raw.ts';

/** Where to log in: the appliance's ports and the CA its certificate verifies against. */
export interface LoginTarget {
  app: Pick<Appliance, 'ports' | 'hostname'>;
  ca: string;
}

/** One IMAP LOGIN over implicit TLS (from `localAddress` when given); the tagged reply. */
export function imapLogin(t: LoginTarget, user: string, pw: string, localAddress?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: t.app.ports.imap, ca: t.ca, servername: t.app.hostname, ...(localAddress ? { localAddress } : {}) } as any);
    let buf = '';
    let sent = false;
    const timer = setTimeout(() => (s.destroy(), reject(new Error('IMAP: no answer in time'))), 30000);
    s.on('data', (d) => {
      buf += d.toString('utf8');
      if (!sent && /^\* OK/m.test(buf)) {
        sent = true;
        const q = (x: string) => `"${x.replace(/["\\]/g, '\\$&')}"`;
        s.write(`a1 LOGIN ${q(user)} ${q(pw)}\r\n`);
      }
      const m = /^a1 (OK|NO|BAD)\b.*$/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        s.end('a2 LOGOUT\r\n');
        resolve(m[0].trim());
      }
    });
    s.on('error', (err) => (clearTimeout(timer), reject(err)));
  });
}

/** SASL PLAIN's initial response: authzid NUL authcid NUL password, base64. */
export function plainToken(authzid: string, authcid: string, pw: string): string {
  return Buffer.from(`${authzid}\0${authcid}\0${pw}`).toString('base64');
}

/** One submission `AUTH PLAIN <token>` after STARTTLS (from `localAddress` when given); the reply line. */
export async function smtpAuthToken(t: LoginTarget, token: string, localAddress?: string, ehlo = 'guard.example'): Promise<string> {
  const { client, greeting } = await RawSmtp.open(t.app.ports.submission, '127.0.0.1', localAddress);
  try {
    if (greeting?.code !== 220) return greeting?.text ?? 'closed';
    await client.cmd(`EHLO ${ehlo}`);
    await client.starttls(t.ca, t.app.hostname);
    await client.cmd(`EHLO ${ehlo}`);
    const r = await client.cmd(`AUTH PLAIN ${token}`);
    return r?.text ?? 'closed';
  } finally {
    await client.close();
  }
}

/** One submission AUTH PLAIN as `user` (no authzid); the reply line. */
export function smtpAuth(t: LoginTarget, user: string, pw: string, localAddress?: string, ehlo?: string): Promise<string> {
  return smtpAuthToken(t, plainToken('', user, pw), localAddress, ehlo);
}

/**
 * `count` wrong passwords at once ("wrong password 0", "wrong password 1" …), attempt i from the
 * loopback address `${net}${i + 1}` (net like "127.0.41."); the answers in order.
 */
export function parallelWrongLogins(count: number, net: string, attempt: (localAddress: string, wrongPassword: string) => Promise<string>): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => attempt(`${net}${i + 1}`, `wrong password ${i}`)));
}
