/**
 * The schema registry edge shared by both connectors: registers schemas and fetches them
 * by id, caching both so that the hot path never waits on the registry per record. Only
 * schemas (JSON) and ids cross this boundary: we build our own avsc types (BigInt longs),
 * so the library's encode/decode are not used.
 *
 * Registration goes through `@kafkajs/confluent-schema-registry` (its retries, basic auth,
 * subject compatibility check); the calls that library does not expose — the raw schema
 * text by id, a subject's latest version, and PUT /config/{subject} — are plain fetches with
 * the same auth. Those are not retried here: failures come back as `SchemaError` with
 * `retriable: true` for the caller's retry policy.
 *
 * Every request, the library's too, ends after `requestTimeoutMs` (10 s): a registry that accepts
 * the connection and never answers is then as unreachable as one that refuses it, and the
 * caller's loop (with its backoff, its log line and its stop signal) takes over at once.
 */
import { createHash } from 'node:crypto';
import { SchemaRegistry, SchemaType, COMPATIBILITY } from '@kafkajs/confluent-schema-registry';
import pino, { type Logger } from 'pino';
import { SchemaError, type ErrorContext } from '../errors.ts';
import { redactKnown, redactUrl } from '../redact.ts';
import { retry } from '../retry.ts';
import { FilePassword } from '../config/password-file.ts';
import { canonicalSchemaText } from './canonical.ts';
import { LEVEL_NOT_CONFIGURED, registryError, registryNotFound, SCHEMA_NOT_FOUND, SUBJECT_NOT_FOUND, VERSION_NOT_FOUND } from './registry-errors.ts';

export { unreachable } from './registry-errors.ts';

export type CompatibilityLevel = `${COMPATIBILITY}`;

export interface RegistryClientOptions {
  /** Base URL, e.g. http://127.0.0.1:8081 */
  url: string;
  username?: string;
  password?: string;
  /**
   * schemaRegistry.passwordFile, `password` read from it at load: read again when the registry
   * answers 401 (a password rotated in place), the request then sent once more with the new one.
   */
  passwordFile?: string;
  /**
   * The level set on a subject that has none of its own, at its registration. A level the
   * subject has (an operator's NONE for one incompatible change) is kept. Default BACKWARD.
   */
  compatibility?: CompatibilityLevel;
  /** Per-request timeout (every request, the library's too). Default 10 s: a local-network service that has not answered by then is down. */
  requestTimeoutMs?: number;
  /**
   * The connector's stop: aborts every request under way (a registry that does not answer held a
   * SIGTERM for the request's timeout). Requests then fail as an unreachable registry does.
   */
  signal?: AbortSignal;
  /** Retries of the library's calls (register). Default 3. */
  retries?: number;
  logger?: Logger;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
/** Default per-request timeout. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Socket errors of a pooled keep-alive connection the server closed: worth one more try at once. */
const STALE_SOCKET = /UND_ERR_SOCKET|ECONNRESET|EPIPE|UND_ERR_CLOSED|other side closed/;

export class RegistryClient {
  private readonly lib: SchemaRegistry;
  private readonly url: string;
  /** The basic-auth credentials, the library's too (its middleware copies them at each request): a new password is set here. */
  private readonly auth: { username: string; password: string } | undefined;
  private authHeader: string | undefined;
  private readonly passwordFile: FilePassword | undefined;
  /** The credentials in every form this client sent them (passwords before a rotation too): masked in whatever a server answers. */
  private readonly secrets: string[] = [];
  private readonly scrub: (text: string) => string;
  private readonly defaultLevel: CompatibilityLevel;
  private readonly timeoutMs: number;
  private readonly stop: AbortSignal | undefined;
  private readonly log: Logger;
  /**
   * subject \0 hash of the canonical text -> id; a promise so that concurrent callers share one
   * request. A hash, not the text: a source over thousands of tables keeps an entry per subject.
   */
  private readonly idCache = new Map<string, Promise<number>>();
  /** Same schema object passed again: skip the canonicalisation too. */
  private readonly idByObject = new WeakMap<object, Map<string, Promise<number>>>();
  private readonly schemaCache = new Map<number, Promise<object>>();
  /** When a request of ours last got an answer (any status): whether the registry answers at all. */
  private lastAnswer = 0;

