/**
 * Per destination table: the ApplyTable the SQL builders work against, built from the
 * destination catalog (read once, again after a schema change or a stall) and the source
 * key from the record's key schema. Refusals (missing table, unusable key, a table that
 * is not distributed under `requireDistributed`) are SinkApplyErrors that stall the
 * partition; judgement warnings are logged once per catalog read.
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { SchemaError, SinkApplyError } from '../shared/errors.ts';
import { describeCitusTable } from '../shared/schema/citus-table-kind.ts';
import { readDestinationTable, readDestinationTables, judgeDestinationKey, unloggedWarning, type DestinationTable } from './destination-catalog.ts';
import type { CitusInfo } from '../shared/schema/citus-catalog.ts';
import { tableShape, type ApplyTable } from './sink-change.ts';
import { qualifiedName, quoteIdent } from './upsert-batch.ts';
import { destIdOf, type TableVersion } from './schema-compile.ts';
import { formatTypeName } from '../shared/type-mapping/index.ts';
import { compareTypes } from '../shared/checks/type-compat.ts';
import { refillRemedy, type MissingColumnHistory } from './stall.ts';
import { resnapshotCommand } from '../shared/migration/remedies.ts';
import { SourceDrops, type LatestVersionOf } from './source-drops.ts';

export interface TableStatesOptions {
  citus: CitusInfo;
  requireDistributed: boolean;
  logger: Logger;
  /** The sink's sessions run with session_replication_role = replica: foreign keys are not checked for its rows. */
  replicaRole?: boolean;
  /** A table's type mismatches as of its latest catalog read (none: an empty list), for metrics. */
  onTypeMismatches?: (table: string, mismatches: TypeMismatch[]) => void;
  /** The latest version under a topic's value subject, to tell a column the source dropped since (source-drops.ts); absent: the versions seen in-process only. */
  latestVersion?: LatestVersionOf;
}

/** A destination column whose type cannot take every source value as it is (typeMismatches). */
export interface TypeMismatch {
  column: string;
  source: string;
  destination: string;
}

/** An ApplyTable's cache key: its destination table (a prefix `invalidate` matches) and source key. */
/** Up to this many tables read at start are reported a line each (else counted in one). */
const TABLES_REPORTED_EACH = 20;

const applyTableKey = (version: TableVersion, sourceKey: readonly string[]): string => `${version.destId}\u0000${sourceKey.join('\u0000')}`;

/**
 * What the start says of a destination table's foreign keys: in per-table order they stall the
 * sink, unless its sessions run as replica, where (as on a native subscriber) they are not
 * checked for its rows. Pure.
 */
export function foreignKeyNote(foreignKeys: string[], replicaRole: boolean): { level: 'info' | 'warn'; foreignKeys: string[]; message: string } | null {
  if (foreignKeys.length === 0) return null;
  return replicaRole
    ? { level: 'info', foreignKeys, message: 'destination table has foreign keys: not checked for the rows the sink applies (sessionReplicationRole replica); they hold again once the sink has caught up' }
    : {
        level: 'warn',
        foreignKeys,
        message: 'destination table has foreign keys: the sink applies tables independently, so create foreign keys at cut-over, not before (or set sessionReplicationRole: replica)',
      };
}

export class TableStates {
  private readonly catalogs = new Map<string, Promise<DestinationTable>>();
  private readonly applyTables = new Map<string, ApplyTable>();
  /** Value schema ids already checked against the current catalog read, per destination table. */
  private readonly versionsSeen = new Map<string, Set<number>>();
  /**
   * Every table version ever seen per destination table, by value schema id: only a new one (the
   * source's table changed) re-reads the catalog, not one seen before (tables merged into one, or
   * a replay); one without a missing column says the source added it since (columnHistory).
   */
  private readonly versionsEver = new Map<string, Map<number, TableVersion>>();
  /** Table versions whose unmatched column mappings were logged. */
  private readonly renamesLogged = new Set<number>();
  /** What was last logged about each table (report). */
  private readonly reported = new Map<string, string>();
  /** Type mismatches already logged: table, column and both types. */
  private readonly mismatchesLogged = new Set<string>();
  /** Per destination table, every column a catalog read found (kept over invalidations): a column missing now was dropped there. */
  private readonly columnsHad = new Map<string, Set<string>>();
  private readonly drops: SourceDrops;

  constructor(private readonly opts: TableStatesOptions) {
    this.drops = new SourceDrops(opts.latestVersion, opts.logger);
  }

