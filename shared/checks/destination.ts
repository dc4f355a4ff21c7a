/**
 * Pure: the destination half of `shardbridge check`. Compares each selected source table
 * with its destination table (through the sink's mapping): existence, columns and types,
 * primary key, Citus distribution, foreign keys, and the source replica identity that a
 * destination key wider than the source key needs.
 */
import type { Finding } from '../../source-connector/checks.ts';
import { judgeDestinationKey, unloggedWarning, type DestinationTable } from '../../sink-connector/destination-catalog.ts';
import type { CitusInfo } from '../schema/citus-catalog.ts';
import { describeCitusTable } from '../schema/citus-table-kind.ts';
import { INDEX_MAX_KEYS } from '../schema/generate.ts';
import { destColumn, type MappedTable } from '../schema/mapping.ts';
import { compareTypes } from './type-compat.ts';
import { replicationRoleRefusal, triggerWarning, type DestinationTrigger, type ReplicationRole } from './triggers.ts';

export interface SourceTableFacts {
  /** `schema.table`, for messages. */
  name: string;
  schema: string;
  table: string;
  keyColumns: string[];
  replicaIdentity: 'default' | 'full' | 'index' | 'nothing';
  /** Columns with `format_type` text, and the collation of a collatable one; notNull as the source has it (unset: not known). */
  columns: { name: string; type: string; collation?: Collation; notNull?: boolean }[];
  /** GENERATED columns, which pgoutput does not send. */
  generatedColumns?: string[];
}

/** Row-level security that applies to the sink's role on a destination table. */
export interface RowSecurity {
  forced: boolean;
  owner: string;
  role: string;
}

export interface TableComparison {
  source: SourceTableFacts;
  mapped: MappedTable;
  destination: DestinationTable;
  /** The destination table's user triggers (triggers.ts). */
  triggers?: DestinationTrigger[];
  /** The destination's collatable columns' collations, by column name. */
  collations?: Record<string, Collation>;
  /** Set when row-level security applies to the sink's role on the destination table. */
  rowSecurity?: RowSecurity;
}

/** `pg_collation.collname` (`default`: the database's) and whether equal means equal bytes. */
export interface Collation {
  name: string;
  deterministic: boolean;
}

export interface DestinationFacts {
  citus: CitusInfo;
  /** The sink's `citus.requireDistributed`: a local table on Citus is then a failure, not a warning. */
  requireDistributed: boolean;
  /** The sink's `sessionReplicationRole`, and whether the sink's role may set it (read only under replica). */
  replicationRole?: { role: ReplicationRole; canSet: boolean; user: string };
  tables: TableComparison[];
}

const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
const qn = (t: { schema: string; name: string }) => `${q(t.schema)}.${q(t.name)}`;
const plain = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;

export function judgeDestination(f: DestinationFacts): Finding[] {
  const out: Finding[] = [];
  out.push(
    f.citus.present
      ? { level: 'PASS', check: 'citus', object: 'destination', message: `Citus ${f.citus.version} present` }
      : { level: 'PASS', check: 'citus', object: 'destination', message: 'plain PostgreSQL (no Citus): tables stay local, distribution is skipped' },
  );
  out.push(...judgeReplicationRole(f));
  for (const t of f.tables) out.push(...judgeTable(t, f));
  return out;
}

/** The role the sink's sessions apply with: replica on Citus, or for a role that may not set it, stops the sink at start. */
function judgeReplicationRole(f: DestinationFacts): Finding[] {
  const r = f.replicationRole;
  if (!r || r.role !== 'replica') return [];
  const refused = replicationRoleRefusal(f.citus.present, r.canSet, r.user);
  return refused
    ? [{ level: 'FAIL', check: 'replication role', object: 'sessionReplicationRole', ...refused }]
    : [{ level: 'PASS', check: 'replication role', object: 'sessionReplicationRole', message: `the sink's sessions will apply with session_replication_role = replica (role "${r.user}" may set it): ordinary triggers and foreign keys do not fire for its rows` }];
}

