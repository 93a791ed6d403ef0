// The [acme] component of `letterbox serve`: answers HTTP-01 challenges on acme.http_listen (80),
// serves MTA-STS policies over HTTPS on acme.https_listen (443), and keeps tls.cert valid — checked
// at start and daily (node-cron), renewed `renew_days_before` days before expiry or when a name is
// missing, retried with backoff on failure — then swapped atomically and reloaded without dropping
// connections: the HTTPS listeners' secure context, Dovecot (SIGHUP: new logins get the new
// certificate, open sessions continue), and every hook registered in app.tlsReload (src/tls/reload.ts).
import { createServer as createHttpServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { schedule, type ScheduledTask } from 'node-cron';
import type { AppContext, Component, ComponentFactory } from '../server.ts';
import type { Logger } from '../log.ts';
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

/**
 * Decide: the names to certify — the hostname, plus each served name (mta-sts.<domain>,
 * autoconfig.<domain>, autodiscover.<domain>) whose addresses include one of ours. Pure.
 */
export function certificateNames(hostname: string, ours: ReadonlySet<string>, candidates: readonly { name: string; addrs: readonly string[] }[]): { names: string[]; leftOut: string[] } {
  const names = [hostname.toLowerCase()];
  const leftOut: string[] = [];
  for (const c of candidates) (c.addrs.some((a) => ours.has(a)) ? names : leftOut).push(c.name);
  return { names, leftOut };
}

/** The names this listener serves under each domain (candidates for the certificate). Pure. */
export function servedNames(domains: readonly string[]): string[] {
  return domains.flatMap((d) => SERVED_PREFIXES.map((p) => `${p}.${d}`));
}

/** Gather: the A and AAAA addresses of `name` (none when a lookup fails). */
async function addressesOf(app: AppContext, name: string): Promise<string[]> {
  let addrs: string[] = [];
  for (const t of ['A', 'AAAA']) {
    try {
      addrs = addrs.concat((await app.resolver.resolve(name, t)).map(String));
    } catch {}
  }
  return addrs;
}

/** Gather + decide: the names to certify now (served names that do not point at us yet are logged and left out). */
async function wantedNames(app: AppContext, alog: Logger): Promise<string[]> {
  const { config } = app;
  const ours = new Set([...config.ips, ...(await addressesOf(app, config.hostname))]);
  const candidates: { name: string; addrs: string[] }[] = [];
  for (const name of servedNames(listDomains(app).map((d) => d.name))) candidates.push({ name, addrs: await addressesOf(app, name) });
  const { names, leftOut } = certificateNames(config.hostname, ours, candidates);
  for (const n of leftOut) alog.info({ name: n }, `${n} does not point at this server yet; it is left out of the certificate (publish the record \`letterbox dns\` prints to serve it)`);
  return names;
}

/** Act: the new certificate in use — the HTTPS listeners, Dovecot (SIGHUP) and every app.tlsReload hook. */
async function reloadCertificate(app: AppContext, httpsServers: readonly HttpsServer[], alog: Logger): Promise<void> {
  const key = readFileSync(app.config.tls.key);
  const cert = readFileSync(app.config.tls.cert);
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

/** One check: gather the names, decide whether renewal is due (renewalDue), act (issue, install, reload). */
async function renewIfDue(app: AppContext, issuer: CertificateIssuer, alog: Logger, reload: () => Promise<void>): Promise<void> {
  const { config } = app;
  const names = await wantedNames(app, alog);
  const due = renewalDue(readCertificate(config.tls.cert), names, app.clock.now(), config.acme.renew_days_before);
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

/** Runs `once` one at a time; a failure retries after retryDelayMs(failures) until one succeeds or stop(). */
class RetryingCheck {
  private running: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private stopped = false;
  private readonly once: () => Promise<void>;
  private readonly alog: Logger;
  constructor(once: () => Promise<void>, alog: Logger) {
    this.once = once;
    this.alog = alog;
  }

  check(): Promise<void> {
    if (this.running) return this.running;
    this.running = this.once()
      .then(() => {
        this.failures = 0;
      })
      .catch((err) => {
        this.failures++;
        const delay = retryDelayMs(this.failures);
        this.alog.error({ err: err?.message ?? String(err), failures: this.failures, retryInMs: delay }, 'certificate request failed; will retry');
        if (!this.stopped) {
          if (this.retryTimer) clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => void this.check(), delay);
          this.retryTimer.unref();
        }
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.running) await this.running.catch(() => {});
  }
}

const notFound = (res: ServerResponse) => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');

/**
 * Act: the HTTP (challenges, autoconfig) and HTTPS (MTA-STS, autoconfig) listeners. A busy port
 * must not take mail down: it is logged; certificate requests then fail and retry.
 */
async function startResponders(app: AppContext, store: ChallengeStore, isDomain: (d: string) => boolean, alog: Logger): Promise<{ servers: (HttpServer | HttpsServer)[]; httpsServers: HttpsServer[] }> {
  const { config } = app;
  const acme = config.acme;
  const autoconfig = { settings: clientSettings(config), isDomain };
  const servers: (HttpServer | HttpsServer)[] = [];
  const httpsServers: HttpsServer[] = [];
  for (const addr of acme.http_listen) {
    // Thunderbird falls back to plain http://autoconfig.<domain>/ when HTTPS fails: served here too.
    const s = createHttpServer((req, res) => {
      if (!handleChallenge(store, req, res) && !handleAutoconfig(autoconfig, req, res)) notFound(res);
    });
    try {
      await listen(s, addr);
      servers.push(s);
    } catch (err: any) {
      alog.error({ listen: addr, err: err.code ?? err.message }, `cannot listen on ${addr} for ACME HTTP-01 challenges: free the port or change acme.http_listen`);
    }
  }
  for (const addr of acme.https_listen) {
    const s = createHttpsServer({ key: readFileSync(config.tls.key), cert: readFileSync(config.tls.cert) }, (req, res) => {
      if (!handleMtaSts({ hostname: config.hostname, mode: acme.mta_sts_mode, maxAge: acme.mta_sts_max_age, isDomain }, req, res) && !handleAutoconfig(autoconfig, req, res)) notFound(res);
    });
    try {
      await listen(s, addr);
      servers.push(s);
      httpsServers.push(s);
    } catch (err: any) {
      alog.error({ listen: addr, err: err.code ?? err.message }, `cannot listen on ${addr} for MTA-STS policies: free the port or change acme.https_listen`);
    }
  }
  return { servers, httpsServers };
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
    let listeners: { servers: (HttpServer | HttpsServer)[]; httpsServers: HttpsServer[] } = { servers: [], httpsServers: [] };
    const renewal = new RetryingCheck(() => renewIfDue(app, issuer, alog, () => reloadCertificate(app, listeners.httpsServers, alog)), alog);
    let task: ScheduledTask | null = null;

    return {
      name: 'acme',
      async start() {
        listeners = await startResponders(app, store, isDomain, alog);
        alog.info({ http: acme.http_listen, https: acme.https_listen, directory: acme.directory_url }, 'ACME challenge responder, MTA-STS policy host and mail-client autoconfiguration listening');
        task = schedule(opts.cron ?? '17 3 * * *', () => void renewal.check());
        void renewal.check();
      },
      async stop() {
        task?.stop();
        const stopping = renewal.stop();
        await Promise.all(listeners.servers.map(close));
        await stopping;
      },
    };
  };
}

export const acmeComponent: ComponentFactory = createAcmeComponent();
