import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import type { Config } from '../config/schema.ts';
import type { AppContext, Component, ComponentFactory } from '../server.ts';
import { LetterboxError } from '../errors.ts';
import { SupervisedProcess } from '../supervise/process.ts';
import { redisPing } from './client.ts';
import { renderImapSieveBlock, renderImapSieveBlock24, renderLearnScript, renderSieveScripts } from './dovecot.ts';
import { renderRedisConfig, renderRspamdFiles, rspamdArgs, spamPaths, type SpamPaths } from './config.ts';
import { SpamService } from './service.ts';
import { Gauge, Counter } from 'prom-client';
import { lookupUser } from '../util/system-user.ts';

/** Whether spam filtering runs: "auto" = when rspamd is installed; true without rspamd = a start error. */
export function spamEnabled(config: Config): boolean {
  const s = config.spam;
  if (s.enabled === false) return false;
  const installed = existsSync(s.rspamd_binary) && existsSync(s.redis_binary);
  if (s.enabled === true && !installed) {
    const missing = !existsSync(s.rspamd_binary) ? `rspamd (${s.rspamd_binary})` : `redis-server (${s.redis_binary})`;
    throw new LetterboxError('config_error', `spam.enabled = true but ${missing} is not installed: apt-get install rspamd redis-server (or run install.sh), or set spam.enabled = false`);
  }
  return installed;
}

/**
 * Writes rspamd's and Redis's generated configuration under data_dir (idempotent) and returns who
 * runs them: as root (development) the [spam] user (rspamd refuses to run as root), otherwise
 * Letterbox's own user (production is rootless).
 */
export function prepareSpam(config: Config): { paths: SpamPaths; ids: { uid: number; gid: number } | null } {
  const paths = spamPaths(config.data_dir);
  const isRoot = process.getuid?.() === 0;
  let ids: { uid: number; gid: number } | null = null;
  if (isRoot) {
    ids = lookupUser(config.spam.user);
    if (!ids) throw new LetterboxError('config_error', `spam.user: user "${config.spam.user}" does not exist (the rspamd package creates _rspamd): install rspamd or name another unprivileged user`);
  }
  const opts = {
    paths,
    nameservers: config.spam.resolver.length ? config.spam.resolver : config.dns.servers,
    thresholds: { reject: config.spam.reject, junk: config.spam.junk, greylist: config.spam.greylist },
    greylisting: config.spam.greylisting,
    greylistDelaySeconds: Math.max(1, Math.round(config.spam.greylist_delay / 1000)),
    hsCacheDir: config.spam.hs_cache_dir || paths.dbDir,
    fuzzy: config.spam.fuzzy,
    testPatterns: config.spam.test_patterns,
    maxScanSize: config.spam.max_scan_size,
    redisMaxMemory: config.spam.redis_max_memory,
    source: config.source,
  };
  mkdirSync(config.data_dir, { recursive: true });
  // Generated files only: the whole conf dir is rewritten, so a removed setting does not linger.
  rmSync(paths.confDir, { recursive: true, force: true });
  // Explicit modes: Letterbox's umask (027) must not lock rspamd's user out when they differ.
  mkdirSync(paths.confDir, { recursive: true, mode: 0o755 });
  chmodSync(paths.confDir, 0o755);
  for (const [rel, content] of Object.entries(renderRspamdFiles(opts))) {
    const f = join(paths.confDir, rel);
    mkdirSync(dirname(f), { recursive: true, mode: 0o755 });
    chmodSync(dirname(f), 0o755);
    writeFileSync(f, content, { mode: 0o644 });
    chmodSync(f, 0o644);
  }
  for (const d of [paths.rspamdDir, paths.dbDir, paths.runDir, paths.redisDir, opts.hsCacheDir]) mkdirSync(d, { recursive: true });
  // Sockets live in runDir (0755 so Dovecot's mail user reaches the controller for learning).
  chmodSync(paths.rspamdDir, 0o755);
  chmodSync(paths.runDir, 0o755);
  chmodSync(paths.redisDir, 0o700);
  writeFileSync(paths.redisConfig, renderRedisConfig(opts), { mode: 0o644 });
  chmodSync(paths.redisConfig, 0o644);
  // IMAPSieve learning (Dovecot's mail user runs these): readable and executable by all.
  for (const d of [paths.sieveDir, paths.sieveBinDir]) {
    mkdirSync(d, { recursive: true });
    chmodSync(d, 0o755);
  }
  for (const [name, text] of Object.entries(renderSieveScripts())) {
    writeFileSync(join(paths.sieveDir, name), text, { mode: 0o644 });
    chmodSync(join(paths.sieveDir, name), 0o644);
  }
  writeFileSync(paths.learnScript, renderLearnScript(paths, config.spam.rspamd_binary), { mode: 0o755 });
  chmodSync(paths.learnScript, 0o755);
  for (const f of readdirSync(paths.runDir)) rmSync(join(paths.runDir, f), { force: true });
  if (ids) {
    for (const d of [paths.rspamdDir, paths.dbDir, paths.runDir, paths.redisDir, opts.hsCacheDir]) chownSync(d, ids.uid, ids.gid);
    for (const f of readdirSync(paths.redisDir)) chownSync(join(paths.redisDir, f), ids.uid, ids.gid);
    for (const f of readdirSync(opts.hsCacheDir)) chownSync(join(opts.hsCacheDir, f), ids.uid, ids.gid);
  }
  return { paths, ids };
}

