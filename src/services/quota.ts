import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LetterboxError } from '../errors.ts';

export interface QuotaUsage {
  usedBytes: number;
  limitBytes: number | null; // null = unlimited
  messages: number;
}

/** doveadm sits next to dovecot in Debian's packages (/usr/bin vs /usr/sbin); else from PATH. */
export function doveadmBinary(dovecotBinary: string): string {
  for (const p of [join(dirname(dovecotBinary), 'doveadm'), '/usr/bin/doveadm', '/usr/sbin/doveadm']) if (existsSync(p)) return p;
  return 'doveadm';
}

/**
 * Usage against quota for some users, as Dovecot counts it (the same numbers IMAP GETQUOTAROOT and
 * LMTP's quota check use).
 *
 * Why doveadm rather than an IMAP login as the master user: one `doveadm quota get -F -` call (users on stdin)
 * answers for a whole page of users at once, without an authentication (and its Argon2 hash
 * verification, ~35 ms each) per mailbox, and without touching Dovecot's login rate limits.
 * doveadm needs the generated config (`-c`) and runs as the Letterbox user (root, or the single
 * rootless uid), which may read the mail storage.
 *
 * Users Dovecot does not know yet (a mailbox added less than a second ago) are absent from the map.
 */
export function quotaUsage(opts: { doveadm: string; config: string; users: string[]; timeoutMs?: number }): Promise<Map<string, QuotaUsage>> {
  const out = new Map<string, QuotaUsage>();
  if (opts.users.length === 0) return Promise.resolve(out);
  return new Promise((resolve, reject) => {
    const child = execFile(
      opts.doveadm,
      ['-c', opts.config, '-f', 'json', 'quota', 'get', '-F', '-'],
      { timeout: opts.timeoutMs ?? 15000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        let rows: { username?: string; type: string; value: string; limit: string }[] | null = null;
        try {
          rows = stdout.trim() ? JSON.parse(stdout) : [];
        } catch {
          rows = null;
        }
        // Unknown users are only an "Info:" line (exit 0); anything else (Dovecot's auth not
        // reachable, a crash) means the figures cannot be trusted, even if some rows came back.
        if (rows === null || err || /\bError:/.test(stderr)) {
          const firstError = String(stderr).split('\n').find((l) => /\bError:/.test(l));
          const msg = (firstError ?? String(stderr || err?.message || 'no output').trim().split('\n').slice(-1)[0]).replace(/^.*?Error:\s*/, '');
          return reject(new LetterboxError('unavailable', `could not read quota usage from Dovecot: ${msg}`));
        }
        for (const r of rows) {
          if (!r.username) continue;
          const u = out.get(r.username) ?? { usedBytes: 0, limitBytes: null, messages: 0 };
          if (r.type === 'STORAGE') {
            u.usedBytes = Number(r.value) * 1024; // doveadm reports STORAGE in KiB
            u.limitBytes = r.limit === '-' || r.limit === '' ? null : Number(r.limit) * 1024;
          } else if (r.type === 'MESSAGE') u.messages = Number(r.value);
          out.set(r.username, u);
        }
        resolve(out);
      },
    );
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.users.join('\n') + '\n');
  });
}
