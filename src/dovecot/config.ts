import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Config } from '../config/schema.ts';
import { parseHostPort } from '../config/schema.ts';
import { renderLoginProtection, renderLoginProtection24, type AuthPolicyTarget } from './login-policy.ts';
import { LetterboxError } from '../errors.ts';
import { renderSelfServiceBlock, renderSelfServiceBlock24 } from './selfservice.ts';
import { appPasswordPassdb23, appPasswordPassdb24 } from './app-passwords.ts';

/** Where Letterbox keeps Dovecot's generated files and state, all under data_dir/dovecot. */
export interface DovecotPaths {
  dir: string;
  config: string;
  users: string;
  masterUsers: string;
  baseDir: string;
  stateDir: string;
  mailRoot: string;
  lmtpSocket: string;
  /** The Dovecot release series the files were last generated for (read by whoever rewrites the users file). */
  series: string;
  /** Device (app) passwords, passwd-file keyed by user + SHA-256 (src/dovecot/app-passwords.ts). */
  appPasswords: string;
  /** The same for Dovecot 2.4: one file per password, <dir>/<login>/<sha256 hex>. */
  appPasswordsDir: string;
}

export function dovecotPaths(dataDir: string): DovecotPaths {
  return dovecotPathsAt(join(dataDir, 'dovecot'), join(dataDir, 'mail'));
}

/** The same files with Dovecot's folder and the mail root elsewhere (see setup.ts: relocation). */
export function dovecotPathsAt(dir: string, mailRoot: string): DovecotPaths {
  return {
    dir,
    config: join(dir, 'dovecot.conf'),
    users: join(dir, 'users'),
    masterUsers: join(dir, 'master-users'),
    baseDir: join(dir, 'run'),
    stateDir: join(dir, 'state'),
    mailRoot,
    lmtpSocket: join(dir, 'run', 'lmtp'),
    series: join(dir, 'series'),
    appPasswords: join(dir, 'app-passwords'),
    appPasswordsDir: join(dir, 'app-passwords.d'),
  };
}

export const MASTER_USER = 'letterbox';
/** The \Sent special-use folder every mailbox has (API sends store their copy there). */
export const SENT_FOLDER = 'Sent';
/**
 * Folders only the mailbox's owner files into: a plus-address naming one of them (bob+Sent@) is
 * delivered to INBOX, so nobody outside can make a message look sent, drafted or deleted by the user.
 * They are the special-use folders of that name in the namespace written below.
 */
export const OWNER_ONLY_FOLDERS: readonly string[] = [SENT_FOLDER, 'Drafts', 'Trash'];

/**
 * The Dovecot release series Letterbox writes configuration for. 2.3: Debian 12, Ubuntu 24.04.
 * 2.4 (Debian 13, Ubuntu 26.04) changed the syntax incompatibly (named passdb/userdb blocks,
 * %{...} variables, boolean plugin lists, *_file TLS settings, quota and sieve as named blocks).
 */
export type DovecotSeries = '2.3' | '2.4';
export const DOVECOT_SERIES: readonly DovecotSeries[] = ['2.3', '2.4'];

/** The series of a `dovecot --version` line ("2.3.19.1 (9b53102964)", "2.4.1-4 (7d8c0e5759)"), or null. */
export function dovecotSeries(version: string): DovecotSeries | null {
  const m = /^\s*(\d+)\.(\d+)[.\-\s]/.exec(version + ' ');
  if (!m) return null;
  const s = `${m[1]}.${m[2]}`;
  return (DOVECOT_SERIES as readonly string[]).includes(s) ? (s as DovecotSeries) : null;
}

export interface RenderOptions {
  config: Config;
  paths: DovecotPaths;
  /**
   * 'root': Dovecot's master runs as root with its own privilege separation (login processes as
   * dovenull, auth as dovecot, mail as mailUser). 'rootless': everything as the current user.
   */
  mode: 'root' | 'rootless';
  mailUser: string; // name of the uid that owns stored mail
  mailUid: number;
  mailGid: number;
  /** The user allowed to connect to the LMTP socket (the Letterbox process). */
  clientUser: string;
  /** Letterbox's login-guard endpoint (serve only): IMAP logins are counted with submission's. */
  authPolicy?: AuthPolicyTarget;
  /** Which syntax to write; default 2.3. */
  series?: DovecotSeries;
  /** Blocks other features add (spam learning), each with its text per series. */
  extraBlocks?: ExtraBlock[];
}

