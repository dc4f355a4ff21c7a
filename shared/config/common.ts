/**
 * Configuration pieces both connectors share: field builders, the PostgreSQL connection section,
 * Kafka and Schema Registry sections, and pure helpers that turn a section into a `pg` config or
 * a printable copy. Every object is strict: an unknown key is an error, never silently ignored.
 * `.describe()` texts are the "expected form" that config errors print.
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import type { ClientConfig } from 'pg';
import { parse as parsePgConnectionString } from 'pg-connection-string';
import { z } from 'zod';
import { ConfigError, tlsTrustRemedy } from '../errors.ts';
import { redactDeep } from '../redact.ts';
import { passwordAtStart, passwordFileProblem, passwordFromFile } from './password-file.ts';
import { REQUEST_TIMEOUT_MS } from '../registry/registry-client.ts';

/** schemaRegistry.requestTimeoutMs: below 100 ms a healthy registry fails; over 5 min a dead one holds a stop or a check that long. */
export const REGISTRY_TIMEOUT_BOUNDS = { min: 100, max: 300_000 } as const;

// ---------- field builders ----------

export const positiveInt = () => z.number().int().positive();
export const nonNegativeInt = () => z.number().int().nonnegative();
export const nonEmptyString = () => z.string().min(1);
export const portNumber = () => z.number().int().min(0).max(65535);

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const logLevel = () => z.enum(LOG_LEVELS).default('info');

/** V8's heap growing factor for the connector process, in percent above 1× (shared/heap.ts); 0: V8's default; no default: the connector decides. */
export function heapGrowingPercent(byDefault: number): z.ZodDefault<z.ZodNumber>;
export function heapGrowingPercent(): z.ZodOptional<z.ZodNumber>;
export function heapGrowingPercent(byDefault?: number) {
  const n = z.number().int().min(0).max(1000);
  return byDefault === undefined ? n.optional() : n.default(byDefault);
}

/** Kafka topic names: [a-zA-Z0-9._-]; the prefix leaves room for `.schema.table` within Kafka's 249. */
export const topicName = () =>
  z.string().regex(/^[a-zA-Z0-9._-]{1,200}$/).describe('a Kafka topic name (letters, digits, ".", "_", "-"; at most 200)');

/** Lower-case unquoted PostgreSQL identifier (replication slot names allow nothing else). */
export const lowerIdentifier = () =>
  z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).describe('a lower-case identifier (a-z, 0-9, "_"; at most 63, not starting with a digit)');

/** `schema.table`; a part holding dots, spaces or quotes is double-quoted (`"My Schema"."Order Items"`). */
export const qualifiedTableName = () =>
  z
    .string()
    .regex(/^(?:[^."\s]+|"(?:[^"]|"")+")\.(?:[^."\s]+|"(?:[^"]|"")+")$/)
    .describe('a "schema.table" name (double-quote a part holding dots or spaces: "My Schema"."Order Items")');

const hostPort = () =>
  z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/).describe('a "host:port" address');

/** A section that may be left out: validated as `{}` so that errors name its required keys, not the section. */
export function section<S extends z.ZodType>(schema: S): z.ZodPrefault<S> {
  return schema.prefault({} as z.input<S>);
}

// ---------- PostgreSQL connection ----------

export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** A PostgreSQL connection section: either `url`, or `host` + `database` + `user`. */
export function pgConnectionSchema(section: string) {
  return z
    .strictObject({
      url: z.string().regex(/^postgres(ql)?:\/\/[^\n\r\t]+$/).describe('a postgres:// or postgresql:// URL').optional(),
      host: nonEmptyString().optional(),
      port: portNumber().default(5432),
      database: nonEmptyString().optional(),
      user: nonEmptyString().optional(),
      password: z.string().optional(),
      /** A file holding the password, read at every new connection (password-file.ts). */
      passwordFile: nonEmptyString().optional(),
      sslmode: z.enum(SSL_MODES).default('prefer'),
      /** Path of a CA certificate file (PEM) for verify-ca / verify-full. */
      sslrootcert: nonEmptyString().optional(),
    })
    .superRefine((v, ctx) => {
      const fields = (['host', 'database', 'user'] as const).filter((k) => v[k] !== undefined);
      if (v.url !== undefined) {
        for (const k of fields) {
          ctx.addIssue({ code: 'custom', path: [k], message: `conflicts with ${section}.url: give either url or host/database/user` });
        }
      } else if (fields.length === 0) {
        ctx.addIssue({ code: 'custom', path: ['url'], message: `required (or ${section}.host, ${section}.database and ${section}.user)` });
      } else {
        for (const k of ['host', 'database', 'user'] as const) {
          if (v[k] === undefined) ctx.addIssue({ code: 'custom', path: [k], message: `required (or give ${section}.url instead)` });
        }
      }
      // Checked here, so that a bad URL or CA file is a config error naming the key, not a failure to connect.
      if (v.url !== undefined) {
        const { problems, sslrootcert, hasPassword } = pgUrlProblems(v.url, section);
        for (const message of problems) ctx.addIssue({ code: 'custom', path: ['url'], message });
        // node-postgres takes the URL's password over the field: a password rotated through
        // the environment would be ignored without a word.
        if (hasPassword && v.password !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['password'], message: `conflicts with the password in ${section}.url: give the password once (take it out of the URL)` });
        }
        if (hasPassword && v.passwordFile !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `conflicts with the password in ${section}.url: give the password once (take it out of the URL)` });
        }
        const why = sslrootcert === undefined ? undefined : fileProblem(sslrootcert);
        if (why) ctx.addIssue({ code: 'custom', path: ['url'], message: `its sslrootcert ${sslrootcert} cannot be read: ${why}` });
      }
      const why = v.sslrootcert === undefined ? undefined : fileProblem(v.sslrootcert);
      if (why) ctx.addIssue({ code: 'custom', path: ['sslrootcert'], message: `cannot read ${v.sslrootcert}: ${why}` });
      if (v.passwordFile !== undefined) {
        if (v.password !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `conflicts with ${section}.password: give the password once (the file, or the key)` });
        }
        // Read now, so that a wrong path is a config error at start, not a refused connection later.
        const problem = passwordFileProblem(v.passwordFile);
        if (problem) ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `${v.passwordFile}: ${problem}` });
      }
    });
}