  constructor(opts: RegistryClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    const auth = (this.auth = opts.username !== undefined ? { username: opts.username, password: opts.password ?? '' } : undefined);
    this.setPassword(auth?.password ?? '');
    this.scrub = (text) => redactUrl(redactKnown(text, this.secrets));
    this.timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    const stop = (this.stop = opts.signal);
    // mappersmith sends without a timeout unless a middleware sets one: a registry that stopped
    // answering between the lookup and the registration held the source for good. The stop too.
    const timeout = this.timeoutMs;
    const timeoutMiddleware = () => ({
      prepareRequest: async (next: () => Promise<{ timeout(): number | undefined; enhance(o: { timeout?: number; signal?: AbortSignal }): unknown }>) => {
        const request = await next();
        // A signal of its own per request: each request's abort listener on the shared stop
        // signal itself made Node warn of a leak (MaxListenersExceeded) past ten at once.
        return request.enhance({ ...(request.timeout() ? {} : { timeout }), ...(stop ? { signal: AbortSignal.any([stop]) } : {}) });
      },
    });
    this.lib = new SchemaRegistry({
      host: this.url,
      auth,
      retry: { retries: opts.retries ?? 3 },
      middlewares: [timeoutMiddleware as unknown as NonNullable<ConstructorParameters<typeof SchemaRegistry>[0]['middlewares']>[number]],
    });
    this.defaultLevel = opts.compatibility ?? 'BACKWARD';
    // Only the URL goes into log context; credentials never do.
    // Not `component`: the caller's logger has one (pino would write the key twice).
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ subcomponent: 'schema-registry', registry: this.url });
    if (auth && opts.passwordFile !== undefined) {
      this.passwordFile = new FilePassword(opts.passwordFile, 'schemaRegistry.passwordFile', auth.password, (message, context) => this.log.warn(context, message));
    }
  }

  /** `password` in the header and the library's credentials; masked from now on. */
  private setPassword(password: string): void {
    const auth = this.auth;
    if (!auth) return;
    auth.password = password;
    const token = Buffer.from(`${auth.username}:${password}`).toString('base64');
    this.authHeader = `Basic ${token}`;
    this.secrets.push(token, token.replace(/=+$/, ''), `${auth.username}:${password}`, password, encodeURIComponent(password));
  }

  /**
   * After a 401 to a request sent with `sentWith`: whether the password file now holds another
   * password (then taken, and the request worth sending once more). Compared with the password the
   * request carried, not the current one: of requests refused together, each is sent again.
   */
  private passwordRotated(sentWith: string): boolean {
    if (!this.passwordFile || !this.auth) return false;
    const now = this.passwordFile.current();
    if (now !== this.auth.password) {
      this.setPassword(now);
      this.log.info({ key: 'schemaRegistry.passwordFile', path: this.passwordFile.path }, 'the registry refused the password (401) and schemaRegistry.passwordFile holds another: taken, the request sent again');
    }
    return now !== sentWith;
  }

  /**
   * The global id of `schema` under `subject`, registering it when new. Cached by subject
   * and canonical text (and by object identity), so treat a schema object as immutable
   * once registered. The library accepts named schemas only (record, enum, fixed).
   */
  register(subject: string, schema: object): Promise<number> {
    let perObject = this.idByObject.get(schema);
    const hit = perObject?.get(subject);
    if (hit) return hit;

    const key = `${subject}\0${createHash('sha256').update(canonicalSchemaText(schema)).digest('base64')}`;
    let p = this.idCache.get(key);
    if (!p) {
      p = this.doRegister(subject, schema);
      this.idCache.set(key, p);
      // A failed registration must not stick: the next call tries again.
      p.catch(() => {
        if (this.idCache.get(key) === p) this.idCache.delete(key);
        this.idByObject.get(schema)?.delete(subject);
      });
    }
    if (!perObject) {
      perObject = new Map();
      this.idByObject.set(schema, perObject);
    }
    perObject.set(subject, p);
    return p;
  }

  /**
   * The Avro schema JSON registered under `id`. Ids are immutable, so it is cached for
   * the life of the client. The object is shared between callers: do not mutate it.
   */
  getSchema(id: number): Promise<object> {
    let p = this.schemaCache.get(id);
    if (!p) {
      p = this.fetchSchema(id);
      this.schemaCache.set(id, p);
      p.catch(() => {
        if (this.schemaCache.get(id) === p) this.schemaCache.delete(id);
      });
    }
    return p;
  }

  /** A schema known by its id without fetching it; an entry already there stays (the registry may hold an equivalent text). */
  private cacheSchema(id: number, schema: object): void {
    if (!this.schemaCache.has(id)) this.schemaCache.set(id, Promise.resolve(schema));
  }

  /**
   * The id and schema of the latest version under `subject`, null when the subject has none
   * (40401). The schema is cached by its id, as `getSchema` would have fetched it.
   */
  async latestSchema(subject: string): Promise<{ id: number; schema: object } | null> {
    const path = `/subjects/${encodeURIComponent(subject)}/versions/latest`;
    let body: { id?: unknown; schema?: unknown };
    try {
      body = await this.get(path, { subject });
    } catch (err) {
      if (registryNotFound(err, SUBJECT_NOT_FOUND, VERSION_NOT_FOUND)) return null;
      throw err;
    }
    if (typeof body.id !== 'number') throw new SchemaError(`schema registry answered GET ${path} without an id`, { context: { subject } });
    const schema = schemaOf(body, path, { subject, schemaId: body.id });
    this.cacheSchema(body.id, schema);
    return { id: body.id, schema };
  }

  /** PUT /config/{subject}; later registrations under the subject expect this level. */
  async setCompatibility(subject: string, level: CompatibilityLevel): Promise<void> {
    await this.rest('PUT', `/config/${encodeURIComponent(subject)}`, { compatibility: level }, { subject, compatibility: level });
    this.log.info({ subject, compatibility: level }, 'subject compatibility set');
  }

  /**
   * GET /config/{subject}: the subject's own level, null when it has none (40408; Karapace
   * answers 40401 for a subject without versions; older registries answer with the global level
   * instead, which is as good here).
   */
  async subjectLevel(subject: string): Promise<CompatibilityLevel | null> {
    const path = `/config/${encodeURIComponent(subject)}`;
    try {
      const body = (await this.get(path, { subject })) as { compatibilityLevel?: unknown };
      return typeof body.compatibilityLevel === 'string' ? (body.compatibilityLevel.toUpperCase() as CompatibilityLevel) : null;
    } catch (err) {
      if (registryNotFound(err, LEVEL_NOT_CONFIGURED, SUBJECT_NOT_FOUND)) return null;
      throw err;
    }
  }

  private async doRegister(subject: string, schema: object): Promise<number> {
    // Mostly the schema is there already (every start after the first): one lookup instead of
    // a level read, the library's own level read and the registration (3 requests a subject).
    const known = await this.lookup(subject, schema);
    if (known !== null) {
      this.log.debug({ subject, schemaId: known }, 'schema already registered');
      this.cacheSchema(known, schema);
      return known;
    }
    // The library refuses to register under a subject whose level differs from the one it is
    // given, and sets that one on a subject without its own: give it the subject's own level.
    const own = await this.subjectLevel(subject);
    const compatibility = (own ?? this.defaultLevel) as COMPATIBILITY;
    if (own && own !== this.defaultLevel) this.log.info({ subject, compatibility: own }, "registering under the subject's own compatibility level");
    let id: number;
    const register = () => this.lib.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject, compatibility });
    try {
      const sentWith = this.auth?.password ?? '';
      try {
        ({ id } = await register());
      } catch (err) {
        if ((err as { status?: unknown }).status !== 401 || !this.passwordRotated(sentWith)) throw err;
        ({ id } = await register());
      }
    } catch (err) {
      throw registryError(err, `registering a schema under subject ${subject} failed`, { subject, compatibility }, this.url, this.scrub, 'registration');
    } finally {
      // The library keeps every schema it registered compiled (avsc) for its own encode, which we
      // never call: 15 kB a subject, 60 MB for a source of 2,000 tables.
      this.lib.cache.clear();
    }
    // At debug: a first start registers two subjects per table (the caller sums them up).
    this.log.debug({ subject, schemaId: id }, 'schema registered');
    // The registry may hold an equivalent text for this id; ours is as good (same canonical form).
    // The caller's object itself (immutable once registered, see register): a copy per subject
    // cost a source of 2,000 tables 8 MB.
    this.cacheSchema(id, schema);
    return id;
  }

  /**
   * POST /subjects/{subject}: the id of `schema` under the subject, null when the subject lacks
   * it (40401 no subject, 40403 not this schema). Read-only, so retried as a GET is.
   */
  private async lookup(subject: string, schema: object): Promise<number | null> {
    const path = `/subjects/${encodeURIComponent(subject)}`;
    let body: { id?: unknown };
    try {
      body = (await this.retriedOnStaleSocket(() => this.rest('POST', path, { schema: JSON.stringify(schema) }, { subject }), `POST ${path}`)) as { id?: unknown };
    } catch (err) {
      if (registryNotFound(err, SUBJECT_NOT_FOUND, SCHEMA_NOT_FOUND)) return null;
      throw err;
    }
    if (typeof body.id !== 'number') throw new SchemaError(`schema registry answered POST ${path} without an id`, { context: { subject } });
    return body.id;
  }

  /** When the registry last answered a request of this client (any status; 0: never): a registry that answers, if slowly, is not down. */
  answeredAt(): number {
    return this.lastAnswer;
  }

  /** The registry's subjects (`GET /subjects`): what `shardbridge check` asks to see it answers. */
  async subjects(): Promise<string[]> {
    const body = (await this.rest('GET', '/subjects', undefined, {})) as unknown;
    return Array.isArray(body) ? body.map(String) : [];
  }

  private async fetchSchema(id: number): Promise<object> {
    const path = `/schemas/ids/${id}`;
    return schemaOf(await this.get(path, { schemaId: id }), path, { schemaId: id });
  }

  /** A GET's JSON body. A GET is safe to repeat; a pooled keep-alive socket the server just closed fails once with UND_ERR_SOCKET. */
  private async get(path: string, context: ErrorContext): Promise<{ id?: unknown; schema?: unknown }> {
    return (await this.retriedOnStaleSocket(() => this.rest('GET', path, undefined, context), `GET ${path}`)) as { id?: unknown; schema?: unknown };
  }

  /**
   * `fn` again at once (three times at most) when a pooled socket turned out closed; any other
   * failure (refused, no answer in time, 5xx) goes to the caller at once: retried here it cost a
   * registry that does not answer four timeouts a call, and a warning a try.
   */
  private retriedOnStaleSocket<T>(fn: () => Promise<T>, what: string): Promise<T> {
    return retry(fn, { retries: 3, initialMs: 50, maxMs: 500, what, logger: this.log, retryIf: staleSocket });
  }

  private async rest(method: string, path: string, body: unknown, context: ErrorContext, again = false): Promise<unknown> {
    const what = `schema registry ${method} ${path}`;
    const sentWith = this.auth?.password ?? '';
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: {
          accept: `${CONTENT_TYPE}, application/json`,
          ...(body === undefined ? {} : { 'content-type': CONTENT_TYPE }),
          ...(this.authHeader ? { authorization: this.authHeader } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: this.stop ? AbortSignal.any([this.stop, AbortSignal.timeout(this.timeoutMs)]) : AbortSignal.timeout(this.timeoutMs),
      });
      // The timeout covers the body too: a server may send its headers and stall.
      text = await res.text();
      this.lastAnswer = Date.now();
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new SchemaError(`${what}: the registry at ${redactUrl(this.url)} accepted the connection but did not answer within ${this.timeoutMs / 1000} s`, {
          retriable: true,
          context: { ...context, timeoutMs: this.timeoutMs },
          cause: err,
          remedy: 'is the schema registry overloaded or hung (or a proxy or firewall in front of it dropping traffic)?',
        });
      }
      // fetch fails with TypeError('fetch failed') whose cause names the socket error.
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new SchemaError(`${what}: cannot reach the registry at ${redactUrl(this.url)} (${detail})`, { retriable: true, context, cause: err, remedy: 'is the schema registry running and its URL right?' });
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = undefined;
    }
    if (res.ok && json !== undefined) return json;
    if (res.status === 401 && !again && this.passwordRotated(sentWith)) return this.rest(method, path, body, context, true);
    const errBody = (json ?? {}) as { error_code?: number; message?: string };
    throw registryError(
      { status: res.status, message: errBody.message ?? text.slice(0, 200), errorCode: errBody.error_code },
      `${what} failed`,
      context,
      this.url,
      this.scrub,
      'request',
    );
  }
}

/** A fetch that failed on a socket the server had closed (keep-alive), as opposed to a server that refuses or does not answer. Pure. */
export function staleSocket(err: unknown): boolean {
  const cause = (err as { cause?: { cause?: { code?: string; message?: string } } }).cause?.cause;
  return cause !== undefined && STALE_SOCKET.test(`${cause.code ?? ''} ${cause.message ?? ''}`);
}

/** The schema a registry answer carries as JSON text (`GET /schemas/ids/{id}`, `GET /subjects/…/versions/…`). */
function schemaOf(body: { schema?: unknown }, path: string, context: ErrorContext): object {
  if (typeof body.schema !== 'string') throw new SchemaError(`schema registry answered GET ${path} without a schema`, { context });
  try {
    return JSON.parse(body.schema) as object;
  } catch (err) {
    throw new SchemaError(`the schema at GET ${path} is not JSON`, { context, cause: err });
  }
}
