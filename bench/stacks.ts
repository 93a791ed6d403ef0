// The receiving stacks compared by the inbound benchmark, each a private instance on loopback:
//   letterbox: `letterbox serve` (MX with SPF/DKIM/DMARC/ARC checks) → LMTP → its Dovecot → Maildir
//   classic:   Postfix smtpd (no checks) → queue → Postfix lmtp client → a private Dovecot → Maildir
//   haraka:    Haraka (npm) with rcpt_to.in_host_list and a queue plugin writing each message to a
//              file with fsync (no checks, no mailbox store)
import { mkdtempSync, writeFileSync, mkdirSync, chmodSync, chownSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAppliance, freePort, type Appliance } from '../test/helpers/appliance.ts';
import { countMaildir, countFiles, waitFor } from './lib.ts';
import { hashPassword } from '../src/auth/passwords.ts';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

export interface Stack {
  name: string;
  port: number;
  /** Root pids whose process trees make up the stack. */
  roots(): number[];
  /** Messages stored so far. */
  delivered(): number;
  stop(): Promise<void>;
}

/** `smtpToml` replaces the [smtp] section (default: limits raised for load from one address). */
export async function letterboxStack(opts: { dnsServer: string; domain: string; user: string; extraToml?: string; smtpToml?: string; env?: Record<string, string>; nodeArgs?: string[] }): Promise<Stack & { app: Appliance }> {
  const app = await startAppliance({
    extraToml: `[dns]\nservers = ["${opts.dnsServer}"]\n${opts.smtpToml ?? '[smtp]\nmax_connections = 1000\nmax_connections_per_ip = 500\n'}${opts.extraToml ?? ''}`,
    env: opts.env,
    nodeArgs: opts.nodeArgs,
  });
  await app.cliJson(['domain', 'add', opts.domain]);
  const r = await app.cli(['mailbox', 'add', `${opts.user}@${opts.domain}`, '--password', 'bench password 123']);
  if (r.code !== 0) throw new Error(r.stderr);
  const box = join(app.dataDir, 'mail', opts.domain, opts.user);
  return {
    name: 'Letterbox',
    app,
    port: app.ports.mx,
    roots: () => [app.process.pid!],
    delivered: () => countMaildir(box),
    async stop() {
      await app.stop();
      app.cleanup();
    },
  };
}

function vmail(): { uid: number; gid: number } {
  return { uid: Number(execFileSync('id', ['-u', 'vmail'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'vmail'], { encoding: 'utf8' })) };
}

