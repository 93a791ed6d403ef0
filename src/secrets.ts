import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Secrets live in data_dir/secrets, one file each, mode 0600; created once, never overwritten. */
export function secretPath(dataDir: string, name: string): string {
  return join(dataDir, 'secrets', name);
}

export function ensureSecret(dataDir: string, name: string): string {
  const path = secretPath(dataDir, name);
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err: any) {
    if (err.code !== 'ENOENT') throw err;
  }
  mkdirSync(join(dataDir, 'secrets'), { recursive: true, mode: 0o700 });
  const value = randomBytes(32).toString('base64url');
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600); // never replaces one written meanwhile
  } catch (err: any) {
    if (err.code === 'EEXIST') return readFileSync(path, 'utf8').trim();
    throw err;
  }
  writeSync(fd, value + '\n');
  fsyncSync(fd);
  closeSync(fd);
  return value;
}
