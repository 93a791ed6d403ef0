import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import { APP_DIR, SYSTEM_CONFIG, loadConfig } from './config/load.ts';
import { LetterboxError } from './errors.ts';
import { ensureSelfSignedCert } from './tls/selfsigned.ts';
import { openDatabase, dbPath } from './db/index.ts';
import { prepareDovecot } from './dovecot/setup.ts';
import { syncUsersFile } from './dovecot/sync.ts';
import { systemClock } from './clock.ts';
import { createLogger } from './log.ts';

export interface InitOptions {
  path?: string;
  hostname?: string;
  ips: string[];
  dataDir?: string;
  dev: boolean;
}

const q = (s: string) => JSON.stringify(s);

export function renderConfig(o: { hostname: string; ips: string[]; dataDir: string; certDir: string; dev: boolean }): string {
  const p = (port: number) => (o.dev ? `127.0.0.1:${10000 + port}` : `0.0.0.0:${port}`);
  return `# Letterbox configuration (written by 'letterbox init'; edit freely, it is never overwritten).
# Every key can be overridden by an environment variable LETTERBOX_<SECTION>_<KEY>.
# Reference: README.md, section "Configuration".

hostname = ${q(o.hostname)}          # EHLO name, certificate name, MX target, Received headers
data_dir = ${q(o.dataDir)}  # database, spool, mail, generated Dovecot config, secrets
ips = [${o.ips.map(q).join(', ')}]   # this server's public addresses (SPF records, outbound source)

[listen]                         # each a list of "address:port"
mx = [${q(p(25))}]
submission = [${q(p(587))}]          # STARTTLS required before AUTH
submissions = [${q(p(465))}]         # implicit TLS
imap = [${q(p(993))}]                # implicit TLS, served by Dovecot
api = ${q(o.dev ? '127.0.0.1:10080' : '127.0.0.1:8025')}            # management API: keep it local, or put TLS in front
managesieve = [${q(o.dev ? '127.0.0.1:14190' : '0.0.0.0:4190')}]     # Sieve filters (RFC 5804), served by Dovecot; STARTTLS before AUTH
inject = "127.0.0.1:10026"       # loopback only: vacation replies and Sieve redirects, DKIM-signed and queued

[tls]
cert = ${q(resolve(o.certDir, 'fullchain.pem'))}
key = ${q(resolve(o.certDir, 'privkey.pem'))}

[dns]
servers = []                     # "ip" or "ip:port"; empty = the system's resolvers

[smtp]                           # inbound (MX) limits
max_message_size = "50M"
max_recipients = 100

[outbound]
port = 25                        # remote MX port

[dovecot]
managed = true                   # Letterbox starts and supervises Dovecot with its generated config
mail_user = "vmail"              # owner of stored mail when running as root
default_quota = "0"              # for new mailboxes; 0 = unlimited
`;
}

/** Writes what a fresh installation needs. Never overwrites config, secrets, keys or data. */
export async function runInit(o: InitOptions): Promise<{ configPath: string; actions: string[] }> {
  const actions: string[] = [];
  const isRoot = process.getuid?.() === 0;
  const configPath = o.path ? resolve(o.path) : process.env.LETTERBOX_CONFIG ? resolve(process.env.LETTERBOX_CONFIG) : isRoot && !o.dev ? SYSTEM_CONFIG : resolve('letterbox.toml');
  for (const ip of o.ips) if (!isIP(ip)) throw new LetterboxError('validation_error', `--ip ${ip}: not an IPv4 or IPv6 address`);
  if (existsSync(configPath)) {
    actions.push(`kept existing config ${configPath}`);
  } else {
    const hostname = o.hostname ?? (o.dev ? 'localhost' : osHostname());
    const base = configPath === SYSTEM_CONFIG ? '/etc/letterbox' : dirname(configPath);
    const dataDir = o.dataDir ? resolve(o.dataDir) : o.dev ? resolve(APP_DIR, 'data') : configPath === SYSTEM_CONFIG ? '/var/lib/letterbox' : resolve(base, 'data');
    const certDir = configPath === SYSTEM_CONFIG ? '/etc/letterbox/certs' : resolve(base, 'certs');
    mkdirSync(dirname(configPath), { recursive: true, mode: 0o750 });
    writeFileSync(configPath, renderConfig({ hostname, ips: o.ips.length ? o.ips : o.dev ? ['127.0.0.1'] : [], dataDir, certDir, dev: o.dev }), { mode: 0o640, flag: 'wx' });
    actions.push(`wrote config ${configPath}`);
  }
  const config = loadConfig({ path: configPath });
  const log = createLogger({ level: 'warn', destination: process.stderr as any });
  if (await ensureSelfSignedCert({ cert: config.tls.cert, key: config.tls.key, hostname: config.hostname, ips: config.ips })) {
    actions.push(`created a self-signed certificate ${config.tls.cert} (replace it with a real one, see README "TLS")`);
  } else {
    actions.push(`kept certificate ${config.tls.cert}`);
  }
  const db = openDatabase(dbPath(config.data_dir), { log, clock: systemClock });
  try {
    await prepareDovecot(config);
    syncUsersFile(db, config.data_dir);
  } finally {
    db.close();
  }
  actions.push(`database, secrets and Dovecot config ready under ${config.data_dir}`);
  return { configPath, actions };
}
