// Web console page times and first-load size (issue #19): every page served complete in ≤ 100 ms
// of server time with 10,000 mailboxes and 100,000 audit entries; what a browser downloads on
// first load.
//
//   node bench/console.ts [--mailboxes 10000] [--audit 100000] [--requests 200]
//
// Seeding: mailbox rows and audit entries are inserted straight into SQLite while the appliance is
// stopped (one precomputed password hash, as bench/api-load.ts does); the session is opened in the
// database too (a passkey ceremony needs a browser; test/console.test.ts covers it). Each page is
// then requested `requests` times, one at a time, over loopback; the time is the whole request
// (connection reused), so it is server time plus loopback. Load average printed with the figures.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { TestDns } from '../test/helpers/dns.ts';
import { newId } from '../src/util/ids.ts';
import { openDatabase } from '../src/db/index.ts';
import { silentLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import * as store from '../src/console/store.ts';
import { machine, table, arg } from './lib.ts';
import { letterboxStack } from './stacks.ts';

const MAILBOXES = Number(arg('mailboxes', '10000'));
const AUDIT = Number(arg('audit', '100000'));
const REQUESTS = Number(arg('requests', '200'));
const DOMAIN = 'bench.test';

const dns = await new TestDns().start();
console.log(`# console benchmark — ${machine()}`);
const stack = await letterboxStack({ dnsServer: dns.server, domain: DOMAIN, user: 'user', extraToml: '[api]\nthreads = 0\n' });
const app = stack.app;
try {
  await app.stop();
  const raw = new Database(join(app.dataDir, 'letterbox.db'));
  const { domain_id, password_hash } = raw.prepare("SELECT domain_id, password_hash FROM mailboxes WHERE address = 'user@bench.test'").get() as any;
  const ins = raw.prepare('INSERT INTO mailboxes (id, domain_id, local_part, address, password_hash, quota_bytes, disabled, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?)');
  const now = new Date().toISOString();
  const audit = raw.prepare('INSERT INTO console_audit (at, admin, action, target, ip, detail) VALUES (?, ?, ?, ?, ?, NULL)');
  raw.transaction(() => {
    for (let i = 1; i < MAILBOXES; i++) ins.run(newId('mbx'), domain_id, `u${i}`, `u${i}@${DOMAIN}`, password_hash, '[]', now, now);
    for (let i = 0; i < AUDIT; i++) audit.run(now, 'alice', i % 2 ? 'mailbox.create' : 'domain.verify', `u${i}@${DOMAIN}`, '127.0.0.1');
  })();
  raw.close();
  const db = openDatabase(join(app.dataDir, 'letterbox.db'), { log: silentLogger(), clock: systemClock });
  const inv = store.createInvite({ db, clock: systemClock }, 'alice');
  const session = store.openSession({ db, clock: systemClock }, inv.admin.id, '127.0.0.1', store.DEFAULT_SESSION_POLICY);
  db.close();
  await app.restart();
  console.log(`# seeded ${MAILBOXES} mailboxes and ${AUDIT} audit entries; load ${readFileSync('/proc/loadavg', 'utf8').trim()}`);

  const base = `http://localhost:${app.ports.api}`;
  const headers = { cookie: `lb_console=${session.id}` };
  const page = async (path: string) => {
    const res = await fetch(base + path, { headers });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body.slice(0, 200)}`);
    return body;
  };
  const mailboxes = await page('/console/mailboxes');
  const next = /href="\/console\/mailboxes\?cursor=([^"]+)"/.exec(mailboxes)![1];
  let middle = decodeURIComponent(next.replace(/&amp;/g, '&'));
  for (let i = 0; i < MAILBOXES / 50; i++) {
    const m = /href="\/console\/mailboxes\?cursor=([^"]+)"/.exec(await page(`/console/mailboxes?cursor=${encodeURIComponent(middle)}`));
    if (!m) break;
    middle = decodeURIComponent(m[1]);
  }
  const pages: [string, string][] = [
    ['domains', '/console/domains'],
    ['domain (records)', `/console/domains/${DOMAIN}`],
    ['mailboxes, first page', '/console/mailboxes'],
    ['mailboxes, middle page', `/console/mailboxes?cursor=${encodeURIComponent(middle)}`],
    ['mailboxes, search "u5"', '/console/mailboxes?search=u5'],
    ['mailboxes, search "u77"', '/console/mailboxes?search=u77'],
    ['audit log, newest', '/console/audit'],
  ];
  const rows: Record<string, string | number>[] = [];
  for (const [what, path] of pages) {
    for (let i = 0; i < 20; i++) await page(path); // warm-up
    const times: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const t = performance.now();
      await page(path);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
    rows.push({ page: what, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: times[times.length - 1].toFixed(1) });
  }
  console.log(table(rows.map((r) => ({ ...r, p50: `${r.p50} ms`, p90: `${r.p90} ms`, p99: `${r.p99} ms`, max: `${r.max} ms` }))));

  // First load of a page: the HTML and everything it references (all served by the appliance).
  const html = await page('/console/mailboxes');
  const assets = ['/console/static/console.css', '/console/static/htmx.min.js', '/console/static/webauthn.js', '/console/static/console.js'];
  const sizes = [{ what: 'mailboxes page (HTML)', bytes: Buffer.byteLength(html), gz: gzipSync(html).length }];
  for (const a of assets) {
    const b = Buffer.from(await (await fetch(base + a)).arrayBuffer());
    sizes.push({ what: a, bytes: b.length, gz: gzipSync(b).length });
  }
  const total = sizes.reduce((s, x) => ({ bytes: s.bytes + x.bytes, gz: s.gz + x.gz }), { bytes: 0, gz: 0 });
  console.log(table([...sizes, { what: 'first load, in all', ...total }].map((s) => ({ file: s.what, 'as served': `${(s.bytes / 1024).toFixed(1)} KB`, gzipped: `${(s.gz / 1024).toFixed(1)} KB` }))));
  console.log(`# load after: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
} finally {
  await stack.stop();
  await dns.stop();
}