const levelOf = (line: string): 'error' | 'warn' | 'info' | 'debug' =>
  /\b(crit|error|fatal)\b|#\s*WARNING/i.test(line) ? (/cannot resolve|query timed out|address resolution/.test(line) ? 'debug' : 'warn') : 'info';

/**
 * rspamd and Redis as supervised children (Redis first: rspamd keeps Bayes, greylisting and replies
 * there), started before the MX listener (src/components.ts) and stopped after it. Publishes the
 * SpamService on app.spam.service.
 */
export const spamComponent: ComponentFactory = (app: AppContext): Component => {
  let redis: SupervisedProcess | null = null;
  let rspamd: SupervisedProcess | null = null;
  let service: SpamService | null = null;
  return {
    name: 'spam',
    async start() {
      if (!spamEnabled(app.config)) {
        app.log.info({ component: 'spam' }, 'spam filtering off (rspamd not installed or spam.enabled = false)');
        return;
      }
      const { paths, ids } = prepareSpam(app.config);
      compileSieve(app, paths);
      const cfg = app.config.spam;
      const asUser = ids ? { uid: ids.uid, gid: ids.gid } : {};
      redis = new SupervisedProcess({
        name: 'redis',
        command: cfg.redis_binary,
        args: [paths.redisConfig],
        cwd: paths.redisDir,
        ...asUser,
        ready: () => redisPing(paths.redisSocket),
        readyTimeoutMs: 20000,
        // Redis prints its start and shutdown notes at warning level too.
        levelOf: (l) => (/WARNING Memory overcommit|Redis is starting|Redis version=|Configuration loaded|Server initialized|shutdown|Saving|DB saved|ready to exit/i.test(l) ? 'info' : /#/.test(l) ? 'warn' : 'info'),
        log: app.log,
      });
      const registry = app.metrics.registry;
      const status = () => ({
        enabled: true,
        rspamd: { running: !!rspamd?.running, restarts: rspamd?.restartCount ?? 0 },
        redis: { running: !!redis?.running, restarts: redis?.restartCount ?? 0 },
      });
      service = new SpamService({ db: app.db, config: app.config, log: app.log, clock: app.clock, paths, registry, status });
      const client = service.client;
      rspamd = new SupervisedProcess({
        name: 'rspamd',
        command: cfg.rspamd_binary,
        args: rspamdArgs(paths),
        cwd: paths.rspamdDir,
        ...asUser,
        ready: () => client.ping(),
        readyTimeoutMs: cfg.start_timeout_ms,
        levelOf,
        log: app.log,
      });
      registerSpamGauges(registry, status);
      try {
        await redis.start();
        await rspamd.start();
      } catch (err) {
        // Not in the started list: stop what runs here, or its restart timers would outlive us.
        await rspamd.stop();
        await redis.stop();
        service.close();
        throw err;
      }
      app.spam.service = service;
    },
    async stop() {
      app.spam.service = null;
      service?.close();
      await rspamd?.stop();
      await redis?.stop();
    },
  };
};

function registerSpamGauges(registry: import('prom-client').Registry, status: () => { rspamd: { running: boolean; restarts: number }; redis: { running: boolean; restarts: number } }): void {
  if (registry.getSingleMetric('letterbox_rspamd_up')) return;
  for (const name of ['rspamd', 'redis'] as const) {
    new Gauge({
      name: `letterbox_${name}_up`,
      help: `1 when the supervised ${name} is running.`,
      registers: [registry],
      collect() {
        this.set(status()[name].running ? 1 : 0);
      },
    });
    new Counter({
      name: `letterbox_${name}_restarts_total`,
      help: `Times the supervised ${name} exited unexpectedly and was restarted.`,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(status()[name].restarts);
      },
    });
  }
}

/** The Dovecot config block for learning per series (src/dovecot/setup.ts appends it); null when spam filtering is off. */
export function spamDovecotBlock(config: Config): { v23: string; v24: string } | null {
  try {
    if (!spamEnabled(config)) return null;
  } catch {
    return null; // spam.enabled = true without rspamd: the spam component reports it at start
  }
  const paths = spamPaths(config.data_dir);
  return { v23: renderImapSieveBlock(paths), v24: renderImapSieveBlock24(paths) };
}

/**
 * Compiles the IMAPSieve scripts once with Dovecot's sievec (our dovecot.conf enables the pipe
 * extension): Dovecot's mail user cannot write next to them, so it would recompile on every move.
 */
function compileSieve(app: AppContext, paths: SpamPaths): void {
  if (!app.config.dovecot.managed) return;
  try {
    // The sievec of the Dovecot that runs (its release reads this dovecot.conf and writes its binary format).
    const beside = join(dirname(app.config.dovecot.binary), 'sievec');
    execFileSync(existsSync(beside) ? beside : 'sievec', ['-c', app.dovecot.paths.config, paths.sieveDir], { stdio: 'pipe', timeout: 20000 });
    for (const f of readdirSync(paths.sieveDir)) chmodSync(join(paths.sieveDir, f), 0o644);
  } catch (err: any) {
    app.log.warn({ component: 'spam', err: String(err.stderr ?? err.message).slice(0, 500) }, 'could not precompile the spam-learning Sieve scripts; Dovecot compiles them at each use');
  }
}
