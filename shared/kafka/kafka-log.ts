/**
 * kafkajs's log entries into pino: the SASL password scrubbed, an outage said once a minute
 * instead of kafkajs's lines every few seconds, and the errors kafkajs recovers from by itself
 * (a consumer's crash and restart, retried responses) below ERROR. Pure but for the logger.
 */
import type { Logger } from '../logger.ts';
import { GATE_CLOSED } from './gate.ts';
import type { ConsumerCrash } from './ports.ts';

/** kafkajs's logLevel values (kafkajs itself is imported by client.ts alone). */
const LEVELS = { ERROR: 1, WARN: 2, INFO: 4, DEBUG: 5 } as const;

/** What kafkajs hands a logCreator (levels: 1 error, 2 warn, 4 info, 5 debug). */
export interface KafkajsLogEntry {
  namespace: string;
  level: number;
  log: { message: string; [field: string]: unknown };
}

export interface KafkajsLogOptions {
  /** Named in the one line that says Kafka cannot be reached. */
  brokers?: readonly string[];
  /** At most one such warning per this long; the rest go to debug. Default 60 s. */
  unreachableEveryMs?: number;
  now?: () => number;
}

/**
 * A failure to reach a broker, which kafkajs retries (and logs at ERROR with a stack, about
 * twice per attempt): `Connection error: …`/`Connection timeout`, and BrokerPool's retry lines,
 * among them the first request's timeout from a broker that accepted TCP and never answered.
 */
export function isConnectionFailure(namespace: string, message: string): boolean {
  if (namespace === 'Connection') return /^Connection (error|timeout)/.test(message);
  return namespace === 'BrokerPool' && (/^Failed to connect to (seed )?broker/.test(message) || /^Request ApiVersions\b.* timed out$/.test(message));
}

/** kafkajs's failure once our gate shut (its broker list empty). */
const NO_BROKERS = 'brokers array is empty';

/** A connection failure's message, whoever gives it (a consumer's crash, an error a retry gave up on). */
const unreachableMessage = (message: string): boolean => isConnectionFailure('Connection', message) || isConnectionFailure('BrokerPool', message);

/**
 * Whether a kafkajs failure is Kafka not being reached (or our stopped client's gate): the
 * client's once-a-minute 'cannot reach Kafka' warning says so already, a line per crash would
 * repeat it every few seconds of an outage.
 */
export function isKafkaUnreachable(err: unknown): boolean {
  let e = err as { message?: unknown; cause?: unknown } | null | undefined;
  for (let depth = 0; e && depth < 5; depth++, e = e.cause as typeof e) {
    const message = typeof e.message === 'string' ? e.message : '';
    if (unreachableMessage(message) || message.includes(GATE_CLOSED) || message.includes(NO_BROKERS)) return true;
  }
  return false;
}

/**
 * kafkajs log entry -> pino, with the SASL password scrubbed from anything kafkajs might echo.
 * While Kafka cannot be reached, one warning names the brokers (again at most every
 * `unreachableEveryMs`, then saying since when), without a stack; the rest go to debug: whoever called kafkajs gets the
 * error too and logs its own retry.
 */