/** Whether the sink's sessions run with replica: only where the sink would start with it. */
const appliesAsReplica = (f: DestinationFacts) => f.replicationRole?.role === 'replica' && f.replicationRole.canSet && !f.citus.present;

function judgeTable(t: TableComparison, f: DestinationFacts): Finding[] {
  const d = t.destination;
  const dest = plain(t.mapped.destination);
  if (!d.exists) {
    return [{ level: 'FAIL', check: 'table exists', object: dest, message: `destination table ${dest} (for ${t.source.name}) does not exist`, remedy: 'create it: shardbridge schema copy (with --distribute TABLE=COLUMN on Citus)' }];
  }
  const unlogged = unloggedWarning(d);
  const persistence: Finding[] = unlogged ? [{ level: 'WARN', check: 'unlogged', object: dest, message: unlogged.message, remedy: unlogged.remedy }] : [];
  const rls = judgeRowSecurity(t);
  const trig = triggerWarning(t.mapped.destination, t.triggers ?? [], appliesAsReplica(f) ? 'replica' : 'origin', f.citus.present);
  const triggers: Finding[] = trig ? [{ level: 'WARN', check: 'triggers', object: dest, ...trig }] : [];
  return [...judgeColumns(t), ...judgeKey(t), ...judgeDistribution(t, f), ...judgeForeignKeys(t, appliesAsReplica(f), f.citus.present), ...judgeReplicaIdentity(t), ...persistence, ...rls, ...triggers];
}

function judgeColumns(t: TableComparison): Finding[] {
  const out: Finding[] = [];
  const d = t.destination;
  const dest = plain(t.mapped.destination);
  const byName = new Map(d.columns.map((c) => [c.name, c]));
  const mapped = new Set<string>();
  for (const c of t.source.columns) {
    const name = destColumn(t.mapped, c.name);
    mapped.add(name);
    const dc = byName.get(name);
    const object = `${dest}.${name}`;
    if (!dc) {
      out.push({ level: 'FAIL', check: 'column', object, message: `column ${name} (source ${t.source.name}.${c.name} ${c.type}) is missing on the destination`, remedy: `ALTER TABLE ${qn(t.mapped.destination)} ADD COLUMN ${q(name)} ${c.type};` });
      continue;
    }
    if (dc.identityAlways && !d.primaryKey.includes(name)) {
      // Inserts can say OVERRIDING SYSTEM VALUE; no UPDATE (nor ON CONFLICT DO UPDATE) may set such a column.
      out.push({ level: 'FAIL', check: 'column', object, message: `destination column ${name} is GENERATED ALWAYS AS IDENTITY outside the primary key: the sink's upserts cannot set it to the source's values (PostgreSQL updates it only to DEFAULT), so the table's partitions stall at their first record`, remedy: `ALTER TABLE ${qn(t.mapped.destination)} ALTER COLUMN ${q(name)} SET GENERATED BY DEFAULT; until cut-over (then SET GENERATED ALWAYS again)` });
    }
    const collation = judgeCollation(t, c, name);
    if (collation) out.push(collation);
    const verdict = compareTypes(c.type, dc.type);
    if (verdict === 'widening') {
      out.push({ level: 'WARN', check: 'column type', object, message: `source type ${c.type}, destination ${dc.type}: a lossless widening`, remedy: `nothing needed if intended; to match exactly: ALTER TABLE ${qn(t.mapped.destination)} ALTER COLUMN ${q(name)} TYPE ${c.type};` });
    } else if (verdict === 'incompatible') {
      out.push({ level: 'FAIL', check: 'column type', object, message: `source type ${c.type}, destination ${dc.type}: values may not fit or change their text form`, remedy: `ALTER TABLE ${qn(t.mapped.destination)} ALTER COLUMN ${q(name)} TYPE ${c.type};` });
    }
  }
  for (const g of t.source.generatedColumns ?? []) {
    const name = destColumn(t.mapped, g);
    mapped.add(name);
    if (!byName.has(name)) continue; // GENERATED there too, or left out: nothing is lost
    out.push({
      level: 'WARN',
      check: 'column',
      object: `${dest}.${name}`,
      message: `source column ${t.source.name}.${g} is GENERATED, which logical replication does not send, but destination column ${name} is a plain one: it stays NULL (or its default)`,
      remedy: `make it GENERATED ALWAYS AS (the source's expression) STORED on the destination (shardbridge schema copy does), or drop it`,
    });
  }
  for (const dc of d.columns) {
    if (!mapped.has(dc.name) && dc.notNull) {
      out.push({ level: 'WARN', check: 'column', object: `${dest}.${dc.name}`, message: `destination-only column ${dc.name} is NOT NULL: inserts from the source fail unless it has a default`, remedy: `give it a DEFAULT, or ALTER TABLE ${qn(t.mapped.destination)} ALTER COLUMN ${q(dc.name)} DROP NOT NULL;` });
    }
  }
  if (out.length === 0) out.push({ level: 'PASS', check: 'columns', object: dest, message: `${t.source.columns.length} column${t.source.columns.length === 1 ? '' : 's'} with the source's types` });
  return out;
}

