// CLI: letterbox dkim rotate D | letterbox dkim status D.
import type { Command } from 'commander';
import { table, withContext, type CliHelpers } from '../cli/shared.ts';
import { toZone } from '../dns/records.ts';
import { rotateDkim, rotationStatus, type RotationStatus } from './rotate.ts';

export function statusText(s: RotationStatus): string {
  const rows = s.keys.map((k) => ({
    selector: k.selector,
    algorithm: k.algorithm,
    state: k.state,
    since: k.state === 'pending' ? k.createdAt : k.state === 'active' ? (k.activatedAt ?? k.createdAt) : k.state === 'retiring' ? k.retiredAt : k.removedAt,
    until: k.graceUntil,
  }));
  return `${s.domain}: DKIM keys\n\n${table(rows, ['selector', 'algorithm', 'state', 'since', 'until'])}\n${s.advice.map((a) => `- ${a}\n`).join('')}`;
}

export function dkimCommands(program: Command, { print }: CliHelpers): void {
  const dkim = program.command('dkim').description('DKIM signing keys: rotation');
  dkim
    .command('rotate <domain>')
    .description('create the next RSA-2048 and Ed25519 keys under new selectors and print their records; signing switches once domain verify finds them published')
    .action((name: string, _o, cmd: Command) =>
      withContext(cmd, async (ctx) => {
        const r = await rotateDkim(ctx, name);
        print(
          cmd,
          { ...r, zone: toZone(r.records) },
          `new DKIM keys for ${r.domain}: ${r.pending.map((k) => `${k.selector} (${k.algorithm})`).join(', ')}\n\n` +
            `1. Publish these records (keep the current ones):\n\n${toZone(r.records)}\n` +
            `2. Run 'letterbox domain verify ${r.domain}' once they are visible (the daily check does it too):\n` +
            `   signing switches to the new keys when both are found.\n` +
            `3. The old selectors stay published for ${ctx.config.dkim.rotation_grace}; 'letterbox dkim status ${r.domain}' then says they can be removed.\n`,
        );
      }),
    );
  dkim
    .command('status <domain>')
    .description("the domain's DKIM keys and where a rotation stands: pending (publish), active (signing), retiring (keep published), removed (record may go)")
    .action((name: string, _o, cmd: Command) =>
      withContext(cmd, (ctx) => {
        const s = rotationStatus(ctx, name);
        print(cmd, s, statusText(s));
      }),
    );
}
