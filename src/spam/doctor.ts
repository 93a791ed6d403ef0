import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { Config } from '../config/schema.ts';
import type { Resolver } from '../dns/resolver.ts';
import { createResolver } from '../dns/resolver.ts';
import { systemClock } from '../clock.ts';
import { RspamdClient, redisPing } from './client.ts';
import { spamEnabled } from './component.ts';
import { spamPaths } from './config.ts';

export interface SpamCheck {
  area: 'spam';
  name: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  message: string;
  fix?: string;
}

/** The DNSBL test entry (127.0.0.2 is listed on every Spamhaus zone by convention). */
export const DNSBL_PROBE = '2.0.0.127.zen.spamhaus.org';

/** What a DNSBL's answer for its test entry says about the resolver (pure). */
export function classifyDnsblProbe(answers: string[] | null, error: string | null): { status: SpamCheck['status']; message: string; fix?: string } {
  const fix = 'use a local recursive resolver for rspamd: install.sh sets up unbound on 127.0.0.1 (or pass --resolver IP); then set [spam] resolver = ["127.0.0.1"] or dns.servers';
  if (error) return { status: 'warn', message: `blocklist test lookup failed (${error}): rspamd's blocklist checks do not work`, fix };
  if (!answers || answers.length === 0) return { status: 'warn', message: 'the blocklist test entry is not listed through this resolver: blocklist answers are being filtered or rewritten', fix };
  if (answers.some((a) => a.startsWith('127.255.255.'))) {
    return { status: 'fail', message: `the blocklist refused the query (answer ${answers.join(', ')}): it refuses queries from public or shared resolvers, so rspamd's blocklist checks see nothing`, fix };
  }
  if (answers.some((a) => /^127\.0\.0\.\d+$/.test(a))) return { status: 'ok', message: `blocklist lookups work (test entry answers ${answers.join(', ')})` };
  return { status: 'warn', message: `unexpected answer for the blocklist test entry: ${answers.join(', ')}`, fix };
}

/**
 * The line of `rspamd --version` that names the version (pure). rspamd 3.4 (Debian 12) prints only
 * that line; 3.12 (Debian 13) prints it first, then a list of build features.
 */
export function rspamdVersionLine(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.find((l) => /\bversion\s+\d+\.\d+/i.test(l)) ?? lines[0] ?? '';
}

/** `letterbox doctor`: rspamd and Redis installed and answering, and blocklist lookups not refused. */
export async function checkSpam(config: Config, resolver: Resolver, opts: { dnsbl?: boolean } = {}): Promise<SpamCheck[]> {
  let enabled: boolean;
  try {
    enabled = spamEnabled(config);
  } catch (err: any) {
    return [{ area: 'spam', name: 'rspamd', status: 'fail', message: err.message, fix: 'apt-get install rspamd redis-server (or run install.sh)' }];
  }
  if (!enabled) {
    return [{ area: 'spam', name: 'rspamd', status: config.spam.enabled === false ? 'skip' : 'warn', message: config.spam.enabled === false ? 'spam filtering is off (spam.enabled = false)' : 'rspamd or redis-server is not installed: incoming mail is not spam-filtered', fix: 'apt-get install rspamd redis-server (or run install.sh), then restart Letterbox' }];
  }
  const out: SpamCheck[] = [];
  try {
    const v = rspamdVersionLine(execFileSync(config.spam.rspamd_binary, ['--version'], { encoding: 'utf8', timeout: 10000 }));
    out.push({ area: 'spam', name: 'rspamd version', status: 'ok', message: v });
  } catch (err: any) {
    out.push({ area: 'spam', name: 'rspamd version', status: 'warn', message: `${config.spam.rspamd_binary} --version failed: ${err.message}` });
  }
  const p = spamPaths(config.data_dir);
  const client = new RspamdClient({ normalSocket: p.normalSocket, controllerSocket: p.controllerSocket });
  const [rspamdUp, redisUp] = await Promise.all([client.ping(2000), existsSync(p.redisSocket) ? redisPing(p.redisSocket, 2000) : Promise.resolve(false)]);
  client.close();
  const start = 'start Letterbox (it starts rspamd and Redis); its log shows lines with "component":"rspamd" / "redis"';
  out.push(rspamdUp ? { area: 'spam', name: 'rspamd', status: 'ok', message: `answering on ${p.normalSocket}` } : { area: 'spam', name: 'rspamd', status: 'fail', message: `rspamd is not answering on ${p.normalSocket}: incoming mail is answered ${config.spam.on_failure === 'tempfail' ? '451' : 'unscanned'}`, fix: start });
  out.push(redisUp ? { area: 'spam', name: 'redis', status: 'ok', message: `answering on ${p.redisSocket}` } : { area: 'spam', name: 'redis', status: 'fail', message: `Redis is not answering on ${p.redisSocket}: no greylisting, Bayes or learning`, fix: start });
  if (opts.dnsbl !== false) {
    const r = config.spam.resolver.length ? createResolver({ servers: config.spam.resolver, timeoutMs: 3000, clock: systemClock }) : resolver;
    let answers: string[] | null = null;
    let error: string | null = null;
    try {
      answers = ((await r.resolve(DNSBL_PROBE, 'A')) ?? []).map(String);
    } catch (err: any) {
      if (err?.code === 'ENOTFOUND' || err?.code === 'ENODATA') answers = [];
      else error = err?.code ?? err?.message;
    }
    out.push({ area: 'spam', name: 'blocklist resolver', ...classifyDnsblProbe(answers, error) });
  }
  return out;
}
