// The [acme] component of `letterbox serve`: answers HTTP-01 challenges on acme.http_listen (80),
// serves MTA-STS policies over HTTPS on acme.https_listen (443), and keeps tls.cert valid — checked
// at start and daily (node-cron), renewed `renew_days_before` days before expiry or when a name is
// missing, retried with backoff on failure — then swapped atomically and reloaded without dropping
// connections: the HTTPS listeners' secure context, Dovecot (SIGHUP: new logins get the new
// certificate, open sessions continue), and every hook registered in app.tlsReload (src/tls/reload.ts).
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { schedule, type ScheduledTask } from 'node-cron';
import type { AppContext, Component, ComponentFactory } from '../server.ts';
import { parseHostPort } from '../config/schema.ts';
import { listDomains } from '../services/domains.ts';
import { handleMtaSts } from '../mtasts/index.ts';
import { clientSettings, handleAutoconfig } from '../autoconfig/index.ts';
import { ChallengeStore, acmeIssuer, accountKeyPath, handleChallenge, installCertificate, readCertificate, renewalDue, retryDelayMs, type CertificateIssuer } from './acme.ts';

/** Hosts under each domain this listener serves: MTA-STS policies and mail-client autoconfiguration. */
const SERVED_PREFIXES = ['mta-sts', 'autoconfig', 'autodiscover'] as const;

export interface AcmeComponentOptions {
  /** Builds the issuer (default: acme-client against acme.directory_url). */
  issuer?: (app: AppContext, store: ChallengeStore) => CertificateIssuer;
  /** Daily check time (cron expression). */
  cron?: string;
}

function listen(server: HttpServer | HttpsServer, addr: string): Promise<void> {
  const { host, port } = parseHostPort(addr)!;
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen({ host, port }, () => {
      server.off('error', rej);
      res();
    });
  });
}

function close(server: HttpServer | HttpsServer): Promise<void> {
  return new Promise((res) => {
    server.close(() => res());
    server.closeIdleConnections?.();
    setTimeout(() => server.closeAllConnections?.(), 2000).unref();
  });
}