export function pinoLogEntry(log: Logger, secret?: string | (() => readonly string[]), opts: KafkajsLogOptions = {}): (entry: KafkajsLogEntry) => void {
  // A function: the passwords a kafka.sasl.passwordFile has held (rotated in place).
  const secrets = typeof secret === 'function' ? secret : () => (secret ? [secret] : []);
  const scrub = (v: unknown): unknown => {
    if (!secret) return v;
    if (typeof v === 'string') return secrets().reduce((text, s) => (s ? text.split(s).join('[redacted]') : text), v);
    if (v && typeof v === 'object' && !Buffer.isBuffer(v)) {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, /password/i.test(k) ? '[redacted]' : scrub(x)]));
    }
    return v;
  };
  const now = opts.now ?? Date.now;
  const every = opts.unreachableEveryMs ?? 60_000;
  let warnedAt = -Infinity;
  // Since when Kafka has been unreachable: a failure after a quiet spell longer than two warning
  // periods starts a new outage (kafkajs logs no success to reset it by).
  let downSince = -Infinity;
  let failedAt = -Infinity;
  return ({ namespace, level, log: entry }) => {
    const { message, timestamp: _ts, logger: _name, ...extra } = entry;
    const fields = scrub({ namespace, ...extra }) as Record<string, unknown>;
    const msg = scrub(message) as string;
    // Our own doing: the gate of a client that was stopped (Gate.close).
    if (msg.includes(GATE_CLOSED) || msg.includes(NO_BROKERS)) return log.debug(fields, msg);
    // A consumer's runner gives a connection failure up after its retries (a few seconds) and
    // restarts: 'Crash: …' and 'Restarting the consumer in …' at ERROR, twice per cycle of an
    // outage. The crash is the connection failure again; the restart goes to the consumer's onCrash too.
    const crash = namespace === 'Consumer' ? /^Crash: \w+: (.*)$/s.exec(msg) : null;
    if (namespace === 'Consumer' && msg.startsWith('Restarting the consumer in ')) return log.debug(fields, msg);
    if (level <= LEVELS.WARN && (isConnectionFailure(namespace, msg) || (crash && unreachableMessage(crash[1])))) {
      delete fields.stack;
      if (now() - failedAt > 2 * every) downSince = now();
      failedAt = now();
      if (now() - warnedAt >= every) {
        warnedAt = now();
        const brokers = opts.brokers?.length ? ` at ${opts.brokers.join(',')}` : '';
        const down = now() - downSince;
        const since = down >= 1_000 ? ` since ${new Date(downSince).toISOString()} (${Math.round(down / 1_000)} s)` : '';
        log.warn(fields, `cannot reach Kafka${brokers}${since}: ${(crash?.[1] ?? msg).replace(/^Failed to connect to seed broker, trying another broker from the list: /, '')}; retrying`);
      } else log.debug(fields, msg);
      return;
    }
    // kafkajs logs every error response at ERROR, also the ones it retries (coordinator
    // loading, leader moved): whatever it does not recover from is thrown to the caller anyway.
    if (level === LEVELS.ERROR && namespace === 'Connection' && msg.startsWith('Response ')) log.debug(fields, msg);
    // A send kafkajs retries after refreshing metadata (a new topic's leader not known yet).
    else if (level === LEVELS.ERROR && msg.startsWith('Failed to send messages: ') && extra.retryCount !== undefined) log.warn(fields, msg);
    // A consumer's crash is logged before kafkajs decides to restart it (its 'Restarting' line
    // went to debug above), with a stack and no member. Whoever runs the consumer hears of it
    // (onCrash) once decided: consumerCrashLine's warning for a restart, its own failure when
    // kafkajs gives up. One line per crash, not two.
    else if (level === LEVELS.ERROR && namespace === 'Consumer' && msg.startsWith('Crash: ')) {
      delete fields.stack;
      log.debug(fields, msg);
    }
    else if (level === LEVELS.ERROR) log.error(fields, msg);
    else if (level === LEVELS.WARN) log.warn(fields, msg);
    else if (level === LEVELS.INFO) log.info(fields, msg);
    else log.debug(fields, msg);
  };
}

/**
 * The line a consumer's owner logs for a crash kafkajs restarts from (kafkajs's own 'Crash: …'
 * is at debug): a warning with the group, the member and the error's message, without a stack
 * (recovered from). At debug while Kafka cannot be reached (the client's 'cannot reach Kafka'
 * warning says so once a minute, a crash comes every few seconds) or once the owner stopped the
 * consumer. Null when kafkajs gives up: that is the owner's failure to report. Pure.
 */
export function consumerCrashLine(c: ConsumerCrash, stopping: boolean): { level: 'warn' | 'debug'; fields: Record<string, unknown>; msg: string } | null {
  if (!c.restart) return null;
  const error = `${c.error.name}: ${c.error.message}`;
  return {
    level: stopping || isKafkaUnreachable(c.error) ? 'debug' : 'warn',
    fields: { groupId: c.groupId, memberId: c.memberId, error },
    msg: `consumer crashed; kafkajs restarts it: ${error}`,
  };
}
