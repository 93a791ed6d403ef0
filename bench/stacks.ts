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
export async function letterboxStack(opts: { dnsServer: string; domain: string; user: string; extraToml?: string; smtpToml?: string; env?: Record<string, string> }): Promise<Stack & { app: Appliance }> {
  const app = await startAppliance({
    extraToml: `[dns]\nservers = ["${opts.dnsServer}"]\n${opts.smtpToml ?? '[smtp]\nmax_connections = 1000\nmax_connections_per_ip = 500\n'}${opts.extraToml ?? ''}`,
    env: opts.env,
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