/** A special-use folder every mailbox has (or may create). */
export interface FolderModel {
  name: string;
  specialUse: string; // e.g. '\\Sent'
  auto: 'subscribe' | 'create' | 'no';
}

/**
 * A block of configuration added by a feature that the model does not describe field by field yet,
 * written once per series. render24 refuses a model with a block that has no 2.4 text, so a feature
 * can never silently disappear on Dovecot 2.4.
 */
export interface ExtraBlock {
  name: string;
  v23: string;
  /** null: no Dovecot 2.4 text, and a start on 2.4 stops with a config error naming the block. */
  v24: string | null;
}

/**
 * Everything Letterbox's Dovecot configuration says, independent of syntax: one model, rendered by
 * render23 or render24. Features add fields here (and a line in each renderer), never text to one
 * renderer only.
 */
export interface DovecotModel {
  source: string;
  configPath: string;
  instanceName: string;
  baseDir: string;
  stateDir: string;
  protocols: string[];
  /** Addresses Dovecot listens on (the union of the IMAP listeners'). */
  listen: string[];
  /** Implicit-TLS IMAP listeners, one per port. */
  imaps: { addresses: string[]; port: number }[];
  /** Set when every Dovecot process runs as this one user (Letterbox not root). */
  rootless: { user: string } | null;
  tls: { certFile: string; keyFile: string; minProtocol: string };
  auth: {
    mechanisms: string[];
    masterSeparator: string;
    passwordScheme: string;
    /** passwd-file of master users (the API reads mailboxes as `user*letterbox`). */
    masterUsersFile: string;
    /** passwd-file of the mailboxes (passdb and userdb; per-user quota and nologin in its extra fields). */
    usersFile: string;
  };
  mail: {
    uid: number;
    gid: number;
    firstValidUid: number;
    firstValidGid: number;
    /** Homes are <root>/<domain>/<local part>; mail in <home>/Maildir. */
    root: string;
    maildir: string;
    indexList: boolean;
  };
  /** Mail plugins: everywhere, and per protocol. */
  plugins: { all: string[]; imap: string[]; lmtp: string[] };
  delivery: {
    recipientDelimiter: string;
    saveToDetailMailbox: boolean;
    rcptCheckQuota: boolean;
    /** Over quota at LMTP DATA: 452 4.2.2 (true) or 552 5.2.2 (false). */
    quotaFullTempfail: boolean;
    postmaster: string;
    hostname: string;
  };
  quota: { root: string; driver: 'count' };
  folders: FolderModel[];
  /** The LMTP socket, and how many lmtp processes Dovecot may run at once (= Letterbox's LMTP sessions). */
  lmtp: { mode: string; user: string; processLimit: number };
  imap: { maxUserIpConnections: number };
  /** Per-user Sieve script (LMTP runs it): scripts in <home>/sieve, the active one linked at activePath. */
  sieve: { path: string; activePath: string };
  extraBlocks: ExtraBlock[];
  /** Device (app) passwords (issue #17): their passwd-file, consulted before the users file (src/dovecot/app-passwords.ts). */
  appPasswords: { file: string; dir: string };
}

