/**
 * The PostgreSQL connection section both connectors share (`source`, `destination`), and the pure
 * helpers that turn it into a `pg` config, name its server, or say what to do about a failed
 * connection.
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import type { ClientConfig } from 'pg';
import { parse as parsePgConnectionString } from 'pg-connection-string';
import { z } from 'zod';
import { ConfigError, tlsTrustRemedy } from '../errors.ts';
import { passwordFromFile } from './password-file.ts';
import { poolerRefusedParameter, poolerRemedy } from '../checks/pooler.ts';
import { nonEmptyString, passwordFileIssues, portNumber, safeDecode } from './common.ts';

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
        for (const key of ['password', 'passwordFile'] as const) {
          if (hasPassword && v[key] !== undefined) {
            ctx.addIssue({ code: 'custom', path: [key], message: `conflicts with the password in ${section}.url: give the password once (take it out of the URL)` });
          }
        }
        const why = sslrootcert === undefined ? undefined : fileProblem(sslrootcert);
        if (why) ctx.addIssue({ code: 'custom', path: ['url'], message: `its sslrootcert ${sslrootcert} cannot be read: ${why}` });
      }
      const why = v.sslrootcert === undefined ? undefined : fileProblem(v.sslrootcert);
      if (why) ctx.addIssue({ code: 'custom', path: ['sslrootcert'], message: `cannot read ${v.sslrootcert}: ${why}` });
      // Read now, so that a wrong path is a config error at start, not a refused connection later.
      passwordFileIssues(v, section, ctx);
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
  const refused = causes(err).map(poolerRefusedParameter).find((p) => p !== null);
  if (refused) return poolerRemedy(section, refused);
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

function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e: any = err, depth = 0; e && depth < 8; e = e.cause, depth++) out.push(e);
  return out;
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
