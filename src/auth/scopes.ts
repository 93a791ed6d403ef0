import { LetterboxError } from '../errors.ts';

/** What an API key may be granted access to (DESIGN.md, Management API). */
export const RESOURCES = ['domains', 'mailboxes', 'aliases', 'messages', 'send', 'queue', 'suppressions', 'webhooks', 'events', 'metrics'] as const;
export const ACTIONS = ['read', 'write'] as const;
export type Resource = (typeof RESOURCES)[number];
export type Action = (typeof ACTIONS)[number];
/** A scope a route requires: always a concrete `resource:action`. */
export type Scope = `${Resource}:${Action}`;

/** Validates and normalizes granted scopes: `resource:action`, `resource:*` or `*`. */
export function parseScopes(input: string[]): string[] {
  const out = new Set<string>();
  for (const raw of input) {
    const s = raw.trim().toLowerCase();
    if (!s) continue;
    if (s === '*') {
      out.add(s);
      continue;
    }
    const [res, act, extra] = s.split(':');
    if (extra !== undefined || !(RESOURCES as readonly string[]).includes(res) || !(act === '*' || (ACTIONS as readonly string[]).includes(act))) {
      throw new LetterboxError(
        'validation_error',
        `invalid scope "${raw}": use resource:action, resource:* or * (resources: ${RESOURCES.join(', ')}; actions: ${ACTIONS.join(', ')})`,
      );
    }
    out.add(`${res}:${act}`);
  }
  return [...out].sort();
}

/** True when `granted` covers `needed`. An empty list grants nothing; `write` does not imply `read`. */
export function hasScope(granted: readonly string[], needed: Scope): boolean {
  const [res] = needed.split(':');
  for (const g of granted) if (g === '*' || g === needed || g === `${res}:*`) return true;
  return false;
}