/** A postgres:// URL as node-postgres reads it (pg-connection-string: spaces and stray `%` encoded first). */
function parsePgUrl(url: string): URL {
  const str = / |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(url) ? encodeURI(url).replace(/%25(\d\d)/g, '%$1') : url;
  try {
    return new URL(str);
  } catch {
    return new URL(str.replace('@/', '@___DUMMY___/'));
  }
}

/**
 * What node-postgres would misread in a postgres:// URL (pure), in words that never quote the
 * URL: an unencoded `/`, `#`, `?` or `@` in the password, an sslmode it does not know. Also the
 * sslrootcert the query names, for the caller to check, and whether the URL carries a password.
 */
export function pgUrlProblems(url: string, section: string): { problems: string[]; sslrootcert?: string; hasPassword?: boolean } {
  const encode = `percent-encode special characters of the user name and password (/ as %2F, # as %23, ? as %3F, @ as %40), or give the password as ${section}.password`;
  let u: URL;
  try {
    u = parsePgUrl(url);
  } catch {
    return { problems: [`not a valid URL: ${encode}`] };
  }
  // `u:12/x@h/db` parses, as host "u" port 12 and database "x@h/db".
  if (u.pathname.includes('@')) return { problems: [`not the URL it seems (an "@" after the host): ${encode}`] };
  const problems: string[] = [];
  const mode = u.searchParams.get('sslmode');
  if (mode !== null && !(SSL_MODES as readonly string[]).includes(mode)) {
    const shown = /^[\w-]{1,20}$/.test(mode) ? ` "${mode}"` : '';
    problems.push(`its sslmode${shown} is not one of ${SSL_MODES.join(', ')}`);
  }
  return { problems, sslrootcert: u.searchParams.get('sslrootcert') ?? undefined, hasPassword: u.password !== '' };
}

/** Why `path` cannot be read as a file, or undefined when it can. */
function fileProblem(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return 'not a file';
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? (err as Error).message);
  }
}
export type PgConnectionConfig = z.infer<ReturnType<typeof pgConnectionSchema>>;

// ---------- Kafka and Schema Registry ----------

export const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;