/** The model of Letterbox's Dovecot configuration for this config and environment. Pure. */
export function buildDovecotModel(o: RenderOptions): DovecotModel {
  const { config, paths } = o;
  const imap = config.listen.imap.map((s) => parseHostPort(s)!);
  const byPort = new Map<number, string[]>();
  for (const { host, port } of imap) byPort.set(port, [...(byPort.get(port) ?? []), host]);
  const listen = [...new Set(imap.map((i) => i.host))];
  return {
    source: config.source,
    configPath: paths.config,
    instanceName: 'letterbox-' + createHash('sha256').update(paths.dir).digest('hex').slice(0, 8),
    baseDir: paths.baseDir,
    stateDir: paths.stateDir,
    protocols: ['imap', 'lmtp'],
    listen: listen.length ? listen : ['127.0.0.1'],
    imaps: [...byPort.entries()].map(([port, addresses]) => ({ port, addresses })),
    rootless: o.mode === 'rootless' ? { user: o.mailUser } : null,
    tls: { certFile: config.tls.cert, keyFile: config.tls.key, minProtocol: 'TLSv1.2' },
    auth: { mechanisms: ['plain', 'login'], masterSeparator: '*', passwordScheme: 'ARGON2ID', masterUsersFile: paths.masterUsers, usersFile: paths.users },
    mail: { uid: o.mailUid, gid: o.mailGid, firstValidUid: Math.min(o.mailUid, 500), firstValidGid: Math.min(o.mailGid, 500), root: paths.mailRoot, maildir: '~/Maildir', indexList: true },
    plugins: { all: ['quota'], imap: ['imap_quota'], lmtp: ['sieve'] },
    delivery: {
      recipientDelimiter: '+',
      saveToDetailMailbox: true,
      rcptCheckQuota: true,
      quotaFullTempfail: config.smtp.quota_full_reply === '452',
      postmaster: `postmaster@${config.hostname}`,
      hostname: config.hostname,
    },
    quota: { root: 'User quota', driver: 'count' },
    folders: [
      { name: 'Drafts', specialUse: '\\Drafts', auto: 'subscribe' },
      { name: SENT_FOLDER, specialUse: '\\Sent', auto: 'subscribe' },
      { name: 'Junk', specialUse: '\\Junk', auto: 'subscribe' },
      { name: 'Trash', specialUse: '\\Trash', auto: 'subscribe' },
      { name: 'Archive', specialUse: '\\Archive', auto: 'no' },
    ],
    lmtp: { mode: '0600', user: o.clientUser, processLimit: config.dovecot.lmtp_sessions },
    imap: { maxUserIpConnections: 50 },
    sieve: { path: '~/sieve', activePath: '~/.dovecot.sieve' },
    extraBlocks: [
      // Login protection (issue #16): the auth policy (IMAP logins counted by Letterbox's login
      // guard) and the auth-userdb socket restriction.
      { name: 'login protection', v23: renderLoginProtection(o.authPolicy), v24: renderLoginProtection24(o.authPolicy) },
      // Mailbox self-service (issue #17): ManageSieve, Sieve limits, vacation as a before-script.
      { name: 'mailbox self-service', v23: renderSelfServiceBlock({ config, mode: o.mode }), v24: renderSelfServiceBlock24({ config, mode: o.mode }) },
      ...(o.extraBlocks ?? []),
    ],
    appPasswords: { file: paths.appPasswords, dir: paths.appPasswordsDir },
  };
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

function folders(m: DovecotModel): string {
  return m.folders.map((f) => `  mailbox ${f.name} {\n    special_use = ${f.specialUse}\n    auto = ${f.auto}\n  }`).join('\n');
}

// The listeners of the protocols Letterbox does not serve, switched off.
const UNUSED_LISTENERS = `service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}`;

/** Dovecot 2.3 syntax (Debian 12 / Ubuntu 24.04). Pure: the same model gives the same file. */
export function render23(m: DovecotModel): string {
  const listeners = m.imaps
    .map((l, i) => `  inet_listener imaps${i ? i + 1 : ''} {\n    address = ${l.addresses.join(' ')}\n    port = ${l.port}\n    ssl = yes\n  }`)
    .join('\n');
  const plugins = (names: string[]) => ['$mail_plugins', ...names].join(' ');
  const rootless = m.rootless
    ? `
# Rootless: every Dovecot process runs as ${m.rootless.user}.
default_internal_user = ${m.rootless.user}
default_internal_group = ${m.rootless.user}
default_login_user = ${m.rootless.user}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
`
    : '';
  const home = `${m.mail.root}/%d/%n`;
  const extra = m.extraBlocks.map((b) => `\n# ${b.name}\n${b.v23.trimEnd()}\n`).join('');
  return `# Generated by Letterbox from ${m.source} — do not edit: it is rewritten at every start.
# Dovecot 2.3. Run by hand with: dovecot -c ${m.configPath}
instance_name = ${m.instanceName}
base_dir = ${m.baseDir}
state_dir = ${m.stateDir}
log_path = /dev/stderr
info_log_path = /dev/stderr
log_timestamp =
protocols = ${m.protocols.join(' ')}
listen = ${m.listen.join(' ')}
${rootless}
ssl = required
ssl_cert = <${m.tls.certFile}
ssl_key = <${m.tls.keyFile}
ssl_min_protocol = ${m.tls.minProtocol}
ssl_prefer_server_ciphers = yes
disable_plaintext_auth = yes
auth_mechanisms = ${m.auth.mechanisms.join(' ')}
auth_username_format = %Lu
auth_master_user_separator = ${m.auth.masterSeparator}
auth_cache_size = 0

mail_uid = ${m.mail.uid}
mail_gid = ${m.mail.gid}
first_valid_uid = ${m.mail.firstValidUid}
first_valid_gid = ${m.mail.firstValidGid}
mail_home = ${home}
mail_location = maildir:${m.mail.maildir}
mail_plugins = ${plugins(m.plugins.all)}
mailbox_list_index = ${yesNo(m.mail.indexList)}

recipient_delimiter = ${m.delivery.recipientDelimiter}
lmtp_save_to_detail_mailbox = ${yesNo(m.delivery.saveToDetailMailbox)}
lmtp_rcpt_check_quota = ${yesNo(m.delivery.rcptCheckQuota)}
quota_full_tempfail = ${yesNo(m.delivery.quotaFullTempfail)}
postmaster_address = ${m.delivery.postmaster}
hostname = ${m.delivery.hostname}

passdb {
  driver = passwd-file
  args = scheme=${m.auth.passwordScheme} username_format=%u ${m.auth.masterUsersFile}
  master = yes
  result_success = continue
}
${appPasswordPassdb23(m.appPasswords.file)}
passdb {
  driver = passwd-file
  args = scheme=${m.auth.passwordScheme} username_format=%u ${m.auth.usersFile}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${m.auth.usersFile}
  default_fields = uid=${m.mail.uid} gid=${m.mail.gid} home=${home}
}

namespace inbox {
  inbox = yes
  separator = /
${folders(m)}
}

service imap-login {
  inet_listener imap {
    port = 0
  }
${listeners}
}
${UNUSED_LISTENERS}
service lmtp {
  process_limit = ${m.lmtp.processLimit}
  unix_listener lmtp {
    mode = ${m.lmtp.mode}
    user = ${m.lmtp.user}
  }
}

protocol imap {
  mail_plugins = ${plugins(m.plugins.imap)}
  mail_max_userip_connections = ${m.imap.maxUserIpConnections}
}
protocol lmtp {
  mail_plugins = ${plugins(m.plugins.lmtp)}
}

plugin {
  quota = ${m.quota.driver}:${m.quota.root}
  quota_vsizes = yes
  quota_status_success = DUNNO
  sieve = file:${m.sieve.path};active=${m.sieve.activePath}
}
${extra}`;
}

/**
 * Dovecot 2.4 syntax (Debian 13 / Ubuntu 26.04), following "Upgrading Dovecot CE from 2.3 to 2.4":
 * dovecot_config_version/dovecot_storage_version first; %{user | domain} for %d; passdb/userdb as
 * named blocks with passwd_file_path and a fields {} block; mail_driver + mail_path for
 * mail_location; ssl_server_*_file for ssl_cert = <file; auth_allow_cleartext for
 * disable_plaintext_auth; mail_plugins { x = yes }; quota "root" { driver } (the count driver always
 * counts virtual sizes, so quota_vsizes is gone); sieve_script personal { } for plugin { sieve }.
 * Checked against Debian 13's Dovecot 2.4.1 (test/debian13).
 */
export function render24(m: DovecotModel): string {
  const missing = m.extraBlocks.filter((b) => b.v24 === null).map((b) => b.name);
  if (missing.length) {
    throw new LetterboxError('config_error', `Dovecot 2.4 is installed, but Letterbox has no Dovecot 2.4 configuration yet for: ${missing.join(', ')}; use Dovecot 2.3 (Debian 12 / Ubuntu 24.04) for now`);
  }
  const listeners = m.imaps
    .map((l, i) => `  inet_listener imaps${i ? i + 1 : ''} {\n    listen = ${l.addresses.join(' ')}\n    port = ${l.port}\n    ssl = yes\n  }`)
    .join('\n');
  const plugins = (names: string[], pad: string) => `${pad}mail_plugins {\n${names.map((n) => `${pad}  ${n} = yes\n`).join('')}${pad}}`;
  const rootless = m.rootless
    ? `
# Rootless: every Dovecot process runs as ${m.rootless.user}.
default_internal_user = ${m.rootless.user}
default_internal_group = ${m.rootless.user}
default_login_user = ${m.rootless.user}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
`
    : '';
  const home = `${m.mail.root}/%{user | domain}/%{user | username}`;
  const extra = m.extraBlocks
    .filter((b) => b.v24 !== null)
    .map((b) => `\n# ${b.name}\n${b.v24!.trimEnd()}\n`)
    .join('');
  return `# Generated by Letterbox from ${m.source} — do not edit: it is rewritten at every start.
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
# Dovecot 2.4. Run by hand with: dovecot -c ${m.configPath}
instance_name = ${m.instanceName}
base_dir = ${m.baseDir}
state_dir = ${m.stateDir}
log_path = /dev/stderr
info_log_path = /dev/stderr
log_timestamp =
protocols = ${m.protocols.join(' ')}
listen = ${m.listen.join(' ')}
${rootless}
ssl = required
ssl_server_cert_file = ${m.tls.certFile}
ssl_server_key_file = ${m.tls.keyFile}
ssl_min_protocol = ${m.tls.minProtocol}
ssl_server_prefer_ciphers = server
auth_allow_cleartext = no
auth_mechanisms = ${m.auth.mechanisms.join(' ')}
auth_username_format = %{user | lower}
auth_master_user_separator = ${m.auth.masterSeparator}
auth_cache_size = 0

mail_uid = ${m.mail.uid}
mail_gid = ${m.mail.gid}
first_valid_uid = ${m.mail.firstValidUid}
first_valid_gid = ${m.mail.firstValidGid}
mail_home = ${home}
mail_driver = maildir
mail_path = ${m.mail.maildir}
${plugins(m.plugins.all, '')}
mailbox_list_index = ${yesNo(m.mail.indexList)}

recipient_delimiter = ${m.delivery.recipientDelimiter}
lmtp_save_to_detail_mailbox = ${yesNo(m.delivery.saveToDetailMailbox)}
lmtp_rcpt_check_quota = ${yesNo(m.delivery.rcptCheckQuota)}
quota_full_tempfail = ${yesNo(m.delivery.quotaFullTempfail)}
postmaster_address = ${m.delivery.postmaster}
hostname = ${m.delivery.hostname}

passdb master-users {
  driver = passwd-file
  passwd_file_path = ${m.auth.masterUsersFile}
  default_password_scheme = ${m.auth.passwordScheme}
  master = yes
  result_success = continue
}
${appPasswordPassdb24(m.appPasswords.dir)}
passdb users {
  driver = passwd-file
  passwd_file_path = ${m.auth.usersFile}
  default_password_scheme = ${m.auth.passwordScheme}
}
userdb users {
  driver = passwd-file
  passwd_file_path = ${m.auth.usersFile}
  fields {
    uid:default = ${m.mail.uid}
    gid:default = ${m.mail.gid}
    home:default = ${home}
  }
}

namespace inbox {
  inbox = yes
  separator = /
${folders(m)}
}

service imap-login {
  inet_listener imap {
    port = 0
  }
${listeners}
}
${UNUSED_LISTENERS}
service lmtp {
  process_limit = ${m.lmtp.processLimit}
  unix_listener lmtp {
    mode = ${m.lmtp.mode}
    user = ${m.lmtp.user}
  }
}

protocol imap {
${plugins(m.plugins.imap, '  ')}
  mail_max_userip_connections = ${m.imap.maxUserIpConnections}
}
protocol lmtp {
${plugins(m.plugins.lmtp, '  ')}
}

quota "${m.quota.root}" {
  driver = ${m.quota.driver}
}
sieve_script personal {
  driver = file
  path = ${m.sieve.path}
  active_path = ${m.sieve.activePath}
}
${extra}`;
}

export function renderDovecotModel(m: DovecotModel, series: DovecotSeries): string {
  return series === '2.4' ? render24(m) : render23(m);
}

/** The generated dovecot.conf: the model of these options, in the syntax of `o.series` (default 2.3). */
export function renderDovecotConfig(o: RenderOptions): string {
  return renderDovecotModel(buildDovecotModel(o), o.series ?? '2.3');
}

/**
 * The users-file extra fields that set a mailbox's quota, in each series' setting names. 2.3's grace
 * (the last message may take a mailbox up to 10 % over its quota) is a percentage by default; 2.4's
 * quota_storage_grace is a size (default 10M, more than a small quota itself), so 2.4 gets 10 % of
 * the quota explicitly and both series accept and refuse the same messages.
 */
export function quotaUserField(series: DovecotSeries, bytes: number): string {
  return series === '2.4' ? `userdb_quota_storage_size=${bytes}B userdb_quota_storage_grace=${Math.floor(bytes / 10)}B` : `userdb_quota_rule=*:storage=${bytes}B`;
}