  /**
   * The ApplyTable for a table version and its source key (destination names). A schema
   * id not seen since the last catalog read re-reads the catalog: the source's table changed.
   */
  async resolve(client: pg.ClientBase, version: TableVersion, sourceKey: readonly string[]): Promise<ApplyTable> {
    let seen = this.versionsSeen.get(version.destId);
    let ever = this.versionsEver.get(version.destId);
    if (!ever) this.versionsEver.set(version.destId, (ever = new Map()));
    if (seen && !seen.has(version.schemaId) && !ever.has(version.schemaId)) {
      this.invalidate(version.destId);
      seen = undefined;
    }
    if (!seen) this.versionsSeen.set(version.destId, (seen = new Set()));
    seen.add(version.schemaId);
    if (!ever.has(version.schemaId)) ever.set(version.schemaId, version);
    if (version.unmatchedRenames.length > 0 && !this.renamesLogged.has(version.schemaId)) {
      this.renamesLogged.add(version.schemaId);
      const src = `${version.source.schema}.${version.source.table}`;
      this.opts.logger.warn(
        { table: `${version.dest.schema}.${version.dest.name}`, columns: version.unmatchedRenames, schemaId: version.schemaId },
        `the column mapping of ${src} names ${version.unmatchedRenames.join(', ')}, which ${src} does not have (names are case-sensitive): those renames are not applied; remedy: correct tables."${src}".columns in the sink's configuration`,
      );
    }

    const dest = await this.catalog(client, version);
    const cacheKey = applyTableKey(version, sourceKey);
    const hit = this.applyTables.get(cacheKey);
    if (hit) return hit;
    const table = this.build(dest, version, sourceKey);
    this.applyTables.set(cacheKey, table);
    this.reportMismatches(dest, version);
    return table;
  }

  /**
   * The ApplyTable `resolve` would return now without reading the catalog, if it is known:
   * read since the last invalidation, with this schema id seen. For the fast-row plan, which
   * runs before the batch's transaction (partition-batch.ts, binary COPY).
   */
  peek(version: TableVersion, sourceKey: readonly string[]): ApplyTable | undefined {
    if (!this.versionsSeen.get(version.destId)?.has(version.schemaId)) return undefined;
    return this.applyTables.get(applyTableKey(version, sourceKey));
  }

  /** What this process saw of `column`, which the destination table of `version` lacks (columnHistory). */
  columnHistory(version: TableVersion, column: string): MissingColumnHistory {
    return columnHistory(this.columnsHad.get(version.destId), this.versionsEver.get(version.destId)?.values() ?? [], version, column);
  }

  /**
   * Of `missing` (columns of `version` the destination `table` lacks), those the source dropped in
   * a later version, applied without their values (source-drops.ts); 'unknown': the registry did
   * not answer. Decided once per catalog read and version.
   */
  droppedAtSource(table: ApplyTable, version: TableVersion, topic: string, missing: readonly { name: string }[]): Promise<ReadonlySet<string> | 'unknown'> {
    return this.drops.dropped(table, version, topic, missing, this.versionsEver.get(version.destId)?.values() ?? []);
  }

  /** The stall error for `column` of `version`, which the destination `table` lacks, with what is known of it; `registryDown`: whether the source dropped it could not be asked. */
  missingColumnError(table: ApplyTable, version: TableVersion, column: { name: string; pgType: string | null }, registryDown = false): SinkApplyError {
    return missingColumnError(table, column, { table: `${version.source.schema}.${version.source.table}`, history: this.columnHistory(version, column.name), registryDown });
  }

  /** The autoEvolve warning for adding `column` of `version` (autoEvolveLine). */
  autoEvolveLine(version: TableVersion, column: string, sql: string): string {
    return autoEvolveLine(sql, column, `${version.source.schema}.${version.source.table}`, this.columnHistory(version, column));
  }

  /** Whether the destination table exists (for truncate-only batches, which need no key). */
  async exists(client: pg.ClientBase, version: TableVersion): Promise<boolean> {
    return (await this.catalog(client, version)).exists;
  }

  /** Forget the catalog of one table (or all): the next resolve reads it again. */
  invalidate(destId?: string): void {
    for (const key of [...this.catalogs.keys()]) if (destId === undefined || key === destId) this.catalogs.delete(key);
    for (const key of [...this.applyTables.keys()]) if (destId === undefined || key.startsWith(destId + '\u0000')) this.applyTables.delete(key);
    for (const key of [...this.versionsSeen.keys()]) if (destId === undefined || key === destId) this.versionsSeen.delete(key);
  }

