import { execFileSync } from 'node:child_process';

/** A system user's uid and gid (getent passwd), or null when there is no such user. */
export function lookupUser(name: string): { uid: number; gid: number } | null {
  try {
    const f = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim().split(':');
    return { uid: Number(f[2]), gid: Number(f[3]) };
  } catch {
    return null;
  }
}
