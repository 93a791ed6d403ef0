// The Dovecot settings of the mailbox self-service features, kept in one block that the generated
// dovecot.conf appends (src/dovecot/config.ts): ManageSieve (RFC 5804) on listen.managesieve, the
// Sieve limits from [sieve], the vacation script run before the user's own, and where Sieve's own
// mail (vacation replies, redirects) goes: Letterbox's loopback injection listener (listen.inject),
// which DKIM-signs and queues it like submission (a redirect with SRS and an ARC seal, like a forward). One model (selfServiceModel), written in Dovecot
// 2.3 syntax (renderSelfServiceBlock) and 2.4 syntax (renderSelfServiceBlock24); the 2.4 names
// were checked against Debian 13's Dovecot 2.4.1 / Pigeonhole 2.4.1 (test/debian13).
import { parseHostPort, type Config } from '../config/schema.ts';

/** Where the vacation script lives, relative to the mailbox's home (outside the user's script storage). */
export const VACATION_SCRIPT = 'letterbox/vacation.sieve';

/** What the block says, independent of syntax. Pure. */
export interface SelfServiceModel {
  /** ManageSieve listeners, one per port (none: ManageSieve off). */
  managesieve: { port: number; addresses: string[] }[];
  rootless: boolean;
  maxScriptSize: number;
  maxScripts: number;
  /** 0 without an injection listener (nothing could send a redirect). */
  maxRedirects: number;
  /** Vacation off when nothing could send the reply. */
  vacation: boolean;
  vacationMinDays: number;
  vacationDefaultDays: number;
  /** Letterbox's loopback injection listener, host:port, or null. */
  submissionHost: string | null;
}

export function selfServiceModel(o: { config: Config; mode: 'root' | 'rootless' }): SelfServiceModel {
  const { config } = o;
  const sieve = config.sieve;
  const byPort = new Map<number, string[]>();
  for (const { host, port } of config.listen.managesieve.map((s) => parseHostPort(s)!)) byPort.set(port, [...(byPort.get(port) ?? []), host]);
  const inject = config.listen.inject ? parseHostPort(config.listen.inject)! : null;
  return {
    managesieve: [...byPort.entries()].map(([port, addresses]) => ({ port, addresses })),
    rootless: o.mode === 'rootless',
    maxScriptSize: sieve.max_script_size,
    maxScripts: sieve.max_scripts,
    maxRedirects: inject ? sieve.max_redirects : 0,
    vacation: !!inject,
    vacationMinDays: sieve.vacation_min_days,
    vacationDefaultDays: sieve.vacation_default_days,
    submissionHost: inject ? `${inject.host}:${inject.port}` : null,
  };
}

const listenerBlocks = (m: SelfServiceModel, addressKey: 'address' | 'listen') =>
  m.managesieve.map((l, i) => `  inet_listener sieve${i ? i + 1 : ''} {\n    ${addressKey} = ${l.addresses.join(' ')}\n    port = ${l.port}\n  }`).join('\n');

/** Dovecot 2.3 syntax. */
export function renderSelfServiceBlock(o: { config: Config; mode: 'root' | 'rootless' }): string {
  const m = selfServiceModel(o);
  const managesieve = m.managesieve.length
    ? `protocols = $protocols sieve
service managesieve-login {
${listenerBlocks(m, 'address')}${m.rootless ? '\n  chroot =' : ''}
}
protocol sieve {
  # STARTTLS before AUTH: ssl = required and disable_plaintext_auth = yes above apply here too.
  managesieve_max_line_length = 65536
  managesieve_implementation_string = Letterbox
}
`
    : '';
  return `
# ---- BEGIN mailbox self-service (Sieve, ManageSieve, vacation): src/dovecot/selfservice.ts ----
${managesieve}plugin {
  sieve_max_script_size = ${m.maxScriptSize}
  sieve_quota_max_scripts = ${m.maxScripts}
  sieve_quota_max_storage = ${m.maxScriptSize * m.maxScripts}
  sieve_max_redirects = ${m.maxRedirects}
  # sieve_extprograms (pipe, filter, execute) is never loaded: scripts cannot run programs.
${m.vacation ? '' : '  # No local injection listener: nothing could send what these produce.\n  sieve_extensions = -vacation -vacation-seconds\n'}  sieve_before = ~/${VACATION_SCRIPT}
  sieve_vacation_min_period = ${m.vacationMinDays}d
  sieve_vacation_default_period = ${m.vacationDefaultDays}d
  sieve_vacation_max_period = 90d
  sieve_vacation_use_original_recipient = yes
  sieve_vacation_dont_check_recipient = no
  # Redirects reach the injection listener with the original envelope sender, which Letterbox
  # rewrites with SRS in the mailbox's domain (src/smtp/inject/redirect.ts), as forwards.
  sieve_redirect_envelope_from = sender
}
${m.submissionHost ? `# Vacation replies and redirects: Letterbox's loopback injection listener (DKIM-signed, queued).\nsubmission_host = ${m.submissionHost}\n` : ''}# ---- END mailbox self-service ----
`;
}

/**
 * Dovecot 2.4 syntax: protocols as a boolean list, inet_listener `listen`, the Sieve settings at the
 * top level (no plugin {}), sieve_quota_script_count / sieve_quota_storage_size,
 * sieve_extensions { x = no }, sieve_vacation_check_recipient, and the vacation script as a
 * `sieve_script` storage of type `before` (cause: delivery, the default, so it never runs for IMAP
 * events).
 */
export function renderSelfServiceBlock24(o: { config: Config; mode: 'root' | 'rootless' }): string {
  const m = selfServiceModel(o);
  const managesieve = m.managesieve.length
    ? `protocols {
  sieve = yes
}
service managesieve-login {
${listenerBlocks(m, 'listen')}${m.rootless ? '\n  chroot =' : ''}
}
protocol sieve {
  # STARTTLS before AUTH: ssl = required and auth_allow_cleartext = no above apply here too.
  managesieve_max_line_length = 65536
  managesieve_implementation_string = Letterbox
}
`
    : '';
  return `
# ---- BEGIN mailbox self-service (Sieve, ManageSieve, vacation): src/dovecot/selfservice.ts ----
${managesieve}sieve_max_script_size = ${m.maxScriptSize}
sieve_quota_script_count = ${m.maxScripts}
sieve_quota_storage_size = ${m.maxScriptSize * m.maxScripts}
sieve_max_redirects = ${m.maxRedirects}
# sieve_extprograms (pipe, filter, execute) is not given to users' scripts: they cannot run programs.
${m.vacation ? '' : '# No local injection listener: nothing could send what these produce.\nsieve_extensions {\n  vacation = no\n  vacation-seconds = no\n}\n'}sieve_script vacation {
  type = before
  driver = file
  path = ~/${VACATION_SCRIPT}
}
sieve_vacation_min_period = ${m.vacationMinDays}d
sieve_vacation_default_period = ${m.vacationDefaultDays}d
sieve_vacation_max_period = 90d
sieve_vacation_use_original_recipient = yes
sieve_vacation_check_recipient = yes
# Redirects reach the injection listener with the original envelope sender, which Letterbox
# rewrites with SRS in the mailbox's domain (src/smtp/inject/redirect.ts), as forwards.
sieve_redirect_envelope_from = sender
${m.submissionHost ? `# Vacation replies and redirects: Letterbox's loopback injection listener (DKIM-signed, queued).\nsubmission_host = ${m.submissionHost}\n` : ''}# ---- END mailbox self-service ----
`;
}
