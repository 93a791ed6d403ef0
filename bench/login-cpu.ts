// Login CPU of device (app) passwords (issue #17 item 4): Dovecot's auth process CPU per login,
// main password vs app password, with the app-passwords passdb (as Letterbox writes it) and without
// it (as before the feature), plus Letterbox's own check on SMTP submission.
//
//   node bench/login-cpu.ts [--logins 60] [--rounds 4] [--apps 1000]
//
// Two private Dovecot 2.3 instances (same users file: Argon2id hashes made by Letterbox's
// hashPassword; one with the app-passwords passdb and a file of --apps entries). Each round runs
// --logins `doveadm auth test` logins per case, the cases alternating, and reads the auth
// process's CPU (utime+stime from /proc) before and after: CPU per login = delta / logins.
import { mkdtempSync, rmSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { hashPassword, verifyPassword } from '../src/auth/passwords.ts';
import { generateAppPassword, hashAppPassword, looksLikeAppPassword } from '../src/auth/app-passwords.ts';
import { appPasswordPassdb23, renderAppPasswordsFile } from '../src/dovecot/app-passwords.ts';
import { arg, machine, ownCpuMs, table } from './lib.ts';

const LOGINS = Number(arg('logins', '60'));
const ROUNDS = Number(arg('rounds', '4'));
const APPS = Number(arg('apps', '1000'));
const dir = mkdtempSync(join(tmpdir(), 'lb-login-cpu-'));
chmodSync(dir, 0o755);
const MAIN = 'main password 1234567';

function conf(name: string, withApps: boolean): string {
  const d = join(dir, name);
  execFileSync('mkdir', ['-p', join(d, 'run'), join(d, 'state')]);
  return `instance_name = lb-bench-${name}
base_dir = ${d}/run
state_dir = ${d}/state
log_path = ${d}/log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
auth_cache_size = 0
mail_uid = 65534
mail_gid = 65534
mail_home = ${d}/mail/%d/%n
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
service auth {
  idle_kill = 1h
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
${withApps ? appPasswordPassdb23(join(dir, 'app-passwords')) : ''}
passdb {
  driver = passwd-file
  args = scheme=ARGON2ID username_format=%u ${join(dir, 'users')}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${join(dir, 'users')}
}
`;
}

function authPid(name: string): number {
  const master = Number(readFileSync(join(dir, name, 'run', 'master.pid'), 'utf8').trim());
  const kids = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(master)], { encoding: 'utf8' });
  const line = kids.split('\n').find((l) => / auth$/.test(l.trim()) || l.trim().endsWith(' auth'));
  if (!line) throw new Error(`no auth process for ${name}: ${kids}`);
  return Number(line.trim().split(/\s+/)[0]);
}

function login(name: string, user: string, pass: string): boolean {
  const r = spawnSync('doveadm', ['-c', join(dir, name, 'dovecot.conf'), 'auth', 'test', '-x', 'rip=192.0.2.1', user, pass], { encoding: 'utf8' });
  return /auth succeeded/.test(r.stdout);
}

async function main() {
  const users: string[] = [];
  for (let i = 0; i < 20; i++) users.push(`u${i}@bench.test:${await hashPassword(MAIN)}::::::`);
  writeFileSync(join(dir, 'users'), users.join('\n') + '\n');
  const app = generateAppPassword();
  const entries = [{ address: 'u0@bench.test', id: 'app_bench', hash: hashAppPassword(app) }];
  for (let i = 1; i < APPS; i++) entries.push({ address: `u${i % 20}@bench.test`, id: `app_${i}`, hash: hashAppPassword(generateAppPassword()) });
  writeFileSync(join(dir, 'app-passwords'), renderAppPasswordsFile(entries));
  chmodSync(join(dir, 'users'), 0o644);
  chmodSync(join(dir, 'app-passwords'), 0o644);
  for (const [name, withApps] of [['before', false], ['after', true]] as const) {
    execFileSync('mkdir', ['-p', join(dir, name)]);
    writeFileSync(join(dir, name, 'dovecot.conf'), conf(name, withApps));
    execFileSync('dovecot', ['-c', join(dir, name, 'dovecot.conf')], { stdio: 'ignore' });
  }
  try {
    // Warm-up (and a check that each case logs in).
    const cases = [
      { label: 'main password, no app-password passdb (before)', inst: 'before', pass: MAIN },
      { label: 'main password, with the app-password passdb', inst: 'after', pass: MAIN },
      { label: 'app password, with the app-password passdb', inst: 'after', pass: app },
      { label: 'wrong password, with the app-password passdb', inst: 'after', pass: 'wrong password 1234567' },
    ];
    for (const c of cases) if (login(c.inst, 'u0@bench.test', c.pass) !== !c.label.startsWith('wrong')) throw new Error(`login check failed: ${c.label}`);
    const totals = cases.map(() => ({ ms: 0, n: 0 }));
    for (let r = 0; r < ROUNDS; r++) {
      cases.forEach((c, i) => {
        login(c.inst, 'u0@bench.test', c.pass); // the auth process exists (Dovecot starts it on demand)
        const pid = authPid(c.inst);
        const before = ownCpuMs(pid);
        for (let k = 0; k < LOGINS; k++) login(c.inst, 'u0@bench.test', c.pass);
        if (authPid(c.inst) !== pid) throw new Error('the auth process was restarted during a measurement');
        totals[i].ms += ownCpuMs(pid) - before;
        totals[i].n += LOGINS;
      });
    }
    // Letterbox's own check on SMTP submission (in this process): Argon2id vs the app-password path.
    const stored = await hashPassword(MAIN);
    const node = (fn: () => unknown | Promise<unknown>, n: number) => async () => {
      const t = process.cpuUsage();
      for (let i = 0; i < n; i++) await fn();
      const d = process.cpuUsage(t);
      return (d.user + d.system) / 1000 / n;
    };
    const map = new Map(entries.map((e) => [e.hash, e.id]));
    const nodeMain = await node(() => verifyPassword(stored, MAIN), 40)();
    const nodeApp = await node(() => looksLikeAppPassword(app) && map.get(hashAppPassword(app)), 20000)();
    const nodeMainExtra = await node(() => looksLikeAppPassword(MAIN), 20000)();
    console.log(machine());
    console.log(`load average before/after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    console.log(`${ROUNDS} rounds × ${LOGINS} logins per case (cases alternating), ${APPS} app passwords in the file; Dovecot auth process CPU per login:`);
    console.log(table(cases.map((c, i) => ({ case: c.label, 'auth CPU ms/login': (totals[i].ms / totals[i].n).toFixed(2) }))));
    console.log('Letterbox (SMTP submission) CPU per check, in-process:');
    console.log(table([
      { check: 'main password (Argon2id verify)', 'ms/check': nodeMain.toFixed(2) },
      { check: 'app password (format test + SHA-256 + lookup)', 'ms/check': nodeApp.toFixed(4) },
      { check: 'added to a main-password login (format test)', 'ms/check': nodeMainExtra.toFixed(5) },
    ]));
  } finally {
    for (const name of ['before', 'after']) spawnSync('doveadm', ['-c', join(dir, name, 'dovecot.conf'), 'stop']);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
