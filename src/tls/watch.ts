import { promises as fsp, watchFile, unwatchFile, type Stats } from 'node:fs';
import type { AppContext } from '../context.ts';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
}

/**
 * Calls `apply` with the new key and certificate whenever they change: at once when the ACME
 * component installs a renewal, and within 30 s when the files are replaced by hand. A failed read
 * keeps the old certificate (logged). Returns the function that stops watching.
 */
export function watchCertificate(app: Pick<AppContext, 'config' | 'log' | 'tlsReload'>, component: string, apply: (m: TlsMaterial) => void): () => void {
  const { cert, key } = app.config.tls;
  const reload = async () => {
    try {
      const [k, c] = await Promise.all([fsp.readFile(key), fsp.readFile(cert)]);
      apply({ key: k, cert: c });
      app.log.info({ component, cert }, 'TLS certificate reloaded');
    } catch (err: any) {
      app.log.error({ component, err: err.message }, 'could not reload the TLS certificate; keeping the old one');
    }
  };
  const onChange = (cur: Stats, prev: Stats) => {
    if (cur.mtimeMs !== prev.mtimeMs && cur.size > 0) void reload();
  };
  watchFile(cert, { interval: 30_000, persistent: false }, onChange);
  const offHook = app.tlsReload.add(reload);
  return () => {
    unwatchFile(cert, onChange);
    offHook();
  };
}
