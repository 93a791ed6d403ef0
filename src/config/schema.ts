import { z } from 'zod';
import { isIP } from 'node:net';
import { availableParallelism, totalmem } from 'node:os';

// Accepts "host:port", "[v6]:port". Used by every listener key.
const hostPort = z.string().refine((s) => parseHostPort(s) !== null, {
  message: 'expected "address:port" (e.g. "127.0.0.1:25" or "[::1]:25") with a port 0-65535',
});

export function parseHostPort(s: string): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:\[\]]+):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[2]);
  if (port > 65535) return null;
  if (!isIP(m[1]) && !/^[a-zA-Z0-9.-]+$/.test(m[1])) return null;
  return { host: m[1], port };
}

// Environment overrides arrive as strings: lists as "a,b", numbers and booleans as text.
const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (typeof v === 'string' ? (v.trim() === '' ? [] : v.split(',').map((s) => s.trim())) : v), z.array(item));
const bool = z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean());
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
// A size key: "50M", "512k" or a number of bytes, parsed at load into bytes.
const size = z.preprocess((v) => (typeof v === 'string' ? parseSize(v) : v), z.number({ message: 'expected a size such as "512k", "50M" or "1G", or a number of bytes' }).int().min(0));

/** "50M", "1G", "512k", "1048576" → bytes; NaN when unparseable. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(s);
  if (!m) return Number.NaN;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * mult);
}

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$/i;
const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 365 * 86_400_000 };

/**
 * The one duration grammar (config files, API key expiries): "500ms", "90s", "15m", "4h", "5d",
 * "2w", "1y" (365 days), decimals allowed ("1.5h"), or a bare number of seconds → milliseconds.
 * NaN when unparseable.
 */
export function parseDuration(s: string): number {
  const m = DURATION.exec(s);
  if (!m) return Number.NaN;
  return Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's').toLowerCase() as 'ms']);
}

/** The same grammar where a bare number is not a duration (an API key's expiry: "90d", never "90"). */
export function parseDurationWithUnit(s: string): number {
  return DURATION.exec(s)?.[2] ? parseDuration(s) : Number.NaN;
}
/**
 * A duration key: written as text in the config ("30s", "15m", "5d"), parsed once at load into
 * milliseconds, so consumers read numbers. Defaults are given as text too (`.prefault('5d')`), so
 * they go through the same grammar.
 */
const duration = z
  .string()
  .refine((s) => Number.isFinite(parseDuration(s)), { message: 'expected a duration such as "30s", "15m", "4h" or "5d"' })
  .transform((s) => parseDuration(s));

const ip = z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IPv4 or IPv6 address' });
const hostname = z
  .string()
  .min(1)
  .max(253)
  .regex(/^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/, 'expected a host name such as mail.example.com');

/**
 * api.threads = "auto": how many API worker threads a machine gets. Each worker thread is a V8
 * isolate that loads the API's modules again (~60 MB RSS each, bench/README.md "Memory (#15)"),
 * and the threads only help when there are cores to spare for API reads besides SMTP, Dovecot and
 * rspamd: 2 threads with at least 4 cores and 2 GiB of memory, else none (the main thread serves
 * the API, as with api.threads = 0).
 */
export function autoApiThreads(cores: number, memBytes: number): number {
  return cores >= 4 && memBytes >= 2 * 1024 ** 3 ? 2 : 0;
}

