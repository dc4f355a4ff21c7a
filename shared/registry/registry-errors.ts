/**
 * Registry answers and failures as SchemaError (pure): which 404s mean "absent", the remedies, and
 * the library's way of reporting an unreachable registry. Used by registry-client.ts.
 */
import { SchemaError, type ErrorContext } from '../errors.ts';
import { redactUrl } from '../redact.ts';

/** Confluent's error codes for what is absent (its API reference; Karapace's are the same). */
export const SUBJECT_NOT_FOUND = 40401;
export const VERSION_NOT_FOUND = 40402;
export const SCHEMA_NOT_FOUND = 40403;
export const LEVEL_NOT_CONFIGURED = 40408;

/**
 * The registry said that what was asked for is absent: a 404 with one of `codes`. A 404 without
 * such a code comes from a URL that is not the registry's base (a path the registry does not
 * serve, a proxy): every answer is then 404, and taken for absence it hid the misconfiguration
 * (a subject "without versions"). Pure.
 */
export function registryNotFound(err: unknown, ...codes: number[]): boolean {
  return err instanceof SchemaError && err.context.status === 404 && codes.includes(err.context.errorCode as number);
}

/**
 * The registry refused a new version under the subject's level. The connector's value fields
 * are all nullable with a default, so a refusal means a changed column type (value subject) or
 * changed key columns or key column types (key subject), both made deliberately.
 */
function incompatibleRemedy(subject: string, level: string, url: string): string {
  const what = subject.endsWith('-key')
    ? 'the key columns (primary key) or their types changed'
    : 'a column type changed in a way the level refuses (e.g. int -> text, timestamp -> timestamptz)';
  return (
    `${what}; if deliberate (and made at the destination too), allow this one change: set the subject's level to NONE ` +
    `(PUT ${url}/config/${subject} with {"compatibility":"NONE"}), start the connector again (it keeps a level the subject has of its own) ` +
    `and, once it registered the new version, set it back to ${level} the same way`
  );
}

const NETWORK_CODES = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|socket hang up|timeout/i;

/**
 * A registry failure as SchemaError. The library (mappersmith) reports a network failure
 * as status 400 with the socket error in the message, so that case is told apart by text.
 * The server's words pass through `scrub`: a registry or proxy may echo the credentials it got
 * (a 401 body quoting the Authorization header); the cause then is a scrubbed copy.
 */
export function registryError(
  err: unknown,
  what: string,
  context: ErrorContext,
  url: string,
  scrub: (text: string) => string,
  /** 'request': our own, its answer's error_code known; 'registration': the library's POST /subjects/{s}/versions. */
  source?: 'request' | 'registration',
): SchemaError {
  const e = (err ?? {}) as { status?: number; message?: string; errorCode?: number; name?: string };
  const status = typeof e.status === 'number' ? e.status : undefined;
  const raw = String(e.message ?? err);
  const message = scrub(raw);
  if (message !== raw) err = { name: e.name, status, message, errorCode: e.errorCode };
  const networkFailure = (status === undefined || status === 400 || status === 0) && NETWORK_CODES.test(message);
  const retriable = networkFailure || (status !== undefined && (status >= 500 || status === 408 || status === 429));
  const ctx: ErrorContext = { ...context, status, errorCode: e.errorCode };
  let remedy: string | undefined;
  if (status === 401 || status === 403) remedy = 'check the registry username and password';
  else if (status === 404 && source === 'registration') {
    // POST /subjects/{s}/versions has no "not found" of its own: Karapace answers 40401 to a user
    // without write permission on the subject (Confluent 40301), anything else a wrong base URL.
    remedy = `the registry refused the registration as not found: does the registry user have write permission on subject ${String(context.subject)} (Karapace answers so without it), and is ${redactUrl(url)} the registry's base URL?`;
  } else if (status === 404 && source === 'request' && !(typeof e.errorCode === 'number' && e.errorCode >= 40400 && e.errorCode < 40500)) {
    // No registry error code with it: a path the registry does not serve.
    remedy = `is ${redactUrl(url)} the registry's base URL (the one its /subjects answers at)?`;
  }
  else if (status === 409) remedy = incompatibleRemedy(String(context.subject ?? '{subject}'), String(context.compatibility ?? 'BACKWARD'), url);
  else if (e.name === 'ConfluentSchemaRegistryCompatibilityError') {
    remedy = "the subject's compatibility level changed while the connector registered under it: start the connector again";
  } else if (networkFailure) remedy = 'is the schema registry running and its URL right?';
  return unreachable(new SchemaError(`${what}: ${message}`, { retriable, context: ctx, cause: err, remedy }), url) as SchemaError;
}

/**
 * The library reports a registry it cannot reach as "Confluent_Schema_Registry - Error, status
 * 400: connect ECONNREFUSED …": no such answer came, and the URL is not named. Reworded; any
 * other error passes unchanged. Pure.
 */
export function unreachable(err: unknown, url: string): unknown {
  if (!(err instanceof SchemaError) || !err.retriable || err.context.status !== 400) return err;
  const m = /^(.*?): Confluent_Schema_Registry - Error, status 400: (.*)$/s.exec(err.message);
  if (!m) return err;
  return new SchemaError(`${m[1]}: cannot reach the registry at ${redactUrl(url)} (${m[2]})`, {
    retriable: true,
    context: { ...err.context, status: undefined },
    cause: err.cause,
    remedy: err.remedy,
  });
}
