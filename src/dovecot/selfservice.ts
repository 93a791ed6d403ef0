// The Dovecot settings of the mailbox self-service features, kept in one block that
// renderDovecotConfig appends: ManageSieve (RFC 5804) on listen.managesieve, the Sieve limits from
// [sieve], the vacation script run before the user's own (sieve_before), and where Sieve's own
// mail (vacation replies, redirects) goes: Letterbox's loopback injection listener (listen.inject),
// which DKIM-signs and queues it like submission. Dovecot 2.3 syntax, like the rest of the file.
import { parseHostPort, type Config } from '../config/schema.ts';

/** Where the vacation script lives, relative to the mailbox's home (outside the user's script storage). */
export const VACATION_SCRIPT = 'letterbox/vacation.sieve';

export function renderSelfServiceBlock(o: { config: Config; mode: 'root' | 'rootless' }): string {
  const { config } = o;
  const sieve = config.sieve;
  const ms = config.listen.managesieve.map((s) => parseHostPort(s)!);
  const byPort = new Map<number, string[]>();
  for (const { host, port } of ms) byPort.set(port, [...(byPort.get(port) ?? []), host]);
  const listeners = [...byPort.entries()].map(([port, hosts], i) => `  inet_listener sieve${i ? i + 1 : ''} {\n    address = ${hosts.join(' ')}\n    port = ${port}\n  }`).join('\n');
  const inject = config.listen.inject ? parseHostPort(config.listen.inject)! : null;
  const managesieve = ms.length
    ? `protocols = $protocols sieve
service managesieve-login {
${listeners}${o.mode === 'rootless' ? '\n  chroot =' : ''}
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
  sieve_max_script_size = ${sieve.max_script_size}
  sieve_quota_max_scripts = ${sieve.max_scripts}
  sieve_quota_max_storage = ${sieve.max_script_size * sieve.max_scripts}
  sieve_max_redirects = ${inject ? sieve.max_redirects : 0}
  # sieve_extprograms (pipe, filter, execute) is never loaded: scripts cannot run programs.
${inject ? '' : '  # No local injection listener: nothing could send what these produce.\n  sieve_extensions = -vacation -vacation-seconds\n'}  sieve_before = ~/${VACATION_SCRIPT}
  sieve_vacation_min_period = ${sieve.vacation_min_days}d
  sieve_vacation_default_period = ${sieve.vacation_default_days}d
  sieve_vacation_max_period = 90d
  sieve_vacation_use_original_recipient = yes
  sieve_vacation_dont_check_recipient = no
  # Redirects leave with the mailbox's own address as envelope sender (SPF of our domain, bounces to the user).
  sieve_redirect_envelope_from = recipient
}
${inject ? `# Vacation replies and redirects: Letterbox's loopback injection listener (DKIM-signed, queued).\nsubmission_host = ${inject.host}:${inject.port}\n` : ''}# ---- END mailbox self-service ----
`;
}
