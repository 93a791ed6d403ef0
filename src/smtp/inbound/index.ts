import { promises as fsp } from 'node:fs';
import { watchCertificate } from '../../tls/watch.ts';
import { join } from 'node:path';
import type { AppContext, Component, ComponentFactory } from '../../server.ts';
import { parseHostPort } from '../../config/schema.ts';
import { Spool } from '../../spool/index.ts';
import { findDomain } from '../../services/domains.ts';
import { createMxListener, type MxListener } from './server.ts';
import type { InboundDeps } from './deliver.ts';

export { receiveMessage } from './deliver.ts';
export { decide } from './policy.ts';
export { resolveRecipient, parseRecipient } from '../../routing/resolve.ts';
export { srsForward, srsReverse } from '../../mail/srs.ts';

/**
 * The MX listener (listen.mx): receives mail for our domains and delivers it to Dovecot or the
 * outbound queue (forwards). Registered in src/components.ts.
 */
export const mxComponent: ComponentFactory = (app: AppContext): Component => {
  // Messages in flight live here only until they are answered; leftovers are from a crash, before
  // any 250, so they are removed at start.
  const spoolRoot = join(app.config.data_dir, 'inbound');
  let listener: MxListener | null = null;
  let unwatchTls: (() => void) | null = null;
  const keys = new Map<string, { until: number; key: { signingDomain: string; selector: string; privateKey: Buffer } | null }>();
  return {
    name: 'mx',
    async start() {
      if (app.config.listen.mx.length === 0) return;
      await fsp.rm(join(spoolRoot, 'spool'), { recursive: true, force: true });
      const deps: InboundDeps = {
        app,
        delivery: app.delivery, // the process's one LocalDelivery (its LMTP pool and dovecot.lmtp_sessions limit)
        dkim: app.dkim,
        spool: new Spool(spoolRoot),
        srsSecret: app.srsSecret,
        async sealKey(domain) {
          const hit = keys.get(domain);
          if (hit && hit.until > Date.now()) return hit.key;
          const d = findDomain(app, domain);
          const k = d?.dkim.find((x) => x.active && x.algorithm === 'rsa') ?? d?.dkim.find((x) => x.active);
          const key = k ? { signingDomain: d!.name, selector: k.selector, privateKey: await fsp.readFile(k.privateKeyPath) } : null;
          keys.set(domain, { until: Date.now() + 300_000, key });
          return key;
        },
      };
      listener = createMxListener(
        deps,
        app.config.listen.mx.map((s) => parseHostPort(s)!),
      );
      await listener.listen();
      // A renewed certificate (ACME, or replaced by hand) is picked up without a restart.
      unwatchTls = watchCertificate(app, 'mx', (m) => listener?.updateTls(m));
      app.log.info({ listen: app.config.listen.mx, component: 'mx' }, 'MX listening');
    },
    async stop() {
      unwatchTls?.();
      unwatchTls = null;
      if (listener) await listener.close();
      listener = null;
    },
  };
};
