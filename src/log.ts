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
      timestamp: isoTimeOncePerMs(),
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * pino's isoTime, formatted once per millisecond: a busy API thread logs several lines a millisecond,
 * and toISOString was ~1.5 % of its CPU.
 */
function isoTimeOncePerMs(): () => string {
  let ms = -1;
  let field = '';
  return () => {
    const now = Date.now();
    if (now !== ms) {
      ms = now;
      field = `,"time":"${new Date(now).toISOString()}"`;
    }
    return field;
  };
}

/** A logger that writes nothing (CLI commands log to stderr only when asked). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
