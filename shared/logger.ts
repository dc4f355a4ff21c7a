/**
 * The process logger: pino, JSON lines, or pino-pretty on a terminal. Secrets are masked twice
 * over: pino `redact` for well-known key paths, and a formatter that walks every logged object,
 * message and error, masking secret-named keys at any depth and passwords inside URLs.
 */
import pino from 'pino';
import pinoPretty from 'pino-pretty';
import { redactDeep, redactUrl } from './redact.ts';

export { redactUrl } from './redact.ts';

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** pino level; falls back to `LOG_LEVEL`, then `info`. */
  level?: string;
  /** pino-pretty output; default: when the destination is stderr and stderr is a terminal. */
  pretty?: boolean;
  /** Where lines go; default stderr (so stdout stays free for command output such as `--json`). */
  destination?: pino.DestinationStream;
  name?: string;
}

/** Paths pino censors before serialising (a first line of defence; the formatter covers any depth). */
export const REDACT_PATHS = [
  'password',
  '*.password',
  '*.*.password',
  'sasl.password',
  '*.sasl.password',
  'kafka.sasl.password',
  'ssl.key',
  '*.ssl.key',
  'headers.authorization',
  '*.headers.authorization',
];

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** The level to use: explicit, else `LOG_LEVEL`, else info. An unknown name falls back to info. */
export function resolveLevel(level?: string, env: NodeJS.ProcessEnv = process.env): string {
  const wanted = (level ?? env.LOG_LEVEL ?? 'info').toLowerCase();
  return LEVELS.has(wanted) ? wanted : 'info';
}

/** TLS private keys are secrets only under an `ssl` section (plain `key` is a record key elsewhere). */
const sslKey = (path: readonly string[]) => path.length >= 2 && path[path.length - 1] === 'key' && path[path.length - 2] === 'ssl';

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level: resolveLevel(opts.level),
    name: opts.name,
    redact: { paths: REDACT_PATHS, censor: '***' },
    formatters: {
      log: (obj) => redactDeep(obj, sslKey) as Record<string, unknown>,
      bindings: (b) => redactDeep(b, sslKey) as pino.Bindings,
    },
    // pino resets the bindings formatter for children, so mask their pre-rendered bindings here.
    onChild: (child) => {
      const rec = child as unknown as Record<symbol, unknown>;
      const rendered = rec[pino.symbols.chindingsSym];
      if (typeof rendered === 'string') rec[pino.symbols.chindingsSym] = redactUrl(rendered);
    },
    serializers: {
      // The formatter already turned errors into masked plain objects; keep pino from redoing it.
      err: (e: unknown) => (e instanceof Error ? redactDeep(e, sslKey) : e),
      msg: (m: unknown) => (typeof m === 'string' ? redactUrl(m) : m),
    },
  };
  if (opts.destination) {
    return opts.pretty ? pino(options, prettyStream(opts.destination)) : pino(options, opts.destination);
  }
  const pretty = opts.pretty ?? Boolean(process.stderr.isTTY);
  return pretty ? pino(options, prettyStream(2)) : pino(options, pino.destination({ dest: 2, sync: false }));
}

function prettyStream(destination: number | pino.DestinationStream): pino.DestinationStream {
  return pinoPretty({
    destination,
    colorize: typeof destination === 'number' ? Boolean(process.stderr.isTTY) : false,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    sync: true,
  });
}
