import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

// Paths whose values must never reach a log line, wherever they appear.
const REDACT = [
  'password', '*.password', 'pass', '*.pass', 'secret', '*.secret', 'hash', '*.hash', 'passwordHash', '*.passwordHash',
  'authorization', '*.authorization', 'headers.authorization', 'req.headers.authorization', 'apiKey', '*.apiKey',
];

export function createLogger(opts: { level?: string; name?: string; destination?: DestinationStream } = {}): Logger {
  const level = opts.level ?? process.env.LETTERBOX_LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      name: opts.name ?? 'letterbox',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that writes nothing (CLI commands log to stderr only when asked). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