export const kafkaSchema = () =>
  z.strictObject({
    brokers: z.array(hostPort()).min(1),
    clientId: nonEmptyString().optional(),
    ssl: z
      .union([
        z.boolean(),
        z.strictObject({
          ca: nonEmptyString().describe('PEM text').optional(),
          cert: nonEmptyString().describe('PEM text').optional(),
          key: nonEmptyString().describe('PEM text').optional(),
          rejectUnauthorized: z.boolean().optional(),
        }),
      ])
      .optional(),
    sasl: z
      .strictObject({
        mechanism: z.enum(SASL_MECHANISMS),
        username: nonEmptyString(),
        password: nonEmptyString().optional(),
        /** A file holding the password, read once at start (kafkajs takes a string). */
        passwordFile: nonEmptyString().optional(),
      })
      .superRefine((v, ctx) => {
        if (v.password === undefined && v.passwordFile === undefined) {
          ctx.addIssue({ code: 'custom', path: ['password'], message: 'required (or kafka.sasl.passwordFile)' });
        }
        passwordFileIssues(v, 'kafka.sasl', ctx);
      })
      .transform((v, ctx) => withFilePassword(v, 'kafka.sasl', ctx) as { mechanism: (typeof SASL_MECHANISMS)[number]; username: string; password: string })
      .optional(),
  });
export type KafkaConfig = z.infer<ReturnType<typeof kafkaSchema>>;

/**
 * The registry section. Credentials in the URL (`http://user:pw@host`) move to username/password:
 * fetch refuses a URL that carries them.
 */
export const schemaRegistrySchema = () =>
  z
    .strictObject({
      url: z.string().regex(/^https?:\/\/\S+$/).describe('an http:// or https:// URL'),
      username: nonEmptyString().optional(),
      password: z.string().optional(),
      /** A file holding the password, read once at start. */
      passwordFile: nonEmptyString().optional(),
      // A registry far away (another region, a slow proxy) needs longer; the sink's 3 s hold of an
      // apply slot (batch-retry.ts) does not follow it: it measures silence, not one request.
      requestTimeoutMs: z
        .number()
        .int()
        .min(REGISTRY_TIMEOUT_BOUNDS.min)
        .max(REGISTRY_TIMEOUT_BOUNDS.max)
        .describe(`an integer number of milliseconds from ${REGISTRY_TIMEOUT_BOUNDS.min} to ${REGISTRY_TIMEOUT_BOUNDS.max}`)
        .default(REQUEST_TIMEOUT_MS),
    })
    .superRefine((v, ctx) => {
      const parts = splitUrlCredentials(v.url);
      if (!parts) ctx.addIssue({ code: 'custom', path: ['url'], message: 'not a valid URL (percent-encode special characters of a user name or password)' });
      else if (parts.username !== undefined && v.username !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['url'], message: 'carries a user name, and schemaRegistry.username is set too: give the credentials once' });
      } else if (parts.password !== undefined && v.password !== undefined) {
        // The URL's would win: a password rotated through the environment, ignored without a word.
        ctx.addIssue({ code: 'custom', path: ['password'], message: 'conflicts with the password in schemaRegistry.url: give the password once (take it out of the URL)' });
      } else if (parts.password !== undefined && v.passwordFile !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: 'conflicts with the password in schemaRegistry.url: give the password once (take it out of the URL)' });
      } else if (v.passwordFile !== undefined && v.username === undefined && parts.username === undefined) {
        // Basic auth goes with a user: without one the password would be dropped without a word.
        ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: 'needs schemaRegistry.username (basic auth sends a user and its password)' });
      }
      passwordFileIssues(v, 'schemaRegistry', ctx);
    })
    .transform((v, ctx) => {
      const read = withFilePassword(v, 'schemaRegistry', ctx);
      const parts = splitUrlCredentials(v.url);
      if (parts?.username === undefined) return read;
      return { ...read, url: parts.url, username: parts.username, password: parts.password ?? read.password };
    });
export type SchemaRegistryConfig = z.infer<ReturnType<typeof schemaRegistrySchema>>;

/** `passwordFile` beside `password` (both named), or a file that cannot serve (key and path named, never the content). */
function passwordFileIssues(v: { password?: string; passwordFile?: string }, section: string, ctx: z.RefinementCtx): void {
  if (v.passwordFile === undefined) return;
  if (v.password !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `conflicts with ${section}.password: give the password once (the file, or the key)` });
  }
  const problem = passwordFileProblem(v.passwordFile);
  if (problem) ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `${v.passwordFile}: ${problem}` });
}

/**
 * The section with `password` read from its `passwordFile` (validated above, read once here) and
 * the key dropped. Gone or emptied since the check: an issue as the check's.
 */
