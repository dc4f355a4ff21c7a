/**
 * The error taxonomy shared by both connectors. Every error carries `retriable` and a
 * context object (table, column, topic, partition, offset, sqlstate...) so that callers
 * decide on retry by the flag, never by matching names or messages.
 */
export type ErrorContext = Record<string, string | number | bigint | boolean | undefined | null>;

export type ErrorKind = 'config' | 'source' | 'schema' | 'sink-apply' | 'retriable' | 'decode' | 'service';

export class ShardBridgeError extends Error {
  readonly kind: ErrorKind;
  readonly retriable: boolean;
  readonly context: ErrorContext;
  /** A one-line hint for the operator, when we know what fixes it. */
  readonly remedy?: string;

  constructor(
    kind: ErrorKind,
    message: string,
    opts: { retriable?: boolean; context?: ErrorContext; cause?: unknown; remedy?: string } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.kind = kind;
    this.retriable = opts.retriable ?? false;
    this.context = opts.context ?? {};
    this.remedy = opts.remedy;
  }

  /**
   * Message with context appended, e.g. for CLI output: on the message's first line (a
   * multi-line message lists findings with their own remedies), then the remedy. Internal keys
   * (`phase`) and a server the message already names are left out.
   */
  describe(): string {
    const ctx = Object.entries(this.context)
      .filter(([k, v]) => v !== undefined && v !== null && k !== 'phase' && !(SERVER_KEYS.has(k) && this.message.includes(String(v))))
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
    const [first, ...rest] = this.message.split('\n');
    const lines = [ctx ? `${first} (${ctx})` : first, ...rest];
    if (this.remedy) lines.push(`  remedy: ${this.remedy}`);
    return lines.join('\n');
  }
}

const SERVER_KEYS = new Set(['source', 'destination', 'registry', 'brokers']);

/** A bad or missing configuration value; `context.key` names it. Exit code 2. */
export class ConfigError extends ShardBridgeError {
  constructor(message: string, opts: { context?: ErrorContext; cause?: unknown; remedy?: string } = {}) {
    super('config', message, { ...opts, retriable: false });
  }
}

/** The source database refused or cannot serve what we need (start-up checks, slot lost...). */
export class SourceError extends ShardBridgeError {
  constructor(message: string, opts: { retriable?: boolean; context?: ErrorContext; cause?: unknown; remedy?: string } = {}) {
    super('source', message, opts);
  }
}

/** A schema problem: incompatible type change, registry refusal, unmappable type. */
export class SchemaError extends ShardBridgeError {
  constructor(message: string, opts: { retriable?: boolean; context?: ErrorContext; cause?: unknown; remedy?: string } = {}) {
    super('schema', message, opts);
  }
}

/** A record that cannot be decoded (unknown schema id, corrupt bytes). */
export class DecodeError extends ShardBridgeError {
  constructor(message: string, opts: { context?: ErrorContext; cause?: unknown; remedy?: string } = {}) {
    super('decode', message, { ...opts, retriable: false });
  }
}

/** The destination refused a batch for a reason that retrying will not fix by itself. */
export class SinkApplyError extends ShardBridgeError {
  constructor(message: string, opts: { retriable?: boolean; context?: ErrorContext; cause?: unknown; remedy?: string } = {}) {
    super('sink-apply', message, opts);
  }
}

/** A transient failure: connection lost, deadlock, broker unavailable. */
export class RetriableError extends ShardBridgeError {
  constructor(message: string, opts: { context?: ErrorContext; cause?: unknown; remedy?: string } = {}) {
    super('retriable', message, { ...opts, retriable: true });
  }
}

/** A server the command depends on (a database, Kafka, the registry) failed it; the message names the server. */
export class ServiceError extends ShardBridgeError {
  constructor(message: string, opts: { retriable?: boolean; context?: ErrorContext; cause?: unknown; remedy?: string } = {}) {
    super('service', message, opts);
  }
}

/**
 * `err` as a ServiceError whose message starts with `what` ("cannot use Kafka at k1:9092"), for
 * the failures of a start-up step: the bare driver message never says which server. Retriable
 * as `err` is, its context and remedy kept; a ConfigError passes unchanged (it names its key).
 */
export function atServer(err: unknown, what: string, remedy?: string): ShardBridgeError {
  if (err instanceof ConfigError) return err;
  const sb = err instanceof ShardBridgeError ? err : undefined;
  const e = err as { message?: string; code?: string };
  const message = e?.message || e?.code || String(err);
  return new ServiceError(`${what}: ${message}`, { retriable: isRetriable(err), context: sb?.context, cause: err, remedy: sb?.remedy ?? remedy });
}

/**
 * Whether an error is worth retrying. Walks the cause chain (wrapping must not hide a
 * retriable cause, kafkajs issues 1271/1299), honours our flag, kafkajs's `retriable`,
 * PostgreSQL SQLSTATE classes and Node socket errors.
 */
export function isRetriable(err: unknown): boolean {
  if (tlsTrustFailure(err) !== null) return false;
  for (let e: any = err, depth = 0; e && depth < 8; e = e.cause, depth++) {
    if (e instanceof ShardBridgeError) {
      if (e.retriable) return true;
      if (e.kind !== 'retriable' && e.cause === undefined) return false;
      continue;
    }
    if (typeof e.retriable === 'boolean' && e.retriable) return true;
    if (typeof e.code === 'string') {
      if (isRetriableSqlState(e.code)) return true;
      if (RETRIABLE_NODE_CODES.has(e.code)) return true;
    }
  }
  return false;
}

const RETRIABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Node's (OpenSSL's) codes for a server certificate that does not verify. */
const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'INVALID_PURPOSE', 'CERT_CHAIN_TOO_LONG', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * The code of a server certificate that did not verify, anywhere down the cause chain; null when
 * `err` is not that. A setting to fix, never a passing failure, whatever the client's wrapper
 * says (kafkajs marks its connection errors retriable).
 */
export function tlsTrustFailure(err: unknown): string | null {
  for (let e: any = err, depth = 0; e && depth < 8; e = e.cause, depth++) {
    if (typeof e.code === 'string' && TLS_TRUST_CODES.has(e.code)) return e.code;
  }
  return null;
}

/** The remedy for a server certificate that did not verify (`caSetting` names where its CA goes); null when `err` is not that. */
export function tlsTrustRemedy(err: unknown, caSetting: string): string | null {
  const code = tlsTrustFailure(err);
  if (code === null) return null;
  return `the server's TLS certificate did not verify (${code}): give the CA that signed it as ${caSetting}, and check that the certificate names the host connected to`;
}

/** SQLSTATEs that mean "try again later": connection, serialization/deadlock, shutdown, resources. */
export function isRetriableSqlState(code: string): boolean {
  if (!/^[0-9A-Z]{5}$/.test(code)) return false;
  const cls = code.slice(0, 2);
  return (
    cls === '08' || // connection exception
    cls === '40' || // transaction rollback: serialization failure, deadlock
    cls === '53' || // insufficient resources
    cls === '57' || // operator intervention: admin shutdown, cannot connect now (57P01..57P03)
    code === '25P04' || // transaction_timeout (17+): the session was ended, the work may be done again (as after a statement_timeout)
    code === '55006' || // object in use
    code === '55P03' // lock not available
  );
}