export function createAcmeComponent(opts: AcmeComponentOptions = {}): ComponentFactory {
  return (app: AppContext): Component => {
    const { config, log } = app;
    const acme = config.acme;
    if (!acme.enabled) return { name: 'acme', start: async () => {}, stop: async () => {} };
    const alog = log.child({ component: 'acme' });
    const store = new ChallengeStore();
    const issuer = opts.issuer
      ? opts.issuer(app, store)
      : acmeIssuer({ directoryUrl: acme.directory_url, email: acme.email, accountKeyPath: accountKeyPath(config.data_dir), store });
    const isDomain = (d: string) => listDomains(app).some((x) => x.name === d);
    const autoconfig = { settings: clientSettings(config), isDomain };
    const servers: (HttpServer | HttpsServer)[] = [];
    const httpsServers: HttpsServer[] = [];
    let task: ScheduledTask | null = null;
    let retryTimer: NodeJS.Timeout | null = null;
    let failures = 0;
    let running: Promise<void> | null = null;
    let stopped = false;

    /**
     * The names to certify: the hostname, plus mta-sts.<domain>, autoconfig.<domain> and
     * autodiscover.<domain> where that name points at us.
     */
    async function wantedNames(): Promise<string[]> {
      const ours = new Set(config.ips);
      for (const t of ['A', 'AAAA']) {
        try {
          for (const a of await app.resolver.resolve(config.hostname, t)) ours.add(String(a));
        } catch {}
      }
      const names = [config.hostname.toLowerCase()];
      for (const n of listDomains(app).flatMap((d) => SERVED_PREFIXES.map((p) => `${p}.${d.name}`))) {
        let addrs: string[] = [];
        for (const t of ['A', 'AAAA']) {
          try {
            addrs = addrs.concat((await app.resolver.resolve(n, t)).map(String));
          } catch {}
        }
        if (addrs.some((a) => ours.has(a))) names.push(n);
        else alog.info({ name: n }, `${n} does not point at this server yet; it is left out of the certificate (publish the record \`letterbox dns\` prints to serve it)`);
      }
      return names;
    }

    async function reload(): Promise<void> {
      const key = readFileSync(config.tls.key);
      const cert = readFileSync(config.tls.cert);
      for (const s of httpsServers) s.setSecureContext({ key, cert });
      if (app.supervisor && app.supervisor.running) {
        try {
          const pid = Number(readFileSync(join(app.dovecot.paths.baseDir, 'master.pid'), 'utf8').trim());
          if (pid > 0) process.kill(pid, 'SIGHUP');
          alog.info({ pid }, 'Dovecot reloaded with the new certificate');
        } catch (err: any) {
          alog.error({ err: err.message }, 'could not reload Dovecot; it uses the new certificate after its next restart');
        }
      }
      await app.tlsReload.run(alog);
    }

    async function checkOnce(): Promise<void> {
      const names = await wantedNames();
      const due = renewalDue(readCertificate(config.tls.cert), names, app.clock.now(), acme.renew_days_before);
      if (!due.due) {
        alog.info({ names, reason: due.reason }, 'certificate is current');
        return;
      }
      alog.info({ names, reason: due.reason }, 'requesting a certificate');
      const issued = await issuer.issue(names);
      installCertificate(config.tls.cert, config.tls.key, issued);
      alog.info({ names, cert: config.tls.cert }, 'certificate installed');
      await reload();
    }

    /** One check at a time; failures retry with a growing delay until one succeeds. */
    function check(): Promise<void> {
      if (running) return running;
      running = checkOnce()
        .then(() => {
          failures = 0;
        })
        .catch((err) => {
          failures++;
          const delay = retryDelayMs(failures);
          alog.error({ err: err?.message ?? String(err), failures, retryInMs: delay }, 'certificate request failed; will retry');
          if (!stopped) {
            if (retryTimer) clearTimeout(retryTimer);
            retryTimer = setTimeout(() => void check(), delay);
            retryTimer.unref();
          }
        })
        .finally(() => {
          running = null;
        });
      return running;
    }

    return {
      name: 'acme',
      async start() {
        for (const addr of acme.http_listen) {
          // Thunderbird falls back to plain http://autoconfig.<domain>/ when HTTPS fails: served here too.
          const s = createHttpServer((req, res) => {
            if (!handleChallenge(store, req, res) && !handleAutoconfig(autoconfig, req, res)) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
          });
          // A busy port 80 must not take mail down: log it; certificate requests then fail and retry.
          try {
            await listen(s, addr);
            servers.push(s);
          } catch (err: any) {
            alog.error({ listen: addr, err: err.code ?? err.message }, `cannot listen on ${addr} for ACME HTTP-01 challenges: free the port or change acme.http_listen`);
          }
        }
        for (const addr of acme.https_listen) {
          const s = createHttpsServer({ key: readFileSync(config.tls.key), cert: readFileSync(config.tls.cert) }, (req, res) => {
            if (!handleMtaSts({ hostname: config.hostname, mode: acme.mta_sts_mode, maxAge: acme.mta_sts_max_age, isDomain }, req, res) && !handleAutoconfig(autoconfig, req, res)) {
              res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
            }
          });
          try {
            await listen(s, addr);
            servers.push(s);
            httpsServers.push(s);
          } catch (err: any) {
            alog.error({ listen: addr, err: err.code ?? err.message }, `cannot listen on ${addr} for MTA-STS policies: free the port or change acme.https_listen`);
          }
        }
        alog.info({ http: acme.http_listen, https: acme.https_listen, directory: acme.directory_url }, 'ACME challenge responder, MTA-STS policy host and mail-client autoconfiguration listening');
        task = schedule(opts.cron ?? '17 3 * * *', () => void check());
        void check();
      },
      async stop() {
        stopped = true;
        task?.stop();
        if (retryTimer) clearTimeout(retryTimer);
        await Promise.all(servers.map(close));
        if (running) await running.catch(() => {});
      },
    };
  };
}

export const acmeComponent: ComponentFactory = createAcmeComponent();