function withFilePassword<T extends { password?: string; passwordFile?: string }>(v: T, section: string, ctx: z.RefinementCtx): Omit<T, 'passwordFile'> {
  const { passwordFile, ...rest } = v;
  if (passwordFile === undefined) return rest;
  const read = passwordAtStart(passwordFile);
  if ('problem' in read) {
    ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `${passwordFile}: ${read.problem}` });
    return rest;
  }
  return { ...rest, password: read.password } as Omit<T, 'passwordFile'>;
}

// ---------- pure helpers ----------

/**
 * What to do about a failed connection of `section`: where the CA goes for a server certificate
 * that did not verify; the one setting a refusal points at (a database, role or password the
 * server refused, a host name that does not resolve, a port nobody listens on); else `otherwise`.
 */
export function pgRemedy(err: unknown, section: string, otherwise: string): string {
  const tls = tlsTrustRemedy(err, `sslrootcert (a PEM file: in ${section}.url's query, or ${section}.sslrootcert; sslmode=require encrypts without verifying)`);
  if (tls) return tls;
  // The password file unreadable at this connection (password-file.ts): its own remedy.
  if (err instanceof ConfigError && err.remedy) return err.remedy;
  switch (failureCode(err)) {
    case '3D000':
      return `check the database name (the path of ${section}.url, or ${section}.database): the server has no database of that name; create it first if it is new`;
    case '28P01':
      return `check the password (${section}.password, or the one in ${section}.url, percent-encoded, or the content of ${section}.passwordFile) for this user; with none given, its line in the password file (PGPASSFILE, else ~/.pgpass)`;
    case '28000':
      return `check the user (${section}.user, or the one in ${section}.url) exists, and that pg_hba.conf lets it connect to this database from here`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host name does not resolve from here: check the host in ${section}.url (or ${section}.host) and DNS`;
    case 'ECONNREFUSED':
      return `nothing accepts connections at that address: check the port in ${section}.url (or ${section}.port), that the server runs, and its listen_addresses`;
    default:
      return otherwise;
  }
}

/** A SQLSTATE or socket error code down the cause chain (a wrapped driver error keeps it as its code or context.sqlstate). */
function failureCode(err: unknown): string | undefined {
  for (let e: any = err, depth = 0; e && depth < 8; e = e.cause, depth++) {
    if (typeof e.code === 'string') return e.code;
    if (typeof e.context?.sqlstate === 'string') return e.context.sqlstate;
  }
  return undefined;
}

/** `host:port/database` (or `host:port`) of a connection section, never credentials: for naming the server in messages. */
export function pgEndpoint(section: PgConnectionConfig, withDatabase = true): string {
  if (section.url === undefined) return `${section.host}:${section.port}${withDatabase ? `/${section.database}` : ''}`;
  try {
    const u = parsePgUrl(section.url);
    const host = u.hostname === '___DUMMY___' ? '' : u.hostname;
    const database = withDatabase && u.pathname.length > 1 ? safeDecode(u.pathname) : '';
    return `${host || 'localhost'}:${u.port || section.port}${database}`;
  } catch {
    return '(unparsable url)';
  }
}

/** An http(s) URL without its userinfo, and the (decoded) user name and password it carried; undefined when not a URL. */
export function splitUrlCredentials(url: string): { url: string; username?: string; password?: string } | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.username === '' && u.password === '') return { url };
  const username = safeDecode(u.username);
  const password = u.password === '' ? undefined : safeDecode(u.password);
  u.username = '';
  u.password = '';
  // URL adds a "/" path to a bare origin; the registry client joins paths onto what it is given.
  const clean = u.pathname === '/' && !url.replace(/[?#].*$/, '').endsWith('/') ? `${u.origin}${u.search}` : u.href;
  return { url: clean, username, password };
}

export interface ConnectionConfigOptions {
  /** The section's name (`source`, `destination`): an error at a later connection names its key in full. */
  section: string;
  application_name?: string;
  /** Reads `sslrootcert`; injectable so the mapping stays testable without files. */
  readFile?: (path: string) => string;
}

/**
 * A `pg` ClientConfig for a connection section. `sslmode` follows libpq except `prefer`:
 * node-postgres cannot fall back from TLS to plain, so `prefer` connects without TLS (use
 * `require` or stronger to insist on TLS). An `sslmode`/`sslrootcert` in the URL query wins
 * over the fields and is taken out of the URL so node-postgres does not reinterpret it.
 */
export function connectionConfig(section: PgConnectionConfig, opts: ConnectionConfigOptions): ClientConfig {
  let sslmode: SslMode = section.sslmode;
  let sslrootcert = section.sslrootcert;
  const out: ClientConfig = {};
  if (section.url !== undefined) {
    // options too: a URL's parameters override the client's fields, so the URL's `options` would
    // replace the session settings the connectors add to them (pg-types.ts, withUserOptions).
    const { url, params } = takeQueryParams(section.url, ['sslmode', 'sslrootcert', 'options']);
    if (params.options) out.options = params.options;
    if (params.sslmode) {
      if (!(SSL_MODES as readonly string[]).includes(params.sslmode)) {
        throw new ConfigError(`config: ${opts.section}.url: its sslmode is not one of ${SSL_MODES.join(', ')}`, { context: { key: `${opts.section}.url` } });
      }
      sslmode = params.sslmode as SslMode;
    }
    sslrootcert = params.sslrootcert ?? sslrootcert;
    // node-postgres lays the parsed URL over the fields, and a URL without a password parses to
    // password '': a `password` field beside `url` would never be sent. In the query it is read.
    out.connectionString = section.password === undefined ? url : `${url}${url.includes('?') ? '&' : '?'}password=${encodeURIComponent(section.password)}`;
  } else {
    Object.assign(out, { host: section.host, port: section.port, database: section.database, user: section.user });
    if (section.password !== undefined) out.password = section.password;
  }
  if (opts.application_name) out.application_name = opts.application_name;

  let ca: string | undefined;
  try {
    ca = sslrootcert ? (opts.readFile ?? ((p: string) => readFileSync(p, 'utf8')))(sslrootcert) : undefined;
  } catch (err) {
    // Validation checked the file; it went away since.
    const key = sslrootcert === section.sslrootcert ? `${opts.section}.sslrootcert` : `${opts.section}.url`;
    throw new ConfigError(`config: ${key}: cannot read the sslrootcert ${sslrootcert}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { context: { key } });
  }
  switch (sslmode) {
    case 'disable':
    case 'prefer':
      out.ssl = false;
      break;
    case 'require':
      out.ssl = { rejectUnauthorized: false };
      break;
    case 'verify-ca':
      // Chain checked against the CA, host name not (libpq's verify-ca).
      out.ssl = { rejectUnauthorized: true, ...(ca ? { ca } : {}), checkServerIdentity: () => undefined };
      break;
    case 'verify-full':
      out.ssl = { rejectUnauthorized: true, ...(ca ? { ca } : {}) };
      break;
  }
  // Last: the URL's parameters go over everything above, as they would from a connectionString.
  if (section.passwordFile !== undefined) withPasswordFile(out, section.passwordFile, `${opts.section}.passwordFile`);
  return out;
}