const BUILT_IN_COLLATIONS = new Set(['default', 'C', 'POSIX', 'ucs_basic']);

/**
 * A column compared under another collation on the destination: ordering and equality differ
 * there. A nondeterministic one (case-insensitive ICU, say) in a destination key makes values
 * the source keeps apart one key: the sink's upserts merge their rows into one, without an error.
 */
function judgeCollation(t: TableComparison, c: { name: string; type: string; collation?: Collation }, name: string): Finding | null {
  const s = c.collation;
  const d = t.collations?.[name];
  if (!s || !d || s.name === d.name) return null;
  const object = `${plain(t.mapped.destination)}.${name}`;
  const alter = `ALTER TABLE ${qn(t.mapped.destination)} ALTER COLUMN ${q(name)} TYPE ${c.type} COLLATE ${q(s.name)};`;
  const lit = `'${qn(t.mapped.destination).replace(/'/g, "''")}'`;
  // Citus refuses ALTER COLUMN TYPE of the distribution column (table.c: "cannot execute ALTER TABLE command involving partition column").
  // Every database has the built-in ones: only a collation of the source's own is to be created first.
  const create = BUILT_IN_COLLATIONS.has(s.name) ? '' : 'the collation created on the destination first, as on the source';
  const remedy =
    t.destination.citus === 'distributed' && t.destination.distributionColumn === name
      ? `before any data arrives: SELECT undistribute_table(${lit}); ${alter} SELECT create_distributed_table(${lit}, '${name.replace(/'/g, "''")}'); (Citus refuses ALTER COLUMN … TYPE of the distribution column; add colocate_with as it was${create ? `; ${create}` : ''})`
      : `${alter}${create ? ` (${create})` : ''}`;
  const keyed = [t.destination.primaryKey, ...t.destination.uniqueKeys].some((k) => k.includes(name));
  if (keyed && !d.deterministic && s.deterministic) {
    return {
      level: 'FAIL',
      check: 'column collation',
      object,
      message: `source collation ${s.name}, destination ${d.name}, which is nondeterministic, on a key column: values the source keeps apart (a and A under a case-insensitive collation) are one key there, and the sink's upserts merge their rows into one`,
      remedy,
    };
  }
  return {
    level: 'WARN',
    check: 'column collation',
    object,
    message: `source collation ${s.name}, destination ${d.name}: ordering and comparisons of ${name} differ on the destination${d.deterministic ? '' : ' (nondeterministic: equal values may differ in their bytes)'}`,
    remedy,
  };
}

