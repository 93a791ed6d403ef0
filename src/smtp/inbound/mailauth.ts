// mailauth's authenticate() without loading its BIMI code at start (#15, memory).
//
// `require('mailauth')` loads lib/bimi (undici, @postalsys/vmc with the @peculiar/asn1-* packages,
// fast-xml-parser): ~9 MB of RSS that stays, although the MX always calls authenticate() with
// `disableBimi: true`. mailauth requires './bimi' and './bimi/validate-svg' at its top level, so
// while it loads, those two entries of the CommonJS module cache (require.cache, documented as
// writable) hold stand-ins whose functions load the real module on first call; the stand-ins are
// removed from the cache right after, so anything else that requires BIMI gets the real thing.
// Nothing of mailauth is copied or changed: only when its BIMI code is loaded.
import { createRequire, Module } from 'node:module';
import type { authenticate as Authenticate } from 'mailauth';

export type { AuthenticateResult } from 'mailauth';

const require = createRequire(import.meta.url);

type Cache = Record<string, Module | undefined>;

/** The exports of a stand-in for the module at `path`: each named function loads the real one when called. */
function lazyExports(path: string, names: string[]): Record<string, (...args: unknown[]) => unknown> {
  const out: Record<string, (...args: unknown[]) => unknown> = {};
  for (const name of names) out[name] = (...args) => (require(path) as Record<string, (...a: unknown[]) => unknown>)[name](...args);
  return out;
}

/** Requires `id` while the modules in `standIns` (resolved path → export names) are lazy stand-ins. */
export function requireWithLazy<T>(id: string, standIns: Record<string, string[]>): T {
  const cache = require.cache as Cache;
  const placed: string[] = [];
  for (const [path, names] of Object.entries(standIns)) {
    if (cache[path]) continue; // already loaded for real: nothing to save
    const m = new Module(path);
    m.filename = path;
    m.loaded = true;
    m.exports = lazyExports(path, names);
    cache[path] = m;
    placed.push(path);
  }
  try {
    return require(id) as T;
  } finally {
    for (const path of placed) delete cache[path];
  }
}

const { authenticate } = requireWithLazy<{ authenticate: typeof Authenticate }>('mailauth', {
  [require.resolve('mailauth/lib/bimi/index.js')]: ['bimi', 'validateVMC'],
  [require.resolve('mailauth/lib/bimi/validate-svg.js')]: ['validateSvg'],
});

export { authenticate };
