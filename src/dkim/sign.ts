// DKIM signing of outgoing mail with every active key of the sending domain (RSA and Ed25519),
// relaxed/relaxed, through mailauth's dkimSign. Keys are read once (asynchronously) and cached.
import { readFile } from 'node:fs/promises';
import { dkimSign } from 'mailauth';
import type { DB } from '../db/index.ts';
import type { Logger } from '../log.ts';

interface KeyRow {
  selector: string;
  algorithm: 'rsa' | 'ed25519';
  private_key_path: string;
}

// Header fields signed (mailauth's default set). From is always signed.
const HEADER_LIST =
  'From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding:Content-ID:Content-Description:Resent-Date:Resent-From:Resent-Sender:Resent-To:Resent-Cc:Resent-Message-ID:In-Reply-To:References:List-Id:List-Help:List-Unsubscribe:List-Subscribe:List-Post:List-Owner:List-Archive';

export class DkimSigner {
  private keys = new Map<string, Promise<string>>();
  private db: DB;
  private log: Logger;
  constructor(db: DB, log: Logger) {
    this.db = db;
    this.log = log;
  }

  private pem(path: string): Promise<string> {
    let p = this.keys.get(path);
    if (!p) {
      p = readFile(path, 'utf8');
      p.catch(() => this.keys.delete(path));
      this.keys.set(path, p);
    }
    return p;
  }

  /**
   * Returns the DKIM-Signature header lines (CRLF-terminated) to put on top of `message`, one per
   * active key of `domain`; '' when the domain has no keys (e.g. not a local domain).
   */
  async signatures(domain: string, message: Buffer, now: Date): Promise<string> {
    const rows = this.db
      .prepare('SELECT k.selector, k.algorithm, k.private_key_path FROM dkim_keys k JOIN domains d ON d.id = k.domain_id WHERE d.name = ? AND k.active = 1 ORDER BY k.algorithm')
      .all(domain) as KeyRow[];
    if (rows.length === 0) return '';
    const signatureData = await Promise.all(
      rows.map(async (r) => ({
        signingDomain: domain,
        selector: r.selector,
        privateKey: await this.pem(r.private_key_path),
        algorithm: r.algorithm === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256',
        canonicalization: 'relaxed/relaxed',
      })),
    );
    const res = await dkimSign(message, { canonicalization: 'relaxed/relaxed', headerList: HEADER_LIST, signTime: now, signatureData } as any);
    for (const e of res.errors ?? []) this.log.error({ domain, selector: (e as any).selector, err: String((e as any).err?.message ?? e) }, 'DKIM signing failed');
    return res.signatures;
  }

  async sign(domain: string, message: Buffer, now: Date): Promise<Buffer> {
    const sig = await this.signatures(domain, message, now);
    return sig ? Buffer.concat([Buffer.from(sig), message]) : message;
  }
}