function judgeKey(t: TableComparison): Finding[] {
  const dest = plain(t.mapped.destination);
  const sourceKey = t.source.keyColumns.map((c) => destColumn(t.mapped, c));
  // A source table without a key already fails on the source side; nothing to compare with.
  if (sourceKey.length === 0) return [];
  const found = judgeDestinationKey(t.destination, sourceKey);
  const wanted = t.destination.distributionColumn ? [...new Set([...sourceKey, t.destination.distributionColumn])] : sourceKey;
  const remedy =
    wanted.length > INDEX_MAX_KEYS
      ? `a source key of ${sourceKey.length} columns cannot take the distribution column ${t.destination.distributionColumn} (a PostgreSQL index has ${INDEX_MAX_KEYS} columns at most): distribute the table by one of its key columns (${sourceKey.join(', ')}) and make the primary key the source key`
      : t.destination.distributionColumn
        ? `make the primary key the source key plus the distribution column: (${wanted.join(', ')})`
        : `make the primary key the source key: (${sourceKey.join(', ')})`;
  const out: Finding[] = found.map((k) =>
    k.level === 'FAIL'
      ? { level: 'FAIL', check: 'primary key', object: dest, message: k.message, remedy }
      : { level: 'WARN', check: 'unique key', object: dest, message: k.message, remedy: 'add the distribution column to the constraint (shardbridge schema copy --extend-keys) or drop it' },
  );
  if (!found.some((k) => k.level === 'FAIL')) {
    const extra = t.destination.primaryKey.filter((c) => !sourceKey.includes(c));
    out.unshift({ level: 'PASS', check: 'primary key', object: dest, message: `(${t.destination.primaryKey.join(', ')}) = source key${extra.length ? ` + distribution column ${extra.join(', ')}` : ''}` });
  }
  return out;
}

/**
 * Row-level security that applies to the sink's role: a policy's USING hides rows from its
 * UPDATE and DELETE, which then change nothing without an error (tried: DELETE 0), so the
 * destination keeps rows the source deleted; an insert its WITH CHECK refuses stalls.
 */
function judgeRowSecurity(t: TableComparison): Finding[] {
  const r = t.rowSecurity;
  if (!r) return [];
  return [{ level: 'FAIL', check: 'row-level security', object: plain(t.mapped.destination), ...rowSecurityProblem(t.mapped.destination, r) }];
}

/** What row-level security applying to the sink's role does, and the remedy: check's FAIL, the sink's start warning. Pure. */
export function rowSecurityProblem(table: { schema: string; name: string }, r: RowSecurity): { message: string; remedy: string } {
  return {
    message: `destination table ${plain(table)} has row-level security${r.forced ? ' (FORCE)' : ''} that applies to the sink's role "${r.role}": updates and deletes of rows its policies hide change nothing, without an error`,
    remedy: `ALTER ROLE ${q(r.role)} BYPASSRLS;  (a superuser can)${r.forced ? ` or ALTER TABLE ${qn(table)} NO FORCE ROW LEVEL SECURITY and connect the sink as its owner "${r.owner}"` : ` or connect the sink as its owner "${r.owner}"`}`,
  };
}

function judgeDistribution(t: TableComparison, f: DestinationFacts): Finding[] {
  if (!f.citus.present) return [];
  const d = t.destination;
  const dest = plain(t.mapped.destination);
  if (d.citus !== 'local') {
    const nullable = nullableDistribution(t);
    return [{ level: 'PASS', check: 'distribution', object: dest, message: describeCitusTable(d.citus, d.distributionColumn) }, ...(nullable ? [nullable] : [])];
  }
  return [{
    level: f.requireDistributed ? 'FAIL' : 'WARN',
    check: 'distribution',
    object: dest,
    message: `${dest} is a local table on the Citus coordinator: all its rows would land on the coordinator`,
    remedy: `before any data arrives: SELECT create_distributed_table('${qn(t.mapped.destination).replace(/'/g, "''")}', '<column>');  (or create_reference_table for a small table; shardbridge schema copy --distribute TABLE=COLUMN)`,
  }];
}

