/**
 * Shapes shared by the source (type mapping, decoding, snapshot) and the sink
 * (type-aware binding). Pure data: no I/O here.
 */

/** A PostgreSQL type resolved from pg_type once (at start-up or on a new Relation message). */
export interface PgTypeInfo {
  oid: number;
  schema: string;
  /** pg_type.typname, e.g. `int8`, `_int4` for an array, `mood` for an enum. */
  name: string;
  kind: 'base' | 'enum' | 'domain' | 'array' | 'range' | 'multirange' | 'composite' | 'pseudo';
  /** Arrays: the element type. */
  elem?: PgTypeInfo;
  /** Domains: the underlying type. */
  base?: PgTypeInfo;
  /** Ranges: the subtype. */
  subtype?: PgTypeInfo;
}

export interface ColumnInfo {
  name: string;
  type: PgTypeInfo;
  /** atttypmod: -1 when none; numeric(p,s) encodes ((p << 16) | s) + 4. */
  typmod: number;
  /** Part of the primary key / replica identity key. */
  isKey: boolean;
}

export interface TableInfo {
  relid: number;
  schema: string;
  name: string;
  columns: ColumnInfo[];
  /** Key column names in key order. */
  keyColumns: string[];
  replicaIdentity: 'default' | 'full' | 'index' | 'nothing';
  /** A partitioned table: its rows are its partitions' (a plain table's inheritance children are tables of their own). */
  partitioned?: boolean;
}

/**
 * A decoded tuple in column order. `string` is PostgreSQL's text output of the value,
 * `null` is SQL NULL, `undefined` is pgoutput's unchanged-TOAST marker ('u'): the value
 * was not sent and the destination must keep what it has.
 */
export type TextTuple = (string | null | undefined)[];

/** Session settings that make text output uniform on every source connection (snapshot and walsender). */
export const SOURCE_SESSION_SETTINGS: Record<string, string> = {
  DateStyle: 'ISO',
  IntervalStyle: 'iso_8601',
  TimeZone: 'UTC',
  extra_float_digits: '3',
  bytea_output: 'hex',
  lc_monetary: 'C',
  // The catalog and snapshot SQL quote names as literals: a backslash in one is not an escape.
  standard_conforming_strings: 'on',
  // Not the role's path (an application's `ALTER ROLE … SET search_path = app`): what the server
  // prints (format_type, regclass, pg_get_expr) names every object outside pg_catalog with its
  // schema, the same on both sides whatever each role's path; what we send names them so too.
  search_path: '',
};

/**
 * Timeouts an application's role or database settings carry (`ALTER ROLE app SET
 * statement_timeout = '30s'`, `ALTER DATABASE … SET idle_in_transaction_session_timeout …`),
 * which reach every session of a role sharing them, ours too. Reset in the sessions that read
 * whole tables or wait on purpose, as pg_dump does in its own: a snapshot's COPY of a large
 * table outlasts any statement_timeout; its readers sit idle in their transaction while the
 * others finish, and the exporting replication connection until every reader imported the
 * snapshot; verify's checksums scan whole tables. A cut statement is retriable (57014), so the
 * snapshot would be taken again and cut again, forever.
 */
export const LONG_READ_SETTINGS: Record<string, string> = {
  statement_timeout: '0',
  idle_in_transaction_session_timeout: '0',
};

/**
 * lock_timeout reset too in the source's sessions, as pg_dump does by default: they only ever
 * wait for ACCESS SHARE (the snapshot's COPY and its lock, verify's reads) or SHARE UPDATE
 * EXCLUSIVE (a publication's table added), behind DDL holding the table; queued, they hold up
 * no reader or writer of the application (only later DDL, which the holder holds up anyway). Cut
 * by an application's lock_timeout, the wait would be retried (55P03 is retriable) with the whole
 * snapshot taken again. Not reset where our statements take locks that hold up writers (the
 * foreign keys cutover creates on the destination): there the operator's lock_timeout stays the
 * safety net.
 */
export const LOCK_WAIT_SETTINGS: Record<string, string> = {
  lock_timeout: '0',
};

/** `-c name=value` for each setting, as the `options` connection parameter takes them (space and backslash escaped). Pure. */
export function settingsOptions(settings: Record<string, string>): string {
  return Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v.replace(/([ \\])/g, '\\$1')}`)
    .join(' ');
}

/**
 * `options` connection parameter of the source's sessions: LONG_READ_SETTINGS and
 * LOCK_WAIT_SETTINGS, then the user's own options (a timeout given in ShardBridge's own
 * connection URL is meant for it: it holds), then SOURCE_SESSION_SETTINGS (which hold whatever
 * the user sets).
 */
export function sourceSessionOptions(user?: string): string {
  return [sourceTimeouts(user), settingsOptions(SOURCE_SESSION_SETTINGS)].join(' ');
}

/**
 * `options` of a command's session on the destination (`schema copy`, `check`, `cutover`):
 * LONG_READ_SETTINGS before the user's own options, which hold, and an empty search_path after
 * them (SOURCE_SESSION_SETTINGS's, which the commands' SQL expects). The role's lock_timeout stays:
 * the DDL these sessions run (a foreign key's ALTER TABLE) holds up the table's writers while it waits.
 */
export function commandDestinationOptions(user?: string): string {
  return [settingsOptions(LONG_READ_SETTINGS), user, settingsOptions(QUALIFIED_NAMES)].filter(Boolean).join(' ');
}

/** `options` of a command's session on the source: LONG_READ_SETTINGS and LOCK_WAIT_SETTINGS before the user's own options, which hold; an empty search_path after them. */
export function commandSourceOptions(user?: string): string {
  return [sourceTimeouts(user), settingsOptions(QUALIFIED_NAMES)].join(' ');
}

const sourceTimeouts = (user?: string) => [settingsOptions({ ...LONG_READ_SETTINGS, ...LOCK_WAIT_SETTINGS }), user].filter(Boolean).join(' ');

/** SOURCE_SESSION_SETTINGS's search_path alone: the commands' sessions print names as verify's and the connector's do. */
const QUALIFIED_NAMES = { search_path: SOURCE_SESSION_SETTINGS.search_path };

/**
 * The user's own libpq `options` (the connection URL's `options` parameter) kept, ours after
 * them: a setting given twice takes the later value, so ours hold whatever the user sets.
 */
export function withUserOptions(user: string | undefined, ours: string): string {
  return user ? `${user} ${ours}` : ours;
}