export const configSchema = z
  .object({
    hostname,
    data_dir: z.string().min(1),
    ips: list(ip).default([]),
    listen: z
      .object({
        mx: list(hostPort),
        submission: list(hostPort),
        submissions: list(hostPort),
        imap: list(hostPort),
        api: hostPort,
        // ManageSieve (RFC 5804, served by Dovecot; STARTTLS required before AUTH). Empty = off.
        managesieve: list(hostPort).default([]),
        // Local injection for mail Dovecot's Sieve sends (vacation replies, redirects): a loopback
        // SMTP listener without AUTH that DKIM-signs and queues like submission. Empty = off
        // (then Sieve vacation and redirect are refused).
        inject: z.union([z.literal(''), hostPort]).default('').refine((s) => s === '' || /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d+$/.test(s), {
          message: 'must be a loopback address ("127.0.0.1:10026"): it accepts mail without authentication',
        }),
      })
      .strict(),
    tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict(),
    dns: z.object({ servers: list(z.string()).default([]), timeout_ms: int(100, 60000).default(5000) }).strict().prefault({}),
    // Inbound MX limits (Inbound issue owns this section).
    smtp: z
      .object({
        max_message_size: size.default(50 * 1024 * 1024),
        max_recipients: int(1, 100000).default(100),
        max_connections: int(1, 100000).default(1000),
        max_connections_per_ip: int(1, 100000).default(20),
        // Stress mode (like Postfix's): above stress_threshold × max_connections open MX sessions, a
        // session idle for stress_idle_timeout_ms before MAIL FROM is closed (421 4.4.2).
        stress_threshold: z.coerce.number().min(0).max(1).default(0.75),
        stress_idle_timeout_ms: int(1000, 3600000).default(10000),
        socket_timeout_ms: int(1000, 3600000).default(300000),
        // Deadlines trickled bytes cannot extend: a whole command line, a whole message after DATA.
        command_timeout_ms: int(1000, 3600000).default(300000),
        data_timeout_ms: int(1000, 86400000).default(600000),
        max_line_length: int(512, 1000000).default(4096),
        max_errors: int(1, 1000).default(10),
        dmarc_reject: z.enum(['reject', 'quarantine']).default('reject'),
        spf_fail: z.enum(['accept', 'reject']).default('accept'),
        quota_full_reply: z.enum(['452', '552']).default('452'),
        // Bare LF / bare CR in DATA (SMTP smuggling): refuse the message, or rewrite them to CRLF.
        bare_newline: z.enum(['reject', 'normalize']).default('reject'),
        // The MX's stored verdicts (SPF, DKIM, DMARC, ARC) of each delivered message are kept this long;
        // the API then reads our own Authentication-Results header instead (src/verdicts/store.ts).
        verdicts_retention: duration.prefault('365d'),
      })
      .strict()
      .prefault({}),
    // Submission (587/465) and abuse caps (Sending issue owns this section).
    submission: z
      .object({
        max_messages_per_hour: int(0, 1000000).default(200),
        max_recipients_per_day: int(0, 10000000).default(1000),
        max_recipients_per_message: int(1, 100000).default(100),
        // Brute-force protection for AUTH (per client IP and per account name, known or not).
        auth_max_failures: int(1, 100000).default(10), // failures within auth_window → lockout
        auth_window: duration.prefault('15m'),
        auth_lockout: duration.prefault('15m'),
        auth_delay_ms: int(0, 60000).default(500), // delay after a failure, doubling per failure
        auth_delay_max_ms: int(0, 60000).default(8000),
        // --- Login protection and connection limits (issue #16; README "Login protection"). ---
        // The auth_* keys above are the ONE login policy: submission AUTH and IMAP logins count together.
        auth_known_network_ttl: duration.prefault('30d'), // a network that logged in keeps working while the account is locked
        auth_policy_listen: hostPort.default('127.0.0.1:0'), // Dovecot asks the guard here (0: a free port per start)
        max_connections: int(1, 100000).default(500), // over 587 and 465 together
        max_connections_per_ip: int(1, 100000).default(20), // per IPv4 address / IPv6 /64
        stress_threshold: z.coerce.number().min(0).max(1).default(0.75),
        stress_idle_timeout_ms: int(1000, 3600000).default(10000),
        // --- end ---
        max_message_size: size.default(50 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    // Outbound queue and delivery (Sending issue owns this section).
    outbound: z
      .object({
        port: int(1, 65535).default(25),
        ipv4_only: bool.default(false),
        max_age: duration.prefault('5d'),
        delay_notice_after: duration.prefault('4h'),
        concurrency: int(1, 10000).default(20),
        concurrency_per_domain: int(1, 1000).default(4),
        // Destination domains always delivered over IPv4 (e.g. providers strict about IPv6 rDNS).
        ipv4_only_domains: list(z.string()).default([]),
        // Retry delays after the 1st, 2nd... failure; the last one repeats until max_age. ±retry_jitter.
        retry_schedule: list(duration).prefault(['5m', '10m', '30m', '1h', '2h', '4h', '8h']),
        retry_jitter: z.coerce.number().min(0).max(1).default(0.1),
        // Dedicated IPs: source address → its EHLO name (must match its rDNS); sending domain → source address.
        source_ips: z.record(ip, hostname).default({}),
        domain_ips: z.record(z.string(), ip).default({}),
        // Relay all remote mail through one host instead of MX delivery ("host:port"; empty = direct).
        smarthost: z.union([z.literal(''), hostPort]).default(''),
        smarthost_tls: z.enum(['starttls', 'tls', 'none']).default('starttls'),
        smarthost_user: z.string().default(''),
        smarthost_password_file: z.string().default(''),
        mta_sts: bool.default(true),
        // DANE (RFC 7672): TLSA records that a DNSSEC-validating resolver (dns.servers) vouches for make TLS and a matching certificate mandatory.
        dane: bool.default(true),
        // Port of MTA-STS policy hosts (RFC 8461: 443; tests point it at a local HTTPS server).
        mta_sts_port: int(1, 65535).default(443),
        // Extra CA certificates (PEM file) trusted for MTA-STS policy hosts and enforced MX TLS.
        tls_ca_file: z.string().default(''),
        connect_timeout_ms: int(100, 600000).default(30000),
        socket_timeout_ms: int(1000, 3600000).default(300000),
        // How often the scheduler looks for due or retried entries at most (an index lookup).
        poll_interval_ms: int(50, 600000).default(1000),
        // Finished messages (every recipient delivered, bounced or cancelled) and their attempts are kept this long.
        retention: duration.prefault('30d'),
      })
      .strict()
      .prefault({}),
    // Management API (API issues own this section).
    api: z
      .object({
        rate_per_minute: int(1, 1000000).default(60),
        rate_burst: int(1, 1000000).default(60),
        send_rate_per_minute: int(1, 1000000).default(30),
        send_rate_burst: int(1, 1000000).default(10),
        max_body_size: size.default(30 * 1024 * 1024),
        // Worker threads serving listen.api (read routes answered there, the rest by the main
        // thread); 0 = the main thread listens itself; "auto" (default) = 2 on a machine with at
        // least 4 cores and 2 GiB, else 0 (each thread is a V8 isolate of ~70 MB RSS).
        threads: z
          .union([z.literal('auto'), int(0, 64)])
          .transform((v) => (v === 'auto' ? autoApiThreads(availableParallelism(), totalmem()) : v))
          .prefault('auto'),
      })
      .strict()
      .prefault({}),
    // Webhooks (API part 2 owns this section). Targets are checked before every delivery.
    webhooks: z
      .object({
        // SSRF guard: loopback and private (RFC 1918, ULA, CGNAT) targets are refused unless allowed;
        // link-local (cloud metadata), multicast and unspecified addresses are always refused.
        allow_loopback: bool.default(false),
        allow_private: bool.default(false),
        timeout_ms: int(100, 120000).default(10000),
        // Delays after the 1st, 2nd... failed attempt (then the delivery fails for good): ~32 h in all.
        retry_schedule: list(duration).prefault(['30s', '2m', '10m', '30m', '1h', '2h', '4h', '8h', '8h', '8h']),
        disable_after: duration.prefault('3d'), // an endpoint failing this long is disabled
        secret_grace: duration.prefault('24h'), // the old secret stays valid this long after a rotation
        retention: duration.prefault('7d'), // delivery log kept this long
        poll_interval_ms: int(20, 600000).default(1000),
        concurrency: int(1, 1000).default(8),
      })
      .strict()
      .prefault({}),
    // Mailbox self-service: Sieve filters and vacation replies (enforced by Dovecot and the API).
    sieve: z
      .object({
        max_script_size: size.default(64 * 1024),
        max_scripts: int(1, 1000).default(20),
        // Redirects one message may cause (each counts against the mailbox's sending caps).
        max_redirects: int(0, 100).default(4),
        // Forwarding per mailbox (PUT /mailboxes/:id/forwarding): at most this many targets.
        max_forward_targets: int(1, 100).default(10),
        // Vacation: text (plain + HTML) size; reply interval bounds in days.
        vacation_max_text: size.default(16 * 1024),
        vacation_min_days: int(1, 365).default(1),
        vacation_default_days: int(1, 365).default(7),
      })
      .strict()
      .prefault({}),
    dovecot: z
      .object({
        managed: bool.default(true),
        binary: z.string().default('/usr/sbin/dovecot'),
        mail_user: z.string().default('vmail'),
        default_quota: size.default(0),
        // As root, when Dovecot's users (dovecot, the mail user) cannot traverse data_dir (a clone in
        // /root), Dovecot's files and the mail go to <fallback_dir>/letterbox-dev-<hash> instead.
        fallback_dir: z.string().default('/var/lib'),
        // LMTP sessions to Dovecot at once (deliveries and quota probes), and Dovecot's lmtp process
        // limit: each session is one lmtp process (~2 MB PSS), so 100 SMTP sessions no longer mean
        // 100 of them. A delivery waits for a free session (up to its timeout, then 451: retried).
        lmtp_sessions: int(1, 1000).default(10),
      })
      .strict()
      .prefault({}),
    // Spam filtering with rspamd + Redis (issue #14; src/spam/). enabled: "auto" = on when rspamd is installed.
    spam: z
      .object({
        enabled: z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.union([z.boolean(), z.literal('auto')])).default('auto'),
        rspamd_binary: z.string().default('/usr/bin/rspamd'),
        redis_binary: z.string().default('/usr/bin/redis-server'),
        // When Letterbox runs as root (development), rspamd and Redis run as this user.
        user: z.string().default('_rspamd'),
        timeout_ms: int(100, 120000).default(10000),
        on_failure: z.enum(['tempfail', 'accept']).default('tempfail'),
        max_scan_size: size.default(10 * 1024 * 1024),
        reject: z.coerce.number().default(15),
        junk: z.coerce.number().default(6),
        greylist: z.coerce.number().default(4),
        greylisting: bool.default(true),
        greylist_delay: duration.prefault('5m'),
        outbound_threshold: z.coerce.number().default(10),
        // Resolvers rspamd uses for blocklists ("ip" or "ip:port"); empty = dns.servers, then the system's.
        resolver: list(z.string()).default([]),
        redis_max_memory: size.default(128 * 1024 * 1024),
        // rspamd's hyperscan cache (compiled regexps); empty = data_dir/rspamd/db. Safe to share.
        hs_cache_dir: z.string().default(''),
        // rspamd's fuzzy hashes (fuzzy1/2.rspamd.com over UDP).
        fuzzy: bool.default(true),
        // rspamd's test patterns (GTUBE variants for add header / rewrite subject): tests only.
        test_patterns: bool.default(false),
        start_timeout_ms: int(1000, 600000).default(120000),
      })
      .strict()
      .prefault({}),
    // Certificates from an ACME CA (HTTP-01 on port 80) and MTA-STS policy hosting (Production issue).
    acme: z
      .object({
        enabled: bool.default(false),
        email: z.string().default(''),
        directory_url: z.string().url().default('https://acme-v02.api.letsencrypt.org/directory'),
        // Where Letterbox answers HTTP-01 challenges (port 80) and serves MTA-STS policies (443).
        http_listen: list(hostPort).default(['0.0.0.0:80']),
        https_listen: list(hostPort).default(['0.0.0.0:443']),
        renew_days_before: int(1, 89).default(30),
        mta_sts_mode: z.enum(['testing', 'enforce', 'none']).default('testing'),
        mta_sts_max_age: int(86400, 31557600).default(604800),
      })
      .strict()
      .prefault({}),
    // DKIM key rotation (issue #18; src/dkim/rotate.ts): how long a replaced key stays published
    // after signing moved to its successor, and automatic rotation every N months (0 = only by hand).
    dkim: z
      .object({
        rotation_grace: duration.prefault('7d'),
        rotate_every_months: int(0, 120).default(0),
      })
      .strict()
      .prefault({}),
    // Deliverability reports received (issue #18; src/reports/): the local parts of the addresses
    // published in each domain's DMARC rua= and TLS-RPT rua= ("" = not taken out of the normal
    // routing; rua= then names postmaster), and the limits on a report message and on unpacking its attachment.
    reports: z
      .object({
        dmarc_address: z.string().regex(/^([a-z0-9][a-z0-9._-]{0,63})?$/, 'expected a lower-case local part such as "dmarc-reports", or ""').default('dmarc-reports'),
        tls_address: z.string().regex(/^([a-z0-9][a-z0-9._-]{0,63})?$/, 'expected a lower-case local part such as "tls-reports", or ""').default('tls-reports'),
        max_message_size: size.default(10 * 1024 * 1024),
        max_unpacked_size: size.default(20 * 1024 * 1024),
        max_ratio: z.coerce.number().min(1).max(100000).default(200),
        retention: duration.prefault('400d'),
        // Reports sent (issue #18; src/reports/send-out.ts), daily at 00:23 UTC for the previous UTC day:
        // DMARC aggregate reports to the rua= of domains we received mail from, TLS reports (RFC 8460)
        // to the rua= of domains we delivered to. Off by default; rate limits per run and per address.
        dmarc_send: bool.default(false),
        tls_send: bool.default(false),
        max_per_run: int(1, 100000).default(1000),
        max_per_destination: int(1, 10000).default(50),
        max_report_size: size.default(10 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        // serve's log on stdout: 'auto' = human-readable on a terminal, JSON lines otherwise.
        format: z.enum(['auto', 'json', 'pretty']).default('auto'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema> & {
  /** Where the configuration came from: a file path, or "development defaults". */
  source: string;
};