  /**
   * Read and report the catalog of each table at start (destination-start.ts, checkTables); which are
   * missing and which are local (not distributed), by name. Not kept for the tables' first
   * batches: a table may change before its first change arrives (an operator adding the
   * column a source DDL added), and a first batch always reads its catalog.
   */
  async readAtStart(client: pg.ClientBase, tables: readonly { schema: string; table: string }[]): Promise<{ missing: string[]; local: string[] }> {
    const missing: string[] = [];
    const local: string[] = [];
    // Over many tables (a schema per tenant: thousands), a line each is noise: one line counts them.
    const each = tables.length <= TABLES_REPORTED_EACH;
    const kinds = new Map<string, number>();
    for (const dest of await readDestinationTables(client, tables.map((t) => ({ schema: t.schema, name: t.table })), this.opts.citus)) {
      const name = `${dest.schema}.${dest.name}`;
      if (!dest.exists) missing.push(name);
      else {
        this.report(dest, each ? 'info' : 'debug');
        kinds.set(dest.citus, (kinds.get(dest.citus) ?? 0) + 1);
        if (dest.citus === 'local') local.push(name);
      }
    }
    if (!each && kinds.size > 0) {
      this.opts.logger.info({ tables: Object.fromEntries(kinds) }, `destination tables: ${[...kinds].map(([k, n]) => `${n} ${k}`).join(', ')} (each at debug)`);
    }
    return { missing, local };
  }

  private catalog(client: pg.ClientBase, version: TableVersion): Promise<DestinationTable> {
    let p = this.catalogs.get(version.destId);
    if (!p) {
      p = readDestinationTable(client, version.dest.schema, version.dest.name, this.opts.citus);
      this.catalogs.set(version.destId, p);
      p.catch(() => {
        if (this.catalogs.get(version.destId) === p) this.catalogs.delete(version.destId);
      });
      void p.then((d) => this.report(d), () => {});
    }
    return p;
  }

  /** Logs a table's distribution and foreign keys when they differ from what was last logged for it. */
  private report(d: DestinationTable, level: 'info' | 'debug' = 'info'): void {
    if (!d.exists) return;
    const id = destIdOf(d.schema, d.name);
    const summary = JSON.stringify([d.citus, d.distributionColumn, d.primaryKey, d.foreignKeys.map((f) => f.name), d.unlogged === true]);
    if (this.reported.get(id) === summary) return;
    this.reported.set(id, summary);
    const log = this.opts.logger.child({ table: `${d.schema}.${d.name}` });
    log[level](
      { citus: d.citus, distributionColumn: d.distributionColumn ?? undefined, primaryKey: d.primaryKey },
      `destination table is ${describeCitusTable(d.citus, d.distributionColumn)}`,
    );
    const fk = foreignKeyNote(d.foreignKeys.map((f) => f.name), this.opts.replicaRole === true);
    if (fk) log[fk.level]({ foreignKeys: fk.foreignKeys }, fk.message);
    const unlogged = unloggedWarning(d);
    if (unlogged) log.warn({ remedy: unlogged.remedy }, unlogged.message);
  }

  /**
   * Columns whose destination type cannot take every source value as it is: logged once each,
   * as `shardbridge check` fails them. Values are cast to the destination type, so one that
   * does not fit stalls the partition, but a cast that succeeds may change it unnoticed
   * (numeric scale rounded, timestamptz into timestamp, float8 into float4).
   */
  private reportMismatches(dest: DestinationTable, version: TableVersion): void {
    const qn = `${dest.schema}.${dest.name}`;
    const found = typeMismatches(version, dest);
    this.opts.onTypeMismatches?.(qn, found);
    for (const m of found) {
      const key = `${qn}\u0000${m.column}\u0000${m.source}\u0000${m.destination}`;
      if (this.mismatchesLogged.has(key)) continue;
      this.mismatchesLogged.add(key);
      this.opts.logger.warn(
        { table: qn, column: m.column, sourceType: m.source, destinationType: m.destination },
        `column ${m.column} of ${qn} is ${m.destination} on the destination but ${m.source} at the source: values that do not fit stall the partition, and a cast that succeeds may change a value (rounding, time zone); remedy: ALTER TABLE ${qualifiedName(dest)} ALTER COLUMN ${quoteIdent(m.column)} TYPE ${m.source}`,
      );
    }
  }

