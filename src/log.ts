import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

// Paths whose values must never reach a log line, wherever they appear.
const REDACT = [
  'password', '*.password', 'pass', '*.pass', 'secret', '*.secret', 'hash', '*.hash', 'passwordHash', '*.passwordHash',
  'authorization', '*.authorization', 'headers.authorization', 'req.headers.authorization', 'apiKey', '*.apiKey',
];

export function createLogger(opts: { level?: string; name?: string; destination?: DestinationStream; format?: LogFormat } = {}): Logger {
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
    opts.destination ?? stdoutDestination(opts.format ?? 'json'),
  );
}

export type LogFormat = 'json' | 'pretty';

/**
 * How `serve` writes its log on stdout: human-readable lines on a terminal (someone is watching),
 * one JSON object per line otherwise (journald, files, tests). `[log] format` (or
 * LETTERBOX_LOG_FORMAT) = json | pretty overrides 'auto'. Pure.
 */
export function logFormat(stdoutIsTTY: boolean, configured: 'auto' | LogFormat = 'auto'): LogFormat {
  if (configured !== 'auto') return configured;
  return stdoutIsTTY ? 'pretty' : 'json';
}

function stdoutDestination(format: LogFormat): DestinationStream {
  if (format === 'pretty') {
    try {
      // pino-pretty as a stream in this thread (development on a terminal; the API threads' batches
      // of JSON lines are written to it too, and it formats them line by line).
      const pretty = createRequire(import.meta.url)('pino-pretty');
      return pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name', singleLine: true });
    } catch {
      /* not installed: JSON */
    }
  }
  return pino.destination({ dest: 1, sync: false });
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
