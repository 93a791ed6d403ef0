// The hooks run when the certificate is renewed or replaced (AppContext.tlsReload): listeners
// register with add() (e.g. smtp-server's updateSecureContext), the ACME component runs them.
import type { Logger } from '../log.ts';

export type ReloadHook = () => void | Promise<void>;

export class TlsReloadHooks {
  private readonly hooks = new Set<ReloadHook>();

  /** Registers `hook`; returns the function that removes it. */
  add(hook: ReloadHook): () => void {
    this.hooks.add(hook);
    return () => void this.hooks.delete(hook);
  }

  /** Runs every hook in turn; a failing one is logged and the others still run. */
  async run(log: Logger): Promise<void> {
    for (const h of [...this.hooks]) {
      try {
        await h();
      } catch (err: any) {
        log.error({ err: err.message }, 'a TLS reload hook failed');
      }
    }
  }
}