/**
 * A distribution column filled from a source column that allows NULL (the key extended with it,
 * or made NOT NULL on the destination alone): Citus refuses a row with NULL there ("cannot
 * perform an INSERT with NULL in the partition column"), so such a row stops the sink at the
 * table. schema copy notes it; so does check, for a destination made by hand.
 */
function nullableDistribution(t: TableComparison): Finding | null {
  const column = t.destination.distributionColumn;
  if (t.destination.citus !== 'distributed' || !column) return null;
  const source = t.source.columns.find((c) => destColumn(t.mapped, c.name) === column);
  if (!source || source.notNull !== false || t.source.keyColumns.includes(source.name)) return null;
  const table = `${q(t.source.schema)}.${q(t.source.table)}`;
  return {
    level: 'WARN',
    check: 'distribution column',
    object: plain(t.mapped.destination),
    message: `${plain(t.mapped.destination)}.${column}, its distribution column, is filled from ${t.source.name}.${source.name}, which allows NULL on the source; Citus refuses a row with NULL there ("cannot perform an INSERT with NULL in the partition column"): such a row would stop the sink at this table`,
    remedy: `check that no source row has it (SELECT count(*) FROM ${table} WHERE ${q(source.name)} IS NULL) and keep it so: ALTER TABLE ${table} ALTER COLUMN ${q(source.name)} SET NOT NULL on the source; or distribute by a NOT NULL column`,
  };
}

function judgeForeignKeys(t: TableComparison, replica: boolean, citus: boolean): Finding[] {
  if (replica) {
    // Foreign keys are enforced by triggers, which replica does not fire; a TRUNCATE still checks them.
    return t.destination.foreignKeys.map((fk) => ({
      level: 'PASS' as const,
      check: 'foreign key',
      object: `${plain(t.mapped.destination)}.${fk.name}`,
      message: `${fk.definition}: not enforced on the sink's sessions (sessionReplicationRole: replica); a source truncate of the table it references still stalls while it exists`,
    }));
  }
  return t.destination.foreignKeys.map((fk) => ({
    level: 'WARN' as const,
    check: 'foreign key',
    object: `${plain(t.mapped.destination)}.${fk.name}`,
    message: `${fk.definition}: tables are applied independently, so a row can arrive before the row it references`,
    remedy: `ALTER TABLE ${qn(t.mapped.destination)} DROP CONSTRAINT ${q(fk.name)}; and add it at cut-over (shardbridge schema copy keeps foreign keys aside in shardbridge.deferred_foreign_keys)${citus ? '' : "; or set sessionReplicationRole: replica in the sink's configuration, under which the sink's rows do not fire it"}`,
  }));
}

/**
 * A destination key wider than the source key (source key + distribution column) can only be
 * located for an update that moves the row to another value of the extra column if the old row
 * travels with the change — which pgoutput sends only under REPLICA IDENTITY FULL.
 */
function judgeReplicaIdentity(t: TableComparison): Finding[] {
  const sourceKey = t.source.keyColumns.map((c) => destColumn(t.mapped, c));
  const extra = t.destination.primaryKey.filter((c) => !sourceKey.includes(c));
  if (extra.length === 0 || sourceKey.length === 0) return [];
  const sourceName = qn({ schema: t.source.schema, name: t.source.table });
  if (t.source.replicaIdentity === 'full') {
    return [{ level: 'PASS', check: 'replica identity', object: t.source.name, message: `REPLICA IDENTITY FULL: updates carry the old ${extra.join(', ')} the destination key needs` }];
  }
  return [{
    level: 'WARN',
    check: 'replica identity',
    object: t.source.name,
    message: `the destination key adds ${extra.join(', ')}, which the source key lacks: an update that moves a row to another ${extra.join(', ')} value carries only the old key, so the sink cannot delete the old row precisely`,
    remedy: `ALTER TABLE ${sourceName} REPLICA IDENTITY FULL;  (updates and deletes then carry the whole old row, including ${extra.join(', ')})`,
  }];
}
