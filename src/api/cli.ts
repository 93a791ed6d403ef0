import type { Command } from 'commander';
import { table, withContext, type CliHelpers } from '../cli/shared.ts';
import { createApiKey, listApiKeys, parseExpiry, revokeApiKey, type ApiKey } from '../auth/apikeys.ts';
import { createResolver } from '../dns/resolver.ts';
import { verifyDomain } from '../services/verify.ts';

const csv = (s: string | undefined): string[] | undefined => (s === undefined ? undefined : s.split(',').map((x) => x.trim()).filter(Boolean));

function status(k: ApiKey, now: number): string {
  if (k.revokedAt) return 'revoked';
  if (k.expiresAt && Date.parse(k.expiresAt) <= now) return 'expired';
  return 'active';
}

/** `letterbox key create|list|revoke` and `letterbox domain verify`. */
export function apiCommands(program: Command, { print }: CliHelpers): void {
  const key = program.command('key').description('API keys for the management API (the secret is shown once)');
  key
    .command('create')
    .description('create an API key and print its secret once')
    .requiredOption('--name <name>', 'what the key is for')
    .option('--scopes <list>', 'comma-separated scopes: resource:action, resource:* or * (default *); resources: domains, mailboxes, aliases, messages, send, queue, suppressions, webhooks, events; actions: read, write')
    .option('--test', 'a test (sandbox) key: lb_test_…; sends are recorded as delivered, never delivered')
    .option('--expires <when>', 'a duration (90d, 12h, 2w, 1y) or an ISO date')
    .option('--domains <list>', 'comma-separated domains the key is restricted to (default: all)')
    .action((o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const expiresAt = o.expires ? parseExpiry(o.expires, ctx.clock.now()) : null;
        const { key: k, secret } = createApiKey(ctx, { name: o.name, scopes: csv(o.scopes) ?? ['*'], test: !!o.test, expiresAt, domains: csv(o.domains) ?? null });
        print(
          cmd,
          { ...k, secret },
          `created ${k.mode} key ${k.id} "${k.name}"\n` +
            `scopes:  ${k.scopes.length ? k.scopes.join(', ') : '(none: it can only call GET /api/v1/me)'}\n` +
            (k.domains ? `domains: ${k.domains.join(', ')}\n` : '') +
            (k.expiresAt ? `expires: ${k.expiresAt}\n` : '') +
            `\n${secret}\n\n(shown once: store it now; only its hash is kept)\n`,
        );
      }),
    );
  key
    .command('list')
    .description('list API keys (never their secrets)')
    .action((_o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const now = ctx.clock.now();
        const ks = listApiKeys(ctx).map((k) => ({ ...k, status: status(k, now) }));
        print(cmd, ks, table(ks.map((k) => ({ ...k, prefix: `lb_${k.mode}_${k.prefix}…`, domains: k.domains ?? '*' })), ['id', 'name', 'prefix', 'status', 'scopes', 'domains', 'expiresAt', 'lastUsedAt']));
      }),
    );
  key
    .command('revoke <id>')
    .description('revoke an API key (by id or prefix); it fails with 401 from the next request on')
    .action((id: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const k = revokeApiKey(ctx, id);
        print(cmd, { revoked: k }, `revoked ${k.id} "${k.name}"\n`);
      }),
    );

  const domain = program.commands.find((c) => c.name() === 'domain');
  if (domain) {
    domain
      .command('verify <domain>')
      .description("check the domain's published DNS records (MX, SPF, DKIM, DMARC; the mail-client SRV records as warnings) with live lookups")
      .action((name: string, _o, cmd: Command) =>
        withContext(cmd, async (ctx) => {
          const resolve = createResolver({ servers: ctx.config.dns.servers, timeoutMs: ctx.config.dns.timeout_ms, clock: ctx.clock, cacheMs: 0, negativeCacheMs: 0 }).resolve;
          const v = await verifyDomain(ctx, resolve, name);
          const rows = v.records.map((r) => ({ check: r.ok ? 'ok' : r.required ? 'FAIL' : 'warn', purpose: r.purpose, name: r.name, problem: r.problem ?? '' }));
          const fixes = v.records
            .filter((r) => !r.ok)
            .map((r) => `${r.type} ${r.name}\n  expected: ${r.expected}\n  found:    ${r.found.length ? r.found.join('\n            ') : '(nothing)'}\n`)
            .join('');
          print(cmd, v, `${v.domain}: ${v.ok ? 'all records correct' : 'some records need fixing'}\n\n${table(rows, ['check', 'purpose', 'name', 'problem'])}${fixes ? '\n' + fixes : ''}`);
        }),
      );
  }
}
