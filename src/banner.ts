// What `letterbox serve` prints on a terminal once it is ready: where things are and what to do next.
import { relative } from 'node:path';
import { APP_DIR, DEV_SOURCE } from './config/load.ts';
import type { Config } from './config/schema.ts';

const SYSTEM_CONFIG = '/etc/letterbox/letterbox.toml';

/** The CLI command a user types for this config (the checkout's script in development). Pure. */
export function cliCommand(config: Config, cwd: string, appDir: string = APP_DIR): string {
  if (config.source === DEV_SOURCE) {
    const rel = relative(cwd, `${appDir}/src/bin/letterbox`);
    return rel.startsWith('..') ? `${appDir}/src/bin/letterbox` : rel;
  }
  return config.source === SYSTEM_CONFIG ? 'letterbox' : `letterbox --config ${config.source}`;
}

/** The text. Pure. */
export function readyBanner(config: Config, o: { dovecotSeries: string; relocatedTo: string | null; cwd?: string; appDir?: string }): string {
  const cli = cliCommand(config, o.cwd ?? process.cwd(), o.appDir);
  const l = config.listen;
  const domain = config.source === DEV_SOURCE ? 'example.test' : 'example.com';
  const lines = [
    '',
    `Letterbox is ready (${config.source === DEV_SOURCE ? 'development defaults' : config.source}).`,
    `  MX (SMTP in)        ${l.mx.join(', ')}`,
    `  submission          ${l.submission.join(', ')} (STARTTLS), ${l.submissions.join(', ')} (TLS)`,
    `  IMAP                ${l.imap.join(', ')} (TLS, Dovecot ${o.dovecotSeries})`,
    `  management API      http://${l.api}`,
    `  data                ${config.data_dir}`,
    ...(o.relocatedTo ? [`  Dovecot files, mail ${o.relocatedTo} (Dovecot's users cannot reach the data folder; symlinked from it)`] : []),
    `  certificate         ${config.tls.cert}`,
    '',
    'Next, in another terminal:',
    `  ${cli} domain add ${domain}`,
    `  ${cli} mailbox add alice@${domain} --password 'a long password'`,
    `Then any IMAP client logs in as alice@${domain} at ${l.imap[0]} (TLS${config.source === DEV_SOURCE ? ', self-signed certificate' : ''}).`,
    'Stop with Ctrl-C.',
    '',
  ];
  return lines.join('\n') + '\n';
}
