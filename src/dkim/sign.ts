// DKIM signing of outgoing mail (RFC 6376, relaxed/relaxed) with every active key of the signing
// domain: RSA-SHA256 and Ed25519-SHA256 (RFC 8463). From is over-signed: h= names it once more than
// it occurs, so a From header added later breaks the signature.
//
// mailauth 7.1's dkimSign cannot over-sign (its h= lists only the header fields present), so the
// signature is assembled here; the canonicalisation (relaxed body hash, relaxed header lines) is
// mailauth's own code, and tests verify the result with python3-dkim and mailauth's verifier.
import { readFile } from 'node:fs/promises';
import { createHash, createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import type { DB } from '../db/index.ts';
import { stmt } from '../db/stmt.ts';
import type { Logger } from '../log.ts';

const require = createRequire(import.meta.url);
const { dkimBody } = require('mailauth/lib/dkim/body/index.js') as { dkimBody: (c: string, hash: string, max: number | false) => { update(b: Buffer): void; digest(enc: 'base64'): string } };
const { formatRelaxedLine } = require('mailauth/lib/tools.js') as { formatRelaxedLine: (line: Buffer | string, suffix?: string) => Buffer };

/** Header fields signed when present (mailauth's default list). */
export const SIGNED_FIELDS = [
  'from', 'sender', 'reply-to', 'subject', 'date', 'message-id', 'to', 'cc', 'mime-version', 'content-type', 'content-transfer-encoding',
  'content-id', 'content-description', 'resent-date', 'resent-from', 'resent-sender', 'resent-to', 'resent-cc', 'resent-message-id',
  'in-reply-to', 'references', 'list-id', 'list-help', 'list-unsubscribe', 'list-subscribe', 'list-post', 'list-owner', 'list-archive',
];
/** Fields named once more than they occur (an added instance invalidates the signature). */
export const OVERSIGNED_FIELDS = ['from'];

export interface SigningKey {
  domain: string;
  selector: string;
  algorithm: 'rsa' | 'ed25519';
  key: KeyObject;
}

interface Field {
  name: string; // lower-case
  line: Buffer; // raw, folded lines included, without the final CRLF
}

function headerFields(header: Buffer): Field[] {
  const out: Field[] = [];
  const text = header.toString('binary');
  for (const line of text.split(/\r\n(?![ \t])/)) {
    if (!line) continue;
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out.push({ name: line.slice(0, i).trim().toLowerCase(), line: Buffer.from(line, 'binary') });
  }
  return out;
}

/** Folds "DKIM-Signature: tag; tag; ..." at tag boundaries (and inside long h= lists). */
function fold(tags: string[]): string {
  let out = 'DKIM-Signature:';
  let len = out.length;
  for (const [i, t] of tags.entries()) {
    const piece = (i === 0 ? ' ' : ' ') + t + (i < tags.length - 1 ? ';' : '');
    if (len + piece.length > 76 && len > 16) {
      if (t.startsWith('h=') && t.length > 70) {
        // break the header list after colons
        let cur = '\r\n\th=';
        let l = 3;
        for (const [j, n] of t.slice(2).split(':').entries()) {
          const p = (j ? ':' : '') + n;
          if (l + p.length > 72) {
            cur += '\r\n\t' + p;
            l = p.length;
          } else {
            cur += p;
            l += p.length;
          }
        }
        out += cur + (i < tags.length - 1 ? ';' : '');
        len = l + 1;
        continue;
      }
      out += '\r\n\t' + piece.trimStart();
      len = piece.length;
    } else {
      out += piece;
      len += piece.length;
    }
  }
  return out;
}

/** Returns the DKIM-Signature header lines (each ending in CRLF) for `message` (CRLF line ends). */
export function dkimSignatures(message: Buffer, keys: SigningKey[], now: Date): string {
  return signingJobs(message, keys, now)
    .map((j) => j.finish(j.key.algorithm === 'rsa' ? cryptoSign('sha256', j.data, j.key.key) : cryptoSign(null, createHash('sha256').update(j.data).digest(), j.key.key)))
    .join('');
}

/**
 * The same, with the private-key operations (RSA-2048: ~1 ms each) run on libuv's thread pool
 * instead of the main thread, which then keeps serving other sessions meanwhile.
 */
export async function dkimSignaturesAsync(message: Buffer, keys: SigningKey[], now: Date): Promise<string> {
  const jobs = signingJobs(message, keys, now);
  const sigs = await Promise.all(
    jobs.map(
      (j) =>
        new Promise<Buffer>((resolve, reject) => {
          const cb = (err: Error | null, sig: Buffer) => (err ? reject(err) : resolve(sig));
          if (j.key.algorithm === 'rsa') cryptoSign('sha256', j.data, j.key.key, cb);
          else cryptoSign(null, createHash('sha256').update(j.data).digest(), j.key.key, cb);
        }),
    ),
  );
  return jobs.map((j, i) => j.finish(sigs[i])).join('');
}

interface SigningJob {
  key: SigningKey;
  /** What the key signs: the signed header lines and the DKIM-Signature header with an empty b=. */
  data: Buffer;
  /** The complete header (CRLF-terminated) once the signature is known. */
  finish(sig: Buffer): string;
}

function signingJobs(message: Buffer, keys: SigningKey[], now: Date): SigningJob[] {
  if (keys.length === 0) return [];
  let sep = message.indexOf('\r\n\r\n');
  const header = sep >= 0 ? message.subarray(0, sep + 2) : message;
  const body = sep >= 0 ? message.subarray(sep + 4) : Buffer.alloc(0);
  const hasher = dkimBody('relaxed', 'sha256', false);
  hasher.update(body);
  const bh = hasher.digest('base64');
  const fields = headerFields(header);
  // Instances are taken from the bottom up (RFC 6376 5.4.2), which is how verifiers pair them.
  const h: string[] = [];
  const lines: Buffer[] = [];
  for (const name of SIGNED_FIELDS) {
    const inst = fields.filter((f) => f.name === name);
    for (let i = inst.length - 1; i >= 0; i--) {
      h.push(name);
      lines.push(formatRelaxedLine(inst[i].line, '\r\n'));
    }
    if (OVERSIGNED_FIELDS.includes(name)) h.push(name);
  }
  const signed = Buffer.concat(lines);
  const t = Math.floor(now.getTime() / 1000);
  return keys.map((k) => {
    const a = k.algorithm === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256';
    const tags = ['v=1', `a=${a}`, 'c=relaxed/relaxed', `d=${k.domain}`, `s=${k.selector}`, `t=${t}`, `h=${h.join(':')}`, `bh=${bh}`, 'b='];
    const unsigned = fold(tags);
    const data = Buffer.concat([signed, formatRelaxedLine(Buffer.from(unsigned, 'binary'))]);
    return {
      key: k,
      data,
      finish(sig: Buffer) {
        const b64 = sig.toString('base64');
        let folded = unsigned;
        for (let i = 0; i < b64.length; i += 72) folded += (i ? '\r\n\t' : '') + b64.slice(i, i + 72);
        return folded + '\r\n';
      },
    };
  });
}

interface KeyRow {
  selector: string;
  algorithm: 'rsa' | 'ed25519';
  private_key_path: string;
}

/** Signs with the domain's active keys from the database; key files are read once, asynchronously. */
export class DkimSigner {
  private db: DB;
  private log: Logger;
  private keys = new Map<string, Promise<KeyObject>>();
  constructor(db: DB, log: Logger) {
    this.db = db;
    this.log = log;
  }

  private key(path: string): Promise<KeyObject> {
    let p = this.keys.get(path);
    if (!p) {
      p = readFile(path, 'utf8').then((pem) => createPrivateKey(pem));
      p.catch(() => this.keys.delete(path));
      this.keys.set(path, p);
    }
    return p;
  }

  /** The DKIM-Signature lines for `message`; '' when `domain` has no active keys (not ours). */
  async signatures(domain: string, message: Buffer, now: Date): Promise<string> {
    const rows = stmt(this.db, 'SELECT k.selector, k.algorithm, k.private_key_path FROM dkim_keys k JOIN domains d ON d.id = k.domain_id WHERE d.name = ? AND k.active = 1 ORDER BY k.algorithm DESC')
      .all(domain) as KeyRow[];
    const keys: SigningKey[] = [];
    for (const r of rows) {
      try {
        keys.push({ domain, selector: r.selector, algorithm: r.algorithm, key: await this.key(r.private_key_path) });
      } catch (err: any) {
        this.log.error({ domain, selector: r.selector, err: err.message }, 'DKIM key unreadable; message sent without this signature');
      }
    }
    return dkimSignaturesAsync(message, keys, now);
  }

  async sign(domain: string, message: Buffer, now: Date): Promise<Buffer> {
    const sig = await this.signatures(domain, message, now);
    return sig ? Buffer.concat([Buffer.from(sig, 'binary'), message]) : message;
  }

  /** Signed with the keys of the first of `domains` that has active keys; unchanged when none has. */
  async signWithFirst(domains: string[], message: Buffer, now: Date): Promise<Buffer> {
    for (const d of domains) {
      const sig = await this.signatures(d, message, now);
      if (sig) return Buffer.concat([Buffer.from(sig, 'binary'), message]);
    }
    return message;
  }
}
