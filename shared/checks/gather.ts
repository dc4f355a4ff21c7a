/**
 * The I/O edge of `shardbridge check`: the few catalog reads and the WAL sample that the pure
 * judges in this folder need. Nothing here decides anything.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { qualifiedName } from '../../source-connector/catalog.ts';
import { currentLsnSql } from '../../source-connector/standby.ts';
import type { TableInfo } from '../pg-types.ts';
import type { SinkTableMapping } from '../../sink-connector/config.ts';
import { readDestinationTables } from '../../sink-connector/destination-catalog.ts';
import { detectCitus } from '../schema/citus-catalog.ts';
import { mapTable } from '../schema/mapping.ts';
import type { Collation, DestinationFacts, RowSecurity, SourceTableFacts } from './destination.ts';
import { canSetReplicationRole, readTriggers, type ReplicationRole } from './triggers.ts';

// Generated columns apart, as in the source catalog: pgoutput does not send them.
const COLUMN_TYPES_SQL = `
SELECT a.attrelid::int AS relid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated <> '' AS generated, a.attnotnull AS not_null,
       co.collname AS collation, co.collisdeterministic AS deterministic
  FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum`;

/**
 * Whether row-level security applies to this role on each table, as PostgreSQL decides
 * (check_enable_rls): its policies would hide rows from the sink's deletes and updates.
 */
const DEST_ROW_SECURITY_SQL = `
SELECT x.i, c.relforcerowsecurity AS forced, pg_get_userbyid(c.relowner) AS owner, current_user AS role
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i)
  JOIN pg_namespace ns ON ns.nspname = x.s JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = x.n
 WHERE c.relrowsecurity AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
   AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE'))`;

/** Per table (in order): the row-level security that applies to the connected role, if any. */
export async function readRowSecurity(client: pg.ClientBase, tables: readonly { schema: string; name: string }[]): Promise<(RowSecurity | undefined)[]> {
  const { rows } = await client.query(DEST_ROW_SECURITY_SQL, [tables.map((t) => t.schema), tables.map((t) => t.name)]);
  const out: (RowSecurity | undefined)[] = tables.map(() => undefined);
  for (const r of rows) out[Number(r.i) - 1] = { forced: r.forced as boolean, owner: r.owner as string, role: r.role as string };
  return out;
}

/** Each collatable column's collation (`default`: the database's), by table, for the columns named. */
const DEST_COLLATIONS_SQL = `
SELECT x.i, a.attname AS name, co.collname AS collation, co.collisdeterministic AS deterministic
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i)
  JOIN pg_namespace ns ON ns.nspname = x.s JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = x.n
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_collation co ON co.oid = a.attcollation`;

/** The selected source tables with `format_type` column types, for comparison with the destination. */
export async function sourceTableFacts(client: pg.ClientBase, tables: TableInfo[]): Promise<SourceTableFacts[]> {
  const { rows } = await client.query(COLUMN_TYPES_SQL, [tables.map((t) => t.relid)]);
  return tables.map((t) => ({
    name: qualifiedName(t),
    schema: t.schema,
    table: t.name,
    keyColumns: t.keyColumns,
    replicaIdentity: t.replicaIdentity,
    columns: rows
      .filter((r) => r.relid === t.relid && !r.generated)
      .map((r) => ({ name: r.name, type: r.type, notNull: r.not_null === true, ...(r.collation === null ? {} : { collation: { name: r.collation, deterministic: r.deterministic } }) })),
    generatedColumns: rows.filter((r) => r.relid === t.relid && r.generated).map((r) => r.name as string),
  }));
}

export async function databaseSize(client: pg.ClientBase): Promise<{ database: string; bytes: number }> {
  const { rows: [r] } = await client.query(`SELECT current_database() AS db, pg_database_size(current_database())::float8 AS bytes`);
  return { database: r.db, bytes: r.bytes };
}

/** WAL bytes written per second between two readings `seconds` apart (on a standby, replayed: the primary's rate as it reaches the slot); null when not sampled. */
export async function sampleWalRate(client: pg.ClientBase, seconds: number): Promise<number | null> {
  if (seconds <= 0) return null;
  try {
    const { rows: [a] } = await client.query(`SELECT ${currentLsnSql()}::text AS lsn, clock_timestamp() AS at`);
    await sleep(seconds * 1000);
    const { rows: [b] } = await client.query(`SELECT pg_wal_lsn_diff(${currentLsnSql()}, $1::pg_lsn)::float8 AS bytes, clock_timestamp() AS at`, [a.lsn]);
    const elapsed = (b.at.getTime() - a.at.getTime()) / 1000;
    return elapsed > 0 ? b.bytes / elapsed : null;
  } catch {
    return null;
  }
}

export async function gatherDestinationFacts(
  client: pg.ClientBase,
  sources: SourceTableFacts[],
  mapping: Record<string, SinkTableMapping>,
  requireDistributed: boolean,
  role: ReplicationRole = 'origin',
): Promise<DestinationFacts> {
  const citus = await detectCitus(client);
  const mapped = sources.map((s) => mapTable({ schema: s.schema, name: s.table }, mapping));
  const destinations = await readDestinationTables(client, mapped.map((m) => m.destination), citus);
  const triggers = await readTriggers(client, mapped.map((m) => m.destination));
  const { rows: collations } = await client.query(DEST_COLLATIONS_SQL, [mapped.map((m) => m.destination.schema), mapped.map((m) => m.destination.name)]);
  const security = await readRowSecurity(client, mapped.map((m) => m.destination));
  // Grouped once: a schema per tenant is thousands of tables.
  const collationsOf = new Map<number, Record<string, Collation>>();
  for (const r of collations) {
    const i = Number(r.i) - 1;
    let cols = collationsOf.get(i);
    if (!cols) collationsOf.set(i, (cols = {}));
    cols[r.name] = { name: r.collation, deterministic: r.deterministic };
  }
  const replicationRole =
    role === 'replica' ? { role, canSet: !citus.present && (await canSetReplicationRole(client)), user: String((await client.query('SELECT current_user AS u')).rows[0].u) } : undefined;
  return { citus, requireDistributed, replicationRole, tables: sources.map((source, i) => ({ source, mapped: mapped[i], destination: destinations[i], triggers: triggers[i], collations: collationsOf.get(i) ?? {}, rowSecurity: security[i] })) };
}
