// Can a given user reach a path? Dovecot's unprivileged processes (auth as `dovecot`, mail as the
// mail user) must traverse every folder above the files they use; a clone under /root (0700) is the
// usual way to break that. Pure: the file system is passed in as a stat function.
import { dirname } from 'node:path';

export interface Principal {
  name: string;
  uid: number;
  gids: number[];
}

export interface NodeStat {
  mode: number;
  uid: number;
  gid: number;
}

export type StatFn = (path: string) => NodeStat | null;

export interface Blocked {
  /** The folder or file that stops the user. */
  at: string;
  mode: number;
  owner: number;
  /** What the user lacks there: 'x' (search a folder), 'r', 'w'. */
  lacks: string;
}

const BITS = { r: 4, w: 2, x: 1 } as const;

function allowed(st: NodeStat, who: Principal, bit: number): boolean {
  if (who.uid === 0) return true;
  const cls = st.uid === who.uid ? (st.mode >> 6) & 7 : who.gids.includes(st.gid) ? (st.mode >> 3) & 7 : st.mode & 7;
  return (cls & bit) !== 0;
}

/**
 * The first place on the way to `path` where `who` is stopped: every folder above it needs search (x)
 * permission, and `path` itself (when it exists) the permissions in `need` ('r', 'rwx'...).
 * `path` must be absolute and free of symlinks (realpath it first). Null when the way is open.
 */
export function blockedAt(path: string, who: Principal, need: string, stat: StatFn): Blocked | null {
  const above: string[] = [];
  for (let p = dirname(path); ; p = dirname(p)) {
    above.unshift(p);
    if (p === dirname(p)) break;
  }
  for (const dir of above) {
    const st = stat(dir);
    if (!st) return null; // not created yet: whoever creates it decides
    if (!allowed(st, who, BITS.x)) return { at: dir, mode: st.mode & 0o7777, owner: st.uid, lacks: 'x' };
  }
  const st = stat(path);
  if (!st) return null;
  for (const c of need) {
    const bit = BITS[c as keyof typeof BITS];
    if (bit && !allowed(st, who, bit)) return { at: path, mode: st.mode & 0o7777, owner: st.uid, lacks: c };
  }
  return null;
}