/** A private Dovecot (LMTP only) storing into DIR/mail/<domain>/<user>/Maildir as vmail. */
async function privateDovecot(dir: string): Promise<{ child: ChildProcess; socket: string; mailRoot: string }> {
  const d = join(dir, 'dovecot');
  mkdirSync(join(d, 'run'), { recursive: true });
  mkdirSync(join(d, 'state'), { recursive: true });
  const mailRoot = join(dir, 'mail');
  mkdirSync(mailRoot, { recursive: true });
  const v = vmail();
  chownSync(mailRoot, v.uid, v.gid);
  const conf = join(d, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${d}/run
state_dir = ${d}/state
instance_name = bench-classic-${process.pid}
protocols = lmtp
ssl = no
log_path = ${d}/dovecot.log
mail_location = maildir:~/Maildir
mail_uid = vmail
mail_gid = vmail
first_valid_uid = 1
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=${mailRoot}/%d/%n
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
`,
  );
  const child = spawn('dovecot', ['-F', '-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
  const socket = join(d, 'run', 'lmtp');
  if (!(await waitFor(() => existsSync(socket), 10000))) throw new Error(`private Dovecot did not start; see ${d}/dovecot.log`);
  return { child, socket, mailRoot };
}

/** Postfix (private instance, no checks) → LMTP → private Dovecot. */
export async function classicStack(opts: { domain: string; user: string; extraMainCf?: string }): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'lbb-classic-'));
  chmodSync(dir, 0o755);
  const dov = await privateDovecot(dir);
  try {
    return await startPostfix(dir, dov, opts);
  } catch (err) {
    dov.child.kill('SIGTERM');
    await waitFor(() => dov.child.exitCode !== null || dov.child.signalCode !== null, 5000);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startPostfix(dir: string, dov: { child: ChildProcess; socket: string; mailRoot: string }, opts: { domain: string; user: string; extraMainCf?: string }): Promise<Stack> {
  const port = await freePort();
  const cfg = join(dir, 'postfix');
  mkdirSync(cfg);
  const spool = join(dir, 'spool');
  mkdirSync(spool);
  writeFileSync(
    join(cfg, 'main.cf'),
    `compatibility_level = 3.6
queue_directory = ${spool}
data_directory = ${join(dir, 'pfdata')}
mail_owner = postfix
setgid_group = postdrop
myhostname = classic.bench.invalid
mydomain = bench.invalid
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = ${opts.domain}
virtual_transport = lmtp:unix:${dov.socket}
smtpd_recipient_restrictions = reject_unauth_destination
smtpd_relay_restrictions = reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 150
smtp_host_lookup = native
disable_dns_lookups = yes
maillog_file_prefixes = ${dir}
maillog_file = ${join(dir, 'maillog')}
biff = no
${opts.extraMainCf ?? ''}`,
  );
  writeFileSync(
    join(cfg, 'master.cf'),
    readFileSync(join(BENCH_DIR, 'postfix-master.cf'), 'utf8').replace('SMTPD_LISTEN', `127.0.0.1:${port}`),
  );
  execFileSync('postfix', ['-c', cfg, 'check'], { stdio: 'inherit' });
  execFileSync('postfix', ['-c', cfg, 'start'], { stdio: 'inherit' });
  const pidFile = join(spool, 'pid', 'master.pid');
  if (!(await waitFor(() => existsSync(pidFile), 10000))) throw new Error('Postfix master did not start');
  const master = Number(readFileSync(pidFile, 'utf8').trim());
  const box = join(dov.mailRoot, opts.domain, opts.user);
  return {
    name: 'Postfix → LMTP → Dovecot',
    port,
    roots: () => [master, dov.child.pid!],
    delivered: () => countMaildir(box),
    async stop() {
      try {
        execFileSync('postfix', ['-c', cfg, 'stop'], { stdio: 'ignore' });
      } catch {}
      dov.child.kill('SIGTERM');
      await waitFor(() => dov.child.exitCode !== null || dov.child.signalCode !== null, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Haraka (npm) accepting for `domain` and writing each message to a file (fsync) in DIR/queue. */
export async function harakaStack(opts: { domain: string }): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'lbb-haraka-'));
  const haraka = join(BENCH_DIR, 'node_modules', 'Haraka', 'bin', 'haraka');
  if (!existsSync(haraka)) throw new Error('Haraka is not installed: run bash bench/setup.sh');
  const inst = join(dir, 'haraka');
  execFileSync(process.execPath, [haraka, '-i', inst], { stdio: 'ignore' });
  const port = await freePort();
  const queue = join(dir, 'queue');
  mkdirSync(queue);
  writeFileSync(join(inst, 'config', 'smtp.ini'), `listen=127.0.0.1:${port}\nnodes=0\n[headers]\n`);
  writeFileSync(join(inst, 'config', 'host_list'), `${opts.domain}\n`);
  writeFileSync(join(inst, 'config', 'plugins'), `bench_nordns\nrcpt_to.in_host_list\nbench_disk_queue\n`);
  writeFileSync(join(inst, 'config', 'log.ini'), `[main]\nlevel=warn\n`);
  mkdirSync(join(inst, 'plugins'), { recursive: true });
  // No reverse DNS (loopback only, nothing may leak to the system resolver).
  writeFileSync(join(inst, 'plugins', 'bench_nordns.js'), `exports.hook_lookup_rdns = function (next) { next(OK, 'localhost'); };\n`);
  writeFileSync(
    join(inst, 'plugins', 'bench_disk_queue.js'),
    `const fs = require('node:fs');
const path = require('node:path');
let n = 0;
exports.hook_queue = function (next, connection) {
  const file = path.join(${JSON.stringify(queue)}, process.pid + '.' + Date.now() + '.' + (n++) + '.eml');
  const ws = fs.createWriteStream(file);
  ws.on('error', () => next(DENYSOFT, 'write failed'));
  ws.on('finish', () => {
    fs.open(file, 'r+', (err, fd) => {
      if (err) return next(DENYSOFT, 'open failed');
      fs.fsync(fd, () => fs.close(fd, () => next(OK, 'queued')));
    });
  });
  connection.transaction.message_stream.pipe(ws);
};
`,
  );
  const child = spawn(process.execPath, [haraka, '-c', inst], { stdio: ['ignore', 'ignore', 'inherit'] });
  const { connect } = await import('node:net');
  const up = await waitFor(
    () =>
      new Promise<boolean>((res) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          res(true);
        });
        s.once('error', () => res(false));
      }),
    20000,
    200,
  );
  if (!up) throw new Error('Haraka did not start');
  return {
    name: 'Haraka → file (fsync)',
    port,
    roots: () => [child.pid!],
    delivered: () => countFiles(queue),
    async stop() {
      child.kill('SIGTERM');
      await waitFor(() => child.exitCode !== null || child.signalCode !== null, 5000);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Postfix as an outbound relay (private instance): smtpd accepts from loopback (mynetworks, no AUTH,
 *  no TLS, no DKIM signing) and relays everything to relayhost 127.0.0.1:sinkPort. */
export async function postfixRelayStack(opts: { sinkPort: number }): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'lbb-relay-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const cfg = join(dir, 'postfix');
  mkdirSync(cfg);
  const spool = join(dir, 'spool');
  mkdirSync(spool);
  writeFileSync(
    join(cfg, 'main.cf'),
    `compatibility_level = 3.6
queue_directory = ${spool}
data_directory = ${join(dir, 'pfdata')}
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.bench.invalid
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:${opts.sinkPort}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 150
smtp_tls_security_level = none
smtp_host_lookup = native
disable_dns_lookups = yes
default_destination_concurrency_limit = 20
maillog_file_prefixes = ${dir}
maillog_file = ${join(dir, 'maillog')}
biff = no
`,
  );
  writeFileSync(join(cfg, 'master.cf'), readFileSync(join(BENCH_DIR, 'postfix-master.cf'), 'utf8').replace('SMTPD_LISTEN', `127.0.0.1:${port}`));
  try {
    execFileSync('postfix', ['-c', cfg, 'check'], { stdio: 'inherit' });
    execFileSync('postfix', ['-c', cfg, 'start'], { stdio: 'inherit' });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const pidFile = join(spool, 'pid', 'master.pid');
  if (!(await waitFor(() => existsSync(pidFile), 10000))) throw new Error('Postfix master did not start');
  const master = Number(readFileSync(pidFile, 'utf8').trim());
  return {
    name: 'Postfix relay (no AUTH/TLS/DKIM)',
    port,
    roots: () => [master],
    delivered: () => 0,
    async stop() {
      try {
        execFileSync('postfix', ['-c', cfg, 'stop'], { stdio: 'ignore' });
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The fair outbound peer (#15): Postfix taking authenticated submissions like Letterbox does —
 * implicit TLS (465, wrapper mode) with the same certificate, AUTH PLAIN checked by a private
 * Dovecot's auth service (passwd-file, Argon2id; Postfix's `smtpd_sasl_type = dovecot`), the sender
 * bound to the login (`reject_sender_login_mismatch`), DKIM signing by OpenDKIM as a milter with the
 * same two keys Letterbox signs with by default (RSA-2048 and Ed25519, relaxed/relaxed, From
 * over-signed) — then queue → relayhost (smtp-sink). The stack's CPU is the Postfix master and its
 * children, Dovecot and OpenDKIM.
 */
export async function postfixSubmissionStack(opts: { sinkPort: number; certFile: string; keyFile: string; address: string; password: string }): Promise<Stack & { port: number }> {
  if (!existsSync('/usr/sbin/opendkim')) throw new Error('OpenDKIM is not installed: run bash bench/setup.sh');
  const dir = mkdtempSync(join(tmpdir(), 'lbb-sub-'));
  chmodSync(dir, 0o755);
  const domain = opts.address.split('@')[1];
  const port = await freePort();
  const stops: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const stop = async () => {
    for (const s of stops.reverse()) {
      try {
        await s();
      } catch {}
    }
  };
  try {
    // OpenDKIM: an RSA-2048 and an Ed25519 key, both used for every message from the domain. One
    // OpenDKIM signs with one algorithm (SignatureAlgorithm is per instance in 2.11: an Ed25519 key
    // in an RSA instance fails with "expecting an rsa key"), so there are two milters in a row, the
    // usual set-up for dual signing with OpenDKIM.
    const { generateKeyPairSync } = await import('node:crypto');
    const { connect } = await import('node:net');
    const listening = (p: number) =>
      new Promise<boolean>((res) => {
        const s = connect(p, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          res(true);
        });
        s.once('error', () => res(false));
      });
    const dkimPids: number[] = [];
    const milters: string[] = [];
    for (const alg of ['rsa', 'ed25519'] as const) {
      const dk = join(dir, `opendkim-${alg}`);
      mkdirSync(dk, { mode: 0o700 });
      const key = alg === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey : generateKeyPairSync('ed25519').privateKey;
      writeFileSync(join(dk, 'key.private'), key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
      writeFileSync(join(dk, 'keytable'), `${alg}._domainkey.${domain} ${domain}:${alg}:${join(dk, 'key.private')}\n`);
      writeFileSync(join(dk, 'signingtable'), `*@${domain} ${alg}._domainkey.${domain}\n`);
      const milterPort = await freePort();
      writeFileSync(
        join(dk, 'opendkim.conf'),
        `Syslog no
Mode s
SignatureAlgorithm ${alg === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256'}
Canonicalization relaxed/relaxed
KeyTable file:${join(dk, 'keytable')}
SigningTable refile:${join(dk, 'signingtable')}
OversignHeaders From
RequireSafeKeys false
Socket inet:${milterPort}@127.0.0.1
PidFile ${join(dk, 'opendkim.pid')}
`,
      );
      const dkim = spawn('/usr/sbin/opendkim', ['-f', '-x', join(dk, 'opendkim.conf')], { stdio: ['ignore', 'inherit', 'inherit'] });
      stops.push(async () => {
        dkim.kill('SIGTERM');
        await waitFor(() => dkim.exitCode !== null || dkim.signalCode !== null, 5000);
      });
      if (!(await waitFor(() => listening(milterPort), 10000, 100))) throw new Error('OpenDKIM did not start');
      dkimPids.push(dkim.pid!);
      milters.push(`inet:127.0.0.1:${milterPort}`);
    }

    // Postfix: 465 in wrapper mode, SASL through Dovecot, OpenDKIM as milter, relay to the sink.
    const cfg = join(dir, 'postfix');
    mkdirSync(cfg);
    const spool = join(dir, 'spool');
    mkdirSync(spool);
    writeFileSync(
      join(cfg, 'main.cf'),
      `compatibility_level = 3.6
queue_directory = ${spool}
data_directory = ${join(dir, 'pfdata')}
mail_owner = postfix
setgid_group = postdrop
myhostname = submit.bench.invalid
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.1/32
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:${opts.sinkPort}
smtpd_tls_wrappermode = yes
smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = ${opts.certFile}
smtpd_tls_key_file = ${opts.keyFile}
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sender_login_maps = inline:{ ${opts.address}=${opts.address} }
smtpd_sender_restrictions = reject_sender_login_mismatch
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_milters = ${milters.join(', ')}
non_smtpd_milters = $smtpd_milters
milter_default_action = tempfail
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 150
smtp_tls_security_level = none
smtp_host_lookup = native
disable_dns_lookups = yes
default_destination_concurrency_limit = 20
maillog_file_prefixes = ${dir}
maillog_file = ${join(dir, 'maillog')}
biff = no
`,
    );
    // + tlsmgr: smtpd's TLS needs it (PRNG seed, session cache).
    writeFileSync(join(cfg, 'master.cf'), readFileSync(join(BENCH_DIR, 'postfix-master.cf'), 'utf8').replace('SMTPD_LISTEN', `127.0.0.1:${port}`) + 'tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n');
    execFileSync('postfix', ['-c', cfg, 'check'], { stdio: 'inherit' });
    execFileSync('postfix', ['-c', cfg, 'start'], { stdio: 'inherit' });
    stops.push(() => {
      execFileSync('postfix', ['-c', cfg, 'stop'], { stdio: 'ignore' });
    });
    const pidFile = join(spool, 'pid', 'master.pid');
    if (!(await waitFor(() => existsSync(pidFile), 10000))) throw new Error('Postfix master did not start');
    const master = Number(readFileSync(pidFile, 'utf8').trim());

    // Dovecot: only its auth service, listening in Postfix's private/ (created by postfix start).
    const d = join(dir, 'dovecot');
    mkdirSync(join(d, 'run'), { recursive: true });
    mkdirSync(join(d, 'state'), { recursive: true });
    // The same hash as Letterbox stores (Argon2id, 19 MiB, t=2; doveadm pw's default is 64 MiB, t=3).
    const hash = await hashPassword(opts.password);
    writeFileSync(join(d, 'users'), `${opts.address}:${hash}\n`);
    const conf = join(d, 'dovecot.conf');
    writeFileSync(
      conf,
      `base_dir = ${d}/run
state_dir = ${d}/state
instance_name = bench-sasl-${process.pid}
protocols =
ssl = no
log_path = ${d}/dovecot.log
auth_mechanisms = plain login
default_vsz_limit = 1G
passdb {
  driver = passwd-file
  args = ${d}/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener ${spool}/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
`,
    );
    const dov = spawn('dovecot', ['-F', '-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
    stops.push(async () => {
      dov.kill('SIGTERM');
      await waitFor(() => dov.exitCode !== null || dov.signalCode !== null, 5000);
    });
    if (!(await waitFor(() => existsSync(join(spool, 'private', 'auth')), 10000))) throw new Error(`Dovecot auth did not start; see ${d}/dovecot.log`);
    return {
      name: 'Postfix + Dovecot SASL + OpenDKIM',
      port,
      roots: () => [master, dov.pid!, ...dkimPids],
      delivered: () => 0,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * What src/bin/letterbox (the systemd unit's command) gives `serve`, read from the wrapper: its Node
 * flags, MALLOC_ARENA_MAX and the compile cache (in development .runtime/node-compile-cache, warm
 * from the second run on). The benchmarks start `node src/cli.ts serve` through the test harness,
 * so they pass these themselves to measure what runs in production.
 */
export function wrapperServeSettings(): { nodeArgs: string[]; env: Record<string, string> } {
  const wrapper = readFileSync(join(BENCH_DIR, '..', 'src', 'bin', 'letterbox'), 'utf8');
  const flags = /serve_node_flags="\$\{LETTERBOX_NODE_FLAGS-([^}]*)\}"/.exec(wrapper)?.[1] ?? '';
  const arenas = /MALLOC_ARENA_MAX:-(\d+)/.exec(wrapper)?.[1];
  const env: Record<string, string> = {};
  if (arenas) env.MALLOC_ARENA_MAX = arenas;
  if (wrapper.includes('NODE_COMPILE_CACHE')) env.NODE_COMPILE_CACHE = join(BENCH_DIR, '..', '.runtime', 'node-compile-cache');
  return { nodeArgs: flags.split(' ').filter(Boolean), env };
}
