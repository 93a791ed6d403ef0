// Import cost of packages (#15): imports the named modules, forces a GC and prints RSS (anon/file)
// and heap. Plain .mjs on purpose: a .ts file would add Node's TypeScript stripper (~17 MB) to every figure.
//   node --expose-gc bench/import-cost.mjs [module ...]     (no module: bare Node)
const mods = process.argv.slice(2);
for (const m of mods) await import(m);
globalThis.gc?.();
await new Promise((r) => setTimeout(r, 500));
globalThis.gc?.();
const t = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
const kb = (k) => Math.round(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(t)[1]) / 1024);
console.log(mods.join(' ') || '(bare)', 'RSS', kb('VmRSS'), 'anon', kb('RssAnon'), 'file', kb('RssFile'), 'heapUsed', Math.round(process.memoryUsage().heapUsed / 1048576));