  private build(dest: DestinationTable, version: TableVersion, sourceKey: readonly string[]): ApplyTable {
    const qn = `${dest.schema}.${dest.name}`;
    const context = { table: qn };
    if (dest.exists) {
      let had = this.columnsHad.get(version.destId);
      if (!had) this.columnsHad.set(version.destId, (had = new Set()));
      for (const c of dest.columns) had.add(c.name);
    }
    if (!dest.exists) {
      throw new SinkApplyError(`destination table ${qn} does not exist`, {
        context: { ...context, sqlstate: '42P01' },
        remedy: `create it on the destination (shardbridge schema copy), or map ${version.source.schema}.${version.source.table} to an existing table under "tables" in the sink config`,
      });
    }
    if (this.opts.requireDistributed && dest.citus === 'local') {
      throw new SinkApplyError(`destination table ${qn} is not distributed and citus.requireDistributed is set`, {
        context,
        remedy: `SELECT create_distributed_table('${qn}', '<distribution column>') (or create_reference_table) on the coordinator`,
      });
    }
    if (sourceKey.length === 0) {
      throw new SinkApplyError(`changes of ${version.source.schema}.${version.source.table} carry no key: the sink applies by primary key`, {
        context,
        remedy: 'give the source table a primary key (the sink cannot upsert without one)',
      });
    }
    // The "key may add only the distribution column" rule is Citus's; on a local table an
    // added column (e.g. a future distribution column) is applied the same way.
    const extra = dest.primaryKey.filter((c) => !sourceKey.includes(c));
    const judged = dest.citus === 'local' && extra.length === 1 ? { ...dest, distributionColumn: extra[0] } : dest;
    const findings = judgeDestinationKey(judged, [...sourceKey]);
    const fail = findings.filter((f) => f.level === 'FAIL');
    for (const w of findings.filter((f) => f.level === 'WARN')) this.opts.logger.warn(context, w.message);
    if (fail.length > 0) {
      throw new SinkApplyError(fail.map((f) => f.message).join('; '), {
        context,
        remedy: 'the destination primary key must be the source key, optionally plus the distribution column',
      });
    }
    const table: ApplyTable = {
      schema: dest.schema,
      name: dest.name,
      columns: dest.columns.map((c) => ({ name: c.name, type: c.type, notNull: c.notNull, ...(c.compareAs ? { compareAs: c.compareAs } : {}) })),
      sourceKey: [...sourceKey],
      destKey: [...dest.primaryKey],
      distributionColumn: dest.distributionColumn ?? undefined,
      citus: dest.citus,
      staging: this.opts.citus.present ? 'shared' : 'session',
      identityAlways: dest.columns.some((c) => c.identityAlways),
      identityAlwaysSet: dest.columns.filter((c) => c.identityAlways && !dest.primaryKey.includes(c.name)).map((c) => c.name),
      generated: dest.generatedColumns ?? [],
      ...(dest.digest ? { digest: dest.digest } : {}),
    };
    try {
      tableShape(table);
    } catch (err) {
      const e = err as SchemaError;
      throw new SinkApplyError(e.message, { context: { ...context, ...e.context }, cause: err });
    }
    return table;
  }
}

/** A source column whose destination namesake is GENERATED: no value can be written to it. */
export function generatedColumnError(table: ApplyTable, column: string, version: TableVersion): SinkApplyError {
  const qn = `${table.schema}.${table.name}`;
  const src = `${version.source.schema}.${version.source.table}`;
  return new SinkApplyError(`column "${column}" of relation "${qn}" is a generated column: it cannot take ${src}'s values`, {
    context: { table: qn, column, sqlstate: '428C9' },
    remedy: `ALTER TABLE ${qualifiedName(table)} ALTER COLUMN ${quoteIdent(column)} DROP EXPRESSION; or map ${src}'s column to another name under tables."${src}".columns`,
  });
}

/**
 * A source column whose destination namesake is GENERATED ALWAYS AS IDENTITY outside the key:
 * inserts keep the source's values (OVERRIDING SYSTEM VALUE), but PostgreSQL refuses any UPDATE
 * of such a column, ON CONFLICT DO UPDATE included ('can only be updated to DEFAULT'), so every
 * upsert statement naming it fails. Null when none. Pure.
 */
export function identityAlwaysError(table: ApplyTable, version: TableVersion): SinkApplyError | null {
  const always = table.identityAlwaysSet ?? [];
  const column = always.find((c) => version.columns.some((v) => v.name === c));
  if (column === undefined) return null;
  const qn = `${table.schema}.${table.name}`;
  const src = `${version.source.schema}.${version.source.table}`;
  const col = quoteIdent(column);
  return new SinkApplyError(`column "${column}" of relation "${qn}" is GENERATED ALWAYS AS IDENTITY outside the primary key: it cannot take ${src}'s values in an update or upsert (PostgreSQL lets such a column be updated only to DEFAULT)`, {
    context: { table: qn, column, sqlstate: '428C9' },
    remedy: `ALTER TABLE ${qualifiedName(table)} ALTER COLUMN ${col} SET GENERATED BY DEFAULT until cut-over (then SET GENERATED ALWAYS again); or map ${src}'s column to another name under tables."${src}".columns`,
  });
}