/**
 * `out` with its password read from `path` at every new connection. node-postgres would lay a
 * connectionString's parse (password '' included) over a `password` function: the URL goes in as
 * the fields it parses to, laid over the others as node-postgres would, so that every parameter
 * of the URL still counts. Validation refused a password in the URL beside the file.
 */
function withPasswordFile(out: ClientConfig, path: string, key: string): void {
  if (out.connectionString !== undefined) {
    const parsed: Record<string, unknown> = { ...parsePgConnectionString(out.connectionString) };
    delete parsed.password;
    delete out.connectionString;
    Object.assign(out, parsed);
  }
  out.password = passwordFromFile(path, key);
}

function takeQueryParams(url: string, names: string[]): { url: string; params: Record<string, string> } {
  const q = url.indexOf('?');
  if (q < 0) return { url, params: {} };
  const params: Record<string, string> = {};
  const kept: string[] = [];
  for (const part of url.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    const name = safeDecode(eq < 0 ? part : part.slice(0, eq));
    if (names.includes(name)) params[name] = safeDecode(eq < 0 ? '' : part.slice(eq + 1));
    else if (part) kept.push(part);
  }
  return { url: url.slice(0, q) + (kept.length ? `?${kept.join('&')}` : ''), params };
}

function safeDecode(x: string): string {
  try {
    return decodeURIComponent(x);
  } catch {
    return x;
  }
}

/** TLS private keys (`ssl.key`) are secrets too. */
const sslKeyPath = (path: readonly string[]) => path.length >= 2 && path[path.length - 1] === 'key' && path[path.length - 2] === 'ssl';

/** A copy fit for printing: every password, secret and `ssl.key` replaced by `***`, URL passwords masked. */
export function describeSafe<T>(config: T): T {
  return redactDeep(config, sslKeyPath) as T;
}