/** Columns the table version carries that the destination lacks. Pure. */
export function missingColumns(table: ApplyTable, version: TableVersion): { name: string; pgType: string | null }[] {
  const have = new Set(table.columns.map((c) => c.name));
  return version.columns.filter((c) => !have.has(c.name));
}

/**
 * What is known of `column`, which the destination table of `version` lacks: a catalog read found
 * it on the destination (`had`: dropped there since), or an earlier version of the same source
 * table lacks it (a lower schema id, registered before: the source added it since), or neither
 * (a restart since). Pure.
 */
export function columnHistory(had: ReadonlySet<string> | undefined, seen: Iterable<TableVersion>, version: TableVersion, column: string): MissingColumnHistory {
  if (had?.has(column)) return 'dropped';
  for (const v of seen) {
    const sameSource = v.source.schema === version.source.schema && v.source.table === version.source.table;
    if (sameSource && v.schemaId < version.schemaId && !v.columns.some((c) => c.name === column)) return 'added';
  }
  return 'unknown';
}

/** The stall error for a column the destination lacks (what PostgreSQL would answer, 42703), with its remedy and what follows it (refillRemedy). Pure. */
export function missingColumnError(
  table: ApplyTable,
  column: { name: string; pgType: string | null },
  known: { table: string; history: MissingColumnHistory; registryDown?: boolean } = { table: '<source table>', history: 'unknown' },
): SinkApplyError {
  const qn = `${table.schema}.${table.name}`;
  const type = column.pgType ?? '<type>';
  // Without the registry the sink cannot tell a column the source dropped since (source-drops.ts).
  const dropped = known.registryDown
    ? `; but if the source dropped ${column.name} since (a later version of ${known.table} lacks it), add nothing: the schema registry did not answer, and once it does the retry applies these records without ${column.name}`
    : '';
  return new SinkApplyError(`column "${column.name}" of relation "${qn}" does not exist`, {
    context: { table: qn, column: column.name, sqlstate: '42703' },
    remedy: `ALTER TABLE ${qualifiedName(table)} ADD COLUMN ${quoteIdent(column.name)} ${type}; or set autoEvolve: true${refillRemedy(column.name, known.table, known.history)}${dropped}`,
  });
}

/**
 * What autoEvolve logs as it adds a column: the statement, and for a column dropped on the
 * destination (columnHistory) that the rows not changed since are NULL in it until the table's
 * snapshot is taken again: added back without a word, the loss showed only at cutover. Pure.
 */
export function autoEvolveLine(sql: string, column: string, sourceTable: string, history: MissingColumnHistory): string {
  if (history !== 'dropped') return `autoEvolve: ${sql}`;
  return `autoEvolve: ${sql}; ${column} was on the destination before and was dropped there: rows not changed since are NULL in it until ${resnapshotCommand(sourceTable)}`;
}

/** autoEvolve: a nullable column of the source's type (no default, so no table rewrite). */
export function addColumnSql(table: ApplyTable, column: { name: string; pgType: string }): string {
  // The one-byte "char" must be quoted: unquoted, char is character(1).
  const type = column.pgType === 'char' ? '"char"' : column.pgType;
  return `ALTER TABLE ${qualifiedName(table)} ADD COLUMN IF NOT EXISTS ${quoteIdent(column.name)} ${type}`;
}

/**
 * Columns of a table version whose destination type is not the source's or a lossless widening
 * of it (shared/checks/type-compat.ts). Only where both names are comparable: pg_catalog types
 * at the source, no domain at the destination. Pure.
 */
export function typeMismatches(
  version: Pick<TableVersion, 'columns'>,
  dest: Pick<DestinationTable, 'columns'>,
): TypeMismatch[] {
  const out: TypeMismatch[] = [];
  const destColumns = new Map(dest.columns.map((c) => [c.name, c]));
  for (const c of version.columns) {
    const d = destColumns.get(c.name);
    const source = c.pgType === null ? null : formatTypeName(c.pgType);
    if (!d || d.domain || source === null) continue;
    if (compareTypes(source, d.type) === 'incompatible') out.push({ column: c.name, source, destination: d.type });
  }
  return out;
}
